"""Benchmark ``train --permutation-test N`` against one training run of the same model, in the same call.

The demo's data (``audit.synthetic``, 40 subjects, two sessions for some,
32x40x32 T1w, three sites), split as the demo splits it and certified, and
the demo's model (Conv5_FC3 width 4, batch 4, lr 3e-3, augmentation, CPU, one
thread, ``--epochs``). The baseline is the real run of the same call
(decoding, preprocessing, training, evaluation: ``maps.json``'s
``permutation_test.real_run_seconds``); the N shuffled-label runs reuse its
arrays (``permutation_test.seconds``). Printed: both times, the ratio of the
N runs to the one run (the goal: within 25x for N = 20) and the images
decoded (each once, by the real run).

Usage::

    .venv/bin/python bench/bench_permutation.py [--n 20] [--epochs 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset
    from tests.train.test_gate import _certify
    from train.api import train_model

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-perm-"))
    shutil.rmtree(work / "maps", ignore_errors=True)
    if not (work / "dataset").is_dir():
        make_dataset(work / "dataset", n_subjects=40, seed=0)
        split_dataset(work / "dataset", SplitPlan(label="diagnosis", seed=0), work / "splits", layout="folder")
        _certify(work / "dataset", work / "splits")
    t0 = time.perf_counter()
    s = train_model(work / "dataset", work / "splits", work / "maps", epochs=args.epochs, width=4, batch_size=4,
                    lr=3e-3, augment=True, bootstrap=200, device="cpu", threads=1, progress=False,
                    permutation_test=args.n, echo=lambda _: None)
    total = time.perf_counter() - t0
    meta = json.loads((work / "maps" / "maps.json").read_text())
    pt = meta["permutation_test"]
    one, perm = pt["real_run_seconds"], pt["seconds"]
    print(f"one training run (decode + preprocess + train + evaluate): {one:.1f} s")
    print(f"{args.n} shuffled-label runs: {perm:.1f} s ({perm / args.n:.1f} s each)")
    print(f"ratio N runs / one run: {perm / one:.1f}x (goal <= 25x for N = 20); per shuffled run "
          f"{perm / args.n / one:.2f}x one run")
    print(f"images decoded: {meta['summary']['volumes_decoded']} (by the real run only); whole call {total:.1f} s; "
          f"verdict: {'LEAKING' if pt['leaking'] else 'no leak found'}")
    for line in s.lines()[-3:]:
        print(line)


if __name__ == "__main__":
    main()
