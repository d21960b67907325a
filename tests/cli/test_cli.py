"""The command line: exit codes 0/1/2, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from typer.testing import CliRunner

from audit.cli import app
from schemas import json_schema
from tests.builders import make_bids

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def validate_json(tmp_path, root, *extra):
    out = tmp_path / "r.json"
    res = invoke("validate", str(root), "--no-validator", "--json", str(out), *extra)
    data = json.loads(out.read_text()) if out.exists() else None
    if data is not None:
        jsonschema.validate(data, json_schema("result"))
    return res, data


def checks(data, severity=None):
    return {f["check"] for f in data["findings"] if severity is None or f["severity"] == severity}


def test_help_is_fast_and_lists_commands():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "audit.cli", "--help"],
                          capture_output=True, text=True, check=True)
    assert "validate" in proc.stdout
    heavy = [ln for ln in proc.stderr.splitlines()
             if any(f" {m}" in ln.split("|")[-1] for m in ("torch", "great_expectations", "pandas", "nibabel",
                                                            "sklearn", "scipy", "jinja2", "pandera"))]
    assert heavy == [], "heavy modules imported at start: " + "; ".join(heavy[:3])
    # the entry point imports the library inside its commands: --help loads typer, not the ~120 modules and numpy
    library = [ln for ln in proc.stderr.splitlines() if ln.split("|")[-1].strip() in ("numpy", "audit.api", "train")]
    assert library == [], "the library is imported at start: " + "; ".join(library[:3])


def test_clean_dataset_passes(tmp_path):
    root = make_bids(tmp_path / "ds")
    res, data = validate_json(tmp_path, root)
    assert res.exit_code == 0, res.output
    assert data["status"] == "pass"
    assert data["dataset"]["fingerprint"].startswith("sha256:")
    assert data["summary"]["subjects"] == 3
    assert data["summary"]["scanners"] == {"Siemens Prisma 3T": 3}


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        pytest.param(lambda p: p / "nope", "no such file or folder", id="missing"),
        pytest.param(lambda p: (p / "f").write_text("x") and p / "f", "is a file", id="file"),
        pytest.param(lambda p: (p / "d").mkdir() or p / "d", "no dataset_description.json", id="no-description"),
    ],
)
def test_bad_paths_exit_2_with_one_line(tmp_path, make, fragment):
    path = make(tmp_path)
    res = invoke("validate", str(path), "--no-validator", "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 2
    assert fragment in res.output and str(path) in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_malformed_description_exit_2_names_line(tmp_path):
    root = make_bids(tmp_path / "ds")
    (root / "dataset_description.json").write_text('{"Name": "x",}')
    res = invoke("validate", str(root), "--no-validator", "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 2
    assert "dataset_description.json, line 1, column 14: malformed JSON" in res.output


def test_malformed_sidecar_is_a_finding(tmp_path):
    root = make_bids(tmp_path / "ds")
    (root / "sub-02" / "anat" / "sub-02_T1w.json").write_text('{"Manufacturer": ')
    res, data = validate_json(tmp_path, root)
    assert res.exit_code == 1
    (f,) = [f for f in data["findings"] if f["check"] == "quality.unreadable_file"]
    assert "sub-02/anat/sub-02_T1w.json, line 1, column 18" in f["message"]
    assert f["subjects"] == ["sub-02"]


PARTICIPANT_CASES = [
    pytest.param(b"participant_id\tage\nsub-01\t60\nsub-02\t61\nsub-02\t62\nsub-03\t63\n",
                 "repeat a participant_id", id="duplicate-ids"),
    pytest.param(b"participant_id,age\nsub-01,60\nsub-02,61\nsub-03,62\n", "separated by ','", id="comma"),
    pytest.param(b"participant_id\tage\nsub-01\t60\nsub-02\t6\xff1\nsub-03\t62\n", "line 3", id="invalid-utf8"),
    pytest.param(b"participant_id\tage\n", "header only", id="header-only"),
    pytest.param(b"participant_id\tage\nsub-01\tsixty\nsub-02\t61\nsub-03\t62\n", "column 'age'", id="non-numeric"),
]


@pytest.mark.parametrize(("content", "fragment"), PARTICIPANT_CASES)
def test_participants_problems_are_findings_naming_the_file(tmp_path, content, fragment):
    root = make_bids(tmp_path / "ds")
    (root / "participants.tsv").write_bytes(content)
    res, data = validate_json(tmp_path, root)
    assert res.exit_code == 1, res.output
    messages = [f["message"] for f in data["findings"] if f["check"] == "quality.participants_table"]
    assert any("participants.tsv" in m and fragment in m for m in messages), messages


def test_participants_bom_is_a_warning_that_says_how_to_fix_it(tmp_path):
    # The official validator accepts a UTF-8 byte-order mark: validate must not be stricter than it is.
    root = make_bids(tmp_path / "ds")
    (root / "participants.tsv").write_bytes(b"\xef\xbb\xbfparticipant_id\tage\nsub-01\t60\nsub-02\t61\nsub-03\t62\n")
    res, data = validate_json(tmp_path, root)
    assert res.exit_code == 0, res.output
    (f,) = [f for f in data["findings"] if f["check"] == "quality.participants_table"]
    assert f["severity"] == "warning"
    assert "byte-order mark" in f["message"] and "without a BOM" in f["message"]
    assert f["evidence"]["line"] == 1
    assert data["summary"]["subjects"] == 3  # the table is read all the same


def test_participants_levels_from_json(tmp_path):
    root = make_bids(tmp_path / "ds", participants={"01": {"diagnosis": "AD"}, "02": {"diagnosis": "MCI?"},
                                                    "03": {"diagnosis": "n/a"}},
                     participants_json={"diagnosis": {"Levels": {"AD": "x", "CN": "y"}}})
    res, data = validate_json(tmp_path, root)
    (f,) = [f for f in data["findings"] if f["check"] == "quality.participants_table"]
    assert f["evidence"]["values"] == ["MCI?"] and f["evidence"]["lines"] == [3]


def test_participants_and_folders_must_match(tmp_path):
    root = make_bids(tmp_path / "ds", ["01", "02", "03"])
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\nsub-09\n")
    res, data = validate_json(tmp_path, root)
    msgs = {f["severity"]: f for f in data["findings"] if f["check"] == "quality.participants_table"}
    assert msgs["error"]["subjects"] == ["sub-03"]
    assert msgs["warning"]["subjects"] == ["sub-09"]


def test_missing_scanner_metadata(tmp_path):
    root = make_bids(tmp_path / "ds", sidecar={"RepetitionTime": 2.0})
    res, data = validate_json(tmp_path, root)
    fields = {f["evidence"]["field"] for f in data["findings"] if f["check"] == "quality.missing_metadata"}
    assert fields == {"Manufacturer", "ManufacturersModelName", "MagneticFieldStrength"}
    assert res.exit_code == 0  # warnings only


def test_unreadable_participants_is_a_finding(tmp_path, monkeypatch):
    from pathlib import Path

    root = make_bids(tmp_path / "ds")
    real = Path.read_bytes

    def deny(self):
        if self.name == "participants.tsv":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    res, data = validate_json(tmp_path, root)
    assert any("Permission denied" in f["message"] for f in data["findings"]), data["findings"]


def test_interrupted_run_leaves_nothing_half_written(tmp_path, monkeypatch):
    import reports.render

    root = make_bids(tmp_path / "ds")
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.html").write_text("old report")

    def boom(_result):
        raise KeyboardInterrupt

    monkeypatch.setattr(reports.render, "render_report", boom)
    res = invoke("validate", str(root), "--no-validator", "--json", str(out / "r.json"), "--html", str(out / "r.html"))
    assert res.exit_code == 130
    assert (out / "r.html").read_text() == "old report"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    data = json.loads((out / "r.json").read_text())  # the JSON, written first, is whole
    assert data["status"] == "pass"


def test_report_command_renders_saved_result_and_rejects_bad_json(tmp_path):
    root = make_bids(tmp_path / "ds")
    validate_json(tmp_path, root)
    res = invoke("report", str(tmp_path / "r.json"), "--output", str(tmp_path / "r.html"))
    assert res.exit_code == 0 and "<!DOCTYPE html>" in (tmp_path / "r.html").read_text()
    (tmp_path / "bad.json").write_text("{")
    res = invoke("report", str(tmp_path / "bad.json"), "--output", str(tmp_path / "x.html"))
    assert res.exit_code == 2 and "bad.json, line 1, column 2: malformed JSON" in res.output
    (tmp_path / "other.json").write_text('{"findings": [], "status": "maybe"}')
    res = invoke("report", str(tmp_path / "other.json"), "--output", str(tmp_path / "x.html"))
    assert res.exit_code == 2 and "other.json" in res.output


def test_written_files_have_ordinary_permissions(tmp_path):
    import os
    import stat

    root = make_bids(tmp_path / "ds")
    validate_json(tmp_path, root)
    mode = stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask
