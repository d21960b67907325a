"""Benchmark the image pass and the hash cache against a plain nibabel decode.

Writes a synthetic BIDS dataset with real gzipped NIfTI images (two per
subject: a T1w and a one-volume BOLD, ``--dim`` voxels a side) with
``../shared/make_synthetic_bids.py --real-nifti``, then prints:

* the floor: decoding every image with nibabel in one process;
* ``summarise_images`` with ``workers=1`` and ``workers=2`` (no cache), and
  their ratio to the floor;
* the same pass with an on-disk cache, first cold then again over the
  unchanged dataset (images read must be 0);
* ``dataset_fingerprint`` after the image pass (image hashes from the cache).

Usage::

    .venv/bin/python bench/bench_hashing.py --subjects 500 [--dim 32] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=500)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    ap.add_argument("--generator", type=Path, default=GENERATOR)
    args = ap.parse_args(argv)

    import nibabel as nib
    import numpy as np

    from audit.bidsindex import index_dataset
    from audit.hashing import HashCache, dataset_fingerprint
    from audit.imaging import summarise_images

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-hashing-"))
    ds = work / "ds"
    try:
        if not (ds / "dataset_description.json").exists():
            _, t_gen = _timed(lambda: subprocess.run(
                [sys.executable, str(args.generator), str(ds), "--subjects", str(args.subjects),
                 "--real-nifti", "--dim", str(args.dim)], check=True))
            print(f"generated {args.subjects} subjects in {t_gen:.1f} s")
        index = index_dataset(ds)
        paths = [index.root / r.path for r in index.images(present_only=True)]
        total = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} images, {total / 1e6:.1f} MB on disk, {os.cpu_count()} cores")

        def floor() -> int:
            n = 0
            for p in paths:
                n += np.asanyarray(nib.load(p).dataobj).size
            return n

        floor()  # warm the page cache
        _, t_floor = _timed(floor)
        print(f"{'nibabel decode, 1 process (floor)':<44} {t_floor:7.2f} s")
        for workers in (1, 2):
            res, t = _timed(lambda w=workers: summarise_images(index, workers=w, cache=HashCache(memory=True)))
            assert res.images_read == len(paths)
            print(f"{f'summarise_images workers={workers}':<44} {t:7.2f} s  x{t / t_floor:5.2f} floor"
                  f"  ({res.bytes_read / 1e6:.1f} MB read)")
        cache_dir = work / "cache"
        shutil.rmtree(cache_dir, ignore_errors=True)
        res, t = _timed(lambda: summarise_images(index, workers=2, cache=HashCache(cache_dir)))
        print(f"{'cold on-disk cache, workers=2':<44} {t:7.2f} s  images read {res.images_read}")
        res, t = _timed(lambda: summarise_images(index_dataset(ds), workers=2, cache=HashCache(cache_dir)))
        print(f"{'cached re-run (index + image pass)':<44} {t:7.2f} s  images read {res.images_read}, "
              f"cache hits {res.cache_hits}, bytes read {res.bytes_read}")
        fp, t = _timed(lambda: dataset_fingerprint(index, HashCache(cache_dir)))
        print(f"{'dataset_fingerprint after the image pass':<44} {t:7.2f} s  files {fp.n_files}, read {fp.n_read}, "
              f"cache hits {fp.cache_hits}, bytes read {fp.bytes_read}")
        fp2, t = _timed(lambda: dataset_fingerprint(index, HashCache(memory=True)))
        assert fp2.fingerprint == fp.fingerprint
        print(f"{'dataset_fingerprint, no cache':<44} {t:7.2f} s  read {fp2.n_read}, "
              f"{fp2.bytes_read / 1e6:.1f} MB")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
