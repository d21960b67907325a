"""A Result shows itself: the inline summary is escaped and script-free, to_frame has one row per finding, saves are atomic."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from audit import display
from audit.findings import Finding
from audit.result import Result

PAYLOADS = ['<script>alert(1)</script>', '<img src=x onerror="alert(2)">', '"><svg onload=alert(3)>',
            "javascript:alert(4)"]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def hostile_result() -> Result:
    bad = PAYLOADS[0]
    findings = (
        Finding("leakage.subject_overlap", "error", f"2 participants are in both train and test: sub-{bad}",
                splits=("train", "test"), subjects=tuple(f"sub-{p}" for p in PAYLOADS),
                evidence={"count": 2, "p_value": 0.001, "Manufacturer": PAYLOADS[1],
                          "table": {PAYLOADS[2]: [PAYLOADS[1], 1.5]}, "thumbnail_png": "iVBORw0KGgo" + "A" * 20}),
        Finding("shift.covariate", "warning", f"age differs ({PAYLOADS[1]})", splits=("train", "test"),
                evidence={"smd": 0.61, "detectable": {"smd": 2.0, "split": "test"}, "thresholds": {"smd": 0.3}}),
        Finding("split.unassigned_subject", "info", "1 participant is in no split", subjects=("sub-07",)),
    )
    return Result(command="audit", findings=findings, dataset={"name": PAYLOADS[1], "path": "/x"},
                  skipped=({"check": "shift.image", "reason": PAYLOADS[0]},))


def test_the_summary_escapes_every_untrusted_value_and_has_no_script():
    page = hostile_result()._repr_html_()
    parser = Tags()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags and "svg" not in parser.tags
    assert not [a for a, _ in parser.attrs if a.startswith("on")], "an event-handler attribute got through"
    assert not [v for a, v in parser.attrs if a in ("href", "src")], "a link or a source in the summary"
    text = "".join(parser.text)
    for payload in PAYLOADS:  # shown as text, not dropped
        assert payload in text
    assert "iVBORw0KGgo" not in page  # pictures are the full report's


def test_the_summary_is_the_reports_summary_part():
    page = hostile_result()._repr_html_()
    assert 'class="banner fail"' in page and "FAIL" in page
    assert "Why the gate is closed: 1 error" in page
    assert page.index("Errors (1)") < page.index("Warnings (1)") < page.index("Notes (1)")
    assert page.count("<details>") >= 2 and "evidence</summary>" in page
    assert display.COLOURS["error"] in page  # the report's colours, inline
    assert "<style" not in page  # a notebook page is shared: no global style
    ok = Result(command="validate", findings=())._repr_html_()
    assert 'class="banner pass"' in ok and "the gate is open" in ok


def test_to_frame_has_one_row_per_finding_with_the_evidence_figures():
    frame = hostile_result().to_frame()
    assert list(frame.columns[:6]) == list(display.FRAME_COLUMNS)
    assert len(frame) == 3 and list(frame.severity) == ["error", "warning", "info"]
    row = frame.iloc[0]
    assert row.splits == ("train", "test") and row.n_subjects == len(PAYLOADS) and row.p_value == 0.001
    assert "table" not in frame.columns and "thumbnail_png" not in frame.columns  # figures, not structures
    assert frame.loc[frame.check == "shift.covariate", "smd"].item() == 0.61
    assert frame.loc[frame.check == "shift.covariate", "detectable.smd"].item() == 2.0
    assert "thresholds.smd" not in frame.columns and "detectable.split" not in frame.columns
    assert frame[frame.severity == "error"].check.tolist() == ["leakage.subject_overlap"]
    empty = Result(command="validate", findings=()).to_frame()
    assert empty.empty and list(empty.columns) == list(display.FRAME_COLUMNS)


def test_save_json_and_save_html_write_atomically(tmp_path, monkeypatch):
    result = hostile_result()
    path = result.save_json(tmp_path / "out" / "r.json")
    assert Result.from_dict(json.loads(path.read_text(encoding="utf-8"))).to_dict() == result.to_dict()
    page = result.save_html(tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page and "<script" not in page
    import audit.fsutil

    def boom(*args, **kwargs):
        raise OSError("disk full")

    (tmp_path / "keep.json").write_text("old")
    monkeypatch.setattr(audit.fsutil.os, "replace", boom)
    with pytest.raises(OSError):
        result.save_json(tmp_path / "keep.json")
    assert (tmp_path / "keep.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json", "out", "r.html"]  # no temporary left


def test_repr_is_one_line():
    assert repr(hostile_result()).startswith("<Result audit FAIL: 1 errors, 1 warnings, 1 notes")
    assert "\n" not in repr(hostile_result())
