"""Issue #13: every verdict says how much was checked; the certificate policy; reviewer mode writes nothing
into the split folder; a report that never contradicts itself.

Every CLI run passes ``--no-validator`` and ``--workers 1`` (fast), except where a stub validator stands in for
the official one to make a complete audit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from audit.certificate import CERTIFICATE_NAME
from schemas import json_schema
from tests.builders import invoke, make_bids

SUBJECTS = [f"{i:02d}" for i in range(1, 11)]
FAST = ("--no-validator", "--workers", "1")
ANNEX = "../../.git/annex/objects/Xx/Yy/MD5E-s99--{k}.nii.gz/MD5E-s99--{k}.nii.gz"


def _splits(root: Path, **parts: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, ids in parts.items():
        (root / f"{name}.tsv").write_text("participant_id\n" + "".join(f"sub-{p}\n" for p in ids))
    return root


def _result(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    jsonschema.validate(data, json_schema("result"))
    return data


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return make_bids(tmp_path / "ds", SUBJECTS)


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return _splits(tmp_path / "splits", train=SUBJECTS[:6], validation=SUBJECTS[6:8], test=SUBJECTS[8:])


def _absent(ds: Path) -> Path:
    """A DataLad clone whose image content was never fetched: every image a dangling annex link."""
    for i, img in enumerate(sorted(ds.rglob("*_T1w.nii.gz"))):
        img.unlink()
        img.symlink_to(ANNEX.format(k=f"{i:032x}"))
    return ds


# ------------------------------------------------------------------------------------------------ coverage
def test_a_clone_without_image_content_is_a_limited_pass_without_certificate(tmp_path, ds, clean):
    _absent(ds)
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json", "--html", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    data = _result(tmp_path / "r.json")
    cov = data["coverage"]
    assert cov["complete"] is False and cov["image_content"] is False
    assert cov["images"] == {"total": 10, "checked": 0, "absent": 10, "unreadable": 0, "not_read": 0}
    assert cov["split_pairs"]["compared"] == 3
    first = res.output.splitlines()[0]
    assert first.startswith("PASS (limited: 10 of 10 images absent")
    # readiness beside the verdict, not only further down (the verdict wraps at the terminal's width and keeps
    # readiness whole on the line after it)
    assert "readiness C3" in " ".join(res.output.splitlines()[:3])
    assert "Certificate not written: the pass is limited" in res.output
    assert "not every image's content was checked" in res.output and 'limited_pass = "allow"' in res.output
    assert not (clean / CERTIFICATE_NAME).exists()
    page = (tmp_path / "r.html").read_text()
    assert 'class="banner pass limited"' in page and "(limited: 10 of 10 images absent" in page
    assert "What was checked" in page and "0 / 10" in page


def test_ignored_headers_are_a_limited_pass(tmp_path, ds, clean):
    res = invoke("audit", ds, "--splits", clean, *FAST, "--ignore-nifti-headers", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    cov = _result(tmp_path / "r.json")["coverage"]
    assert cov["images"]["not_read"] == 10 and cov["images"]["checked"] == 0
    assert "10 of 10 images not read (--ignore-nifti-headers)" in cov["limits"]
    assert "Certificate not written" in res.output and not (clean / CERTIFICATE_NAME).exists()


def test_a_split_alone_has_nothing_to_compare_with(tmp_path, ds):
    alone = _splits(tmp_path / "published", test=SUBJECTS[8:])
    res = invoke("audit", "--splits", alone, *FAST, "--json", tmp_path / "r.json", "--html", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    data = _result(tmp_path / "r.json")
    assert data["coverage"]["split_pairs"] == {"compared": 0, "pairs": []}
    assert "one split only (test): nothing to compare it with" in data["coverage"]["limits"]
    assert res.output.startswith("PASS (limited: no dataset")
    assert "score 100.0/100" not in res.output
    assert "Certificate not written" in res.output
    assert "(limited: no dataset" in (tmp_path / "r.html").read_text()


def _stub_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.api
    from audit.validator import ValidatorRun

    monkeypatch.setattr(audit.api, "run_validator", lambda *a, **k: ValidatorRun(
        version="stub", exit_code=0, seconds=0.0, codes={}))


def test_a_complete_audit_says_plain_pass_and_is_certified(tmp_path, ds, clean, monkeypatch):
    _stub_validator(monkeypatch)
    res = invoke("audit", ds, "--splits", clean, "--workers", "1", "--json", tmp_path / "r.json",
                 "--html", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    cov = _result(tmp_path / "r.json")["coverage"]
    assert cov["complete"] is True and cov["limits"] == [] and cov["image_content"] is True
    assert cov["images"]["checked"] == 10 and cov["split_pairs"]["pairs"] == [
        ["train", "validation"], ["train", "test"], ["validation", "test"]]
    assert res.output.startswith("PASS: ") and "limited" not in res.output.splitlines()[0]
    assert (clean / CERTIFICATE_NAME).is_file()
    page = (tmp_path / "r.html").read_text()
    assert 'class="banner pass"' in page and "What was checked: everything" in page


def test_the_policy_decides_for_a_limited_pass(tmp_path, ds, clean):
    # --no-validator: limited, but every image was read: the default policy certifies it
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json")
    assert res.output.startswith("PASS (limited: BIDS validator not run)")
    assert (clean / CERTIFICATE_NAME).is_file()
    (clean / CERTIFICATE_NAME).unlink()
    policy = tmp_path / "bidsaudit.toml"
    policy.write_text('[certificate]\nlimited_pass = "refuse"\n')
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json", "--config", policy)
    assert res.exit_code == 0 and "the policy certifies only a complete audit" in res.output
    assert not (clean / CERTIFICATE_NAME).exists()
    _absent(ds)
    policy.write_text('[certificate]\nlimited_pass = "allow"\n')
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json", "--config", policy)
    assert res.exit_code == 0 and (clean / CERTIFICATE_NAME).is_file(), res.output


@pytest.mark.parametrize(("text", "says"), [
    ('[certificate]\nlimited_pass = "alow"\n', "line 2"),
    ('[certificate]\nlimited = "allow"\n', "unknown key 'limited' (did you mean 'limited_pass'?)"),
    ('certificate = 3\n', "not a table"),
])
def test_a_bad_policy_is_exit_2_naming_file_line_and_key(tmp_path, ds, clean, text, says):
    policy = tmp_path / "bidsaudit.toml"
    policy.write_text(text)
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json", "--config", policy)
    assert res.exit_code == 2 and says in res.output and str(policy) in res.output
    assert "certificate" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------------------------------- reviewer mode
def test_reviewer_mode_writes_nothing_into_the_split_folder(tmp_path, clean, monkeypatch):
    policy = tmp_path / "policy" / "bidsaudit.toml"
    policy.parent.mkdir()
    policy.write_text('[certificate]\nlimited_pass = "allow"\n')
    before = _listing(clean)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    res = invoke("audit", "--splits", clean, *FAST, "--config", policy)
    assert res.exit_code == 0, res.output
    assert _listing(clean) == before  # not a byte, not a file
    cert = work / "bidsaudit-reports" / f"splits-{CERTIFICATE_NAME}"
    assert cert.is_file() and f"Certificate: {Path('bidsaudit-reports') / cert.name}" in res.output
    assert json.loads(cert.read_text())["dataset"] is None
    # asked to write into the split folder: refused before any work, exit 2
    res = invoke("audit", "--splits", clean, *FAST, "--config", policy, "--certificate", clean / "c.json")
    assert res.exit_code == 2 and "writes nothing into the split files' folder" in res.output
    assert _listing(clean) == before


def test_reviewer_mode_on_a_read_only_split_folder(tmp_path, clean, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    clean.chmod(0o555)
    try:
        monkeypatch.chdir(tmp_path)
        res = invoke("audit", "--splits", clean, *FAST)
        assert res.exit_code == 0 and "Traceback" not in res.output
    finally:
        clean.chmod(0o755)


# ---------------------------------------------------------------------------------------- one report
def test_readiness_items_read_the_findings_the_report_lists(tmp_path, ds, clean):
    """No item says 'no finding' of a check whose findings are listed; notes are counted, not denied."""
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json")
    data = _result(tmp_path / "r.json")
    by_check: dict[str, set[str]] = {}
    for f in data["findings"]:
        by_check.setdefault(f["check"], set()).add(f["severity"])
    assert res.exit_code == 0
    for item in data["readiness"]["items"]:
        evidence = item["evidence"]
        assert "no finding of" not in evidence
        if evidence.startswith("no error or warning from"):
            named = evidence.split(";")[0].removeprefix("no error or warning from ").split(", ")
            for check in named:
                assert not by_check.get(check, set()) & {"error", "warning"}, (item["id"], check)
                if "info" in by_check.get(check, set()):
                    assert check in evidence.split(";", 1)[1], item
    readiness = data["readiness"]
    assert readiness["assessed"] == sum(1 for i in readiness["items"] if i["status"] != "not_assessed")
    assert "one definition for validate, readiness and audit" in readiness["scope"]


def test_readiness_evidence_counts_notes_of_its_checks():
    from audit.readiness import score_readiness

    summary = {"subjects": 10, "files": 30, "images": 10, "images_absent": 0, "invalid_names": 0}
    out = score_readiness([{"check": "confound.label_site", "severity": "info", "message": "weak association"}],
                          summary, label="diagnosis", labels={f"sub-{s}": "AD" for s in SUBJECTS},
                          ran=["confound.label_site"])
    (item,) = [i for i in out["items"] if "confound.label_site" in i["evidence"]]
    assert item["status"] == "pass"
    assert "no error or warning from confound.label_site; 1 note from confound.label_site" in item["evidence"]


def test_the_same_dataset_scores_say_what_they_are_over(tmp_path, ds, clean):
    """validate, readiness and audit score one rubric over different inputs; each says which items it covers."""
    scopes = {}
    for cmd, extra in (("validate", []), ("readiness", ["--label", "diagnosis"]), ("audit", ["--splits", clean])):
        res = invoke(cmd, ds, *extra, *FAST[:1], "--json", tmp_path / f"{cmd}.json")
        assert res.exit_code == 0, res.output
        data = _result(tmp_path / f"{cmd}.json")
        scopes[cmd] = data["readiness"]
        assert f"over {data['readiness']['assessed']} of {len(data['readiness']['items'])} items" in \
            " ".join(res.output.splitlines()[:3])  # the verdict block: verdict (wrapped) and readiness
    assert scopes["validate"]["assessed"] < scopes["audit"]["assessed"]
    assert "not assessed" in scopes["validate"]["scope"]


def test_an_auc_below_chance_is_shown_as_no_signal():
    from reports.charts import auc_chart

    svg = str(auc_chart([{"splits": ["train", "test"], "statistic": 0.41, "p_value": 0.8},
                         {"splits": ["train", "validation"], "statistic": 0.83, "p_value": 0.01, "flagged": True}]))
    assert "0.41 no signal" in svg and "below chance 0.5: no signal" in svg
    assert "0.83 no signal" not in svg


def test_the_github_step_summary_says_a_pass_is_limited():
    from audit.outputs.github import step_summary

    text = step_summary({"command": "audit", "status": "pass", "findings": [],
                         "coverage": {"complete": False, "limits": ["BIDS validator not run"]}})
    assert "**Limited pass**, not checked: BIDS validator not run" in text
    assert "Limited" not in step_summary({"command": "audit", "status": "pass", "findings": [],
                                          "coverage": {"complete": True, "limits": []}})
