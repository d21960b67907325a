"""Benchmark the trainer's data pipeline against a DataLoader that decodes with nibabel on every access.

Two datasets: the demo's (``audit.synthetic``, 40 subjects, 32x40x32 T1w) and
a larger one made by ``../shared/make_synthetic_bids.py OUT --subjects 200
--real-nifti`` (two sessions each: 400 T1w images, ``--dim`` a side).

For each, over every T1w image:

* **baseline**: a map-style dataset whose ``__getitem__`` runs
  ``nibabel.load(path)``, closest-canonical reorientation, ``get_fdata``,
  centre crop/pad and per-image z-score, every time;
* **cached**: ``train.data`` as the trainer uses it: each file's bytes read
  once, checked against its content hash, decoded once (``VolumeStore``),
  preprocessed once into one stacked array (``prepare_arrays``), then served
  by ``SampleSet`` (the one-time fill is timed separately as ``cold``);
* **+ augment**: both with the same on-the-fly MONAI augmentation (compared
  like for like).

Both go through ``torch.utils.data.DataLoader`` (batch 8, shuffled,
``--workers`` workers). "pipeline" epochs only iterate the loader
(samples/s); "training" epochs also run a small Conv5_FC3 step per batch and
split the epoch time into loading (waiting for the next batch) and compute.

Usage::

    .venv/bin/python bench/bench_loader.py [--subjects 200] [--dim 32] [--epochs 3] [--workers 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GENERATOR = ROOT.parent / "shared" / "make_synthetic_bids.py"


class NibabelEveryTime:
    """The baseline: decode with nibabel on every access."""

    def __init__(self, paths, targets, shape, augment=None):  # type: ignore[no-untyped-def]
        self.paths, self.targets, self.shape, self.augment = paths, targets, shape, augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        import nibabel as nib
        import numpy as np

        from train.data import _crop_pad, _foreground

        img = nib.as_closest_canonical(nib.load(self.paths[i]))
        v = _crop_pad(np.asarray(img.get_fdata(dtype=np.float32)).reshape(img.shape[:3]), self.shape)
        fg = _foreground(v)
        v = (v - fg.mean()) / max(float(fg.std()), 1e-6)
        sample = {"image": v[None].astype(np.float32), "target": self.targets[i]}
        if self.augment is not None:
            sample = self.augment(sample, self.epoch * 100003 + i)
            sample["image"] = np.ascontiguousarray(sample["image"], dtype=np.float32)
        return sample


def _epochs(ds, epochs: int, workers: int, model=None, opt=None):  # type: ignore[no-untyped-def]
    """(seconds per epoch, loading seconds per epoch, compute seconds per epoch)."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader

    total = load = comp = 0.0
    for e in range(epochs):
        g = torch.Generator()
        g.manual_seed(e)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(e)
        loader = DataLoader(ds, batch_size=8, shuffle=True, generator=g, num_workers=workers)
        t0 = time.perf_counter()
        t = t0
        for batch in loader:
            t1 = time.perf_counter()
            load += t1 - t
            if model is not None:
                opt.zero_grad()
                loss = F.cross_entropy(model(batch["image"]), torch.as_tensor(batch["target"]).long())
                loss.backward()
                opt.step()
            t = time.perf_counter()
            comp += t - t1
        total += time.perf_counter() - t0
    return total / epochs, load / epochs, comp / epochs


def bench(name: str, dataset: Path, *, epochs: int, workers: int, echo=print) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import torch

    from audit.bidsindex import index_dataset
    from train.data import Preprocessing, VolumeStore
    from train.items import Item
    from train.loop import prepare_arrays
    from train.models import build_model
    from train.samples import SampleSet, make_augmentation

    index = index_dataset(dataset)
    rows = [r for r in index.images() if r.suffix == "T1w"]
    items = [Item(r.subject or "", r.session, r.path,
                  "sha256:" + hashlib.sha256((index.root / r.path).read_bytes()).hexdigest(), label=str(i % 2))
             for i, r in enumerate(rows)]
    n = len(items)
    shape_probe = VolumeStore(index.root).image(items[0]).shape
    prep = Preprocessing(shape=tuple(int(s) for s in shape_probe), classes=["0", "1"])
    targets = [i % 2 for i in range(n)]
    echo(f"\n== {name}: {n} T1w images, shape {shape_probe}, {epochs} epochs, {workers} loader worker(s) ==")

    base = NibabelEveryTime([str(index.root / it.path) for it in items], targets, prep.shape)
    t_base, _, _ = _epochs(base, epochs, workers)

    t0 = time.perf_counter()
    store = VolumeStore(index.root)
    arr = prepare_arrays(items, store, prep, "classification")
    t_cold = time.perf_counter() - t0
    cached = SampleSet(arr[0], arr[1])
    t_cached, _, _ = _epochs(cached, epochs, workers)
    augment = make_augmentation(segmentation=False, dims=3)
    aug = SampleSet(arr[0], arr[1], augment=augment, seed=0)
    t_aug, _, _ = _epochs(aug, epochs, workers)
    base_aug = NibabelEveryTime(base.paths, targets, prep.shape, augment=augment)
    t_base_aug, _, _ = _epochs(base_aug, epochs, workers)

    echo(f"{'pipeline only':<28}{'s/epoch':>10}{'samples/s':>12}{'vs baseline':>13}")
    echo(f"{'baseline (nibabel each time)':<28}{t_base:>10.3f}{n / t_base:>12.0f}{1.0:>12.1f}x")
    echo(f"{'cached':<28}{t_cached:>10.3f}{n / t_cached:>12.0f}{t_base / t_cached:>12.1f}x"
         f"   (one-time fill: {t_cold:.2f} s = {t_cold / t_base:.1f} baseline epochs)")
    echo(f"{'baseline + MONAI augment':<28}{t_base_aug:>10.3f}{n / t_base_aug:>12.0f}{1.0:>12.1f}x")
    echo(f"{'cached + MONAI augment':<28}{t_aug:>10.3f}{n / t_aug:>12.0f}{t_base_aug / t_aug:>12.1f}x"
         "   (vs baseline + augment)")

    out = {"n": n, "baseline_s": t_base, "cached_s": t_cached, "cold_s": t_cold, "augment_s": t_aug,
           "baseline_augment_s": t_base_aug}
    echo(f"{'training epoch (Conv5_FC3 w=4)':<28}{'s/epoch':>10}{'loading':>10}{'compute':>10}{'speed-up':>10}")
    for label, ds in (("baseline", base), ("cached", cached), ("baseline + augment", base_aug),
                      ("cached + augment", aug)):
        torch.manual_seed(0)
        model = build_model("conv5fc3", "classification", (1, *prep.shape), 2, width=4)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        t, load, comp = _epochs(ds, epochs, workers, model, opt)
        out[f"train_{label}_s"], out[f"train_{label}_load_s"], out[f"train_{label}_compute_s"] = t, load, comp
        ref = out["train_baseline + augment_s" if "augment" in label else "train_baseline_s"]
        echo(f"{label:<28}{t:>10.3f}{load:>10.3f}{comp:>10.3f}{ref / t:>9.1f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core box)")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    ap.add_argument("--generator", type=Path, default=GENERATOR)
    args = ap.parse_args(argv)

    import torch

    from audit.synthetic import make_dataset

    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        demo = work / "demo"
        if not (demo / "dataset_description.json").exists():
            make_dataset(demo, n_subjects=40, seed=0)
        bench("demo dataset (audit.synthetic, 40 subjects)", demo, epochs=args.epochs, workers=args.workers)
        big = work / f"synthetic-{args.subjects}"
        if not (big / "dataset_description.json").exists():
            subprocess.run([sys.executable, str(args.generator), str(big), "--subjects", str(args.subjects),
                            "--real-nifti", "--dim", str(args.dim)], check=True, stdout=subprocess.DEVNULL)
        bench(f"make_synthetic_bids.py --subjects {args.subjects} --real-nifti", big, epochs=args.epochs,
              workers=args.workers)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
