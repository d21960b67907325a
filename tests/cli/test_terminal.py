"""The terminal a person reads (issue #13, point 3): verdict wording, -q, notes, plurals, wrapping, colour, names."""

from __future__ import annotations

import io
import json
import re

import pytest

from audit.outputs.terminal import (
    MAX_NOTES,
    plural,
    print_lines,
    shorten_paths,
    summary_lines,
    use_colour,
    verdict_line,
)
from tests.builders import invoke, make_bids

ANSI = re.compile(r"\x1b\[")


def _doc(**kw):
    doc = {"status": "fail", "counts": {"error": 1, "warning": 0, "info": 0}, "dataset": {"name": "ds"},
           "findings": [{"check": "leakage.subject_overlap", "severity": "error",
                         "message": "1 participant is in both train and test: sub-01"}],
           "skipped": [], "waivers": [], "readiness": None}
    doc.update(kw)
    return doc


def test_plural_forms_are_right():
    assert verdict_line(_doc()) == "FAIL: 1 error, 0 warnings, 0 notes (ds)"
    assert plural(1, "participant") == "1 participant" and plural(3, "participant") == "3 participants"
    assert "errors" not in verdict_line(_doc())


def test_notes_are_shown_and_capped():
    notes = [{"check": f"split.note_{i}", "severity": "info", "message": f"note number {i}"} for i in range(8)]
    lines = [t for _, t in summary_lines(_doc(findings=notes, counts={"error": 0, "warning": 0, "info": 8}))]
    shown = [t for t in lines if "note number" in t]
    assert len(shown) == MAX_NOTES
    assert any(t.strip() == f"... and {8 - MAX_NOTES} more notes (see the report)" for t in lines)


def test_long_messages_wrap_and_paths_are_relative(tmp_path):
    paths = [f"{tmp_path}/data/sub-{i:02d}/anat/sub-{i:02d}_T1w.nii.gz" for i in range(6)]
    doc = _doc(findings=[{"check": "quality.corrupt_image", "severity": "error",
                          "message": "unreadable images: " + ", ".join(paths) + " " + "x" * 500}])
    lines = [t for _, t in summary_lines(doc, width=90, cwd=str(tmp_path))]
    assert all(len(t) <= 90 for t in lines), [len(t) for t in lines]
    text = "\n".join(lines)
    assert str(tmp_path) not in text and "data/sub-00/anat" in text
    assert len(lines) <= 1 + 8 and lines[-1].endswith("…")  # an error capped at 8 lines
    assert shorten_paths("/a/b/c and /a/bc", "/a/b") == "c and /a/bc"


def test_skipped_checks_are_grouped_by_reason():
    skipped = [{"check": f"leakage.check_{i}", "reason": "no dataset given"} for i in range(17)]
    skipped.append({"check": "leakage.group_overlap", "reason": "no --group given"})
    lines = [t for _, t in summary_lines(_doc(skipped=skipped))]
    heads = [t for t in lines if t.lstrip().startswith("skipped")]
    assert len(heads) == 2
    assert heads[0].lstrip().startswith("skipped 17 checks (no dataset given): leakage.check_0")
    assert "... and 9 more" in " ".join(lines) and "leakage.check_9" not in " ".join(lines)


def test_colour_only_on_a_terminal(monkeypatch):
    for var in ("NO_COLOR", "FORCE_COLOR", "CI", "TERM"):
        monkeypatch.delenv(var, raising=False)
    plain = io.StringIO()
    print_lines(summary_lines(_doc()), plain)
    assert not ANSI.search(plain.getvalue()) and plain.getvalue().startswith("FAIL: 1 error")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    assert use_colour(tty)
    print_lines(summary_lines(_doc()), tty)
    assert ANSI.search(tty.getvalue()) and "FAIL: 1 error" in ANSI.sub("", re.sub(r"\x1b\[[0-9;]*m", "", tty.getvalue()))
    monkeypatch.setenv("CI", "true")  # a CI log is not a terminal, even under a pseudo-terminal
    assert not use_colour(Tty())
    monkeypatch.delenv("CI")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())


def test_quiet_prints_the_verdict_line_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = make_bids(tmp_path / "ds")
    (root / "bidsaudit.toml").write_text("[severity]\n")  # a configuration note goes to stderr without -q
    res = invoke("validate", root, "--no-validator", "-q")
    assert res.exit_code in (0, 1), res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    # the verdict, how much it rests on ("PASS (limited: ...)") and readiness beside it (issue #13), one line
    assert len(lines) == 1 and re.match(r"(PASS|FAIL)( \(limited: [^)]*\))?: \d+ errors?, \d+ warnings?, \d+ notes?"
                                        r"(; readiness [^()]*(\([^)]*\))?)? \(tiny\)$", lines[0]), lines
    loud = invoke("validate", root, "--no-validator")
    assert len([line for line in loud.output.splitlines() if line.strip()]) > 1
    assert "JSON result:" in loud.output


def test_default_outputs_carry_the_dataset_name_and_do_not_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = make_bids(tmp_path / "site-a" / "study")
    b = make_bids(tmp_path / "site-b" / "study", subjects=("01", "02", "03", "04"))
    c = make_bids(tmp_path / "other")
    for root in (a, b, c, a):
        assert invoke("validate", root, "--no-validator").exit_code in (0, 1)
    out = tmp_path / "bidsaudit-reports"
    names = sorted(p.name for p in out.glob("*.json"))
    assert "study-validate.json" in names and "other-validate.json" in names
    assert len([n for n in names if n.startswith("study-")]) == 2, names  # two datasets named "study": two files
    first = json.loads((out / "study-validate.json").read_text())
    assert first["dataset"]["path"] == str(a.resolve())  # a's second run replaced a's own result, not b's
    assert sorted(p.name for p in out.glob("*.html")) == [n.replace(".json", ".html") for n in names]


def test_reviewer_mode_output_is_short(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits = tmp_path / "published"
    splits.mkdir()
    (splits / "train.tsv").write_text("participant_id\tdiagnosis\nsub-01\tCN\nsub-02\tAD\n")
    (splits / "test.tsv").write_text("participant_id\tdiagnosis\nsub-03\tCN\nsub-04\tAD\n")
    res = invoke("audit", "--splits", splits, "--no-certificate")
    skipped = [line for line in res.output.splitlines() if line.lstrip().startswith("skipped")]
    assert 1 <= len(skipped) <= 4, res.output
    assert all(len(line) <= 100 for line in res.output.splitlines()), res.output
    assert (tmp_path / "bidsaudit-reports" / "published-audit.json").is_file()


@pytest.mark.parametrize("fmt", ["github"])
def test_no_spinner_or_colour_outside_a_terminal(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    root = make_bids(tmp_path / "ds")
    res = invoke("validate", root, "--no-validator", "--format", fmt)
    assert not ANSI.search(res.output) and "⠋" not in res.output
