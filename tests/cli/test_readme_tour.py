"""The README's "A short tour" runs as written (issue #13, point 6): every command line of its code block, on a
fresh synthetic dataset named ``DATASET``, a bids-examples checkout and a published split folder.

``bidsaudit demo`` is left out here (tests/cli/test_demo.py runs it); a ``| jq .status`` is read as JSON.
The bids-examples line needs the real data (``BIDSAUDIT_SHARED_DATA``); without it that line is skipped, saying so.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from tests.builders import SHARED_DATA, invoke

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A short tour"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the tour has no sh code block"
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.group(1).splitlines() if line.strip()]


def _fresh_dataset(root: Path) -> None:
    from audit.synthetic import make_dataset

    make_dataset(root, n_subjects=20, seed=5)
    tsv = root / "participants.tsv"
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join([lines[0] + "\tfamily"] + [f"{line}\tfam{i // 2:02d}" for i, line in
                                                         enumerate(lines[1:])]) + "\n")


def test_the_readme_tour_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _fresh_dataset(tmp_path / "DATASET")
    lines = tour_lines()
    assert len(lines) >= 8 and all(line.startswith("bidsaudit ") for line in lines)
    ran = []
    for line in lines:
        argv = shlex.split(line)[1:]
        if argv[0] == "demo":
            continue  # tests/cli/test_demo.py
        if argv[0] == "report" or "published/ADNI/train" in argv:  # inputs an earlier line made
            if not (tmp_path / "published" / "ADNI" / "train").exists():
                shutil.copytree(tmp_path / "splits", tmp_path / "published" / "ADNI" / "train")
        if any(a.startswith("bids-examples/") for a in argv):
            if not (SHARED_DATA / "bids-examples" / "ds001").is_dir():
                with capsys.disabled():
                    print(f"\nskipped README line (no bids-examples under {SHARED_DATA}): {line}")
                continue
            if not (tmp_path / "bids-examples").exists():
                (tmp_path / "bids-examples").symlink_to(SHARED_DATA / "bids-examples")
        pipe = "|" in argv
        if pipe:
            argv = argv[:argv.index("|")]
        res = invoke(*argv)
        assert res.exit_code != 2, f"{line}\n{res.output}"
        if pipe:
            assert json.loads(res.stdout)["status"] in ("pass", "fail")
        if argv[0] == "validate" and "bids-examples/ds001" in argv:
            assert res.exit_code == 0 and "EMPTY_FILE" not in res.output, res.output  # the tip works
        if argv[0] == "split":
            assert res.exit_code == 0, res.output
        ran.append(argv[0])
    assert {"validate", "split", "audit", "report"} <= set(ran)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "kfold" / "split-4").is_dir()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "pass"
