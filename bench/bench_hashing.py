"""Benchmark the image pass (content hash + fingerprint) against merely decoding the same files.

Data: a synthetic BIDS dataset with real gzipped NIfTI images, either
``../shared/make_synthetic_bids.py --real-nifti`` (two images per subject and
session: a T1w and a one-volume BOLD, ``--dim`` voxels a side, uniform
noise) or, with ``--demo``, the demo phantoms of :mod:`audit.synthetic`
(brain-like T1w, 32x40x32 int16 with scaling). Prints, as the median of
``--repeats`` runs each (the page cache warm):

* the floor: decoding every image with nibabel in one process
  (``np.asanyarray(nib.load(p).dataobj)``), in images per second (and CPU
  milliseconds per image);
* ``summarise_images`` (read, SHA-256 of the bytes, decode, content hash of
  the canonical array, statistics, thumbnail, fingerprint, patch sketch) with
  ``workers=1`` (CPU milliseconds per image too) and ``workers=2`` (this
  process and one pool process) and an empty in-memory cache, in images per
  second and as a ratio to the floor (goal: 1.4 or more with 2 workers);
* the same with an on-disk cache: cold, then again over the unchanged
  dataset (index + image pass: images read must be 0);
* ``dataset_fingerprint`` after the image pass (image hashes from the cache).

Usage::

    .venv/bin/python bench/bench_hashing.py --subjects 250 [--dim 32] [--repeats 3] [--workdir DIR]
    .venv/bin/python bench/bench_hashing.py --demo --subjects 300
    .venv/bin/python bench/bench_hashing.py --dataset PATH   # any BIDS dataset with images

A brain-sized case (1 mm, 176x240x256 int16 with scaling, like the demo
phantoms at full resolution)::

    .venv/bin/python -c 'from audit.synthetic import make_dataset; make_dataset("/tmp/ds1mm", n_subjects=12, shape=(176, 240, 256), voxel_size=(1.0, 1.0, 1.0))'
    .venv/bin/python bench/bench_hashing.py --dataset /tmp/ds1mm
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GENERATOR = ROOT.parent / "shared" / "make_synthetic_bids.py"


def _timed(func):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    value = func()
    return value, time.perf_counter() - t


def _median(func, repeats: int, cpu: list[float] | None = None):  # type: ignore[no-untyped-def]
    """(last value, median seconds, every run's seconds) of ``repeats`` runs; ``cpu`` gets this process's CPU seconds."""
    times = []
    value = None
    for _ in range(repeats):
        c = time.process_time()
        value, t = _timed(func)
        times.append(t)
        if cpu is not None:
            cpu.append(time.process_time() - c)
    return value, statistics.median(times), times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=250)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--demo", action="store_true", help="the demo phantoms of audit.synthetic instead")
    ap.add_argument("--dataset", type=Path, default=None, help="an existing BIDS dataset instead (not modified)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    ap.add_argument("--generator", type=Path, default=GENERATOR)
    args = ap.parse_args(argv)

    import nibabel as nib
    import numpy as np

    from audit.bidsindex import index_dataset
    from audit.hashing import HashCache, dataset_fingerprint
    from audit.images.summary import summarise_images

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-hashing-"))
    ds = args.dataset or work / ("demo" if args.demo else f"gen{args.dim}") / f"ds-{args.subjects}"
    try:
        if args.dataset is None and not (ds / "dataset_description.json").exists():
            if args.demo:
                from audit.synthetic import make_dataset

                _, t_gen = _timed(lambda: make_dataset(ds, n_subjects=args.subjects, seed=0))
            else:
                _, t_gen = _timed(lambda: subprocess.run(
                    [sys.executable, str(args.generator), str(ds), "--subjects", str(args.subjects),
                     "--real-nifti", "--dim", str(args.dim)], check=True, stdout=subprocess.DEVNULL))
            print(f"generated {args.subjects} subjects in {t_gen:.1f} s")
        index = index_dataset(ds)
        paths = [index.root / r.path for r in index.images(present_only=True)]
        n = len(paths)
        total = sum(p.stat().st_size for p in paths)
        shape = nib.load(paths[0]).shape
        print(f"{n} images ({shape}), {total / 1e6:.1f} MB on disk, {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.2f}; median of {args.repeats}")
        print(f"{'':<44} (CPU: this process's time; workers=2 also runs in pool processes, not counted)")

        def floor() -> int:
            k = 0
            for p in paths:
                k += np.asanyarray(nib.load(p).dataobj).size
            return k

        floor()  # warm the page cache
        cpu: list[float] = []
        _, t_floor, runs = _median(floor, args.repeats, cpu)
        rate_floor = n / t_floor

        def line(label: str, t: float, runs: list[float], extra: str = "") -> None:
            print(f"{label:<44} {t:7.2f} s {n / t:8.0f} img/s  x{(n / t) / rate_floor:5.2f} floor  "
                  f"(runs {' '.join(f'{r:.2f}' for r in runs)}){extra}")

        def per_image(cpu: list[float]) -> str:
            return f"  CPU {1000 * statistics.median(cpu) / n:.2f} ms/image"

        line("nibabel decode, 1 process (floor)", t_floor, runs, per_image(cpu))
        for workers in (1, 2):
            cpu = []
            res, t, runs = _median(lambda w=workers: summarise_images(index, workers=w, cache=HashCache(memory=True)),
                                   args.repeats, cpu)
            assert res.images_read == n
            line(f"summarise_images workers={workers}, no cache", t, runs, f"  ({res.bytes_read / 1e6:.1f} MB read)"
                 + (per_image(cpu) if workers == 1 else ""))
        cache_dir = work / "cache"
        colds, warms = [], []
        for _ in range(args.repeats):
            shutil.rmtree(cache_dir, ignore_errors=True)
            res, t = _timed(lambda: summarise_images(index, workers=2, cache=HashCache(cache_dir)))
            colds.append(t)
            res2, t2 = _timed(lambda: summarise_images(index_dataset(ds), workers=2, cache=HashCache(cache_dir)))
            assert res2.images_read == 0 and res2.bytes_read == 0, "the cached re-run read images"
            warms.append(t2)
        line("cold on-disk cache, workers=2", statistics.median(colds), colds, f"  images read {res.images_read}")
        line("cached re-run (index + image pass)", statistics.median(warms), warms,
             f"  images read {res2.images_read}, cache hits {res2.cache_hits}, bytes read {res2.bytes_read}")
        fp, t = _timed(lambda: dataset_fingerprint(index, HashCache(cache_dir)))
        print(f"{'dataset_fingerprint after the image pass':<44} {t:7.2f} s  files {fp.n_files}, read {fp.n_read}, "
              f"cache hits {fp.cache_hits}, bytes read {fp.bytes_read}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
