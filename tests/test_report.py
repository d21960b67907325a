"""The HTML report: self-contained and escaped."""

from __future__ import annotations

import re

from reports.render import render_report

PAYLOAD = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def result_with(value: str) -> dict:
    return {
        "schema_version": "1", "tool": {"name": "bidsaudit", "version": "0"}, "command": "validate",
        "dataset": {"path": value, "name": value, "fingerprint": "sha256:" + "0" * 64},
        "splits": None, "status": "fail", "counts": {"error": 1, "warning": 0, "info": 0},
        "findings": [{"check": "quality.participants_table", "severity": "error", "message": value,
                      "splits": [value], "subjects": [f"sub-{value}"], "evidence": {value: value, "list": [value]}}],
        "readiness": None, "skipped": [{"check": "leakage.subject_overlap", "reason": value}],
        "summary": {"subjects": 1, "scanners": {value: 1}, "datatypes": {value: 1}, "participant_columns": [value]},
        "reproduce": {"command_line": value},
    }


def test_untrusted_values_are_escaped():
    html = render_report(result_with(PAYLOAD))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"<[^>]+\sonerror=", html)


def test_report_is_self_contained():
    html = render_report(result_with("x"))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html
    assert "FAIL" in html


def test_no_nan_or_undefined_shown():
    data = result_with("x")
    data["findings"][0]["evidence"] = {"p": float("nan"), "v": None}
    html = render_report(data)
    assert "nan" not in html.lower().replace("nano", "") and "undefined" not in html and "None" not in html
