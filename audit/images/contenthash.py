"""The decoded-content hash of an image: SHA-256 of its decoded voxel values in canonical order.

``content_hash`` is ``sha256:`` over ``"bidsaudit-image-v2 <x>x<y>x<z>x<t>
<form>\\n"`` followed by every volume of the data in closest-canonical
(RAS+) voxel order, with x varying fastest (Fortran order, as NIfTI stores
voxels), volume after volume. The decoded values are scaled in float64
(``raw * scl_slope + scl_inter``) and then rounded once to float32; ``-0.0``
becomes ``0.0`` and every NaN the same NaN. ``<form>`` is ``int16`` when
every decoded value is an integer from -32768 to 32767 (most raw scans: the
values are then hashed as little-endian int16, half the bytes and no float
copy), ``float32`` otherwise (little-endian float32). The form depends on
the decoded values alone, so a copy re-saved with another on-disk type or
scaling that decodes to the same values (to float32 precision),
re-compressed, with an edited header (description, intent, qform/sform,
origin), or stored in another axis order with a matching affine, has the
same hash. The affine itself is not hashed: identical voxels under another
position in space are the same image for leakage.

The same pass over the decoded values counts finite and non-zero voxels,
finds the extremes (an image with no finite value or a single value is
``empty``: :class:`~audit.images.decode.BadImage`) and keeps the reference
volume (the image, or its mean over time) for :mod:`audit.images.measures`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

import numpy as np

from audit.images.decode import BadImage, Decoded, fmt_shape

__all__ = ["HASH_TAG", "Reference", "hash_content"]

#: What the decoded-content hash starts with (module docstring).
HASH_TAG = "bidsaudit-image-v2"
_INT16 = (-32768, 32767)
#: Voxels per slab when scaling (float64 temporaries of about a megabyte).
_SLAB_VOXELS = 2**17


class Reference(NamedTuple):
    """The reference volume of a hashed image, its canonical affine, and whether every voxel is finite."""

    volume: np.ndarray
    affine: np.ndarray
    known_finite: bool


def hash_content(decoded: Decoded, out: dict[str, Any]) -> Reference | None:
    """Content hash, counts and extremes of decoded data into ``out``; the reference volume to measure.

    ``None`` for complex or RGB data (the stored values are hashed; there
    are no statistics). Raises :class:`BadImage` for an ``empty`` image.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff

    data, affine, ornt, slope, inter = decoded
    shape = data.shape
    spatial = tuple(shape[:3]) + (1,) * (3 - min(3, len(shape)))
    t = math.prod(shape[3:]) if len(shape) > 3 else 1
    arr = data.reshape(spatial + (t,), order="F")
    canon = apply_orientation(arr, ornt)  # type: ignore[no-untyped-call]
    canon_affine = affine @ inv_ornt_aff(ornt, spatial)  # type: ignore[no-untyped-call]
    head = f"{HASH_TAG} {fmt_shape(canon.shape)}"
    if arr.dtype.kind not in "biuf":  # complex or RGB: hash the stored values, no statistics
        digest = hashlib.sha256(f"{head} raw {arr.dtype.str}\n".encode())
        for i in range(t):
            digest.update(np.ascontiguousarray(canon[..., i].T).tobytes())
        out["content_hash"] = f"sha256:{digest.hexdigest()}"
        return None
    scaled = slope is not None and (slope != 1 or (inter or 0) != 0)
    n_vox = arr.size
    if arr.dtype.kind in "biu" and not scaled:
        ref, n_finite, vmin, vmax, n_nonzero, digest = _integers(canon, t, head)
    else:
        ref, n_finite, vmin, vmax, n_nonzero, digest = _decoded_values(
            canon, t, head, (float(slope), float(inter or 0.0)) if scaled else None)  # type: ignore[arg-type]
    out["content_hash"] = f"sha256:{digest.hexdigest()}"
    out["finite_fraction"] = n_finite / n_vox
    out["nonzero_fraction"] = n_nonzero / n_vox
    if n_finite == 0:
        raise BadImage("empty", "non_finite", f"all {n_vox} voxels are NaN or infinite")
    out["min"], out["max"] = vmin, vmax
    if vmin == vmax:
        extra = f" ({n_vox - n_finite} others are NaN or infinite)" if n_finite < n_vox else ""
        raise BadImage("empty", "constant", f"all {n_finite} voxels have the value {_num(vmin)}{extra}")
    return Reference(ref, canon_affine, n_finite == n_vox)


def _fits_int16(lo: float, hi: float) -> bool:
    return _INT16[0] <= lo and hi <= _INT16[1] and float(lo).is_integer() and float(hi).is_integer()


def _integers(canon: np.ndarray, t: int, head: str) -> tuple[np.ndarray, int, float, float, int, Any]:
    """Unscaled integer data: hashed as int16 when every value fits (no float copy), as float32 otherwise.

    Returns the reference volume (the data itself for one volume; the mean
    over time otherwise), the finite count, min, max, the non-zero count and
    the digest.
    """
    vmin, vmax = float(canon.min()), float(canon.max())  # plain integers: no NaN, no -0.0
    small = _fits_int16(vmin, vmax)
    digest = hashlib.sha256(f"{head} {'int16' if small else 'float32'}\n".encode())
    n_nonzero = 0
    total: np.ndarray | None = None
    ref: np.ndarray | None = None
    for i in range(t):
        vol = canon[..., i]
        v = np.asarray(vol, dtype="<i2" if small else "<f4", order="F")  # no copy for RAS-stored int16
        digest.update(v.T.data)  # the transpose of a Fortran-ordered array is C-contiguous
        n_nonzero += int(np.count_nonzero(vol))
        if t == 1:
            ref = v
        else:
            if total is None:
                total = np.zeros(v.shape, dtype=np.float64)
            total += v
    if ref is None:
        assert total is not None
        ref = (total / t).astype(np.float32)
    return ref, canon.size, vmin, vmax, n_nonzero, digest


def _decode_volume(vol: np.ndarray, scale: tuple[float, float] | None) -> np.ndarray:
    """One volume as float32 in Fortran order: ``raw * slope + inter`` in float64 rounded once; no ``-0.0``.

    Scaled in slabs of about a megabyte (cache-sized temporaries).
    """
    if scale is None:
        v32 = np.array(vol, dtype="<f4", order="F")  # x fastest: a plain cast for RAS-stored data
    else:
        slope, inter = scale
        v32 = np.empty(vol.shape, dtype="<f4", order="F")
        per = max(1, _SLAB_VOXELS // max(1, vol.shape[0] * vol.shape[1]))
        for z in range(0, vol.shape[2], per):
            v = vol[:, :, z:z + per].astype(np.float64)  # memory order kept (np.asarray would transpose)
            v *= slope
            v += inter
            slab = v32[:, :, z:z + per]
            slab[...] = v
            slab += np.float32(0.0)  # -0.0 (a tiny negative value rounds to it) -> 0.0
        return v32
    v32 += np.float32(0.0)  # -0.0 -> 0.0
    return v32


def _scaled_extremes(vol: np.ndarray, scale: tuple[float, float]) -> tuple[float, float] | None:
    """Min and max of the decoded values of scaled integers, from the stored extremes; ``None`` if not finite.

    ``raw * slope + inter`` rounded to float32 is monotone in ``raw``: the
    decoded extremes are those of the stored ones, and when both are finite
    so is every value between them.
    """
    slope, inter = scale
    ends = np.array([vol.min(), vol.max()], dtype=np.float64) * slope
    ends += inter
    e32 = ends.astype(np.float32) + np.float32(0.0)
    if not np.isfinite(e32).all():
        return None
    return float(e32.min()), float(e32.max())


def _decoded_values(canon: np.ndarray, t: int, head: str, scale: tuple[float, float] | None,
                    ) -> tuple[np.ndarray, int, float, float, int, Any]:
    """Scaled or floating-point data: decoded to float32, hashed as int16 when every value is one."""
    n_finite = n_nonzero = 0
    vmin, vmax = math.inf, -math.inf
    small = True  # every value so far is an integer that int16 holds
    as_int = hashlib.sha256(f"{head} int16\n".encode())
    as_float = hashlib.sha256(f"{head} float32\n".encode())
    total: np.ndarray | None = None
    count: np.ndarray | None = None
    ref: np.ndarray | None = None
    ints = scale is not None and canon.dtype.kind in "biu"
    # scaled integers: zero only where the stored value is (no offset, and |slope| does not round to 0)
    zero_is_zero = ints and scale[1] == 0 and np.float32(abs(scale[0])) != 0  # type: ignore[index]
    for i in range(t):
        vol = canon[..., i]
        v32 = _decode_volume(vol, scale)
        ends = _scaled_extremes(vol, scale) if ints else None  # type: ignore[arg-type]
        if ends is not None:  # every value finite, the extremes known: no pass over the floats
            finite = np.True_
            all_finite = True
            vals = v32
            lo, hi = ends
        else:
            finite = np.isfinite(v32)
            all_finite = bool(finite.all())
            if not all_finite:
                v32[np.isnan(v32)] = np.float32(np.nan)  # one NaN bit pattern
                small = False
            vals = v32 if all_finite else v32[finite]
            if vals.size:
                lo, hi = float(vals.min()), float(vals.max())
        n_finite += vals.size
        if vals.size:
            vmin, vmax = min(vmin, lo), max(vmax, hi)
            n_nonzero += int(np.count_nonzero(vol if zero_is_zero and ends is not None else vals))
            if small and _fits_int16(lo, hi):
                w = v32.astype("<i2", order="F")
                small = bool(np.array_equal(w, v32))
            else:
                small = False
        if small:
            as_int.update(w.T.data)
        if t > 1 or not small:
            as_float.update(v32.T.data)  # for one volume only when it is not int16
        if t == 1:
            ref = v32
        else:
            if total is None:
                total = np.zeros(v32.shape, dtype=np.float64)
                count = np.zeros(v32.shape, dtype=np.int64)
            total += np.where(finite, v32, 0.0)
            count += finite
    if ref is None:
        assert total is not None and count is not None
        ref = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    return ref, n_finite, vmin, vmax, n_nonzero, as_int if small else as_float


def _num(v: float) -> str:
    return f"{v:g}"
