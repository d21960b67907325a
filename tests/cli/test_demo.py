"""`bidsaudit demo` end to end: the newcomer's first command."""

from __future__ import annotations

import json

import jsonschema
from typer.testing import CliRunner

from audit.cli import app
from schemas import json_schema


def test_demo_runs_the_pipeline_and_leaves_reports(tmp_path):
    res = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--subjects", "24"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    reports = tmp_path / "demo" / "reports"
    for stem, status in (("validate", "pass"), ("audit", "pass"), ("audit-leaky", "fail"),
                         ("audit-confounded", "fail")):
        data = json.loads((reports / f"{stem}.json").read_text())
        jsonschema.validate(data, json_schema("result"))
        assert data["status"] == status, stem
        html = (reports / f"{stem}.html").read_text()
        assert ("PASS" if status == "pass" else "FAIL") in html
    leaky = json.loads((reports / "audit-leaky.json").read_text())
    (overlap,) = [f for f in leaky["findings"] if f["check"] == "leakage.subject_overlap"]
    assert len(overlap["subjects"]) == 3 and overlap["splits"] == ["train", "test"]
    assert (tmp_path / "demo" / "splits" / "bidsaudit-certificate.json").is_file()
    assert "HTML report (leaky split):" in res.output
    # the confounded dataset: a leak-free split, rejected because diagnosis follows site
    confounded = json.loads((reports / "audit-confounded.json").read_text())
    errors = [f for f in confounded["findings"] if f["severity"] == "error"]
    assert [f["check"] for f in errors] == ["confound.label_site"]
    assert errors[0]["evidence"]["table"]["counts"]
    html = (reports / "audit-confounded.html").read_text()
    assert "share of the site" in html and html.count("<svg") >= 5  # the heat map and the split charts
    assert f"HTML report (confounded):  {(reports / 'audit-confounded.html').resolve()}" in res.output
    assert not (tmp_path / "demo" / "splits-confounded" / "bidsaudit-certificate.json").exists()


def test_demo_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    res = CliRunner().invoke(app, ["demo", str(tmp_path / "mine"), "--force"])
    assert res.exit_code == 2 and "not a bidsaudit demo folder" in res.output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
