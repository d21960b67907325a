"""Preparation of a volume for the confirmation stage (:mod:`audit.images.confirmprep`).

:func:`read_prepared` takes the block means from the stored values and
applies the file's scaling to them; it must give what :func:`prepare` gives
for the decoded values (what nibabel reads), whatever the data type, the
scaling's sign, the voxels without data (NaN, infinities, zeros, negative
values) and the number of volumes.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from audit.images.confirmprep import Prepared, box, otsu, prepare, read_prepared


def _head(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """An ellipsoid of textured values (100..1000) in a dark background, float32."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape, dtype=np.float32)
    c = (np.array(shape, np.float32) - 1) / 2
    r = sum(((idx[a] - c[a]) / (0.38 * shape[a])) ** 2 for a in range(3))
    inside = r < 1
    v = np.where(inside, 400 + 300 * np.sin(idx[0] / 2.3) * np.cos(idx[1] / 3.1) + 80 * rng.standard_normal(shape),
                 rng.uniform(0, 6, shape))
    return np.clip(v, 0, None).astype(np.float32)


def _save(path: Path, data: np.ndarray, zoom: float, dtype: type, slope_inter: tuple[float, float] | None) -> Path:
    aff = np.diag([zoom, zoom, zoom, 1.0])
    aff[:3, 3] = [-40.0, -50.0, -30.0]
    img = nib.Nifti1Image(data, aff, dtype=dtype)
    if slope_inter is not None:
        img.header.set_slope_inter(*slope_inter)
    nib.save(img, str(path))
    return path


def _by_nibabel(path: Path) -> Prepared:
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data.mean(axis=-1)
    return prepare(data, img.affine)


def _same(a: Prepared, b: Prepared) -> None:
    assert a.log.shape == b.log.shape
    assert np.array_equal(a.fg, b.fg) and np.array_equal(a.valid, b.valid)
    assert np.allclose(a.log, b.log, rtol=0, atol=1e-4)
    assert np.allclose(a.affine, b.affine) and np.allclose(a.centre, b.centre, atol=1e-6)
    assert a.fg_mm3 == pytest.approx(b.fg_mm3)


@pytest.mark.parametrize("case", ["int16-scaled-1mm", "int16-negative-slope-1mm", "uint8-1mm", "float32-holes-1mm",
                                  "float64-2mm", "int16-4d-1mm"])
def test_read_prepared_is_prepare_of_the_decoded_values(tmp_path, case):
    v = _head((48, 52, 40), seed=3)
    f = tmp_path / f"{case}.nii.gz"
    if case == "int16-scaled-1mm":  # stored integers, scaled on reading (slope 0.25, intercept -3)
        _save(f, np.round((v + 3) / 0.25).astype(np.int16), 1.0, np.int16, (0.25, -3.0))
    elif case == "int16-negative-slope-1mm":  # negative stored values are data once scaled
        _save(f, (-np.round(v)).astype(np.int16), 1.0, np.int16, (-1.0, 0.0))
    elif case == "uint8-1mm":
        _save(f, np.round(v / 4).astype(np.uint8), 1.0, np.uint8, None)
    elif case == "float32-holes-1mm":  # NaN, infinities and negative values are no data
        w = v.copy()
        w[:5] = np.nan
        w[:, :3] = -7.0
        w[10:12, 20:22, 15:17] = np.inf
        _save(f, w, 1.0, np.float32, None)
    elif case == "float64-2mm":  # already at the working voxel: no block means
        _save(f, v.astype(np.float64), 2.0, np.float64, None)
    else:  # a series: its mean over time
        series = np.stack([v, 0.9 * v, 1.1 * v], axis=-1)
        _save(f, np.round(series).astype(np.int16), 1.0, np.int16, None)
    got = read_prepared(f)
    _same(got, _by_nibabel(f))
    if case.endswith("1mm"):
        assert got.voxel_mm == pytest.approx(2.0)  # block means of 2 x 2 x 2 voxels


def test_read_prepared_refuses_what_cannot_be_compared(tmp_path):
    flat = _save(tmp_path / "flat.nii.gz", np.zeros((20, 20, 20), np.float32), 1.0, np.float32, None)
    with pytest.raises(ValueError, match="too few voxels"):
        read_prepared(flat)
    thin = _save(tmp_path / "thin.nii.gz", _head((40, 40, 2)), 2.0, np.float32, None)
    with pytest.raises(ValueError, match="3-D volume"):
        read_prepared(thin)


def test_box_and_otsu():
    m = np.zeros((10, 10, 10), bool)
    m[3:5, 4, 6:9] = True
    assert box(m, [1, 0, 5]) == (slice(2, 6), slice(4, 5), slice(1, 10))
    x = np.r_[np.full(50, 1.0), np.full(30, 3.0)]
    assert np.array_equal(x > otsu(x), x == 3.0)  # the two classes apart
    assert otsu(np.full(5, 2.0)) == 2.0  # one value: nothing to split


def test_confirmation_stage_reads_pairs_in_threads_with_the_same_verdicts(tmp_path):
    """Reader threads change when an image is read, not what is decided; an unreadable image is a warning."""
    from audit.images.confirmpairs import Candidate, confirm_candidates

    heads = {f"sub-{k}": _head((40, 44, 36), seed=k) for k in range(1, 6)}
    heads["sub-copy"] = 3.7 * heads["sub-1"]  # a copy (intensity scaled)
    paths = {}
    for sub, v in heads.items():
        (tmp_path / sub).mkdir()
        paths[sub] = f"{sub}/{sub}_T1w.nii.gz"
        _save(tmp_path / paths[sub], v, 2.0, np.float32, None)
    broken = tmp_path / paths["sub-5"]
    broken.write_bytes(broken.read_bytes()[:300])  # truncated after the image pass
    members = {"T1w": [(p, s) for s, p in paths.items()]}
    cands = [Candidate(paths["sub-1"], paths["sub-copy"], "T1w"), Candidate(paths["sub-1"], paths["sub-2"], "T1w"),
             Candidate(paths["sub-2"], paths["sub-5"], "T1w")]
    runs = {}
    for workers in (1, 3):
        verdicts, nulls, stage = confirm_candidates(tmp_path, cands, members, settings={"null_pairs": 3},
                                                    workers=workers)
        runs[workers] = ([(v.a, v.b, v.verdict, v.why, v.score) for v in verdicts], nulls["T1w"].scores,
                         stage["images_read"])
        got = {(v.a, v.b): v for v in verdicts}
        copy = got[(paths["sub-1"], paths["sub-copy"])]
        assert copy.verdict == "copy" and copy.score >= 0.99
        bad = got[(paths["sub-2"], paths["sub-5"])]
        assert bad.verdict == "inconclusive" and paths["sub-5"] in bad.why and "truncated" in bad.why
    assert runs[1] == runs[3]  # the same verdicts, scores, null and reads
