"""Benchmark the trainer's data pipeline: tensor cache (cold, warm) against nibabel on every access, and memory against the number of subjects.

Datasets (sizes kept modest: the machine is shared):

* ``../shared/data/ixi-t1w-100``: 100 real T1w images, 120x120x90 at 2 mm
  (5.2 MB each as float32);
* a synthetic 1 mm cohort (``audit.synthetic``, ``--cohort-subjects``,
  default 12, of ``--cohort-shape``, default 160x192x160: 19.7 MB each).

For each dataset and each mode (``image``, ``slice``, ``patch`` 32^3,
stride 32), without and with the trainer's MONAI augmentation, samples per
second of a ``DataLoader`` (batch 8, shuffled, ``--workers``) over the
trainer's own objects (:class:`train.bank.VolumeBank`, ``SampleSet``):

* **nibabel per access**: no cache, no memory (``--no-cache --max-memory 0``):
  every sample reads, checks and decodes its image and preprocesses it;
* **cold**: an empty cache filled (decode, preprocess, write) once: images/s;
* **warm (map)**: the filled cache, memory budget 0: every entry opened and
  checked once (as a training run does before its first epoch; timed
  apart), then every sample reads its window from the memory map;
* **warm (RAM)**: the filled cache, budget large enough to hold the split.

Each figure runs for ``--seconds`` (or one epoch, whichever is first) and is
printed with its ratio to nibabel per access, measured in the same run.
Then, per mode, the CPU time the loader takes per batch against the model's
step (Conv5_FC3, width 4, forward + backward + Adam) on the warm cache.

Last, **memory against the number of subjects**: ``bidsaudit train`` (1
epoch, image mode, width 2) in a child process on synthetic datasets of
``--rss-sizes`` subjects (default 10 and 100, ``--rss-shape`` 96x112x96),
certified without running the checks, with ``--max-memory 32M`` and with a
budget that holds everything (as the trainer was before the cache): the
child's peak resident memory (``ru_maxrss``).

No GPU figure: this benchmark runs on the CPU.

Usage::

    .venv/bin/python bench/bench_loader.py [--workdir DIR] [--seconds 6] [--workers 0] [--skip-cohort] [--skip-rss]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IXI = Path(os.environ.get("BIDSAUDIT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "ixi-t1w-100"
MODES = ("image", "slice", "patch")


def _items(root: Path) -> list:  # type: ignore[type-arg]
    from audit.bidsindex import index_dataset
    from train.items import Item

    index = index_dataset(root)
    rows = [r for r in index.images() if r.suffix == "T1w"]
    return [Item(r.subject or "", r.session, r.path,
                 "sha256:" + hashlib.sha256((index.root / r.path).read_bytes()).hexdigest(), label=str(i % 2))
            for i, r in enumerate(rows)]


def _sample_set(bank, mode: str, augment):  # type: ignore[no-untyped-def]
    from train.samples import SampleSet

    return SampleSet(bank, [i % 2 for i in range(len(bank))], mode=mode, patch_size=32, patch_stride=32,
                     augment=augment, seed=0)


def _rate(ss, seconds: float, workers: int) -> float:  # type: ignore[no-untyped-def]
    """Samples per second over at most ``seconds`` (or one epoch)."""
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator()
    g.manual_seed(0)
    loader = DataLoader(ss, batch_size=8, shuffle=True, generator=g, num_workers=workers)
    n = 0
    t0 = time.perf_counter()
    for batch in loader:
        n += len(batch["image"])
        if time.perf_counter() - t0 > seconds:
            break
    return n / (time.perf_counter() - t0)


def _step_vs_load(ss, mode: str, seconds: float) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(loader CPU s per batch, model step s per batch, batches) on the main process."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader

    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("conv5fc3", "classification", ss.sample_shape(), 2, width=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator()
    g.manual_seed(0)
    loader = iter(DataLoader(ss, batch_size=8, shuffle=True, generator=g, num_workers=0))
    load = step = 0.0
    n = 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        c0 = time.process_time()
        try:
            batch = next(loader)
        except StopIteration:
            break
        c1 = time.process_time()
        t1 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(batch["image"]), torch.as_tensor(batch["target"]).long()).backward()
        opt.step()
        step += time.perf_counter() - t1
        load += c1 - c0
        n += 1
    return load / max(n, 1), step / max(n, 1), n


def throughput(name: str, dataset: Path, work: Path, *, seconds: float, workers: int, echo=print) -> dict:  # type: ignore[no-untyped-def,type-arg]
    import numpy as np

    from train.bank import VolumeBank
    from train.data import Preprocessing, VolumeStore
    from train.samples import make_augmentation

    items = _items(dataset)
    shapes = np.array([VolumeStore(dataset, max_memory=0).shape(items[i].path, items[i].sha256)
                       for i in range(min(5, len(items)))])
    prep = Preprocessing(shape=tuple(int(s) for s in np.median(shapes, axis=0).round().astype(int)))
    mb = 4 * int(np.prod(prep.shape)) / 2**20
    echo(f"\n== {name}: {len(items)} T1w images, preprocessed shape {prep.shape} ({mb:.1f} MB float32 each, "
         f"{mb * len(items):.0f} MB in all); {seconds:g} s per figure, {workers} loader worker(s) ==")
    cache = work / f"cache-{dataset.name}"
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    cold_store = VolumeStore(dataset, cache_dir=cache, max_memory=0)
    VolumeBank(items, cold_store, prep).warm()
    t_cold = time.perf_counter() - t0
    out: dict = {"n": len(items), "cold_images_per_s": len(items) / t_cold}  # type: ignore[type-arg]

    def bank(kind: str) -> VolumeBank:
        if kind == "nibabel per access":
            return VolumeBank(items, VolumeStore(dataset, max_memory=0), prep)
        if kind == "warm (map)":  # a new run: each entry checked (meta, checksum) once, before the epochs
            b = VolumeBank(items, VolumeStore(dataset, cache_dir=cache, max_memory=0), prep)
            t = time.perf_counter()
            b.warm()
            out["verify_s"] = time.perf_counter() - t
            echo(f"warm cache, opening and checking every entry once (a new run): {out['verify_s']:.1f} s")
            return b
        b = VolumeBank(items, VolumeStore(dataset, cache_dir=cache, max_memory=2 * 2**30), prep)
        b.warm()
        return b

    echo(f"cold fill (decode, check, preprocess, write): {t_cold:.1f} s, {len(items) / t_cold:.1f} images/s")
    echo(f"{'samples/s':<26}" + "".join(f"{m + a:>16}" for m in MODES for a in ("", " +aug")))
    banks = {k: bank(k) for k in ("nibabel per access", "warm (map)", "warm (RAM)")}
    augs = {m: make_augmentation(segmentation=False, dims=2 if m == "slice" else 3) for m in MODES}
    for kind, b in banks.items():
        row = []
        for m in MODES:
            for aug in (None, augs[m]):
                r = _rate(_sample_set(b, m, aug), seconds, workers)
                out[f"{kind}|{m}|{'aug' if aug else 'plain'}"] = r
                ref = out[f"nibabel per access|{m}|{'aug' if aug else 'plain'}"]
                row.append(f"{r:>9.1f} {r / ref:>5.1f}x")
        echo(f"{kind:<26}" + "".join(f"{c:>16}" for c in row))
    echo(f"{'per batch of 8 (warm map)':<26}{'loader CPU s':>14}{'model step s':>14}{'ratio':>8}")
    for m in MODES:
        load, step, n = _step_vs_load(_sample_set(banks["warm (map)"], m, augs[m]), m, seconds)
        out[f"batch|{m}"] = {"load_cpu_s": load, "step_s": step, "batches": n}
        echo(f"{m + ' +aug':<26}{load:>14.4f}{step:>14.4f}{load / step:>7.2f}x")
    return out


def _certify(dataset: Path, splits: Path) -> None:
    """A certificate for (dataset, splits) without running the checks (what a passing audit would write)."""
    from audit.api import splits_block
    from audit.bidsindex import index_dataset
    from audit.certificate import CERTIFICATE_NAME, build_certificate, write_certificate
    from audit.hashing import HashCache, dataset_fingerprint
    from audit.splits import read_splits

    index = index_dataset(dataset)
    fp = dataset_fingerprint(index, HashCache(memory=True))
    split_set = read_splits(splits, label="diagnosis")
    block = splits_block(split_set)
    result = {"status": "pass", "counts": {"error": 0, "warning": 0, "info": 0},
              "dataset": {"path": str(index.root), "name": index.name, "fingerprint": fp.fingerprint},
              "splits": {"format": block["format"], "fingerprint": block["fingerprint"]}}
    cert = build_certificate(result, dataset_files=dict(fp.files), split_files=list(split_set.files),
                             options={"label": "diagnosis"}, config={}, where=splits / CERTIFICATE_NAME)
    write_certificate(cert, splits / CERTIFICATE_NAME)


_CHILD = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
          "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def rss(work: Path, sizes: list[int], shape: tuple[int, ...], *, echo=print) -> dict:  # type: ignore[no-untyped-def,type-arg]
    import numpy as np

    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset

    mb = 4 * int(np.prod(shape)) / 2**20
    echo(f"\n== peak resident memory of 'bidsaudit train' (1 epoch, image mode, width 2) against the number of "
         f"subjects; {shape} images, {mb:.1f} MB each as float32 ==")
    echo(f"{'subjects':>9}{'images MB':>11}{'--max-memory 32M':>19}{'budget holds all':>19}")
    out = {}
    for n in sizes:
        ds = work / f"rss-{n}"
        if not (ds / "splits" / "bidsaudit-certificate.json").is_file():
            shutil.rmtree(ds, ignore_errors=True)
            make_dataset(ds / "dataset", n_subjects=n, seed=1, shape=shape, voxel_size=(1.0, 1.0, 1.0),
                         session_fraction=0.0)
            split_dataset(ds / "dataset", SplitPlan(label="diagnosis", seed=0), ds / "splits", layout="folder")
            _certify(ds / "dataset", ds / "splits")
        n_img = len(list((ds / "dataset").glob("sub-*/**/*_T1w.nii*")))
        row = []
        for budget in ("32M", "64G"):
            shutil.rmtree(ds / "maps", ignore_errors=True)
            argv = [sys.executable, "-m", "audit.cli", "train", str(ds / "dataset"), "--splits", str(ds / "splits"),
                    "--output", str(ds / "maps"), "--epochs", "1", "--mode", "image", "--width", "2",
                    "--device", "cpu", "--cache-dir", str(ds / "cache"), "--max-memory", budget]
            got = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=True,
                                 cwd=ROOT).stdout.split()
            if got[0] != "0":
                raise SystemExit(f"train failed at {n} subjects ({budget}): exit {got[0]}")
            peak = int(got[1]) / 1024
            out[f"{n}|{budget}"] = peak
            row.append(f"{peak:>15.0f} MiB")
        echo(f"{n_img:>9}{n_img * mb:>11.0f}{row[0]:>19}{row[1]:>19}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core box)")
    ap.add_argument("--ixi", type=Path, default=IXI)
    ap.add_argument("--cohort-subjects", type=int, default=12)
    ap.add_argument("--cohort-shape", default="160,192,160")
    ap.add_argument("--rss-sizes", default="10,100")
    ap.add_argument("--rss-shape", default="96,112,96")
    ap.add_argument("--skip-cohort", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    args = ap.parse_args(argv)

    import torch

    from audit.synthetic import make_dataset

    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-loader-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        if args.ixi.is_dir():
            results["ixi"] = throughput("ixi-t1w-100 (real, 2 mm)", args.ixi, work, seconds=args.seconds,
                                        workers=args.workers)
        else:
            print(f"skipped: {args.ixi} not found")
        if not args.skip_cohort:
            shape = tuple(int(s) for s in args.cohort_shape.split(","))
            cohort = work / f"cohort-{args.cohort_subjects}"
            if not (cohort / "dataset_description.json").exists():
                make_dataset(cohort, n_subjects=args.cohort_subjects, seed=0, shape=shape,
                             voxel_size=(1.0, 1.0, 1.0), session_fraction=0.0)
            results["cohort"] = throughput(f"synthetic 1 mm cohort ({args.cohort_subjects} subjects)", cohort, work,
                                           seconds=args.seconds, workers=args.workers)
        if not args.skip_rss:
            results["rss"] = rss(work, [int(s) for s in args.rss_sizes.split(",")],
                                 tuple(int(s) for s in args.rss_shape.split(",")))
        (work / "bench_loader.json").write_text(json.dumps(results, indent=1))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
