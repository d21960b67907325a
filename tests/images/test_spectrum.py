"""The near-duplicate spectrum: frame-free, flip- and translation-invariant, tolerant of crops and bias correction.

Real anatomy (IXI T1w, 2 mm, ``$BIDSAUDIT_SHARED_DATA/ixi-t1w-100``): copies
made with ``bench/bench_confirm.py``'s transform classes must stay closer to
their original than every other person of a small group is, in the
neighbourhood-scaled score the candidate search uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from audit.images.nullcache import NullCache, pair_key
from audit.images.spectrum import (
    SPECTRUM_MIN,
    decode_spectrum,
    encode_spectrum,
    spectrum,
    spectrum_pairs,
)
from bench.bench_confirm import make_copy

SHARED = Path(os.environ.get("BIDSAUDIT_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
IXI = SHARED / "ixi-t1w-100"
needs_ixi = pytest.mark.skipif(not IXI.is_dir(), reason=f"real IXI T1w images not found at {IXI}")


@pytest.fixture(scope="module")
def heads():
    files = sorted(IXI.glob("sub-*/anat/*_T1w.nii*"))[:30]
    out = []
    for f in files:
        img = nib.load(f)
        out.append((np.asarray(img.dataobj, dtype=np.float32), img.affine.copy()))
    return out


def test_flips_and_intensity_maps_leave_the_spectrum_unchanged():
    rng = np.random.default_rng(3)
    from scipy.ndimage import gaussian_filter

    head = np.pad(gaussian_filter(rng.uniform(20, 100, (40, 44, 36)), 1.0).astype(np.float32), 8)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    base = spectrum(head, aff)
    assert base is not None and abs(float(np.linalg.norm(base)) - 1) < 1e-5
    for copy in (head[::-1], head[:, ::-1], head[:, :, ::-1], head[::-1, ::-1, ::-1], head * 3.7,
                 head.max() * (head / head.max()) ** 0.8):
        assert float(spectrum(np.ascontiguousarray(copy), aff) @ base) > 0.999
    moved = np.zeros((70, 70, 60), np.float32)  # translated inside a bigger field of view (whole working voxels)
    moved[10:10 + head.shape[0], 4:4 + head.shape[1], 6:6 + head.shape[2]] = head
    assert float(spectrum(moved, aff) @ base) > 0.99
    other = np.pad(gaussian_filter(rng.uniform(20, 100, (40, 44, 36)), 1.0).astype(np.float32), 8)
    assert float(spectrum(other, aff) @ base) < 0.99
    assert spectrum(np.zeros((30, 30, 30), np.float32), aff) is None  # no data
    assert np.array_equal(decode_spectrum(encode_spectrum(base)), base.astype(np.float16))


def test_spectrum_pairs_rank_within_neighbourhoods_and_skip_one_participant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 100)).astype(np.float32)
    x[39] = x[5] + 0.1 * rng.normal(size=100)  # a copy
    x[38] = x[7] + 0.1 * rng.normal(size=100)  # a second session of participant 7
    labels = np.arange(40)
    labels[38] = 7
    i, j, z, info = spectrum_pairs(x, z_min=4.0, limit=10, labels=labels)
    assert [(int(a), int(b)) for a, b in zip(i, j)] == [(5, 39)] and z[0] >= 4.0
    assert info["pairs_at_z"] == 1 and info["mad"] > 0
    i, _, _, info = spectrum_pairs(x, z_min=4.0, limit=0)
    assert len(i) == 0
    i, _, _, _ = spectrum_pairs(x[: SPECTRUM_MIN - 1], z_min=4.0, limit=10)  # too few neighbours to scale by
    assert len(i) == 0


@needs_ixi
@pytest.mark.parametrize("name", ["crop", "bias-corrected", "translate", "rot-5", "flip-k", "skull-strip"])
def test_copies_of_real_heads_stand_out_of_their_neighbourhood(heads, name):
    """The classes the fingerprint's frame loses (crop, bias correction, translation) are found by the spectrum."""
    vectors = [spectrum(v, a) for v, a in heads]
    src_v, src_a = heads[3]
    cv, ca = make_copy(name, src_v, src_a, seed=1)
    vectors.append(spectrum(cv, ca))
    labels = np.arange(len(vectors))
    i, j, z, info = spectrum_pairs(np.array(vectors, dtype=np.float16), z_min=4.0, limit=5, labels=labels)
    found = {(int(a), int(b)) for a, b in zip(i, j)}
    assert (3, len(heads)) in found, (name, list(zip(i.tolist(), j.tolist(), np.round(z, 2).tolist())), info)


def test_null_cache_keeps_scores_by_content_hashes(tmp_path):
    cache = NullCache(tmp_path)
    key = pair_key("h1", "h2")
    cache.put({key: 0.123})
    again = NullCache(tmp_path)  # another audit, the same file
    assert again.get([pair_key("h2", "h1"), pair_key("h1", "h3")]) == {key: 0.123}
    assert (tmp_path / NullCache.FILENAME).is_file() and again.problem is None
    blocked = tmp_path / "file"
    blocked.write_text("x")
    fallback = NullCache(blocked / "sub")  # not a folder: kept in memory, said why
    assert fallback.problem and "kept in memory" in fallback.problem
    fallback.put({key: 0.5})
    assert fallback.get([key]) == {key: 0.5}
