"""Near-duplicate images: the candidate search at scale, and the separation behind the default threshold.

Two modes.

Search (default)
    Random but structured fingerprints: a Gaussian model of real
    fingerprints of synthetic T1w phantoms (:func:`audit.synthetic.make_dataset`,
    ``--bases-subjects``): their mean plus random combinations of their
    principal components with the phantoms' own variances, plus 5 % white
    noise, so different "subjects" are as alike as the phantoms are; 1 % of
    them get a planted near-copy (relative similarity about 0.88-0.99). For
    each size (10k, 30k, 100k by default) one process writes the float16
    fingerprints, a fresh one loads them and runs
    :func:`audit.images.candidates.near_pairs` (the inverted-file search; at 10k also
    the screening of every pair, the reference), and reports the time (and
    its phases), the resident memory with the fingerprints loaded and the
    peak of the process, the candidate pairs confirmed, the recall of the
    planted copies at or above the threshold, and the other pairs found.

Separation (``--separation``)
    The figures behind ``leakage.near_duplicate_image``'s defaults: planted
    copies of synthetic phantoms and of the real images in
    ``../shared/data/nifti`` (each written as a NIfTI file and read through
    the image pass, :func:`audit.images.imagefile.summarise_file`), every pair of
    different subjects of synthetic datasets of several sizes, the real
    near-duplicate pairs (``anatomical.nii`` with its reoriented/resampled
    copies, ``aniso_vox`` with its denoised ``ascm_out_test``) and every pair
    of different real images. Prints, per transform, the lowest relative
    similarity and the largest size difference of the copies, and, per
    dataset, the highest similarity of different subjects (all, and those of
    the same size).

Usage::

    .venv/bin/python bench/bench_neardup.py [--sizes 10000 30000 100000]
    .venv/bin/python bench/bench_neardup.py --separation [--subjects 12 24 60 200]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "data" / "nifti"

THRESHOLD = 0.90
SIZE_TOLERANCE = 0.04
PATCH_OVERLAP = 0.5
#: Real pairs that are the same scan (near-duplicate ground truth).
REAL_FAMILIES = (
    {"nibabel/anatomical.nii", "nibabel/reoriented_anat_moved.nii", "nibabel/resampled_anat_moved.nii"},
    {"dipy/aniso_vox.nii.gz", "dipy/ascm_out_test.nii.gz"},
    {"nibabel/example4d.nii.gz", "nibabel/example_nifti2.nii.gz"},  # a 32x20x12 crop (found by the patch sketch)
)
#: Real images whose planted copies are measured (3-D brain volumes large enough to fingerprint).
REAL_BASES = ("nibabel/anatomical.nii", "dipy/aniso_vox.nii.gz", "nibabel/example4d.nii.gz")


# ------------------------------------------------------------------ search
def _bases(n_subjects: int, seed: int, work: Path) -> Any:
    import numpy as np

    from audit.images.fingerprint import decode
    from audit.images.imagefile import summarise_file
    from audit.synthetic import make_dataset

    root = work / f"bases-{n_subjects}-{seed}"
    if not (root / "dataset_description.json").exists():
        make_dataset(root, n_subjects=n_subjects, seed=seed, session_fraction=0.0)
    vecs = []
    for p in sorted(root.rglob("*_T1w.nii.gz")):
        fp = summarise_file(str(p))["content"].get("fingerprint")
        if fp:
            vecs.append(decode(fp).astype(np.float32))
    return np.array(vecs)


def make_fingerprints(bases: Any, n: int, *, seed: int = 0, planted: float = 0.01,
                      white: float = 0.05) -> tuple[Any, Any]:
    """``(vectors float16 (n, d), planted pairs (m, 2))``: phantom-like fingerprints and near-copies of 1 %.

    A Gaussian model of the base fingerprints: their mean plus random
    combinations of their principal components with the bases' own variances
    (so different "subjects" are as alike as the phantoms: relative
    similarity p99 about 0.6), plus white noise with ``white`` of the energy.
    A planted copy adds a second, smaller draw of the same model (relative
    similarity 0.91-0.99 to its original).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    b = bases.astype(np.float64)
    mean = b.mean(axis=0)
    _, sv, vt = np.linalg.svd(b - mean, full_matrices=False)
    sd = sv / math.sqrt(len(b))
    k, d = vt.shape
    white_sd = math.sqrt(white / (1 - white) * float((sd**2).sum()) / d)
    vt32 = vt.astype(np.float32)
    out = np.empty((n, d), dtype=np.float16)

    def draw(m: int) -> Any:
        x = (rng.standard_normal((m, k)) * sd).astype(np.float32) @ vt32
        x += rng.standard_normal((m, d)).astype(np.float32) * np.float32(white_sd)
        return x

    n_copies = int(n * planted)
    n_orig = n - n_copies
    for s in range(0, n_orig, 4096):
        m = min(4096, n_orig - s)
        out[s:s + m] = (mean + draw(m)).astype(np.float16)
    src = rng.choice(n_orig, size=n_copies, replace=False)
    for s in range(0, n_copies, 4096):
        rows = src[s:s + 4096]
        eps = rng.uniform(0.14, 0.42, size=(len(rows), 1)).astype(np.float32)
        x = out[rows].astype(np.float32) + draw(len(rows)) * eps
        out[n_orig + s:n_orig + s + len(rows)] = x.astype(np.float16)
    perm = rng.permutation(n)  # shuffle, so copies are not at the end
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    pairs = np.stack([inv[src], inv[np.arange(n_orig, n)]], axis=1)
    pairs.sort(axis=1)
    return out[perm], pairs


def _make(args: argparse.Namespace) -> int:
    """Child process: write the fingerprints of one size (and the planted pairs) to ``.npy`` files."""
    import numpy as np

    vectors, planted = make_fingerprints(np.load(args.bases), args.make, seed=args.seed)
    np.save(args.out.with_suffix(".vectors.npy"), vectors)
    np.save(args.out.with_suffix(".planted.npy"), planted)
    return 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _one(args: argparse.Namespace) -> int:
    """Child process: search one set of fingerprints; prints a JSON line."""
    import numpy as np

    from audit.images import candidates

    vectors = np.load(args.one.with_suffix(".vectors.npy"))
    planted = np.load(args.one.with_suffix(".planted.npy"))
    rss_data = _rss_mb()
    t = time.perf_counter()
    i, j, sim, info = candidates.near_pairs(vectors, THRESHOLD, exact_max=10**9 if args.exact else 0,
                                         **({"n_probe": args.probe} if args.probe else {}))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sk_seconds, sk_found, sk_other = _sketch_search(len(vectors), planted, args.seed)
    peak_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = set(zip(i.tolist(), j.tolist()))
    want = {tuple(p) for p in planted.tolist()}
    planted_sim = candidates.residuals(vectors).cosine(planted[:, 0], planted[:, 1])
    above = want & {p for p, s in zip(map(tuple, planted.tolist()), planted_sim) if s >= THRESHOLD}
    print(json.dumps({
        "n": len(vectors), "exact": bool(args.exact), "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 1024), "data_mb": round(vectors.nbytes / 2**20),
        "rss_before_search_mb": round(rss_data), "candidates": int(info["candidates"]),
        "planted": len(want), "planted_above": len(above), "found_planted": len(found & above),
        "other_pairs": len(found - want), "planted_sim_min": round(float(planted_sim.min()), 3),
        "pruned": int(info.get("pruned", 0)),
        "sketch_seconds": round(sk_seconds, 2), "sketch_found": sk_found, "sketch_other": sk_other,
        "peak_rss_with_sketches_mb": round(peak_all / 1024),
        "phases": {k: round(v, 2) for k, v in info.items() if k.endswith("_s")},
    }))
    return 0


def _sketch_search(n: int, planted: Any, seed: int) -> tuple[float, int, int]:
    """Time :func:`audit.images.candidates.sketch_pairs` over ``n`` random sketches (full ``SKETCH_K`` hashes each);
    the second image of each planted pair keeps 70 % of the first one's hashes (a crop)."""
    import numpy as np

    from audit.images import candidates, sketch

    rng = np.random.default_rng(seed + 1)
    k = sketch.SKETCH_K
    raw = rng.integers(0, 2**63, size=(n, k), dtype=np.int64).astype(np.uint64)
    for a, b in planted.tolist():
        keep = rng.random(k) < 0.7
        raw[b, keep] = raw[a, keep]
    raw.sort(axis=1)
    sketches = list(raw)
    counts = [20_000] * n
    t = time.perf_counter()
    i, j, _ = candidates.sketch_pairs(sketches, counts, 0.5)
    seconds = time.perf_counter() - t
    found = set(zip(i.tolist(), j.tolist()))
    want = {tuple(p) for p in planted.tolist()}
    return seconds, len(found & want), len(found - want)


def search_bench(args: argparse.Namespace) -> int:
    import numpy as np

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-neardup-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    bases = _bases(args.bases_subjects, 1, work)
    path = work / "bases.npy"
    np.save(path, bases)
    print(f"{len(bases)} base fingerprints of {bases.shape[1]} values from synthetic phantoms "
          f"({time.perf_counter() - t:.1f} s); threshold {THRESHOLD}; {os.cpu_count()} cpus")
    runs = [(n, False) for n in args.sizes]
    if args.sizes and min(args.sizes) <= 20000:
        runs.insert(1, (min(args.sizes), True))
    print(f"{'images':>8} {'search':>6} {'seconds':>8} {'(residuals projection search confirm)':>38} "
          f"{'RSS data':>9} {'peak RSS':>9} {'candidates':>11} {'planted':>8} {'recall':>7} {'other':>6}"
          f" {'sketch s':>9} {'sketch recall':>14} {'peak RSS all':>13}")
    for n, exact in runs:
        data = work / f"fp-{n}-{args.seed}"
        if not data.with_suffix(".vectors.npy").exists():
            made = subprocess.run([sys.executable, __file__, "--make", str(n), "--bases", str(path), "--seed",
                                   str(args.seed), "--out", str(data)], capture_output=True, text=True, check=False)
            if made.returncode != 0:
                print(made.stderr)
                return 1
        cmd = [sys.executable, __file__, "--one", str(data)] + (["--exact"] if exact else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        recall = r["found_planted"] / max(r["planted_above"], 1)
        ph = r["phases"]
        phases = f"({ph['residuals_s']:.1f} {ph['projection_s']:.1f} {ph['search_s']:.1f} {ph['confirm_s']:.1f})"
        print(f"{r['n']:>8} {'exact' if r['exact'] else 'ivf':>6} {r['seconds']:>8.2f} {phases:>38} "
              f"{r['rss_before_search_mb']:>6} MB {r['peak_rss_mb']:>6} MB {r['candidates']:>11} "
              f"{r['planted_above']:>8} {recall:>7.3f} {r['other_pairs']:>6}"
              f" {r['sketch_seconds']:>9.2f} {r['sketch_found'] / max(r['planted'], 1):>14.3f}"
              f" {r['peak_rss_with_sketches_mb']:>10} MB")
    print("RSS data: resident memory with the float16 fingerprints loaded; peak RSS: the search process's peak "
          "(its float32 copy of the fingerprints included); planted: copies at or above the threshold; "
          "other: pairs found that were not planted (different draws that came out alike); sketch: "
          "audit.images.candidates.sketch_pairs over random full sketches with the same planted pairs keeping 70 % of "
          "their hashes (a crop); peak RSS all: the process's peak after both searches")
    return 0


# -------------------------------------------------------------- separation
def _rot(axis: int, deg: float) -> Any:
    import numpy as np

    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    m = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def transforms(data: Any, affine: Any, rng: Any) -> dict[str, tuple[Any, Any]]:
    """The planted near-copies of one image: name -> (data, affine)."""
    import numpy as np
    from scipy.ndimage import affine_transform

    d = np.asarray(data, dtype=np.float32)
    p99 = float(np.nanpercentile(d, 99))
    mx = float(np.nanmax(d))
    out: dict[str, tuple[Any, Any]] = {}
    slope = mx / 32000
    out["int16+scaling"] = (np.rint(d / slope) * slope, affine)
    out["noise 2%"] = (d + rng.normal(0, 0.02 * p99, d.shape), affine)
    out["noise 5%"] = (d + rng.normal(0, 0.05 * p99, d.shape), affine)
    for g in (0.8, 1.25):
        out[f"gamma {g}"] = (mx * (np.clip(d, 0, None) / mx) ** g, affine)
    crop = affine.copy()
    crop[:3, 3] = affine[:3, :3] @ [3, 3, 3] + affine[:3, 3]
    out["crop 3 (one side)"] = (d[3:, 3:, 3:], crop)
    both = affine.copy()
    both[:3, 3] = affine[:3, :3] @ [2, 2, 2] + affine[:3, 3]
    out["crop 2 (both sides)"] = (d[2:-2, 2:-2, 2:-2], both)
    pad = affine.copy()
    pad[:3, 3] = affine[:3, :3] @ [-3, -3, -3] + affine[:3, 3]
    out["pad 3"] = (np.pad(d, 3), pad)
    res = affine.copy()
    res[:3, :3] = affine[:3, :3] * 1.5
    res[:3, 3] = affine[:3, :3] @ [0.25, 0.25, 0.25] + affine[:3, 3]
    shape = tuple(int(math.ceil(n / 1.5)) for n in d.shape)
    m = np.linalg.inv(affine) @ res
    out["resample 1.5x voxels"] = (affine_transform(d, m[:3, :3], m[:3, 3], output_shape=shape, order=1), res)
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, d.shape[0] - 1
    perm = np.eye(4)[[0, 2, 1, 3]]
    out["reorient (flip, swap axes)"] = (np.ascontiguousarray(np.transpose(d[::-1], (0, 2, 1))),
                                         affine @ flip @ perm)
    centre = affine[:3, :3] @ ((np.array(d.shape) - 1) / 2) + affine[:3, 3]
    for axis, deg in ((2, 7), (0, 10)):
        r = np.eye(4)
        r[:3, :3] = _rot(axis, deg)
        r[:3, 3] = centre - _rot(axis, deg) @ centre
        m = np.linalg.inv(affine) @ np.linalg.inv(r) @ affine
        out[f"rotate {deg} deg (resampled)"] = (affine_transform(d, m[:3, :3], m[:3, 3], order=1), affine)
    moved = np.eye(4)
    moved[:3, :3] = _rot(0, 6) @ _rot(1, 8) @ _rot(2, 10)
    moved[:3, 3] = [3, 4, 5]
    out["moved affine (rigid, same voxels)"] = (d, moved @ affine)
    return out


def _summarise_array(data: Any, affine: Any, path: Path) -> dict[str, Any]:
    import nibabel as nib
    import numpy as np

    from audit.images.imagefile import summarise_file

    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    content: dict[str, Any] = summarise_file(str(path))["content"]
    return content


class _Group:
    """Fingerprints of one group (a dataset, or the real images) and their mean."""

    def __init__(self, names: list[str], contents: list[dict[str, Any]]) -> None:
        import numpy as np

        from audit.images.fingerprint import decode
        from audit.images.sketch import decode_sketch

        keep = [k for k, c in enumerate(contents) if c.get("fingerprint")]
        self.names = [names[k] for k in keep]
        self.sketch = {names[k]: (decode_sketch(c["patch_sketch"]), int(c["patch_count"]))
                       for k, c in enumerate(contents) if c.get("patch_sketch")}
        self.vec = np.array([decode(contents[k]["fingerprint"]).astype(np.float64) for k in keep])
        self.spread = np.log(np.array([contents[k]["fingerprint_spread"] for k in keep], dtype=np.float64))
        self.mean = self.vec.mean(axis=0)

    def unit(self, v: Any) -> Any:
        import numpy as np

        r = np.asarray(v, dtype=np.float64) - self.mean
        return r / np.linalg.norm(r, axis=-1, keepdims=True)

    def sim(self, a: Any, b: Any) -> float:
        return float(self.unit(a) @ self.unit(b))


def _max_overlap(g: _Group, distinct: Any) -> float:
    """The largest patch-set overlap of two different scans of a group (0 when none share a sketched patch)."""
    from audit.images.candidates import sketch_pairs

    names = sorted(g.sketch)
    i, j, share = sketch_pairs([g.sketch[n][0] for n in names], [g.sketch[n][1] for n in names], 0.0)
    vals = [s for a, b, s in zip(i.tolist(), j.tolist(), share.tolist()) if distinct(names[a], names[b])]
    return max(vals, default=0.0)


def separation(args: argparse.Namespace) -> int:
    import nibabel as nib
    import numpy as np

    from audit.images.fingerprint import decode
    from audit.synthetic import make_dataset

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-neardup-sep-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    copies: dict[str, list[tuple[str, float, float, float]]] = {}

    def overlap(group: _Group, label: str, c: dict[str, Any]) -> float:
        from audit.images.sketch import decode_sketch, sketch_containment

        if label not in group.sketch or not c.get("patch_sketch"):
            return 0.0
        a, na = group.sketch[label]
        return sketch_containment(a, na, decode_sketch(c["patch_sketch"]), int(c["patch_count"]))
    distinct_rows = []
    real_lines: list[str] = []

    def add_copies(group: _Group, label: str, src: Path, kind: str) -> None:
        img = nib.load(str(src))
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim > 3:
            data = data.reshape(data.shape[:3] + (-1,)).mean(axis=-1)
        k = group.names.index(label)
        for name, (d, a) in transforms(data, img.affine, rng).items():
            c = _summarise_array(d, a, work / "copy.nii")
            share = overlap(group, label, c)
            if not c.get("fingerprint"):
                copies.setdefault(name, []).append((f"{kind}:{label}", float("nan"), float("nan"), share))
                continue
            v = decode(c["fingerprint"]).astype(np.float64)
            size = float(np.abs(np.log(np.array(c["fingerprint_spread"])) - group.spread[k]).max())
            copies.setdefault(name, []).append((f"{kind}:{label}", group.sim(v, group.vec[k]), size, share))

    t0 = time.perf_counter()
    for n_sub, seed in zip(args.subjects, itertools.count(1)):
        root = work / f"ph-{n_sub}-{seed}"
        if not (root / "dataset_description.json").exists():
            make_dataset(root, n_subjects=n_sub, seed=seed)
        files = sorted(root.rglob("*_T1w.nii.gz"))
        from audit.images.imagefile import summarise_file

        contents = [summarise_file(str(p))["content"] for p in files]
        names = [p.name.split("_T1w")[0] for p in files]
        g = _Group(names, contents)
        subj = [x.split("_")[0] for x in g.names]
        u = g.unit(g.vec)
        s = u @ u.T
        iu = np.triu_indices(len(g.names), 1)
        diff = np.array([subj[a] != subj[b] for a, b in zip(*iu)])
        size = np.abs(g.spread[iu[0]] - g.spread[iu[1]]).max(axis=1)
        sims = s[iu]
        same_size = diff & (size <= SIZE_TOLERANCE)
        sessions = sims[~diff]
        distinct_rows.append((f"synthetic, {n_sub} subjects ({len(g.names)} images, seed {seed})",
                              float(sims[diff].max()), float(sims[same_size].max()) if same_size.any() else -1.0,
                              int(diff.sum()), float(np.percentile(sims[diff], 99)),
                              float(sessions.min()) if sessions.size else float("nan"),
                              _max_overlap(g, lambda a, b: a.split("_")[0] != b.split("_")[0])))
        for label in g.names[:args.copies_per_dataset]:
            src = next(p for p in files if p.name.startswith(label + "_T1w"))
            add_copies(g, label, src, "synthetic")
    if REAL.is_dir():
        files = sorted(p for p in REAL.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
        labels = [p.relative_to(REAL).as_posix() for p in files]
        from audit.images.imagefile import summarise_file

        contents = [summarise_file(str(p))["content"] for p in files]
        g = _Group(labels, contents)
        none = sorted(set(labels) - set(g.names))
        real_lines.append(f"real images: {len(labels)}, fingerprinted {len(g.names)} "
                          f"(too small or 2-D, no fingerprint: {', '.join(none)})")
        pairs = []
        for a, b in itertools.combinations(range(len(g.names)), 2):
            na, nb = g.names[a], g.names[b]
            same = any(na in f and nb in f for f in REAL_FAMILIES)
            sim = g.sim(g.vec[a], g.vec[b])
            size = float(np.abs(g.spread[a] - g.spread[b]).max())
            if same:
                real_lines.append(f"  real pair {na} ~ {nb}: similarity {sim:.3f}, size difference {size:.3f}"
                                  f" -> {'caught' if sim >= THRESHOLD and size <= SIZE_TOLERANCE else 'missed'}")
            else:
                pairs.append((sim, size, na, nb))
        top = max(pairs)
        same_size = [p for p in pairs if p[1] <= SIZE_TOLERANCE]
        distinct_rows.append((f"real images, different scans ({len(g.names)} images)", top[0],
                              max(same_size)[0] if same_size else -1.0, len(pairs),
                              float(np.percentile([p[0] for p in pairs], 99)), float("nan"),
                              _max_overlap(g, lambda a, b: not any(a in f and b in f for f in REAL_FAMILIES))))
        for fam in REAL_FAMILIES:
            for na, nb in itertools.combinations(sorted(fam), 2):
                if na in g.sketch and nb in g.sketch:
                    from audit.images.sketch import sketch_containment

                    share = sketch_containment(*g.sketch[na], *g.sketch[nb])
                    real_lines.append(f"  real pair {na} ~ {nb}: voxel patches shared {share:.3f} -> "
                                      f"{'caught' if share >= PATCH_OVERLAP else 'not by patches'}")
        real_lines.append(f"  most similar different real images: {top[2]} ~ {top[3]} ({top[0]:.3f})")
        for label in REAL_BASES:
            if label in g.names:
                add_copies(g, label, REAL / label, "real")
    print(f"relative similarity: cosine of fingerprints minus their group's mean; rule: similarity >= {THRESHOLD} "
          f"and principal sizes within {SIZE_TOLERANCE:.1%}; {time.perf_counter() - t0:.0f} s")
    print("\nplanted copies (lowest similarity / largest size difference; caught = meets the rule):")
    print(f"{'transform':36} {'synthetic sim/size/patch':>29} {'real sim/size/patch':>29}  real, per image")
    caught_min = patch_min = math.inf
    for name, rows in copies.items():
        line = f"{name:36}"
        for kind in ("synthetic", "real"):
            rr = [r for r in rows if r[0].startswith(kind)]
            if not rr:
                line += f" {'-':>29}"
                continue
            sims = [r[1] for r in rr]
            by_fp = [r[1] >= THRESHOLD and r[2] <= SIZE_TOLERANCE for r in rr]
            by_patch = [r[3] >= PATCH_OVERLAP for r in rr]
            ok = sum(1 for f, q in zip(by_fp, by_patch) if f or q)
            line += f" {min(sims):6.3f}/{max(r[2] for r in rr):.3f}/{min(r[3] for r in rr):.2f} {ok:>3}/{len(rr):<3}"
            if all(by_fp):
                caught_min = min(caught_min, min(sims))
            if all(by_patch):
                patch_min = min(patch_min, min(r[3] for r in rr))
        line += "  " + " ".join(f"{r[0].split('/')[-1][:10]} {r[1]:.2f}" for r in rows if r[0].startswith("real"))
        print(line)
    print("(reorient, moved affine and int16+scaling of an int16 image keep the decoded voxels: the content hash "
          "is the same and leakage.duplicate_image reports them whatever the fingerprint says)")
    print("\ndifferent subjects (never the same scan):")
    print(f"{'dataset':52} {'pairs':>7} {'max sim':>8} {'max sim, same size':>19} {'p99':>6} {'sessions min':>13}"
          f" {'max patches':>12}")
    for label, top, top_same, n_pairs, p99, ses, share in distinct_rows:
        print(f"{label:52} {n_pairs:>7} {top:>8.3f} {top_same:>19.3f} {p99:>6.3f} {ses:>13.3f} {share:>12.3f}")
    for line in real_lines:
        print(line)
    worst = max(r[2] for r in distinct_rows)
    print(f"\nseparation: lowest similarity of a transform caught every time {caught_min:.3f}; "
          f"highest similarity of different subjects of the same size {worst:.3f} "
          f"(of any size {max(r[1] for r in distinct_rows):.3f}); threshold {THRESHOLD}")
    print(f"voxel patches: lowest share of a transform caught every time by patches {patch_min:.3f}; highest share "
          f"of different subjects {max(r[6] for r in distinct_rows):.3f}; threshold {PATCH_OVERLAP}")
    return 0


# -------------------------------------------------------------- two stages (candidates + confirmation)
def _bids_with_copies(base: Path, out: Path, copies: list[tuple[str, str, Any, Any]]) -> Path:
    """``out``: ``base``'s images (symbolic links) plus ``copies`` ``(new subject, class, data, affine)``."""
    import nibabel as nib
    import numpy as np

    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "dataset_description.json").write_text('{"Name": "copies", "BIDSVersion": "1.10.0"}')
    for f in sorted(base.rglob("*_T1w.nii*")):
        dst = out / f.relative_to(base)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(f.resolve())
    for sub, _, data, affine in copies:
        d = out / sub / "anat"
        d.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(d / f"{sub}_T1w.nii.gz"))
    return out


def _two_stages(root: Path, th: dict[str, Any], source: dict[str, str]) -> dict[str, Any]:
    """The image pass, the candidate search and the confirmation of every candidate of one dataset.

    ``source``: copy subject -> the original image's path (ground truth: a pair is a copy when both sides
    come from one image; every other pair is two distinct people).
    """
    from audit.bidsindex import index_dataset
    from audit.checks.content import CONFIRM_SETTINGS, near_duplicates
    from audit.images.confirmpairs import Candidate, confirm_candidates
    from audit.images.summary import summarise_images

    t0 = time.perf_counter()
    summaries = summarise_images(index_dataset(root), workers=args_workers())
    t1 = time.perf_counter()
    pairs, stats = near_duplicates(summaries, **th)
    t2 = time.perf_counter()
    cands = [Candidate(p.a.path, p.b.path, p.group, (p.patch_overlap or 0) >= th["patch_overlap"]) for p in pairs]
    members: dict[str, list[tuple[str, str]]] = {}
    for x in summaries:
        if x.status == "ok" and x.subject:
            members.setdefault(x.suffix or "?", []).append((x.path, x.subject))
    settings = {k: th[v] for k, v in CONFIRM_SETTINGS.items()}
    if _CANDIDATES_ONLY[0]:  # the candidate stage's recall alone (every candidate copy was confirmed so far)
        from audit.images.confirmpairs import Verdict

        verdicts = [Verdict(c.a, c.b, "not confirmed", "candidates only", None, 0.0, 0.0) for c in cands]
        nulls, cstats = {}, {"confirmations": 0, "seconds_per_confirmation": None}
    else:
        verdicts, nulls, cstats = confirm_candidates(root, cands, members, settings=settings)
    t3 = time.perf_counter()
    subj = {x.path: x.subject for x in summaries}

    def origin(path: str) -> str:
        return source.get(subj[path], path)

    rows = []
    for p, v in zip(pairs, sorted(verdicts, key=lambda v: (v.a, v.b))):
        same = origin(p.a.path) == origin(p.b.path)
        rows.append({"copy": same, "verdict": v.verdict, "score": v.score, "similarity": p.similarity,
                     "spectrum_z": p.spectrum_z,
                     "matched_by": p.matched_by, "a": subj[p.a.path], "b": subj[p.b.path]})
    return {"images": len(summaries), "pass_s": t1 - t0, "search_s": t2 - t1, "confirm_s": t3 - t2,
            "candidates": len(pairs), "rows": rows, "nulls": {g: n.to_dict() for g, n in nulls.items()},
            "stage": cstats, "thresholds": stats.get("thresholds", {}), "spectrum": stats.get("spectrum", {}),
            "mutual": stats.get("mutual", {})}


_WORKERS = [2]
_CANDIDATES_ONLY = [False]


def args_workers() -> int:
    return _WORKERS[0]


def confirm_bench(args: argparse.Namespace) -> int:
    """Recall per transform class and false pairs at error severity, both stages, on IXI and synthetic data."""
    import nibabel as nib
    import numpy as np

    from audit.catalogue import THRESHOLDS
    from audit.synthetic import make_dataset
    from bench.bench_confirm import IXI, TRANSFORMS, make_copy

    th = {**THRESHOLDS["leakage.near_duplicate_image"]}
    if args.similarity:
        th["similarity"] = args.similarity
    if args.size_tolerance:
        th["size_tolerance"] = args.size_tolerance
    if args.mutual_budget_per_image is not None:  # 0: without the mutual-nearest-neighbour candidates
        th["mutual_budget_per_image"] = args.mutual_budget_per_image
    if args.fixed:  # the fixed rule (similarity, size_tolerance) for every suffix: no floor, no budget
        th["similarity_floor"] = None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-neardup-confirm-"))
    work.mkdir(parents=True, exist_ok=True)
    classes = [c for c in (args.classes or "").split(",") if c] or list(TRANSFORMS)
    print(f"candidate stage: similarity {th['similarity']} (floor {th.get('similarity_floor')}, budget "
          f"max({th.get('candidate_budget')}, {th.get('candidate_budget_per_image')} x images)), size tolerance "
          f"{th['size_tolerance']} (floor {th.get('size_tolerance_floor')}), patches "
          f"{th['patch_overlap']}; confirmation: alpha {th['confirm_alpha']}, {th['null_pairs']} distinct pairs, "
          f"floor {th['confirm_floor']}, cap {th['confirm_cap']}")

    def report(label: str, r: dict[str, Any], by_class: dict[str, str]) -> None:
        rows = r["rows"]
        distinct = [x for x in rows if not x["copy"]]
        err = sum(1 for x in distinct if x["verdict"] == "copy")
        warn = sum(1 for x in distinct if x["verdict"] == "inconclusive")
        ds = [x["score"] for x in distinct if x["score"] is not None]
        print(f"\n{label}: {r['images']} images; image pass {r['pass_s']:.1f} s, search {r['search_s']:.2f} s, "
              f"confirmation {r['confirm_s']:.1f} s ({r['stage']['confirmations']} confirmations, median "
              f"{r['stage']['seconds_per_confirmation']} s each)")
        print(f"  candidates {r['candidates']} (distinct people {len(distinct)}); distinct at error {err}, "
              f"at warning {warn}; distinct stage-1 similarity max "
              f"{max([x['similarity'] or 0 for x in distinct], default=float('nan')):.3f}, stage-2 score max "
              f"{max(ds, default=float('nan')):.3f}")
        for g, n in r["nulls"].items():
            print(f"  group {g}: {n}")
        for g, w in r.get("thresholds", {}).items():
            print(f"  candidate threshold {g}: {w}")
        for g, w in r.get("spectrum", {}).items():
            print(f"  spectrum search {g}: {w}")
        for g, w in r.get("mutual", {}).items():
            print(f"  mutual nearest neighbours {g}: {w}")
        dz = [x["spectrum_z"] for x in distinct if x.get("spectrum_z") is not None]
        print(f"  distinct pairs linked by spectra {len(dz)} (z max {max(dz, default=float('nan')):.2f}); copies' "
              f"spectrum z min {min([x['spectrum_z'] for x in rows if x['copy'] and x.get('spectrum_z')], default=float('nan')):.2f}")
        if not by_class:
            return
        print(f"  {'class':24} {'copies':>6} {'candidate':>9} {'error':>6} {'warning':>7} {'score min':>9} "
              f"{'spectrum only':>13} {'mutual only':>11}")
        for name in classes:
            subs = [s for s, c in by_class.items() if c == name]
            hit = {x["b"] if x["b"] in subs else x["a"]: x for x in rows if x["copy"] and (x["a"] in subs or x["b"] in subs)}
            sc = [h["score"] for h in hit.values() if h["score"] is not None]
            print(f"  {name:24} {len(subs):>6} {len(hit) / len(subs):>9.0%} "
                  f"{sum(h['verdict'] == 'copy' for h in hit.values()) / len(subs):>6.0%} "
                  f"{sum(h['verdict'] == 'inconclusive' for h in hit.values()) / len(subs):>7.0%} "
                  f"{min(sc, default=float('nan')):>9.3f} "
                  f"{sum(tuple(h['matched_by']) == ('spectrum',) for h in hit.values()):>13} "
                  f"{sum(tuple(h['matched_by']) == ('mutual nearest neighbours',) for h in hit.values()):>11}")
        sys.stdout.flush()

    def with_copies(base: Path, name: str, images: list[tuple[str, Any, Any, str]], n: int) -> None:
        copies, source, by_class = [], {}, {}
        used = set()
        for ci, cname in enumerate(classes):  # each copy of its own original where there are enough
            for k in range(n):
                sub, v, a, rel = images[(ci * n + k) * max(1, len(images) // (n * len(classes))) % len(images)]
                used.add(sub)
                new = f"sub-copy{ci:02d}x{k:02d}"
                cv, ca = make_copy(cname, v, a, seed=k + 1)
                copies.append((new, cname, cv, ca))
                source[new], by_class[new] = rel, cname
        root = _bids_with_copies(base, work / name, copies)
        report(f"{name} ({n} copies x {len(classes)} classes of {len(used)} originals)",
               _two_stages(root, th, source), by_class)

    def load(base: Path, one_per_subject: bool = True) -> list[tuple[str, Any, Any, str]]:
        out, seen = [], set()
        for f in sorted(base.rglob("*_T1w.nii*")):
            sub = f.name.split("_")[0]
            if sub in seen and one_per_subject:
                continue
            seen.add(sub)
            img = nib.load(f)
            out.append((sub, np.asarray(img.dataobj, dtype=np.float32), img.affine.copy(),
                        f.relative_to(base).as_posix()))
        return out

    if IXI.is_dir() and not args.synthetic_only:
        if not args.skip_clean:
            report("IXI (100 different people, 2 mm), clean", _two_stages(IXI, th, {}), {})
        with_copies(IXI, "ixi+copies", load(IXI), args.copies)
    for n in args.confirm_sizes:
        root = work / f"synthetic-{n}"
        if not (root / "dataset_description.json").exists():
            make_dataset(root, n_subjects=n, seed=0)  # as bidsaudit demo makes it
        report(f"synthetic {n} subjects (the demo's dataset), clean", _two_stages(root, th, {}), {})
        if n == min(args.confirm_sizes):
            with_copies(root, f"synthetic-{n}+copies", load(root), min(args.copies, 8))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10000, 30000, 100000])
    ap.add_argument("--bases-subjects", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    ap.add_argument("--separation", action="store_true")
    ap.add_argument("--confirm", action="store_true",
                    help="both stages: recall per transform class, false error pairs, candidate counts, timing")
    ap.add_argument("--confirm-sizes", type=int, nargs="*", default=[40, 400, 2000])
    ap.add_argument("--copies", type=int, default=4, help="originals copied per transform class (--confirm)")
    ap.add_argument("--classes", default="", help="transform classes of bench/bench_confirm.py (--confirm)")
    ap.add_argument("--fixed", action="store_true",
                    help="fixed candidate threshold (--confirm: similarity / size tolerance, no adaptive floor)")
    ap.add_argument("--similarity", type=float, default=0.0, help="candidate threshold (--confirm; default: catalogue)")
    ap.add_argument("--size-tolerance", type=float, default=0.0, help="(--confirm; default: catalogue)")
    ap.add_argument("--mutual-budget-per-image", type=float, default=None,
                    help="--confirm: mutual-nearest-neighbour pairs per image (default: catalogue; 0: off)")
    ap.add_argument("--synthetic-only", action="store_true")
    ap.add_argument("--skip-clean", action="store_true", help="--confirm: not the clean IXI run")
    ap.add_argument("--candidates-only", action="store_true",
                    help="--confirm without the confirmation stage: the candidate stage's recall and counts")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--subjects", type=int, nargs="*", default=[12, 24, 40, 60, 60, 120, 200],
                    help="synthetic datasets of these sizes (seeds 1, 2, 3...)")
    ap.add_argument("--copies-per-dataset", type=int, default=8)
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--make", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--bases", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--probe", type=int, default=0, help="cells each image looks in (default: audit.images.candidates')")
    args = ap.parse_args(argv)
    if args.make:
        return _make(args)
    if args.one:
        return _one(args)
    _WORKERS[0] = args.workers
    _CANDIDATES_ONLY[0] = args.candidates_only
    if args.confirm:
        return confirm_bench(args)
    if args.separation:
        return separation(args)
    return search_bench(args)


if __name__ == "__main__":
    sys.exit(main())
