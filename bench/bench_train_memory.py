"""Benchmark peak resident memory of a whole ``bidsaudit train`` run at N and 10N subjects, with the store's own accounting.

For each size, a synthetic dataset (``audit.synthetic``, ``--shape``
voxels at 1 mm, one image per subject) is split (60/20/20) and certified
without running the checks; then ``bidsaudit train`` (1 epoch, image mode,
width 2, CPU, a fresh tensor cache, ``--max-memory``) runs in a child
process. Printed per size: the child's peak resident memory
(``ru_maxrss``), the decoded size of all images, and what ``maps.json``
records of the store (``volume_memory_peak_bytes``: the most bytes of
volumes it held in memory; ``volumes_decoded``). Last line: the ratio of
the two peaks (10N over N), the figure that should stay near 1.

``--batch-size`` defaults to 2 so that both sizes train and evaluate with
full batches (training batches of 2, evaluation batches of 4, and the
smallest validation split has 4 images at 20 subjects): a network's
activations grow with the batch, and at the trainer's default batch of 4 a
10-subject run evaluates its 2 validation images at once where a
100-subject run evaluates in batches of 8, which alone moves the peak by
hundreds of MiB at 96x112x96 without any volume being held.

Usage::

    .venv/bin/python bench/bench_train_memory.py [--sizes 20,200] [--shape 96,112,96] [--batch-size 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

__all__ = ["main", "measure"]

_CHILD = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
          "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _dataset(ds: Path, n: int, shape: tuple[int, ...]) -> None:
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset
    from bench.bench_loader import _certify

    if (ds / "splits" / "bidsaudit-certificate.json").is_file():
        return
    shutil.rmtree(ds, ignore_errors=True)
    make_dataset(ds / "dataset", n_subjects=n, seed=1, shape=shape, voxel_size=(1.0, 1.0, 1.0), session_fraction=0.0)
    split_dataset(ds / "dataset", SplitPlan(label="diagnosis", seed=0), ds / "splits", layout="folder")
    _certify(ds / "dataset", ds / "splits")


def measure(ds: Path, *, budget: str, batch_size: int) -> dict[str, float]:
    """One ``bidsaudit train`` run in a child process: peak RSS (MiB) and the store's accounting from ``maps.json``."""
    shutil.rmtree(ds / "maps", ignore_errors=True)
    shutil.rmtree(ds / "cache", ignore_errors=True)
    argv = [sys.executable, "-m", "audit.cli", "train", str(ds / "dataset"), "--splits", str(ds / "splits"),
            "--output", str(ds / "maps"), "--epochs", "1", "--mode", "image", "--width", "2", "--device", "cpu",
            "--batch-size", str(batch_size), "--cache-dir", str(ds / "cache"), "--max-memory", budget]
    got = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    if got[0] != "0":
        raise SystemExit(f"train failed on {ds}: exit {got[0]}")
    summary = json.loads((ds / "maps" / "maps.json").read_text())["summary"]
    return {"peak_rss_mib": int(got[1]) / 1024, "store_peak_bytes": summary["volume_memory_peak_bytes"],
            "decoded": summary["volumes_decoded"]}


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from train.tensorcache import parse_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20,200", help="two numbers of subjects (N and 10N)")
    ap.add_argument("--shape", default="96,112,96")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-memory", default="32M")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the datasets here (default: a temporary folder)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    shape = tuple(int(s) for s in args.shape.split(","))
    mb = 4 * int(np.prod(shape)) / 2**20
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-train-memory-"))
    print(f"== peak resident memory of 'bidsaudit train' (1 epoch, image mode, width 2, batch {args.batch_size}, "
          f"--max-memory {args.max_memory}); {shape} images, {mb:.1f} MiB each as float32 ==")
    print(f"{'subjects':>9}{'images':>8}{'decoded MiB':>13}{'peak RSS MiB':>14}{'store held MiB':>16}")
    out = {}
    try:
        for n in sizes:
            ds = work / f"train-memory-{n}"
            _dataset(ds, n, shape)
            n_img = len(list((ds / "dataset").glob("sub-*/**/*_T1w.nii*")))
            r = measure(ds, budget=args.max_memory, batch_size=args.batch_size)
            out[n] = r
            print(f"{n:>9}{n_img:>8}{n_img * mb:>13.0f}{r['peak_rss_mib']:>14.0f}"
                  f"{r['store_peak_bytes'] / 2**20:>16.1f}", flush=True)
            assert r["store_peak_bytes"] <= parse_size(args.max_memory)
        a, b = sizes[0], sizes[-1]
        print(f"peak RSS at {b} subjects / at {a}: {out[b]['peak_rss_mib'] / out[a]['peak_rss_mib']:.2f}x "
              f"({out[b]['peak_rss_mib'] - out[a]['peak_rss_mib']:+.0f} MiB for {b - a} more subjects)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
