"""--expectations: a user's Great Expectations suites over the participants and images tables.

Reading a suite's shape needs no great_expectations; running one does (its
import takes ~3 s, once per session): those tests carry the
``expectations`` marker and skip when the extra is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit.bidsindex import index_dataset
from audit.cli import app
from audit.context import AuditContext, AuditOptions
from audit.errors import InputError
from audit.expectations import load_suite
from audit.runner import run_checks
from tests.builders import make_bids

runner = CliRunner()
SUBJECTS = [f"{i:02d}" for i in range(1, 7)]
ROWS = {s: {"age": str(a), "sex": x, "diagnosis": d}
        for s, a, x, d in zip(SUBJECTS, [61, 64, 70, 300, 66, 72], "MFMFXF", ["CN", "AD"] * 3)}

needs_gx = pytest.mark.expectations


def gx_or_skip() -> None:
    pytest.importorskip("great_expectations", reason="the 'expectations' extra is not installed")


def suite(path: Path, expectations: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(json.dumps({"name": path.stem, "expectations": expectations, **top}))
    return path


def run(root: Path, *suites: Path, images: bool = True) -> list[Any]:
    ctx = AuditContext(options=AuditOptions(run_validator=False, workers=1, check_images=images,
                                            expectations=tuple(map(str, suites))), index=index_dataset(root))
    findings, _ = run_checks(ctx, ["expectations"])
    for f in findings:
        json.dumps(f.to_dict(), allow_nan=False)
    return findings


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return make_bids(tmp_path_factory.mktemp("gx") / "ds", SUBJECTS, participants=ROWS)


# --------------------------------------------------------------------------- reading (no GE)
def test_suite_formats_and_table_convention(tmp_path):
    s = load_suite(suite(tmp_path / "a.json", [{"type": "expect_column_to_exist", "kwargs": {"column": "age"}}]))
    assert (s.table, s.format, s.expectations[0]["type"]) == ("participants", "gx1", "expect_column_to_exist")
    s = load_suite(suite(tmp_path / "b.json", [], meta={"bidsaudit": {"table": "images"}}))
    assert s.table == "images"
    s = load_suite(suite(tmp_path / "scan_images.json", []))
    assert s.table == "images"  # a name ending in "images"
    classic = tmp_path / "c.json"
    classic.write_text(json.dumps({"expectation_suite_name": "old", "expectations": [
        {"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]}))
    s = load_suite(classic)
    assert (s.name, s.format, s.expectations[0]["type"]) == ("old", "classic", "expect_column_values_to_not_be_null")


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"),
    ('{"name": "x",\n "expectations": [\n  {"type": "expect_column_to_exist", }\n]}', "line 3, column"),
    ("[1, 2]", "got a JSON array"),
    ('{"expectations": {"a": 1}}', "expectations: expected a list"),
    ('{"expectations": [{"kwargs": {}}]}', "expectations[0].type"),
    ('{"expectations": [{"type": "expect_column_to_exist", "kwargs": [1]}]}', "expectations[0].kwargs"),
    ('{"expectations": [], "meta": {"bidsaudit": {"table": "sessions"}}}', "meta.bidsaudit.table"),
    ('{"expectations": [{"type": "expect_column_to_exist", "severity": "fatal"}]}', "critical, warning or info"),
])
def test_bad_suite_files_are_input_errors_naming_the_place(tmp_path, content, words):
    path = tmp_path / "s.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError) as err:
        load_suite(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_no_suite_no_finding_and_skipped_with_reason(ds):
    ctx = AuditContext(options=AuditOptions(run_validator=False, check_images=False), index=index_dataset(ds))
    findings, skipped = run_checks(ctx, ["expectations"])
    assert findings == [] and skipped == [{"check": "expectations.failed", "reason": "no --expectations given"}]


# --------------------------------------------------------------------------- running (GE)
@needs_gx
def test_passing_suite_gives_one_info_finding(ds, tmp_path):
    gx_or_skip()
    s = suite(tmp_path / "ok.json", [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0}},
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 6}},
    ])
    (f,) = run(ds, s)
    assert f.check == "expectations.failed" and f.severity == "info" and "3 of 3 expectations met" in f.message


@needs_gx
def test_failing_suite_gives_findings_with_evidence(ds, tmp_path):
    gx_or_skip()
    s = suite(tmp_path / "bad.json", [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 18,
                                                                  "max_value": 100}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "sex", "value_set": ["M", "F"]},
         "severity": "warning"},
        {"type": "expect_column_to_exist", "kwargs": {"column": "education"}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "missing_col", "min_value": 0}},
    ])
    found = run(ds, s)
    by_type = {f.evidence.get("expectation_type"): f for f in found if f.severity != "info"}
    age = by_type["expect_column_values_to_be_between"]
    assert age.severity == "error" and age.subjects == ("sub-04",)
    assert age.evidence["result"]["unexpected_count"] == 1 and age.evidence["result"]["partial_unexpected_list"] == [300]
    assert age.evidence["kwargs"]["column"] == "age" and age.evidence["table"] == "participants"
    assert "1 of 6 values unexpected" in age.message
    sex = by_type["expect_column_values_to_be_in_set"]
    assert sex.severity == "warning" and sex.subjects == ("sub-05",)  # the expectation's own severity
    assert by_type["expect_column_to_exist"].severity == "error"
    broken = by_type["expect_column_mean_to_be_between"]
    assert "could not be evaluated" in broken.message and "missing_col" in broken.evidence["exception"]
    assert "Traceback" not in json.dumps(broken.to_dict())
    summary = [f for f in found if f.severity == "info"]
    assert len(summary) == 1 and "0 of 4 expectations met" in summary[0].message


@needs_gx
def test_images_table_has_entities_sidecars_and_image_figures(ds, tmp_path):
    gx_or_skip()
    s = suite(tmp_path / "img.json", [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "status", "value_set": ["ok"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "RepetitionTime", "max_value": 2.0}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "snr", "min_value": 0}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "cnr"}},
    ], meta={"bidsaudit": {"table": "images"}})
    found = run(ds, s)
    (tr,) = [f for f in found if f.severity == "error"]
    assert tr.evidence["kwargs"]["column"] == "RepetitionTime" and len(tr.subjects) == 6
    assert tr.evidence["paths"][0] == "sub-01/anat/sub-01_T1w.nii.gz"
    summary = [f for f in found if f.severity == "info"][0]
    assert {"path", "participant_id", "suffix", "Manufacturer", "snr", "cnr", "fg_volume_ml", "dim_x"} \
        <= set(summary.evidence["columns"])


@needs_gx
def test_severity_is_configurable_and_waivable(ds, tmp_path):
    gx_or_skip()
    s = suite(tmp_path / "w.json", [{"type": "expect_column_to_exist", "kwargs": {"column": "education"}}])
    ctx = AuditContext(options=AuditOptions(run_validator=False, check_images=False, expectations=(str(s),),
                                            config={"severity": {"expectations.failed": "warning"}}),
                       index=index_dataset(ds))
    findings, _ = run_checks(ctx, ["expectations"])
    assert [f.severity for f in findings] == ["warning", "info"]


@needs_gx
@pytest.mark.parametrize(("content", "words"), [
    ('{"expectations": [{"type": "expect_colum_to_exist", "kwargs": {"column": "a"}}]}',
     "unknown expectation type 'expect_colum_to_exist' (did you mean 'expect_column_to_exist'?)"),
    ('{"expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 1}}]}',
     "expectations[0]: expect_column_values_to_be_between: invalid arguments"),
    ('{"name": "x",\n "expectations": [\n  {"type": "expect_column_to_exist", }\n]}', "line 3, column"),
])
@pytest.mark.parametrize("command", ["validate", "readiness", "audit"])
def test_cli_bad_suite_exits_2_without_traceback(ds, tmp_path, content, words, command):
    gx_or_skip()
    path = tmp_path / "s.json"
    path.write_text(content)
    splits = tmp_path / "splits.tsv"
    splits.write_text("participant_id\tsplit\n" + "".join(f"sub-{s}\t{'train' if i % 3 else 'test'}\n"
                                                           for i, s in enumerate(SUBJECTS)))
    extra = {"validate": [str(ds)], "readiness": [str(ds), "--label", "diagnosis"],
             "audit": [str(ds), "--splits", str(splits)]}[command]
    result = runner.invoke(app, [command, *extra, "--no-validator", "--expectations", str(path),
                                 "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and words in result.output and str(path) in result.output
    assert not (tmp_path / "r.json").exists()


@needs_gx
def test_cli_audit_runs_the_suite(ds, tmp_path):
    gx_or_skip()
    s = suite(tmp_path / "p.json", [{"type": "expect_column_values_to_be_between",
                                     "kwargs": {"column": "age", "max_value": 100}}])
    splits = tmp_path / "splits.tsv"
    splits.write_text("participant_id\tsplit\n" + "".join(f"sub-{x}\t{'train' if i % 3 else 'test'}\n"
                                                           for i, x in enumerate(SUBJECTS)))
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["audit", str(ds), "--splits", str(splits), "--no-validator", "--workers", "1",
                                 "--expectations", str(s), "--json", str(out), "--no-certificate"])
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    failed = [f for f in data["findings"] if f["check"] == "expectations.failed" and f["severity"] == "error"]
    assert len(failed) == 1 and failed[0]["subjects"] == ["sub-04"]
    assert data["reproduce"]["options"]["expectations"] == [str(s)]
