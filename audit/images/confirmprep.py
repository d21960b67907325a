"""One volume made ready for the confirmation stage: working resolution, log intensities, foreground, moments.

:func:`prepare` is step 1 of :func:`audit.images.confirm.confirm_pair`
(each volume once; the dataset-level driver keeps the result while the
pairs that use the image are confirmed): values as float32, NaN, infinities
and values at or below zero are "no data"; block means down to a working
voxel of about ``WORK_MM`` (a 1 mm head becomes 2 mm: a block is data when
more than half of its voxels are, and its value is their mean); log
intensities (floored); the foreground by Otsu's threshold on them, specks
dropped; cropped to the foreground's box and a margin; its centroid and
principal axes in world millimetres.

The block means are taken from the stored values (:func:`audit.images.voxels.block_sum`,
strided sums in the file's own axis order, integers without a float copy of
the whole volume) and the scaling (``scl_slope``, ``scl_inter``) applied to
the means: at 1 mm this is most of what preparing costs.
:func:`read_prepared` reads an image file with the image pass's decoder
(:func:`audit.images.decode.decode_nifti`: one read, ISA-L's inflate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audit.images.decode import decode_nifti
from audit.images.voxels import block_affine, block_sum, moments, whole_blocks

__all__ = ["CROP_MARGIN_MM", "WORK_MM", "Prepared", "box", "otsu", "prepare", "read_prepared"]

#: Working voxel (mm): finer volumes are block-averaged down to about this.
WORK_MM = 2.0
#: Margin (mm) kept around the foreground's bounding box.
CROP_MARGIN_MM = 16.0


@dataclass
class Prepared:
    """One volume at working resolution, with its foreground and moments."""

    log: np.ndarray  # float32 log intensities (floor where no data)
    valid: np.ndarray  # bool: data
    fg: np.ndarray  # bool: foreground
    affine: np.ndarray  # working voxel -> world
    voxel_mm: float  # largest working voxel edge
    centre: np.ndarray  # world (mm)
    axes: np.ndarray  # (3, 3) principal axes (columns), ascending spread
    spread: np.ndarray  # (3,) mm
    fg_mm3: float
    levels: dict = field(default_factory=dict)  # sigma -> smoothed level (audit.images.confirm)


def read_prepared(path: str | Path) -> Prepared:
    """:func:`prepare` of a NIfTI file's reference volume (its mean over time when 4-D).

    Raises ``OSError`` when the file cannot be read, :class:`audit.images.decode.BadImage`
    when it cannot be decoded and ``ValueError`` when it cannot be compared.
    """
    decoded = decode_nifti(Path(path).read_bytes(), {})
    data, affine, _, slope, inter = decoded
    shape = data.shape
    spatial = tuple(shape[:3]) + (1,) * (3 - min(3, len(shape)))
    t = math.prod(shape[3:]) if len(shape) > 3 else 1
    scale = (float(slope), float(inter or 0.0)) if slope is not None else None
    if data.dtype.kind not in "biuf":
        raise ValueError(f"voxels of type {data.dtype} cannot be compared")
    if t == 1:
        return prepare(data.reshape(spatial, order="F"), affine, scale=scale)
    series = data.reshape(spatial + (t,), order="F")
    total = np.zeros(spatial, dtype=np.float64, order="F")
    for i in range(t):
        total += series[..., i]
    mean = (total / t).astype(np.float32)
    if scale is not None:
        mean = (mean * np.float32(scale[0]) + np.float32(scale[1])).astype(np.float32)
    return prepare(mean, affine)


def prepare(volume: np.ndarray, affine: np.ndarray, *, scale: tuple[float, float] | None = None) -> Prepared:
    """:class:`Prepared` of a 3-D volume (voxel -> world ``affine``, mm).

    ``scale``: ``(slope, intercept)`` when the values are ``volume * slope + intercept``
    (a NIfTI file's stored values and its scaling).
    """
    v = np.asarray(volume)
    if v.ndim == 4 and v.shape[3] == 1:
        v = v[..., 0]
    if v.ndim != 3 or min(v.shape) < 4:
        raise ValueError(f"a 3-D volume is needed, got shape {v.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    f = [max(1, math.floor(WORK_MM / z + 0.25)) for z in zooms]
    v, valid = _working(v, f, scale)
    if max(f) > 1:
        affine = block_affine(affine, f)
        zooms = zooms * np.array(f)
    pos = v[valid]
    if pos.size < 64:
        raise ValueError("too few voxels with data")
    q_lo, q_hi = np.percentile(pos[:: max(1, pos.size // 200_000)], [1.0, 99.5])
    floor = max(float(q_lo), float(q_hi) * 1e-3)
    log = np.log(np.maximum(v, np.float32(floor))).astype(np.float32)
    lv = log[valid]
    lv = lv[:: max(1, lv.size // 200_000)]  # a regular subsample for the threshold and the two classes' medians
    t = otsu(lv)
    low, high = lv[lv <= t], lv[lv > t]
    if low.size and high.size and float(np.median(high) - np.median(low)) > 1.0:
        fg = valid & (log > t)
    else:  # no dark background (a tight crop, a masked volume)
        fg = valid.copy()
    fg = _largest_components(fg)
    n_fg = int(np.count_nonzero(fg))
    if n_fg < 64:
        raise ValueError("too small a foreground")
    # keep the foreground's bounding box and a margin (context for the smoothing and the band-pass)
    sl = box(fg, [math.ceil(CROP_MARGIN_MM / z) for z in zooms])
    log, valid, fg = log[sl], valid[sl], fg[sl]
    lo = np.array([x.start for x in sl], float)
    affine = affine.copy()
    affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    c_vox, cov_vox = moments(fg.astype(np.float32))
    centre = affine[:3, :3] @ c_vox + affine[:3, 3]
    w, vecs = np.linalg.eigh(affine[:3, :3] @ cov_vox @ affine[:3, :3].T)
    vol_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    return Prepared(np.ascontiguousarray(log), np.ascontiguousarray(valid), np.ascontiguousarray(fg), affine,
                    float(zooms.max()), centre, vecs, np.sqrt(np.maximum(w, 0)), n_fg * vol_mm3)


def _working(v: np.ndarray, f: list[int], scale: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Values (float32, 0 where no data) and data mask at working resolution: means of ``f`` blocks.

    A block is data when more than half of its voxels are (finite and above
    zero once scaled); its value is the mean of those. Whole blocks only
    (the last, partial ones are dropped).
    """
    slope, inter = scale if scale is not None else (1.0, 0.0)
    if not math.isfinite(slope) or not math.isfinite(inter) or slope == 0:
        raise ValueError(f"unusable scaling (slope {slope}, intercept {inter})")
    if max(f) > 1:
        v = whole_blocks(v, f)
    if v.dtype.kind in "biu" and max(f) > 1:
        # integers: the data test on the stored values, the sums without a float copy of the whole volume
        cut = -inter / slope
        raw_valid = v > cut if slope > 0 else v < cut
        x = np.where(raw_valid, v, v.dtype.type(0))
        s = block_sum(x, f, np.float32)
        c = _count(raw_valid, f)
        mean = s / np.maximum(c, np.float32(1))
        if scale is not None:
            mean = mean * np.float32(slope) + np.float32(inter)
    else:
        x = np.asarray(v, dtype=np.float32)
        if scale is not None:
            x = x * np.float32(slope) + np.float32(inter)
        raw_valid = (x > 0) & (x < np.inf)
        x = np.where(raw_valid, x, np.float32(0))
        if max(f) == 1:
            return np.ascontiguousarray(x), np.ascontiguousarray(raw_valid)
        c = _count(raw_valid, f)
        mean = block_sum(x, f, np.float32) / np.maximum(c, np.float32(1))
    valid = c / np.float32(f[0] * f[1] * f[2]) > 0.5
    out = np.where(valid, mean, np.float32(0)).astype(np.float32)
    return np.ascontiguousarray(out), np.ascontiguousarray(valid)


def _count(mask: np.ndarray, f: list[int]) -> np.ndarray:
    """Voxels set in each block of ``f`` (float32), counted in bytes: the same counts, a quarter of the memory traffic.

    >>> _count(np.ones((4, 2, 2), bool), [2, 2, 2]).tolist()
    [[[8.0]], [[8.0]]]
    """
    n = f[0] * f[1] * f[2]
    small = np.uint8 if n <= np.iinfo(np.uint8).max else np.uint16 if n <= np.iinfo(np.uint16).max else np.float32
    return block_sum(mask.view(np.uint8), f, small).astype(np.float32)


def box(mask: np.ndarray, pad: list[int]) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``pad`` voxels per axis (within the array)."""
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(nz[0]) - pad[ax], 0), min(int(nz[-1]) + 1 + pad[ax], mask.shape[ax])))
    return tuple(out)


def _largest_components(fg: np.ndarray) -> np.ndarray:
    """Drop specks: connected components under 1 % of the largest."""
    from scipy.ndimage import label

    lab, n = label(fg)
    if n <= 1:
        return fg
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= 0.01 * sizes.max()
    out: np.ndarray = keep[lab]
    return out


def otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of ``values`` (a 128-bin histogram).

    >>> otsu(np.array([1.0, 1.1, 0.9, 5.0, 5.2, 4.8])) < 4.8
    True
    """
    lo, hi = float(values.min()), float(values.max())
    if not hi - lo > 1e-9 * max(abs(lo), abs(hi), 1e-30):
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    return float(mids[int(np.argmax((w0 * w1 * (mu0 - mu1) ** 2)[:-1]))])
