"""Confirmation of near-duplicate candidates (:mod:`audit.images.confirm`).

Real anatomy: 100 different people's T1w (IXI, 2 mm) in
``../shared/data/ixi-t1w-100``; copies are made with the transform classes of
``bench/bench_confirm.py``. The default run checks one subject under a
representative set of classes and a few distinct pairs (a few seconds); the
``slow`` run checks every class on several subjects.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from audit.images.candidates import (
    canonical_flip_variants,
    mirror_pairs,
    mirrored_pairs,
    residuals,
)
from audit.images.confirm import COPY_THRESHOLD, confirm_pair, group_threshold, prepare
from audit.images.fingerprint import fingerprint
from bench.bench_confirm import TRANSFORMS, make_copy

SHARED = Path(os.environ.get("BIDSAUDIT_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
IXI = SHARED / "ixi-t1w-100"
needs_ixi = pytest.mark.skipif(not IXI.is_dir(), reason=f"real IXI T1w images not found at {IXI}")

#: Classes checked in the default run (one subject): each kind of change once.
FAST = ("flip-k+rot-10+noise-2%", "crop", "resample-1.5x", "skull-strip", "bias-corrected")


def _ixi(n: int, start: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    import nibabel as nib

    files = sorted(IXI.glob("sub-*/anat/*_T1w.nii*"))[start:start + n]
    return [(np.asarray(nib.load(f).dataobj, dtype=np.float32), nib.load(f).affine) for f in files]


@pytest.fixture(scope="module")
def ixi() -> list[tuple[np.ndarray, np.ndarray]]:
    return _ixi(3, start=10)


@pytest.fixture(scope="module")
def ixi_prepared(ixi):
    return [prepare(v, a) for v, a in ixi]


@needs_ixi
@pytest.mark.parametrize("name", FAST)
def test_copy_is_confirmed(ixi, ixi_prepared, name):
    v, a = ixi[0]
    cv, ca = make_copy(name, v, a, seed=3)
    c = confirm_pair(ixi_prepared[0], None, cv, ca)
    assert c.copy, (name, c.score, c.reasons)
    assert c.score >= COPY_THRESHOLD
    if name.startswith("flip"):
        assert c.transform.mirrored and c.transform.flips.count(-1) == 1, c.transform
    if "rot-10" in name:
        assert 8.0 <= c.transform.rotation_deg <= 12.0, c.transform


@needs_ixi
def test_distinct_people_are_not_confirmed(ixi_prepared):
    for i, j in ((0, 1), (1, 2)):
        c = confirm_pair(ixi_prepared[i], None, ixi_prepared[j], None)
        assert not c.copy, (i, j, c.score)
        assert c.score < COPY_THRESHOLD - 0.15, (i, j, c.score)  # a margin, not a coin toss


@needs_ixi
def test_mirrored_copy_is_a_fingerprint_candidate(ixi):
    """The candidate stage finds a left-right mirrored copy through the flip variants of the fingerprint grid."""
    vols = list(ixi) + _ixi(2, start=40)
    v, a = vols[0]
    mirrored = make_copy("flip-k", v, a)
    fps = np.stack([fingerprint(x, y).vector for x, y in [*vols, mirrored]])
    plain = residuals(fps).unit(slice(None))
    assert float(plain[0] @ plain[-1]) < 0.99  # not the same grid: found only as a mirror
    i, j, sim, code = mirrored_pairs(fps, 0.9)
    found = {(int(p), int(q)): (float(s), int(k)) for p, q, s, k in zip(i, j, sim, code)}
    assert (0, len(fps) - 1) in found, found
    assert len(found) == 1, found  # and no distinct pair
    assert found[(0, len(fps) - 1)][0] >= 0.95
    # the projected search (exact screening and the inverted file) finds the same pair, and only it
    for exact_max in (10_000, 0):
        pi, pj, psim, _, _ = mirror_pairs(fps.astype(np.float16), 0.9, exact_max=exact_max)
        assert list(zip(pi.tolist(), pj.tolist())) == [(0, len(fps) - 1)], (exact_max, pi, pj)
        assert abs(psim[0] - found[(0, len(fps) - 1)][0]) < 0.01


@pytest.mark.slow
@needs_ixi
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_class_on_several_subjects(name):
    for v, a in _ixi(3, start=60):
        p = prepare(v, a)
        for seed in (1, 2):
            cv, ca = make_copy(name, v, a, seed=seed)
            c = confirm_pair(p, None, cv, ca)
            assert c.copy, (name, seed, c.score, c.reasons)


def test_flip_variants_reverse_grid_axes():
    g = np.arange(27, dtype=np.float32)
    out = canonical_flip_variants(g)
    assert out.shape == (8, 27)
    assert np.array_equal(out[0], g)
    assert np.array_equal(out[1], np.flip(g.reshape(3, 3, 3), axis=0).ravel())
    assert np.array_equal(out[6], np.flip(g.reshape(3, 3, 3), axis=(1, 2)).ravel())
    with pytest.raises(ValueError):
        canonical_flip_variants(np.zeros(10))


def test_synthetic_phantoms_need_the_group_threshold(tmp_path):
    """Without real data. Phantoms are the same few smooth shells for everyone: distinct ones pass the
    real-anatomy threshold, so the group's own null raises it until only near-exact copies pass."""
    import nibabel as nib

    from audit.synthetic import make_dataset

    make_dataset(tmp_path / "ds", n_subjects=5, seed=5, session_fraction=0.0)
    vols = [(np.asarray(nib.load(f).dataobj, dtype=np.float32), nib.load(f).affine)
            for f in sorted((tmp_path / "ds").glob("sub-*/anat/*_T1w.nii.gz"))]
    prepared = [prepare(v, a) for v, a in vols]
    null = [confirm_pair(prepared[i], None, prepared[j], None).score for i, j in combinations(range(1, 5), 2)]
    gt = group_threshold(np.array(null), 100)
    assert gt > COPY_THRESHOLD
    v, a = vols[0]
    for name in ("crop", "gamma-0.8"):
        c = confirm_pair(prepared[0], None, *make_copy(name, v, a, seed=1))
        assert c.score >= gt, (name, c.score, gt)
    assert c.transform.flips == (1, 1, 1)
    mirror = confirm_pair(prepared[0], None, *make_copy("flip-k", v, a))
    assert mirror.transform.mirrored
    for k in range(1, 5):
        assert confirm_pair(prepared[0], None, prepared[k], None).score < gt


def test_group_threshold_floor_and_cap():
    assert group_threshold(np.array([0.1, 0.15, 0.2, 0.12]), 1000) == COPY_THRESHOLD
    assert group_threshold(np.array([0.8, 0.9, 0.85, 0.7]), 1000) == 0.99
    assert group_threshold(np.array([0.3]), 10) == COPY_THRESHOLD
