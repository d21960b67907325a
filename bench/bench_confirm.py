"""Calibration of :func:`audit.images.confirm.confirm_pair` on real anatomy.

Prints, for the 100 different people of ``../shared/data/ixi-t1w-100`` (IXI
T1w, 2 mm), the confirmation score of distinct pairs (the pairs the
fingerprint finds most alike, plus a random sample), per transform class the
scores of copies made from those images (:func:`make_copy`), and for
synthetic datasets (:func:`audit.synthetic.make_dataset`) the distinct pairs
whose fingerprint cosine is highest; then the recall table, the highest
distinct score, the lowest copy score per class, the timing per pair and the
threshold a Gaussian tail fit of the distinct scores gives for a number of
comparisons.

    PYTHONPATH=$PWD python bench/bench_confirm.py [--subjects 20] [--pairs 300] [--synthetic 40,400]

No timing assertions: figures only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np

#: The repository's ``../shared/data``; ``BIDSAUDIT_SHARED_DATA`` names it where the checkout is elsewhere (a worktree).
DATA = Path(os.environ.get("BIDSAUDIT_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
IXI = DATA / "ixi-t1w-100"

Volume = tuple[np.ndarray, np.ndarray]


def load_ixi(limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(subject, float32 volume, affine) of the IXI images, sorted by subject."""
    import nibabel as nib

    files = sorted(IXI.glob("sub-*/anat/*_T1w.nii*"))[:limit]
    out = []
    for f in files:
        img = nib.load(f)
        out.append((f.name.split("_")[0], np.asarray(img.dataobj, dtype=np.float32), img.affine.copy()))
    return out


# ------------------------------------------------------------ copies
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rotate(v: np.ndarray, aff: np.ndarray, deg: float, axis: int, seed: int) -> Volume:
    """Resample the content rotated by ``deg`` about a random-ish axis through the volume centre (affine kept)."""
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    rng = _rng(seed)
    ax = np.eye(3)[axis] + rng.normal(0, 0.3, 3)
    ax /= np.linalg.norm(ax)
    r = Rotation.from_rotvec(math.radians(deg) * ax).as_matrix()
    c = (np.array(v.shape) - 1) / 2
    out = affine_transform(v, r, offset=c - r @ c, order=1, mode="constant", cval=0.0)
    return out.astype(np.float32), aff


def _translate(v: np.ndarray, aff: np.ndarray, seed: int) -> Volume:
    """Content shifted by a few voxels (non-integer, resampled), affine kept."""
    from scipy.ndimage import shift

    d = _rng(seed).uniform(-6, 6, 3)
    return shift(v, d, order=1, mode="constant", cval=0.0).astype(np.float32), aff


def _crop(v: np.ndarray, aff: np.ndarray, seed: int, pad: bool = False) -> Volume:
    """Crop into the head (10-20 % of two axes, affine updated), or zero-pad."""
    rng = _rng(seed)
    if pad:
        w = [(int(rng.integers(3, 15)), int(rng.integers(3, 15))) for _ in range(3)]
        out = np.pad(v, w)
        a = aff.copy()
        a[:3, 3] = aff[:3, :3] @ -np.array([p[0] for p in w], float) + aff[:3, 3]
        return out, a
    lo = np.zeros(3, int)
    hi = np.array(v.shape)
    for ax in rng.choice(3, 2, replace=False):
        cut = int(v.shape[ax] * rng.uniform(0.12, 0.22))
        if rng.random() < 0.5:
            lo[ax] = cut
        else:
            hi[ax] -= cut
    out = v[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy()
    a = aff.copy()
    a[:3, 3] = aff[:3, :3] @ lo.astype(float) + aff[:3, 3]
    return out, a


def _resample(v: np.ndarray, aff: np.ndarray, factor: float) -> Volume:
    """Voxel size times ``factor`` (``scipy.ndimage.zoom``), affine updated."""
    from scipy.ndimage import zoom

    out = zoom(v, 1.0 / factor, order=1)
    real = np.array(v.shape, float) / np.array(out.shape, float)
    a = aff.copy()
    a[:3, :3] = aff[:3, :3] * real
    a[:3, 3] = aff[:3, :3] @ ((real - 1) / 2) + aff[:3, 3]
    return out.astype(np.float32), a


def _bias(v: np.ndarray, seed: int, amp: float = 0.25) -> np.ndarray:
    """A smooth multiplicative field (about +-``amp``)."""
    rng = _rng(seed)
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in v.shape], indexing="ij")
    lin = sum(c * x for c, x in zip(rng.normal(0, 1, 3), g)) + rng.normal(0, 0.5) * g[0] * g[1]
    field = np.exp(amp * lin / max(float(np.abs(lin).max()), 1e-9))
    return (v * field).astype(np.float32)


def _noise(v: np.ndarray, level: float, seed: int, rician: bool) -> np.ndarray:
    rng = _rng(seed)
    sd = level * float(np.percentile(v[v > 0], 99))
    if rician:
        return np.sqrt((v + rng.normal(0, sd, v.shape)) ** 2 + rng.normal(0, sd, v.shape) ** 2).astype(np.float32)
    return np.maximum(v + rng.normal(0, sd, v.shape), 0).astype(np.float32)


def _elastic(v: np.ndarray, aff: np.ndarray, mm: float, seed: int) -> np.ndarray:
    """A smooth random displacement field whose vector length has an RMS of ``mm`` millimetres
    (each axis ``mm / sqrt(3)``; Gaussian-smoothed white noise, sigma 12 mm)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    rng = _rng(seed)
    zooms = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    disp = []
    for z in zooms:
        d = gaussian_filter(rng.normal(0, 1, v.shape), 12.0 / zooms, mode="wrap")
        d *= mm / math.sqrt(3) / z / max(float(d.std()), 1e-9)
        disp.append(d)
    g = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in v.shape], indexing="ij")
    return map_coordinates(v, [gi + di for gi, di in zip(g, disp)], order=1, mode="constant").astype(np.float32)


def _strip(v: np.ndarray, aff: np.ndarray) -> np.ndarray:
    """A crude skull strip: Otsu mask, eroded (peels the scalp), largest component, dilated back, filled.

    Crude on purpose (no brain extraction tool): it keeps brain plus some
    meninges/skull-marrow remnants and zeroes the rest, which is what
    matters here: the copy holds only a part of the original's foreground.
    """
    from scipy import ndimage as ndi

    sm = ndi.gaussian_filter(v, 1.0)
    pos = sm[sm > 0]
    t = _otsu(np.log(pos[:: max(1, pos.size // 100000)] + 1e-3))
    m = sm > math.exp(t)
    zooms = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    k = max(1, round(float(8.0 / zooms.min())))
    core = ndi.binary_erosion(m, iterations=k)
    lab, n = ndi.label(core)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        core = lab == int(np.argmax(sizes))
    mask = ndi.binary_fill_holes(ndi.binary_dilation(core, iterations=k) & m)
    return np.where(mask, v, 0).astype(np.float32)


def _otsu(values: np.ndarray) -> float:
    from audit.images.confirmprep import otsu

    return otsu(values)


def _bias_corrected(v: np.ndarray, aff: np.ndarray) -> np.ndarray:
    """Divide by a smoothed (sigma 20 mm, inside the data) version: a crude bias-field correction."""
    from scipy.ndimage import gaussian_filter

    zooms = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    m = (v > 0).astype(np.float32)
    sig = 20.0 / zooms
    sm = gaussian_filter(v, sig) / np.maximum(gaussian_filter(m, sig), 1e-3)
    ref = float(np.percentile(v[v > 0], 95))
    return np.where(v > 0, v / np.maximum(sm, 1e-3 * ref) * ref, 0).astype(np.float32)


def _combined(v: np.ndarray, aff: np.ndarray, seed: int) -> Volume:
    """Left-right flip (array axis k), 10 degree rotation, 2 % noise."""
    w, a = _rotate(np.ascontiguousarray(v[:, :, ::-1]), aff, 10, seed % 3, seed)
    return _noise(w, 0.02, seed, rician=False), a


def _gamma(v: np.ndarray, g: float) -> np.ndarray:
    top = float(v.max())
    return (top * (np.maximum(v, 0) / top) ** g).astype(np.float32)


#: Transform classes: name -> (volume, affine, seed) -> (volume, affine).
TRANSFORMS: dict[str, Callable[[np.ndarray, np.ndarray, int], Volume]] = {
    # flips of the array axes, affine kept (flip augmentation): for the IXI images axis i is
    # anterior-posterior, j inferior-superior, k left-right (the usual mirror)
    "flip-i": lambda v, a, s: (np.ascontiguousarray(v[::-1]), a),
    "flip-j": lambda v, a, s: (np.ascontiguousarray(v[:, ::-1]), a),
    "flip-k": lambda v, a, s: (np.ascontiguousarray(v[:, :, ::-1]), a),
    "rot-5": lambda v, a, s: _rotate(v, a, 5, s % 3, s),
    "rot-10": lambda v, a, s: _rotate(v, a, 10, s % 3, s),
    "rot-15": lambda v, a, s: _rotate(v, a, 15, s % 3, s),
    "translate": lambda v, a, s: _translate(v, a, s),
    "crop": lambda v, a, s: _crop(v, a, s),
    "pad": lambda v, a, s: _crop(v, a, s, pad=True),
    "resample-1.5x": lambda v, a, s: _resample(v, a, 1.5),
    "resample-0.75x": lambda v, a, s: _resample(v, a, 0.75),
    "scale": lambda v, a, s: (v * np.float32(3.7), a),
    "gamma-0.8": lambda v, a, s: (_gamma(v, 0.8), a),
    "gamma-1.25": lambda v, a, s: (_gamma(v, 1.25), a),
    "bias": lambda v, a, s: (_bias(v, s), a),
    "noise-2%": lambda v, a, s: (_noise(v, 0.02, s, rician=False), a),
    "noise-5%": lambda v, a, s: (_noise(v, 0.05, s, rician=False), a),
    "rician-2%": lambda v, a, s: (_noise(v, 0.02, s, rician=True), a),
    "rician-5%": lambda v, a, s: (_noise(v, 0.05, s, rician=True), a),
    "elastic-1mm": lambda v, a, s: (_elastic(v, a, 1.0, s), a),
    "elastic-2mm": lambda v, a, s: (_elastic(v, a, 2.0, s), a),
    "skull-strip": lambda v, a, s: (_strip(v, a), a),
    "bias-corrected": lambda v, a, s: (_bias_corrected(v, a), a),
    "flip-k+rot-10+noise-2%": lambda v, a, s: _combined(v, a, s),
}


def make_copy(name: str, volume: np.ndarray, affine: np.ndarray, seed: int = 0) -> Volume:
    """A copy of ``volume`` made with the transform class ``name`` (see :data:`TRANSFORMS`)."""
    return TRANSFORMS[name](volume, affine, seed)


# ------------------------------------------------------------ pairs
def fingerprint_pairs(images: list[tuple[str, np.ndarray, np.ndarray]], top: int) -> list[tuple[int, int, float]]:
    """The ``top`` distinct pairs with the highest relative fingerprint cosine (today's candidate score)."""
    from audit.images.candidates import residuals
    from audit.images.fingerprint import fingerprint

    fps = [fingerprint(v, a) for _, v, a in images]
    ok = [k for k, f in enumerate(fps) if f is not None]
    res = residuals(np.stack([fps[k].vector for k in ok]))
    u = res.unit(slice(None))
    sim = u @ u.T
    iu, ju = np.triu_indices(len(ok), 1)
    order = np.argsort(-sim[iu, ju])[:top]
    return [(ok[iu[k]], ok[ju[k]], float(sim[iu[k], ju[k]])) for k in order]


def synthetic(n: int, seed: int, top: int) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[tuple[int, int, float]]]:
    """A synthetic dataset's first-session images and its distinct pairs with the highest fingerprint cosine."""
    import nibabel as nib

    from audit.synthetic import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(tmp) / "ds", n_subjects=n, seed=seed)
        files = sorted((Path(tmp) / "ds").glob("sub-*/**/anat/*_T1w.nii.gz"))
        seen, images = set(), []
        for f in files:
            sub = f.name.split("_")[0]
            if sub in seen:  # one image per subject: pairs are distinct people
                continue
            seen.add(sub)
            img = nib.load(f)
            images.append((sub, np.asarray(img.dataobj, dtype=np.float32), img.affine.copy()))
    return images, fingerprint_pairs(images, top)


def tail_threshold(scores: np.ndarray, comparisons: float, alpha: float = 0.01) -> float:
    """The score a Gaussian fit of the distinct scores exceeds with probability ``alpha / comparisons``."""
    from scipy.stats import norm

    mu, sd = float(np.mean(scores)), float(np.std(scores, ddof=1))
    return mu + sd * float(norm.isf(alpha / comparisons))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=20, help="IXI subjects copied (per transform class)")
    ap.add_argument("--pairs", type=int, default=300, help="random distinct IXI pairs (plus --top)")
    ap.add_argument("--top", type=int, default=60, help="distinct pairs with the highest fingerprint cosine")
    ap.add_argument("--synthetic", default="40,400", help="synthetic dataset sizes ('' for none)")
    ap.add_argument("--classes", default="", help="comma-separated transform classes (default all)")
    ap.add_argument("--synthetic-only", action="store_true", help="skip the real images")
    args = ap.parse_args(argv)

    from audit.images.confirm import COPY_THRESHOLD, confirm_pair, prepare

    if args.synthetic_only:
        return _synthetic(args)
    if not IXI.is_dir():
        print(f"no real data at {IXI}")
        return 1
    images = load_ixi()
    prepared = {}
    timings: list[float] = []

    def prep(k: int):
        if k not in prepared:
            prepared[k] = prepare(images[k][1], images[k][2])
        return prepared[k]

    # distinct real pairs
    rng = np.random.default_rng(0)
    top = fingerprint_pairs(images, args.top)
    pairs = {(i, j) for i, j, _ in top}
    n = len(images)
    while len(pairs) < len(top) + args.pairs and len(pairs) < n * (n - 1) // 2:
        i, j = sorted(rng.choice(n, 2, replace=False).tolist())
        pairs.add((i, j))
    fpcos = {(i, j): c for i, j, c in top}
    distinct = []
    worst = None
    for i, j in sorted(pairs):
        t = time.process_time()
        c = confirm_pair(images[i][1], images[i][2], images[j][1], images[j][2])
        timings.append(time.process_time() - t)
        distinct.append(c.score)
        if worst is None or c.score > worst[0]:
            worst = (c.score, images[i][0], images[j][0], fpcos.get((i, j)))
    d = np.array(distinct)
    print(f"IXI distinct pairs: {len(d)} ({len(top)} with the highest fingerprint cosine, "
          f"{top[0][2]:.3f}..{top[-1][2]:.3f}, + random)")
    print(f"  score mean {d.mean():.3f} sd {d.std(ddof=1):.3f}  quantiles 50/90/99/max "
          f"{np.percentile(d, 50):.3f} {np.percentile(d, 90):.3f} {np.percentile(d, 99):.3f} {d.max():.3f}"
          f"  (max: {worst[1]} vs {worst[2]})")
    top_scores = d[[k for k, p in enumerate(sorted(pairs)) if p in fpcos]]
    print(f"  the fingerprint's {len(top_scores)} most alike pairs: max {top_scores.max():.3f}")
    print(f"  CPU time per pair (unprepared, both volumes): median {np.median(timings):.3f} s, max {max(timings):.3f} s")
    # 1 mm heads: two people upsampled to 1 mm (240 x 240 x 180 voxels)
    one_mm = [_resample(images[k][1], images[k][2], 0.5) for k in (0, 1)]
    tt = []
    for pair in ((one_mm[0], one_mm[1]), (one_mm[0], make_copy("flip-k+rot-10+noise-2%", *one_mm[0], seed=1))):
        t = time.process_time()
        c = confirm_pair(pair[0][0], pair[0][1], pair[1][0], pair[1][1])
        tt.append(time.process_time() - t)
        print(f"  1 mm pair {pair[0][0].shape} vs {pair[1][0].shape}: score {c.score:.3f}, CPU {tt[-1]:.3f} s")

    # copies
    classes = [c for c in args.classes.split(",") if c] or list(TRANSFORMS)
    subjects = list(range(0, n, max(1, n // args.subjects)))[: args.subjects]
    sys.stdout.flush()
    print(f"\nIXI copies ({len(subjects)} subjects per class), threshold {COPY_THRESHOLD}")
    print(f"  {'class':<24} {'recall':>7} {'min':>6} {'median':>7} {'flips/rot/scale found (worst)':<34} {'s/pair':>6}")
    lows = {}
    for name in classes:
        sc, tt, worst_c = [], [], None
        for k in subjects:
            _, v, a = images[k]
            cv, ca = make_copy(name, v, a, seed=k)
            t = time.process_time()
            c = confirm_pair(prep(k), None, cv, ca)
            tt.append(time.process_time() - t)
            sc.append(c.score)
            if worst_c is None or c.score < worst_c.score:
                worst_c = c
        s = np.array(sc)
        lows[name] = s.min()
        tr = worst_c.transform
        print(f"  {name:<24} {np.mean(s >= COPY_THRESHOLD):7.1%} {s.min():6.3f} {np.median(s):7.3f} "
              f"{str(tr.flips) + f' {tr.rotation_deg:.1f}deg x{tr.scale:.3f}':<34} {np.median(tt):6.3f}")
        sys.stdout.flush()
    print(f"\n  highest distinct score {d.max():.3f}; lowest copy score {min(lows.values()):.3f} "
          f"({min(lows, key=lows.get)})")
    for m in (1e3, 1e5, 1e7):
        print(f"  Gaussian tail threshold for {m:.0e} candidate comparisons (1 % family-wise): "
              f"{tail_threshold(d, m):.3f}")

    return _synthetic(args)


def _synthetic(args: argparse.Namespace) -> int:
    """Distinct synthetic subjects (the fingerprint's most alike pairs) and copies of them."""
    from audit.images.confirm import (
        COPY_THRESHOLD,
        confirm_pair,
        group_threshold,
        prepare,
    )

    for size in [int(x) for x in args.synthetic.split(",") if x]:
        imgs, top_s = synthetic(size, 0, args.top)
        prep_s = [prepare(v, a) for _, v, a in imgs]

        def sp(k: int, prep_s=prep_s):
            return prep_s[k]

        hot = [p for p in top_s if p[2] >= 0.85] or top_s[:20]
        sc, tt = [], []
        for i, j, _ in hot:
            t = time.process_time()
            c = confirm_pair(sp(i), None, sp(j), None)
            tt.append(time.process_time() - t)
            sc.append(c.score)
        s = np.array(sc)
        r = np.random.default_rng(1)
        null = []
        for _ in range(30):
            i, j = r.choice(len(imgs), 2, replace=False).tolist()
            null.append(confirm_pair(sp(i), None, sp(j), None).score)
        gt = group_threshold(np.array(null), max(len(hot), 100))
        cop: dict[str, list[float]] = {}
        for k in list(range(0, len(imgs), max(1, len(imgs) // 8)))[:8]:
            for name in ("scale", "crop", "skull-strip", "flip-k", "rot-10", "noise-5%", "flip-k+rot-10+noise-2%"):
                cv, ca = make_copy(name, imgs[k][1], imgs[k][2], seed=k)
                cop.setdefault(name, []).append(confirm_pair(sp(k), None, cv, ca).score)
        print(f"\nsynthetic {size} subjects: {len(hot)} distinct pairs with fingerprint cosine "
              f"{hot[-1][2]:.3f}..{hot[0][2]:.3f}: confirmation max {s.max():.3f} median {np.median(s):.3f}, "
              f"over {COPY_THRESHOLD}: {int((s >= COPY_THRESHOLD).sum())}; {np.median(tt):.3f} s/pair")
        print(f"  30 random distinct pairs: mean {np.mean(null):.3f} sd {np.std(null, ddof=1):.3f} max {max(null):.3f}"
              f" -> group threshold {gt:.3f}; distinct candidates over it: {int((s >= gt).sum())}")
        for name, v in cop.items():
            v = np.array(v)
            print(f"  copies {name:<24} min {v.min():.3f} median {np.median(v):.3f}  "
                  f"over {COPY_THRESHOLD}: {np.mean(v >= COPY_THRESHOLD):.0%}, over the group threshold: {np.mean(v >= gt):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
