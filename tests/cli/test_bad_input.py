"""Issue #4's bad-input list, end to end through the CLI: a clear finding or exit 2, never a traceback or NaN."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli import app
from tests.builders import make_bids

runner = CliRunner()
SUBJECTS = [f"{i:02d}" for i in range(1, 13)]


def rows(**over):
    out = {s: {"age": str(60 + i), "sex": "MF"[i % 2], "diagnosis": ["CN", "AD"][i % 2], "site": ["A", "B"][i // 6]}
           for i, s in enumerate(SUBJECTS)}
    for s in out:
        for k, f in over.items():
            out[s][k] = f(s)
    return out


def split_file(path: Path, assign: dict[str, str]) -> Path:
    path.write_text("participant_id\tsplit\n" + "".join(f"sub-{s}\t{v}\n" for s, v in assign.items()))
    return path


DEFAULT_SPLIT = {s: ("train" if i % 4 else "test") for i, s in enumerate(SUBJECTS)}
JUNK_AGES = ["sixty", "unknown", "70s", "n/a", "62", "abc"]


@pytest.mark.parametrize(("case", "code", "where", "words"), [
    ("label_missing", 2, "stderr", "no column 'nope'"),
    ("label_empty", 0, "confound.label_site", "has no values"),
    ("label_single_class", 0, "confound.label_site", "a single class (CN)"),
    ("site_one_value", 0, "confound.label_site", "a single site (A)"),
    ("levels_contradict", 1, "quality.participants_table", "must be one of the levels in participants.json"),
    ("split_one_subject", 0, "shift.covariate", "too few participants with a value on a side"),
    ("ages_not_numbers", 1, "shift.covariate", "not compared: age (should hold numbers"),
    ("config_typo", 2, "stderr", "unknown check id 'shift.imag' (did you mean 'shift.image'?)"),
    ("suite_not_json", 2, "stderr", "line 2, column"),
])
def test_bad_input(tmp_path, case, code, where, words):
    participants = {"label_empty": rows(diagnosis=lambda s: "n/a"),
                    "label_single_class": rows(diagnosis=lambda s: "CN"),
                    "site_one_value": rows(site=lambda s: "A"),
                    "ages_not_numbers": rows(age=lambda s: JUNK_AGES[int(s) % 6])}.get(case, rows())
    levels = {"diagnosis": {"Levels": {"HC": "healthy", "PD": "Parkinson's"}}} if case == "levels_contradict" else None
    root = make_bids(tmp_path / "ds", SUBJECTS, participants=participants, participants_json=levels)
    assign = {s: ("test" if s == "12" else "train") for s in SUBJECTS} if case == "split_one_subject" \
        else DEFAULT_SPLIT
    args = ["audit", str(root), "--splits", str(split_file(tmp_path / "splits.tsv", assign)), "--no-validator",
            "--workers", "1", "--no-certificate", "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
            "--site", "site"]
    if case == "label_missing":
        args += ["--label", "nope"]
    if case == "config_typo":
        (tmp_path / "bidsaudit.toml").write_text('[severity]\n"shift.imag" = "error"\n')
        args += ["--config", str(tmp_path / "bidsaudit.toml")]
    if case == "suite_not_json":
        (tmp_path / "suite.json").write_text('{"expectations": [\n  {"type": "expect_column_to_exist",, }]}')
        args += ["--expectations", str(tmp_path / "suite.json")]
    result = runner.invoke(app, args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    if where == "stderr":
        assert words in result.output and not (tmp_path / "r.json").exists()
        return
    text = (tmp_path / "r.json").read_text()
    html = (tmp_path / "r.html").read_text()
    for page in (text, html):
        assert not re.search(r"\bNaN\b|\bInfinity\b|\bundefined\b", page)
    messages = [f["message"] for f in json.loads(text)["findings"] if f["check"] == where]
    assert any(words in m for m in messages), messages
