"""CI integrations: ``--format github`` annotations, the composite action, the pre-commit hook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.outputs.github import annotations, escape_data, escape_property
from audit.precommit import audit_argv
from audit.precommit import main as precommit_main
from tests.builders import invoke, make_bids

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

yaml = pytest.importorskip("yaml", reason="PyYAML (test extra) parses action.yml and .pre-commit-hooks.yaml")

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = [f"{i:02d}" for i in range(1, 9)]
FAST = ("--no-validator", "--workers", "1")


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run inside a workflow must not write into its real step summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)




def leaky_repo(root: Path, dataset_name: str = "ds") -> Path:
    """``root/<dataset_name>`` (8 participants) and ``root/splits`` with sub-06 in train (line 7) and test (line 2)."""
    make_bids(root / dataset_name, SUBJECTS, images=False)
    splits = root / "splits"
    splits.mkdir(parents=True)
    (splits / "train.tsv").write_text("participant_id\n" + "".join(f"sub-{p}\n" for p in SUBJECTS[:6]))
    (splits / "test.tsv").write_text("participant_id\n" + "".join(f"sub-{p}\n" for p in SUBJECTS[5:]))
    return root


def run_in(root: Path, *args: str) -> Any:
    old = os.getcwd()
    os.chdir(root)
    try:
        return invoke(*args)
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------------------------------
# --format github


def unescape(text: str) -> str:
    """Undo GitHub's escaping (the runner's order: %3A, %2C, %0D, %0A, then %25)."""
    for code, char in (("%3A", ":"), ("%2C", ","), ("%0D", "\r"), ("%0A", "\n"), ("%25", "%")):
        text = text.replace(code, char)
    return text


COMMAND = re.compile(r"^::(error|warning|notice)(?: ([^:]*))?::(.*)$")


def parse(line: str) -> tuple[str, dict[str, str], str]:
    """Parse one workflow command as the runner does: properties split on ',' then on the first '='."""
    m = COMMAND.match(line)
    assert m, line
    props = {}
    for part in (m.group(2) or "").split(","):
        if part:
            key, _, value = part.partition("=")
            props[key] = unescape(value)
    return m.group(1), props, unescape(m.group(3))


def test_github_format_annotates_the_leaking_rows(tmp_path: Path) -> None:
    root = leaky_repo(tmp_path)
    res = run_in(root, "audit", "ds", "--splits", "splits", *FAST, "--ignore-nifti-headers", "--json", "r.json",
                 "--no-certificate", "--format", "github")
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    commands = [parse(ln) for ln in lines if ln.startswith("::")]
    leak = [(props, msg) for kind, props, msg in commands
            if kind == "error" and props["title"] == "bidsaudit leakage.subject_overlap"]
    assert [(p["file"], p.get("line")) for p, _ in leak] == [("splits/train.tsv", "7"), ("splits/test.tsv", "2")]
    assert all("sub-06" in msg for _, msg in leak)
    notices = [msg for kind, props, msg in commands if kind == "notice"]
    assert any(m.startswith("bids.invalid not run") for m in notices)
    # the plain summary follows the annotations
    first_plain = next(i for i, ln in enumerate(lines) if not ln.startswith("::"))
    assert lines[first_plain].startswith("FAIL:")
    assert all(not ln.startswith("::") for ln in lines[first_plain:])


def test_github_format_with_json_on_stdout_puts_annotations_on_stderr(tmp_path: Path) -> None:
    root = leaky_repo(tmp_path)
    res = run_in(root, "audit", "ds", "--splits", "splits", *FAST, "--ignore-nifti-headers", "--json", "-",
                 "--no-certificate", "--format", "github")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["status"] == "fail"
    assert "::error file=splits/train.tsv,line=7," in res.stderr


def test_annotation_properties_from_an_untrusted_dataset_name_are_escaped(tmp_path: Path) -> None:
    root = leaky_repo(tmp_path, "ds,title=x:1%")
    res = run_in(root, "validate", "ds,title=x:1%", "--no-validator", "--json", "r.json", "--format", "github")
    assert res.exit_code == 1, res.output  # empty images: quality.empty_image / corrupt
    errors = [parse(ln) for ln in res.output.splitlines() if ln.startswith("::error")]
    assert errors
    for _, props, _ in errors:
        assert set(props) <= {"file", "line", "title"}
        assert props["file"].startswith("ds,title=x:1%/sub-")
    raw = next(ln for ln in res.output.splitlines() if ln.startswith("::error"))
    assert "file=ds%2Ctitle=x%3A1%25/sub-" in raw


def hostile_result() -> dict[str, Any]:
    pid = "sub-07\n::error file=evil.py::owned,x=y:%0A"
    return {"status": "fail", "command": "audit", "dataset": None, "skipped": [],
            "findings": [{"check": "leakage.subject_overlap", "severity": "error",
                          "message": f"1 participants are in both train and test: {pid}\r\n%25",
                          "splits": ["train", "test"], "subjects": [pid],
                          "evidence": {"rows": [{"file": "/abs/a,b:c\n::warning::x.tsv", "line": 3}]}}]}


def test_untrusted_participant_ids_cannot_inject_commands() -> None:
    lines = annotations(hostile_result(), root="/")
    assert len(lines) == 1
    (line,) = lines
    assert "\n" not in line and "\r" not in line
    head = line[2:].split("::", 1)[0]  # the runner ends the properties at the first '::'
    assert ":" not in head and "\n" not in head
    kind, props, message = parse(line)
    assert kind == "error"
    assert props == {"file": "abs/a,b:c\n::warning::x.tsv", "line": "3", "title": "bidsaudit leakage.subject_overlap"}
    assert message == "1 participants are in both train and test: sub-07 ::error file=evil.py::owned,x=y:%0A %25"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_escaping_round_trips_and_stays_on_one_line(text: str) -> None:
    for escaped in (escape_data(text), escape_property(text)):
        assert "\n" not in escaped and "\r" not in escaped
        assert unescape(escaped) == text
    assert "," not in escape_property(text) and ":" not in escape_property(text)


def test_info_findings_are_notices_only_when_asked() -> None:
    result = {"status": "pass", "dataset": None, "skipped": [{"check": "bids.invalid", "reason": "not run"}],
              "findings": [{"check": "shift.label", "severity": "info", "message": "no shift", "splits": [],
                            "subjects": [], "evidence": {}}]}
    assert [parse(ln)[0] for ln in annotations(result)] == ["notice"]  # the skipped check
    assert [parse(ln)[2] for ln in annotations(result, info=True, skipped=False)] == ["no shift"]


def test_unknown_format_is_exit_2(tmp_path: Path) -> None:
    res = invoke("validate", str(tmp_path), "--format", "xml")
    assert res.exit_code == 2


# --------------------------------------------------------------------------------------------------
# action.yml


def action() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "action.yml").read_text())
    assert data["runs"]["using"] == "composite"
    return data


def test_action_inputs_and_outputs() -> None:
    data = action()
    wanted = {"dataset", "splits", "label", "site", "group", "pretrain", "config", "sarif", "extra-args",
              "python-version"}
    assert wanted <= set(data["inputs"])
    assert data["inputs"]["splits"]["required"] is True
    assert {"status", "sarif", "exit-code"} <= set(data["outputs"])
    steps = data["runs"]["steps"]
    assert steps[0]["uses"].startswith("actions/setup-python@")
    assert steps[0]["with"]["python-version"] == "${{ inputs.python-version }}"
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    pip_lines = [ln for ln in install["run"].splitlines() if "pip install" in ln and "$ACTION_PATH" in ln]
    assert len(pip_lines) == 1 and pip_lines[0].rstrip().endswith('"$ACTION_PATH"')  # no extras: no torch
    assert "torch" not in pip_lines[0]
    audit_step = next(s for s in steps if s.get("id") == "audit")
    for name in wanted - {"python-version"}:
        var = "IN_" + name.upper().replace("-", "_")
        assert audit_step["env"][var] == f"${{{{ inputs.{name} }}}}", name
        assert f'"${var}"' in audit_step["run"], name
    assert "${{" not in audit_step["run"]  # inputs come through the environment, never pasted into the script


def run_action_script(tmp_path: Path, inputs: dict[str, str], exit_code: int = 1) -> tuple[int, list[str], dict]:
    """Run the action's audit step with bash, as the runner would, with a stand-in bidsaudit."""
    data = action()
    step = next(s for s in data["runs"]["steps"] if s.get("id") == "audit")
    defaults = {k: str(v.get("default", "")) for k, v in data["inputs"].items()}
    values = {**defaults, **inputs}
    fake = tmp_path / "bidsaudit"
    fake.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > {tmp_path}/argv\n"
                    f"touch \"{tmp_path}/out.sarif\"\nexit {exit_code}\n")
    fake.chmod(0o755)
    out = tmp_path / "github_output"
    env = {"PATH": os.environ.get("PATH", ""), "GITHUB_OUTPUT": str(out), "RUNNER_TEMP": str(tmp_path)}
    for key, value in step["env"].items():
        m = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", value)
        env[key] = values[m.group(1)] if m else value
    env["BIDSAUDIT"], env["PYTHON"] = str(fake), sys.executable
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    argv = (tmp_path / "argv").read_text().split("\0")[:-1] if (tmp_path / "argv").exists() else []
    outputs = dict(ln.split("=", 1) for ln in out.read_text().splitlines()) if out.exists() else {}
    return proc.returncode, argv, outputs


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_action_wires_inputs_into_the_audit_command(tmp_path: Path) -> None:
    code, argv, outputs = run_action_script(tmp_path, {
        "dataset": "data/my ds", "splits": "splits", "label": "dx", "site": "site", "group": "family",
        "pretrain": "pre.tsv", "config": "bidsaudit.toml", "sarif": "out.sarif",
        "extra-args": "--no-validator --workers 2 --certificate 'cert dir/c.json' $HOME",
    })
    assert code == 1
    assert argv == ["audit", "data/my ds", "--splits", "splits", "--label", "dx", "--site", "site", "--group",
                    "family", "--pretrain", "pre.tsv", "--config", "bidsaudit.toml", "--sarif", "out.sarif",
                    "--out-dir", "bidsaudit-reports", "--format", "github", "--no-validator", "--workers", "2",
                    "--certificate", "cert dir/c.json", "$HOME"]
    assert outputs == {"exit-code": "1", "status": "fail", "sarif": "out.sarif", "out-dir": "bidsaudit-reports"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_action_minimal_inputs_and_fail_on_error_false(tmp_path: Path) -> None:
    code, argv, outputs = run_action_script(tmp_path, {"splits": "s.tsv", "sarif": "", "fail-on-error": "false"})
    assert code == 0
    assert argv == ["audit", "--splits", "s.tsv", "--out-dir", "bidsaudit-reports", "--format", "github"]
    assert outputs["status"] == "fail" and outputs["sarif"] == ""
    code, _, outputs = run_action_script(tmp_path, {"splits": "s.tsv", "fail-on-error": "false"}, exit_code=2)
    assert code == 2 and outputs["status"] == "error"  # could not run: always fails the step


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_action_rejects_unbalanced_extra_args(tmp_path: Path) -> None:
    code, argv, _ = run_action_script(tmp_path, {"splits": "s", "extra-args": "--label 'oops"})
    assert code != 0 and argv == []


# --------------------------------------------------------------------------------------------------
# .pre-commit-hooks.yaml


def hook() -> dict[str, Any]:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (h,) = [h for h in hooks if h["id"] == "bidsaudit-splits"]
    return h


def test_hook_definition_parses_and_its_entry_exists() -> None:
    h = hook()
    assert h["language"] == "python"
    assert h["pass_filenames"] is False
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts[h["entry"]].split(":")
    assert module == "audit.precommit" and func == "main"
    assert "--splits" in h["args"]


@pytest.mark.parametrize(("path", "match"), [
    ("splits/train.tsv", True), ("train.tsv", True), ("data/val.csv", True), ("test_fold0.tsv", True),
    ("splits/split-0/train.tsv", True), ("split-3/validation_baseline.tsv", True),
    ("nnUNet_preprocessed/Dataset001/splits_final.json", True), ("participants.tsv", True),
    ("sub-01/anat/sub-01_T1w.nii.gz", False), ("sub-01/func/sub-01_task-rest_events.tsv", False),
    ("sub-01/anat/sub-01_T1w.json", False), ("contest.tsv", False), ("README.md", False),
])
def test_hook_files_pattern(path: str, match: bool) -> None:
    assert bool(re.search(hook()["files"], path)) is match


def test_precommit_entry_writes_nothing_into_the_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"  # the dataset repository, its split files in splits/ (the hook's default args)
    make_bids(root, SUBJECTS, images=False)
    leaky_repo(root, "unused")
    shutil.rmtree(root / "unused")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    old = os.getcwd()
    os.chdir(root)
    try:
        code = precommit_main(list(hook()["args"]) + ["--workers", "1"])
        assert code == 1
        (root / "splits" / "test.tsv").write_text("participant_id\nsub-07\nsub-08\n")
        assert precommit_main(list(hook()["args"]) + ["--workers", "1"]) == 0
    finally:
        os.chdir(old)
    after = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert before == after  # no certificate, no report folder


def test_precommit_argv_respects_explicit_outputs() -> None:
    assert audit_argv(["--splits", "s"], "/t") == ["audit", "--splits", "s", "--no-certificate", "--json",
                                                    "/t/bidsaudit-precommit.json"]
    assert audit_argv(["--splits", "s", "--json=r.json", "--certificate", "c.json"], "/t") == [
        "audit", "--splits", "s", "--json=r.json", "--certificate", "c.json"]


def test_precommit_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert precommit_main(["--splits", str(tmp_path / "missing")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_dataset_file_findings_get_one_annotation_split_rows_one_per_file(tmp_path: Path) -> None:
    files = [{"path": f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz"} for i in range(1, 8)]
    result = {"status": "fail", "skipped": [], "dataset": {"path": str(tmp_path / "ds")},
              "findings": [
                  {"check": "quality.absent_images", "severity": "warning", "message": "7 images have no content",
                   "splits": [], "subjects": [], "evidence": {"files": files}},
                  {"check": "leakage.subject_overlap", "severity": "error", "message": "m", "splits": [],
                   "subjects": [], "evidence": {"rows": [{"file": f"s/{n}.tsv", "line": 2}
                                                         for n in ("train", "a", "b", "c", "d", "e", "test")]}}]}
    lines = [parse(ln) for ln in annotations(result, root=tmp_path, cwd=tmp_path)]
    assert [p["file"] for k, p, _ in lines if k == "warning"] == ["ds/sub-01/anat/sub-01_T1w.nii.gz"]
    assert [p["file"] for k, p, _ in lines if k == "error"] == ["s/train.tsv", "s/a.tsv", "s/b.tsv", "s/c.tsv",
                                                               "s/d.tsv"]


def test_step_summary_is_written_inside_a_workflow_and_escapes_markdown(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.outputs.github import markdown_text, step_summary

    root = leaky_repo(tmp_path)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = run_in(root, "audit", "ds", "--splits", "splits", *FAST, "--ignore-nifti-headers", "--json", "r.json",
                 "--no-certificate", "--format", "github")
    assert res.exit_code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n### bidsaudit audit: ❌ fail")
    assert "| error | leakage\\.subject\\_overlap | 1 participants are in both train and test\\: sub\\-06 |" in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    hostile = step_summary(hostile_result())
    rows = [ln for ln in hostile.splitlines() if ln.startswith("| error")]
    assert len(rows) == 1 and rows[0].count("|") - rows[0].count("\\|") == 4  # three cells, no more
    assert markdown_text("<img src=x onerror=alert(1)> [a](http://x) |") == \
        "\\<img src\\=x onerror\\=alert\\(1\\)\\> \\[a\\]\\(http\\:\\/\\/x\\) \\|"
