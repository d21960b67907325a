"""The official validator: same verdicts and codes as its own CI, every issue counted."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from audit.validator import (
    CodeSummary,
    ValidatorRun,
    parse_text_output,
    run_validator,
    summarise_issues,
    validator_findings,
)
from tests.builders import SHARED, SHARED_DATA

OFFICIAL = SHARED_DATA / "bids-examples-official.tsv"
ROWS = list(csv.DictReader(OFFICIAL.read_text().splitlines(), delimiter="\t")) if OFFICIAL.exists() else []


def codes(cell: str) -> set[str]:
    return set() if cell == "-" else set(cell.split(","))


@pytest.mark.skipif(not ROWS, reason=f"{OFFICIAL} not found (the ../shared folder is absent)")
@pytest.mark.parametrize("row", ROWS, ids=[r["dataset"] for r in ROWS])
def test_same_verdict_codes_and_counts_as_the_official_run(row):
    root = SHARED_DATA / "bids-examples"
    run = run_validator(root / row["dataset"], ignore_nifti_headers=row["ignoreNiftiHeaders"] == "yes",
                        config=root / "default-config.json")
    assert run.exit_code == int(row["exit_code"])
    assert set(run.errors) == codes(row["error_codes"])
    assert set(run.warnings) == codes(row["warning_codes"])
    counted = {sev: sum(s.count for s in run.codes.values() if s.severity == sev) for sev in ("warning", "ignore")}
    assert counted == {"warning": int(row["n_warnings"]), "ignore": int(row["n_ignored"])}
    findings = validator_findings(run)
    assert {f.evidence["code"] for f in findings if f.severity == "error"} == codes(row["error_codes"])
    assert sum(f.evidence["count"] for f in findings if f.severity == "warning") == int(row["n_warnings"])


def test_issues_aggregate_by_code_and_none_is_lost():
    issues = [{"code": "A", "severity": "warning", "location": f"/sub-{i:02d}/anat/x.nii.gz", "subCode": "K"}
              for i in range(25)]
    issues += [{"code": "B", "severity": "error", "location": "/participants.tsv", "issueMessage": "bad"}]
    summary = summarise_issues(issues, {"A": "a message", "B": "b message"})
    assert {c: s.count for c, s in summary.items()} == {"A": 25, "B": 1}
    assert len(summary["A"].examples) == 10 and summary["A"].subcodes == {"K": 25}
    run = ValidatorRun(version="v", exit_code=16, seconds=0.0, codes=summary)
    by_code = {f.evidence["code"]: f for f in validator_findings(run)}
    assert by_code["B"].severity == "error" and by_code["A"].severity == "warning"
    assert by_code["A"].evidence["count"] == 25 and by_code["A"].message.startswith("A: 25 issues")
    assert by_code["A"].subjects[:2] == ("sub-00", "sub-01")


def test_text_output_parsed_into_the_same_counts():
    text = (
        "\t[WARNING] SIDECAR_KEY_RECOMMENDED A data file's JSON sidecar is missing a key listed as recommended.\n"
        "\t\tManufacturer\n"
        "\t\t/sub-04/anat/sub-04_T1w.nii.gz - Field description: x\n\n"
        "\t\t/sub-05/anat/sub-05_T1w.nii.gz - Field description: x\n\n"
        "\t\t78 more files with the same issue\n\n"
        "\t\tDeviceSerialNumber\n"
        "\t\t/sub-04/anat/sub-04_T1w.nii.gz - Field description: y\n\n"
        "\t[ERROR] HED_ERROR something is wrong\n"
        "\tPlease visit https://neurostars.org/search?q=HED_ERROR\n"
    )
    parsed = parse_text_output(text.splitlines(True))
    assert parsed["SIDECAR_KEY_RECOMMENDED"].count == 81
    assert parsed["SIDECAR_KEY_RECOMMENDED"].subcodes == {"Manufacturer": 80, "DeviceSerialNumber": 1}
    assert (parsed["HED_ERROR"].severity, parsed["HED_ERROR"].count) == ("error", 1)


def test_text_parse_matches_json_on_a_real_dataset(shared_data):
    from audit.validator import validator_command

    ds = shared_data / "bids-examples" / "7t_trt"
    cfg = shared_data / "bids-examples" / "default-config.json"
    out = subprocess.run([*validator_command(), str(ds), "--max-rows", "-1", "--no-color", "--config", str(cfg),
                          "--ignoreNiftiHeaders"], capture_output=True, text=True, check=False)
    text = {c: (s.severity, s.count) for c, s in parse_text_output(out.stdout.splitlines(True)).items()}
    json_run = run_validator(ds, ignore_nifti_headers=True, config=cfg)
    assert text == {c: (s.severity, s.count) for c, s in json_run.codes.items() if s.severity != "ignore"}


def test_bad_validator_config_is_an_input_error(tmp_path):
    from audit.errors import InputError

    bad = tmp_path / "cfg.json"
    bad.write_text("{oops")
    with pytest.raises(InputError, match="cfg.json, line 1, column 2"):
        run_validator(tmp_path, config=bad)


@pytest.mark.slow
def test_5000_subjects_no_false_participant_mismatch(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (make_synthetic_bids.py lives there)")
    out = tmp_path / "big"
    subprocess.run([sys.executable, str(SHARED / "make_synthetic_bids.py"), str(out), "--subjects", "5000",
                    "--sessions", "1"], check=True, capture_output=True)
    run = run_validator(out, ignore_nifti_headers=True)
    assert "PARTICIPANT_ID_MISMATCH" not in run.errors
    assert run.valid, run.errors


def test_code_summary_caps_examples():
    s = CodeSummary("X", "warning")
    for i in range(100):
        s.add(f"/f{i}")
    assert s.count == 100 and len(s.examples) == 10


def test_missing_dataset_path_gives_no_traceback(tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    res = CliRunner().invoke(app, ["validate", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert Path(tmp_path / "nope").name in res.output


def test_large_datasets_go_straight_to_the_text_output(shared_data, monkeypatch):
    import audit.validator as v

    monkeypatch.setattr(v, "TEXT_FIRST_FILES", 10)
    ds = shared_data / "bids-examples" / "ds001"
    cfg = shared_data / "bids-examples" / "default-config.json"
    text = run_validator(ds, ignore_nifti_headers=True, config=cfg, n_files=135)
    assert text.output_format == "text" and any("text output" in c for c in text.corrections)
    json_run = run_validator(ds, ignore_nifti_headers=True, config=cfg)
    assert {c: s.count for c, s in text.codes.items()} == {
        c: s.count for c, s in json_run.codes.items() if s.severity != "ignore"}
