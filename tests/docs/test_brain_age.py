"""docs/brain-age.md runs as written, in a short setting: its command lines on 15 of the 100 IXI subjects, 1 epoch.

The subset is copied into the test's temporary folder (never into the repository); without the real data
(``BIDSAUDIT_SHARED_DATA``) the test skips, saying so. The full setting (100 subjects, the epochs the page
states) is what the page's figures come from.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.builders import invoke

DOC = Path(__file__).resolve().parents[2] / "docs" / "brain-age.md"
SUBSET = 15


def doc_steps() -> list[tuple[str, str]]:
    """The page's ``sh`` command lines and ``python`` blocks, in order."""
    out = []
    for lang, body in re.findall(r"```(sh|python)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        if lang == "python":
            out.append(("python", body))
        else:
            out += [("sh", re.sub(r"\s+#\s.*$", "", ln).strip()) for ln in body.splitlines() if ln.strip()]
    return out


def _subset(src: Path, dst: Path, n: int) -> None:
    subs = sorted(p.name for p in src.glob("sub-*"))[:n]
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)
    for s in subs:
        shutil.copytree(src / s, dst / s)
    lines = (src / "participants.tsv").read_text().splitlines()
    (dst / "participants.tsv").write_text("\n".join([lines[0]] + [ln for ln in lines[1:]
                                                                   if ln.split("\t")[0] in subs]) + "\n")


@pytest.mark.torch
def test_the_brain_age_example_runs_in_a_short_setting(shared_data, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    ixi = shared_data / "ixi-t1w-100"
    if not ixi.is_dir():
        pytest.skip(f"{ixi} not found")
    monkeypatch.chdir(tmp_path)
    _subset(ixi, tmp_path / "ixi-t1w-100", SUBSET)
    steps = doc_steps()
    names = [shlex.split(text)[1] if kind == "sh" else "python" for kind, text in steps]
    assert names == ["split", "audit", "python", "predict", "report", "cache"], names
    for kind, text in steps:
        if kind == "python":
            code = re.sub(r"epochs=\d+", "epochs=1", text)
            assert code != text
            exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 (the page's own example)
            continue
        res = invoke(*shlex.split(text)[1:])
        assert res.exit_code == 0, f"{text}\n{res.output}"
    assert (tmp_path / "brain-age" / "report.html").is_file() and (tmp_path / "audit-report.html").is_file()
    preds = (tmp_path / "test-predictions.tsv").read_text().splitlines()
    assert len(preds) >= 2
