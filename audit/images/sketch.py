"""The patch sketch of one volume: a bottom-k sketch of its 2x2x2 blocks of exact voxel values.

The fingerprint's frame (:mod:`audit.images.fingerprint`) comes from the
foreground, so a crop that cuts into the head moves it (centre 2-3 mm, axes
up to 12 degrees on the phantoms) and the copy looks like someone else. What
a crop, a pad, a new origin or a reorientation keep is the voxel values
themselves: :func:`patch_sketch` keeps the ``SKETCH_K`` smallest hashes of
the set of 2x2x2 blocks of exact values (blocks starting at voxels above the
mean, one in ``SKETCH_RATE`` picked by a hash of the voxel's value, so a copy
picks the same ones), and :func:`sketch_containment` estimates from two
sketches how much of the smaller set the other holds (copies: 0.96 or more;
different scans: 0). The pair search over many sketches is
:func:`audit.images.candidates.sketch_pairs`.

Sketches are stored as base64 of little-endian uint64 (:func:`encode_sketch`,
:func:`decode_sketch`); ``SKETCH_VERSION`` changes with the definition.
"""

from __future__ import annotations

import base64
import math
from typing import NamedTuple

import numpy as np

from audit.images.voxels import MOMENT_VOXELS, native, unique_sorted

__all__ = ["SKETCH_K", "SKETCH_RATE", "SKETCH_VERSION", "PatchSketch", "decode_sketch", "encode_sketch",
           "patch_sketch", "sketch_containment"]

#: Smallest patch hashes kept per image (bottom-k sketch).
SKETCH_K = 256
#: One in this many voxels (chosen by a hash of the voxel's own value) starts a patch.
SKETCH_RATE = 16
#: Changes whenever the sketch's definition changes.
SKETCH_VERSION = f"ps1-{SKETCH_K}-{SKETCH_RATE}-2x2x2"
#: Voxels per piece of the patch picking pass.
_CHUNK = 2**16
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


class PatchSketch(NamedTuple):
    """A bottom-k sketch of an image's set of voxel patches."""

    hashes: np.ndarray  # uint64, ascending, at most SKETCH_K
    count: int  # patches in the whole set


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64, in place where it can)."""
    h ^= h >> np.uint64(30)
    h *= _M2
    h ^= h >> np.uint64(27)
    h *= _M3
    h ^= h >> np.uint64(31)
    return h


def patch_sketch(volume: np.ndarray) -> PatchSketch | None:
    """The bottom-``SKETCH_K`` sketch of the set of 2x2x2 voxel patches of a 3-D volume, or ``None``.

    The set: every 2x2x2 block of decoded float32 values (exact bits) whose
    first voxel is above the volume's mean and is picked by a hash of its own
    value (one in ``SKETCH_RATE``: the same voxels are picked in any copy
    that keeps them). Each patch is hashed (64 bits), and the ``SKETCH_K``
    smallest hashes are kept with the size of the set. A copy that keeps the
    voxel values (cropped, padded, reoriented, another origin) keeps most of
    the set; a different scan shares almost none of it (noise makes every
    patch unique). Volumes with fewer than 256 distinct values (label maps,
    masks) get no sketch: their patches repeat across people.
    """
    v = native(volume)  # 8- and 16-bit integers: through a table of their float32 bits
    if v.ndim != 3 or min(v.shape) < 2:
        return None
    flat = v.reshape(-1, order="A")
    sample = flat[:: max(1, flat.size // 4096)]
    sample = sample[np.isfinite(sample)]
    if sample.size < 64 or unique_sorted(sample).size < 256:  # checked on ~4096 voxels, before any full pass
        return None
    step = max(1, math.ceil((v.size / MOMENT_VOXELS) ** (1 / 3)))
    probe = v[::step, ::step, ::step]
    finite = probe[np.isfinite(probe)]
    mean = np.float32(finite.mean(dtype=np.float64))
    # contiguous 1-D passes over the volume in memory (Fortran) order; a block's voxels are flat offsets
    fv = np.asfortranarray(v)  # no copy for the image pass's volumes
    nx, ny, nz = fv.shape
    flat = fv.reshape(-1, order="F")
    rate = np.uint32(1 << (32 - int(math.log2(SKETCH_RATE))))
    if flat.dtype == np.float32:
        bits = flat.view(np.uint32)
        mask = np.empty(flat.size, dtype=bool)
        prod = np.empty(min(flat.size, _CHUNK), dtype=np.uint32)
        above = np.empty(prod.size, dtype=bool)
        for s in range(0, flat.size, _CHUNK):  # in cache-sized pieces: half the time of whole-volume temporaries
            e = min(s + _CHUNK, flat.size)
            k = e - s
            np.multiply(bits[s:e], np.uint32(0x9E3779B1), out=prod[:k])
            np.less(prod[:k], rate, out=mask[s:e])
            np.greater(flat[s:e], mean, out=above[:k])
            mask[s:e] &= above[:k]

        def bits_at(pos: np.ndarray) -> np.ndarray:
            return bits[pos]
    else:  # every value the type holds, by its bit pattern: float32 bits, and whether it starts a patch
        unsigned = np.dtype(f"u{flat.dtype.itemsize}")
        values = np.arange(2 ** (8 * flat.dtype.itemsize), dtype=unsigned).view(flat.dtype).astype(np.float32)
        table = values.view(np.uint32)
        codes = flat.view(unsigned)
        mask = ((table * np.uint32(0x9E3779B1) < rate) & (values > mean))[codes]

        def bits_at(pos: np.ndarray) -> np.ndarray:
            return table[codes[pos]]
    at = np.flatnonzero(mask)
    i = at % nx
    rest = at // nx
    at = at[(i < nx - 1) & (rest % ny < ny - 1) & (rest // ny < nz - 1)]  # a whole 2x2x2 block inside
    if at.size == 0:
        return None
    h = np.full(at.size, 0x243F6A8885A308D3, dtype=np.uint64)
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                h ^= bits_at(at + (di + dj * nx + dk * nx * ny)).astype(np.uint64)
                h *= _M1
                h ^= h >> np.uint64(29)
    h = unique_sorted(_mix(h))
    return PatchSketch(h[:SKETCH_K].copy(), int(h.size))


def encode_sketch(sketch: PatchSketch) -> str:
    """Base64 of the little-endian uint64 hashes."""
    return base64.b64encode(np.asarray(sketch.hashes, dtype="<u8").tobytes()).decode("ascii")


def decode_sketch(text: str) -> np.ndarray:
    """The hashes of :func:`encode_sketch` (length 0 for an empty string)."""
    return np.frombuffer(base64.b64decode(text), dtype="<u8")


def sketch_containment(a: np.ndarray, count_a: int, b: np.ndarray, count_b: int) -> float:
    """Estimated share of the smaller patch set that the other holds (0 to 1).

    Jaccard from the bottom-k of the union (the classic bottom-k estimator),
    then ``|A & B| = J (|A| + |B|) / (1 + J)`` over ``min(|A|, |B|)``.
    """
    if not len(a) or not len(b) or count_a <= 0 or count_b <= 0:
        return 0.0
    k = min(max(len(a), len(b)), SKETCH_K)
    union = np.union1d(a, b)[:k]
    both = np.intersect1d(a, b, assume_unique=True)
    inter = int(np.isin(union, both, assume_unique=True).sum())
    j = inter / len(union)
    shared = j * (count_a + count_b) / (1 + j)
    return float(min(1.0, shared / min(count_a, count_b)))
