"""Training under torchrun: 2 CPU processes (gloo) give the model folder a single process gives.

``torch.distributed.run --standalone`` rendezvouses on ``localhost:0``, i.e. a
free port, so parallel test runs do not collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.train.test_train import FAST, _base, _skip_without_torch, case  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(args: list[str], *, cwd: Path = ROOT, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _tv(maps: Path) -> set[tuple[str, str]]:
    rows = (maps / "train+validation.tsv").read_text().splitlines()[1:]
    return {(r.split("\t")[0], r.split("\t")[2]) for r in rows}


def _pred_shape(maps: Path, split: str) -> tuple[list[str], int]:
    lines = (maps / "split-0" / "seed-0" / "predictions" / f"{split}_best-loss.tsv").read_text().splitlines()
    return lines[0].split("\t"), len(lines) - 1


@pytest.mark.torch
def test_torchrun_two_processes_match_a_single_process(case):
    from train.api import train_model

    train_model(case / "dataset", case / "splits", case / "single", epochs=2, echo=lambda s: None,
                **dict(FAST, bootstrap=20))
    t0 = time.perf_counter()
    res = _torchrun(["-m", "audit.cli", "train", str(case / "dataset"), "--splits", str(case / "splits"),
                     "--output", str(case / "ddp"), "--epochs", "2", "--width", str(FAST["width"]),
                     "--batch-size", str(FAST["batch_size"]), "--device", "cpu"])
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("Model folder:") == 1  # rank 1 says nothing
    single, ddp = case / "single", case / "ddp"
    meta = json.loads((ddp / "maps.json").read_text())
    assert meta["status"] == "complete" and meta["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert _tv(ddp) == _tv(single)
    for split in ("validation", "test"):
        assert _pred_shape(ddp, split) == _pred_shape(single, split)
    m1 = json.loads((single / "summary.json").read_text())["over_runs"]
    m2 = json.loads((ddp / "summary.json").read_text())["over_runs"]
    assert {s: sorted(v) for s, v in m1.items()} == {s: sorted(v) for s, v in m2.items()}
    hist = (ddp / "split-0" / "seed-0" / "metrics.tsv").read_text().splitlines()
    assert len(hist) == 3
    print(f"torchrun, 2 gloo processes: {seconds:.1f} s")


@pytest.mark.torch
@pytest.mark.slow
def test_torchrun_refused_gate_stops_every_rank(case):
    train = case / "splits" / "train.tsv"
    train.write_text(train.read_text() + train.read_text().splitlines()[1] + "\n")
    res = _torchrun(["-m", "audit.cli", "train", str(case / "dataset"), "--splits", str(case / "splits"),
                     "--output", str(case / "ddp"), "--epochs", "1", "--device", "cpu"])
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert out.count("bidsaudit: refused: the gate is closed") == 2 and "train.tsv changed" in out
    assert "exitcode  : 1" in out  # both ranks exit 1 (torchrun's own report follows)
    assert not (case / "ddp").exists()


@pytest.mark.torch
@pytest.mark.slow
def test_a_refusal_on_rank_0_alone_stops_the_other_rank(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(textwrap.dedent("""
        import torch.distributed as dist
        from train.distributed import agree as _agree
        from train.gate import GateClosed, Refused
        dist.init_process_group("gloo")
        r = dist.get_rank()
        try:
            _agree(GateClosed("the gate is closed", ["x changed"]) if r == 0 else None, "the gate")
        except Refused as err:
            print(f"rank {r} stopped: {type(err).__name__}: {err}", flush=True)
        dist.destroy_process_group()
    """))
    res = _torchrun([str(script)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rank 0 stopped: GateClosed: the gate is closed: x changed" in res.stdout
    assert "rank 1 stopped: Refused: another rank stopped at the gate" in res.stdout


@pytest.mark.torch
@pytest.mark.slow
def test_nproc_per_node_refusal_is_exit_1_without_a_traceback(case):
    train = case / "splits" / "train.tsv"
    train.write_text(train.read_text() + train.read_text().splitlines()[1] + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    res = subprocess.run([sys.executable, "-m", "audit.cli", "train", str(case / "dataset"), "--splits",
                          str(case / "splits"), "--output", str(case / "ddp"), "--epochs", "1", "--device", "cpu",
                          "--nproc-per-node", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.count("bidsaudit: refused: the gate is closed") == 2 and "train.tsv changed" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout and not (case / "ddp").exists()
