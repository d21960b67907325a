"""Data readiness: the rubric, its scoring and levels, the documentation that shows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.readiness import LEVELS, RUBRIC, labels_for, readiness_for, rubric_markdown, score_readiness
from schemas import json_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "readiness.md"
SUMMARY = {"subjects": 40, "sessions": 40, "files": 120, "images": 40, "images_absent": 0, "invalid_names": 0}
LABELS = {f"sub-{i:02d}": ("AD" if i % 2 else "CN") for i in range(40)}


def E(check: str, message: str = "found", severity: str = "error") -> dict:
    return {"check": check, "severity": severity, "message": message, "splits": [], "subjects": [], "evidence": {}}


def W(check: str, message: str = "found") -> dict:
    return E(check, message, "warning")


def score(findings=(), summary=SUMMARY, **kw):
    kw.setdefault("label", "diagnosis")
    kw.setdefault("labels", LABELS)
    kw.setdefault("splits_given", True)
    return score_readiness(findings, summary, **kw)


def items(result) -> dict:
    return {i["id"]: i for i in result["items"]}


# --------------------------------------------------------------------------------------------------
# the rubric as data


def test_rubric_adds_up_to_100_with_unique_ids():
    assert sum(i.points for i in RUBRIC) == 100
    ids = [i.id for i in RUBRIC]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[CBA]\.[a-z_]+", i) for i in ids)
    assert all(i.id.startswith(i.band + ".") for i in RUBRIC)


def test_rubric_checks_are_known_ids():
    from audit.config import known_check_ids

    known = known_check_ids()
    for item in RUBRIC:
        assert set(item.checks) <= known, item.id


def test_no_check_moves_two_items():
    seen: dict[str, str] = {}
    for item in RUBRIC:
        for check in item.checks:
            assert check not in seen, f"{check} moves {seen[check]} and {item.id}"
            seen[check] = item.id


def test_doc_names_every_item_and_embeds_the_generated_rubric():
    text = DOC.read_text()
    for item in RUBRIC:
        assert f"`{item.id}`" in text
    for level in LEVELS:
        assert f"`{level}`" in text
    block = text.split("<!-- rubric:start -->\n", 1)[1].split("<!-- rubric:end -->", 1)[0]
    assert block == rubric_markdown(), "docs/readiness.md is stale: regenerate the rubric block from rubric_markdown()"


# --------------------------------------------------------------------------------------------------
# scoring


def test_clean_dataset_is_ready_for_the_task():
    r = score()
    assert r["score"] == 100.0 and r["level"] == "A1" and r["band"] == "A"
    assert all(i["status"] == "pass" for i in r["items"])
    assert r["next_steps"] == [] and r["rubric_version"] == "1"
    assert r["level_name"] == LEVELS["A1"]


def test_absent_images_fail_band_c_and_hold_back_the_rest():
    r = score(summary={**SUMMARY, "images_absent": 40})
    it = items(r)
    assert it["C.images_present"]["status"] == "fail" and r["level"] == "C3" and r["band"] is None
    assert it["B.images_intact"]["status"] == "not_assessed"  # no content to read
    held = [i for i in r["items"] if i["band"] in "BA" and i["status"] != "not_assessed"]
    assert held and all(not i["counted"] and i["points"] == 0 and i["held_back_by"] == "C" for i in held)
    assert r["score"] < 40
    assert r["next_steps"][0].startswith("C.images_present:")


def test_some_absent_images_are_partial():
    r = score(summary={**SUMMARY, "images_absent": 4})
    assert items(r)["C.images_present"]["status"] == "partial"
    assert r["level"] == "A1"  # band C is partial, band A passes in full
    assert r["score"] == pytest.approx(96.0)


def test_corrupt_images_fail_band_b():
    r = score([E("quality.corrupt_image", "2 images cannot be read")])
    it = items(r)
    assert it["B.images_intact"]["status"] == "fail"
    assert it["B.images_intact"]["findings"] == ["quality.corrupt_image"]
    assert "2 images cannot be read" in it["B.images_intact"]["evidence"]
    assert r["level"] == "C1" and r["score"] == 55.0
    assert all(i["held_back_by"] == "B" for i in r["items"] if i["band"] == "A")


def test_leakage_fails_band_a_only():
    r = score([E("leakage.subject_overlap", "2 participants are in both train and test")])
    it = items(r)
    assert it["A.split_integrity"]["status"] == "fail" and it["A.split_integrity"]["points"] == 0
    assert it["A.split_integrity"]["findings"] == ["leakage.subject_overlap"]
    assert r["level"] == "B1" and r["score"] == 90.0
    assert r["next_steps"] == [f"A.split_integrity: {it['A.split_integrity']['advice']}"]


def test_warnings_are_partial_and_give_a_2():
    r = score([W("shift.covariate", "age differs"), W("quality.inconsistent_geometry")])
    it = items(r)
    assert it["A.shift"]["status"] == "partial" and it["A.shift"]["points"] == 2.0
    assert it["B.geometry"]["status"] == "partial"
    assert r["level"] == "A2" and r["score"] == pytest.approx(100 - 2 - 2.5)


def test_info_findings_do_not_move_an_item():
    r = score([E("confound.label_site", "V = 0.05", "info")])
    assert items(r)["A.confounds"]["status"] == "pass" and r["score"] == 100.0


def test_unknown_checks_do_not_move_anything():
    assert score([E("expectations.custom")])["score"] == 100.0


def test_not_assessed_items_are_listed_but_left_out_of_the_score():
    r = score(splits_given=False)
    it = items(r)
    for key in ("A.shift", "A.split_integrity", "B.duplicates"):
        assert it[key]["status"] == "not_assessed" and it[key]["evidence"] == "no splits given"
        assert it[key]["points"] == 0 and not it[key]["counted"]
    assert r["score"] == 100.0 and r["max_points"] == 100 - 4 - 10 - 5
    assert r["level"] == "A1"  # band A is reachable from the dataset alone
    assert any("--splits" in s for s in r["next_steps"])


def test_without_label_band_a_is_not_reached():
    r = score(label=None, labels=None)
    assert r["level"] == "B1" and "label" in r["explanation"]
    it = items(r)
    for key in ("A.class_balance", "A.per_class", "A.confounds", "B.labels"):
        assert it[key]["status"] == "not_assessed" and "--label" in it[key]["advice"]


def test_without_dataset_it_is_unrated():
    r = score(summary=None)
    assert r["level"] == "unrated" and r["band"] is None
    assert items(r)["C.loadable"]["status"] == "not_assessed"
    assert 0 <= r["score"] <= 100


def test_nothing_assessed_scores_zero():
    r = score_readiness([], None)
    assert r["score"] == 0.0 and r["level"] == "unrated" and r["max_points"] == 0


def test_skipped_checks_make_their_item_not_assessed():
    skipped = [{"check": c, "reason": "image checks were turned off"}
               for c in ("quality.corrupt_image", "quality.empty_image", "quality.inconsistent_geometry")]
    r = score(skipped=skipped)
    it = items(r)
    assert it["B.images_intact"]["status"] == "not_assessed"
    assert it["B.images_intact"]["evidence"] == "image checks were turned off"
    assert r["level"] == "A1"


def test_ran_list_decides_what_was_assessed():
    r = score(ran=["quality.unreadable_file", "quality.participants_table"])
    it = items(r)
    assert it["C.loadable"]["status"] == "pass" and it["A.confounds"]["status"] == "not_assessed"
    assert it["C.formats"]["status"] == "pass"  # measured from the data even without the validator


@pytest.mark.parametrize(
    ("counts", "balance", "per_class"),
    [
        pytest.param({"AD": 20, "CN": 20}, "pass", "pass", id="balanced"),
        pytest.param({"AD": 12, "CN": 20}, "pass", "partial", id="twelve"),
        pytest.param({"AD": 9, "CN": 20}, "partial", "fail", id="nine"),
        pytest.param({"AD": 20, "CN": 110}, "fail", "pass", id="imbalanced"),
        pytest.param({"CN": 40}, "fail", "pass", id="one-class"),
    ],
)
def test_class_balance_and_participants_per_class(counts, balance, per_class):
    labels, n = {}, 0
    for cls, k in counts.items():
        for _ in range(k):
            labels[f"sub-{n:03d}"] = cls
            n += 1
    it = items(score(labels=labels))
    assert it["A.class_balance"]["status"] == balance, it["A.class_balance"]["evidence"]
    assert it["A.per_class"]["status"] == per_class, it["A.per_class"]["evidence"]


def test_continuous_label():
    labels = {f"sub-{i:02d}": str(50 + i * 0.5) for i in range(30)}
    it = items(score(labels=labels, label="age"))
    assert it["A.class_balance"]["status"] == "not_assessed" and "continuous" in it["A.class_balance"]["evidence"]
    assert it["A.per_class"]["status"] == "partial"  # 30 labelled participants


def test_missing_labels():
    labels = dict(LABELS, **{"sub-00": "n/a", "sub-01": "", "sub-02": None, "sub-03": float("nan")})
    it = items(score(labels=labels))
    assert it["B.labels"]["status"] == "partial" and "4 of 40" in it["B.labels"]["evidence"]
    it = items(score(labels={k: "n/a" for k in LABELS}))
    assert it["B.labels"]["status"] == "fail"


def test_label_conflict_fails_band_b():
    r = score([E("quality.label_conflict", "sub-01 is AD in train and CN in test")])
    assert items(r)["B.labels"]["status"] == "fail" and r["level"] == "C1"


def test_result_schema_accepts_the_block():
    from audit.result import Result

    data = Result(command="audit", findings=(), readiness=score([W("shift.label")])).to_dict()
    jsonschema.validate(data, json_schema("result"))


_checks = st.sampled_from(sorted({c for i in RUBRIC for c in i.checks} | {"bids.warning", "expectations.x"}))
_finding = st.builds(lambda c, s: E(c, "x", s), _checks, st.sampled_from(["error", "warning", "info"]))
_count = st.one_of(st.integers(0, 500), st.floats(allow_nan=True), st.none())


@settings(max_examples=200, deadline=None)
@given(findings=st.lists(_finding, max_size=8),
       summary=st.one_of(st.none(), st.fixed_dictionaries({"subjects": _count, "files": _count, "images": _count,
                                                           "images_absent": _count, "invalid_names": _count})),
       labels=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.one_of(
           st.none(), st.sampled_from(["AD", "CN", "n/a", "", "MCI"]), st.floats(), st.integers()), max_size=30)),
       label=st.one_of(st.none(), st.just("dx")), splits=st.booleans())
def test_any_input_gives_a_valid_block(findings, summary, labels, label, splits):
    r = score_readiness(findings, summary, label=label, labels=labels, splits_given=splits)
    text = json.dumps(r, allow_nan=False)
    assert "undefined" not in text.lower() and "nan" not in re.sub(r'"[^"]*"', "", text).lower()
    assert 0.0 <= r["score"] <= 100.0 and r["level"] in LEVELS
    assert len(r["items"]) == len(RUBRIC)
    for i in r["items"]:
        assert i["status"] in ("pass", "partial", "fail", "not_assessed")
        assert 0 <= i["points"] <= i["max_points"] and isinstance(i["evidence"], str) and i["evidence"]
    # more errors never raise the score
    worse = score_readiness(findings + [E("quality.corrupt_image")], summary, label=label, labels=labels,
                            splits_given=splits)
    assert worse["score"] <= r["score"] or items(r)["B.images_intact"]["status"] == "not_assessed"


# --------------------------------------------------------------------------------------------------
# gathered from an audit context


def test_readiness_for_a_validated_dataset(tmp_path):
    from audit.api import dataset_summary, validate_dataset
    from audit.bidsindex import index_dataset
    from audit.context import AuditContext, AuditOptions
    from tests.builders import make_bids

    root = make_bids(tmp_path / "ds", [f"{i:02d}" for i in range(1, 7)])
    options = AuditOptions(label="diagnosis", run_validator=False)
    result = validate_dataset(root, options)
    ctx = AuditContext(options=options, index=index_dataset(root))
    assert labels_for(ctx) == {f"sub-{i:02d}": ["CN", "AD"][(i - 1) % 2] for i in range(1, 7)}
    r = readiness_for(ctx, result.findings, result.skipped, dataset_summary(ctx))
    it = items(r)
    assert it["C.images_present"]["status"] == "pass"
    assert it["A.per_class"]["status"] == "fail"  # three participants per class
    assert it["C.formats"]["status"] == "pass"  # validator skipped: measured from file names
    assert r["level"] == "B1" and r["label"] == "diagnosis"


def test_labels_from_split_files_without_dataset():
    from audit.context import AuditContext, AuditOptions
    from audit.splits import SplitRow, SplitSet, SplitTable

    rows = [SplitRow("sub-01", None, "AD", "train.tsv", 2), SplitRow("sub-02", None, None, "train.tsv", 3)]
    table = SplitTable("train", None, "train.tsv", rows, label_column="diagnosis")
    ctx = AuditContext(options=AuditOptions(label="diagnosis"),
                       splits=SplitSet(format="folder", root="", files=("train.tsv",), tables=(table,)))
    assert labels_for(ctx) == {"sub-01": "AD", "sub-02": None}
    r = readiness_for(ctx, [], [], None)
    assert r["level"] == "unrated" and items(r)["B.labels"]["status"] == "partial"


def test_checks_outside_the_command_are_not_assessed(tmp_path):
    """validate runs bids and quality checks: the confound check did not run, so A.confounds is not assessed."""
    from audit.api import VALIDATE_FAMILIES, dataset_summary, validate_dataset
    from audit.bidsindex import index_dataset
    from audit.context import AuditContext, AuditOptions
    from tests.builders import make_bids

    root = make_bids(tmp_path / "ds")
    options = AuditOptions(label="diagnosis", run_validator=False)
    result = validate_dataset(root, options)
    ctx = AuditContext(options=options, index=index_dataset(root))
    r = readiness_for(ctx, result.findings, result.skipped, dataset_summary(ctx), families=VALIDATE_FAMILIES)
    it = items(r)
    assert it["A.confounds"]["status"] == "not_assessed"
    assert it["B.labels"]["evidence"].startswith("all 3 participants have a value")
    assert "no finding" not in it["B.labels"]["evidence"]  # the split-file label checks did not run


def test_waived_findings_do_not_move_an_item_but_are_named():
    waivers = [{"check": "leakage.subject_overlap", "subjects": ["sub-03"], "reason": "a phantom", "status": "active",
                "matched": 1}, {"check": "shift.image", "subjects": [], "reason": "r", "status": "expired",
                                "matched": 2}]
    it = items(score(waivers=waivers))
    assert it["A.split_integrity"]["status"] == "pass" and it["A.split_integrity"]["findings"] == []
    assert "1 finding(s) of leakage.subject_overlap waived for sub-03: a phantom" in it["A.split_integrity"]["evidence"]
    assert "waived" not in it["A.shift"]["evidence"]  # an expired waiver waives nothing
