"""Near-duplicate image fingerprints and a candidate search that scales.

Pure functions over arrays. The image pass (:mod:`audit.images.summary`) calls
:func:`fingerprint` once per image (on the decoded, closest-canonical
reference volume it already holds); the content checks
(:mod:`audit.checks.content`) call :func:`near_pairs` over the fingerprints
of a dataset.

Fingerprint (``FINGERPRINT_VERSION``)
    A ``FP_SIZE**3`` grid (20**3 = 8000 values) sampled from the image in
    world space (millimetres, through the affine), in a frame the image
    itself defines, so that what a re-save, a reorientation, a resampling, a
    rigid move or an intensity map does to the file cancels out:

    1. *Data*: finite, non-zero voxels. Exact zeros are "no data" (padding,
       masking, the corners a resampling fills), so a zero-padded or
       zero-filled copy holds the same data as its original.
    2. *Smoothing*: block sums (about a third of a grid spacing, coarser up
       to one spacing while the result exceeds ``SMOOTH_VOXELS`` voxels), then
       a Gaussian by normalised convolution (no data neither counts nor pulls
       values down), sigma ``FP_SMOOTH`` grid spacings: noise, denoising,
       voxel size and interpolation fade.
    3. *Foreground*: Otsu's threshold on log intensities (clipped below the
       ``FP_FLOOR_Q`` percentile of the positive values, and at least
       ``FP_FLOOR_REL`` of their 99th percentile: a denoiser's numerical
       zeros are background, not a class of their own), so scaling and
       gamma move it with the data. When the two Otsu classes are less than
       ``FP_BG_GAP`` apart in log intensity (e^1.2 = 3.3 times) there is no
       dark background (a tight crop, a masked image): all data are
       foreground.
    4. *Frame*: centre = the foreground's centroid; axes = its principal
       axes, signed and ordered to be the rotation closest to the world axes
       (a head scanned upright keeps its anatomical axes), drawn towards the
       world axes when two principal spreads are nearly equal
       (``FRAME_GAP``: the axes in their plane are arbitrary then); half
       width = ``FP_EXTENT`` times the root-mean-square spread (one isotropic
       scale). Translation, rotation, reorientation and voxel size cancel.
    5. *Intensities*: the log of the smoothed values, clamped from below at
       the ``FP_CLAMP_Q`` percentile of the foreground samples (background,
       and every point outside the data, hold the clamp value: the head's
       outline does not outweigh what is inside it), centred and scaled to
       unit length: scaling and gamma are an additive and a multiplicative
       constant of log intensities, which the normalisation removes.

    :class:`Fingerprint` also keeps the foreground's spreads (mm) along its
    principal axes: the one thing the frame normalises away, and the first
    thing in which two different people differ. Volumes smaller than
    ``FP_MIN_EDGE`` voxels along an axis (slabs, toy volumes) get no
    fingerprint: there is no 3-D shape to compare.

Patch sketch (``SKETCH_VERSION``)
    The fingerprint's frame comes from the foreground, so a crop that cuts
    into the head moves it (centre 2-3 mm, axes up to 12 degrees on the
    phantoms) and the copy looks like someone else. What a crop, a pad, a new
    origin or a reorientation keep is the voxel values themselves:
    :func:`patch_sketch` keeps the ``SKETCH_K`` smallest hashes of the set
    of 2x2x2 blocks of exact values (blocks starting at voxels above the mean,
    one in ``SKETCH_RATE`` picked by a hash of the voxel's value, so a copy
    picks the same ones), and :func:`sketch_containment` estimates from two
    sketches how much of the smaller set the other holds (copies: 0.96 or
    more; different scans: 0). :func:`sketch_pairs` finds the pairs through an
    inverted file of the hashes: no pair is compared that shares none.

Similarity
    Fingerprints of one dataset share the anatomy all its scans have (raw
    cosines of different synthetic subjects are 0.97-0.998), so similarity is
    *relative to the group*: each fingerprint minus the mean fingerprint of
    its group (one BIDS suffix of one dataset), cosine of what is left
    (:class:`Residuals`). A copy keeps what makes its original differ from
    the mean; different people share little of it (median about 0). Groups
    of fewer than ``MIN_GROUP`` images have no meaningful mean and are not
    compared.

Candidate search (:func:`near_pairs`)
    Residuals are projected on their top ``SEARCH_DIMS`` principal axes
    (fitted on a sample). A projection on orthonormal axes never lengthens
    a distance, and the part off the axes bounds it further
    (:func:`_bound`), so a pair whose full cosine is at least ``t`` is
    within ``sqrt(2 - 2t)`` there: that is the candidate filter, and every
    candidate is confirmed with the full cosine. Up to ``EXACT_MAX`` images
    every pair is screened (nothing above the threshold can be missed);
    larger groups use an inverted file: k-means cells in the projection,
    each image looks in its ``n_probe`` nearest cells and a pair is missed
    only when neither image's cells hold the other (recall 0.99 at 100,000
    phantom-like fingerprints, ``bench/bench_neardup.py``). At most
    ``CANDIDATES_PER_ROW`` candidates per image are confirmed (the closest
    in the projection), which bounds time and memory for fingerprints that
    the projection does not describe (white noise).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterator, Sequence
from itertools import permutations, product
from typing import NamedTuple

import numpy as np

__all__ = [
    "FINGERPRINT_VERSION",
    "FP_SIZE",
    "Fingerprint",
    "MIN_GROUP",
    "PatchSketch",
    "SKETCH_K",
    "SKETCH_VERSION",
    "decode",
    "decode_sketch",
    "encode_sketch",
    "patch_sketch",
    "sketch_containment",
    "sketch_pairs",
    "encode",
    "fingerprint",
    "moments",
    "near_pairs",
    "Residuals",
    "residuals",
]

FP_SIZE = 20
FP_EXTENT = 2.0
FP_SMOOTH = 0.4
FP_FLOOR_Q = 5.0
#: Positive values below this fraction of the 99th percentile count as the floor
#: (the numerical zeros a denoiser or a mask leaves).
FP_FLOOR_REL = 1e-3
FP_BG_GAP = 1.2
FP_CLAMP_Q = 65.0
#: Relative gaps between principal spreads below which the principal axes are not trusted (see _frame).
FRAME_GAP = (0.02, 0.06)
FP_MIN_EDGE = 8
#: Block sums coarse enough (up to the grid spacing) that the smoothed volume has at most this many voxels.
SMOOTH_VOXELS = 2**17
#: Moments of the data region come from a regular subsample of at most about this many voxels.
MOMENT_VOXELS = 2**18
#: Changes whenever the fingerprint's definition changes.
FINGERPRINT_VERSION = f"fp2-{FP_SIZE}-log-pca-frame-floor{FP_FLOOR_REL:g}-max{SMOOTH_VOXELS}-zyx"
#: Fewest images of a group for a relative similarity.
MIN_GROUP = 3
#: Principal axes of the candidate search's projection.
SEARCH_DIMS = 32
#: Candidate pairs confirmed per image at most (the closest in the projection are kept beyond that).
CANDIDATES_PER_ROW = 32
#: Up to this many images, every pair is screened in the projection (beyond: the inverted file).
EXACT_MAX = 10_000


# ------------------------------------------------------------ fingerprint
class Fingerprint(NamedTuple):
    """A fingerprint: the vector and the principal spreads of the foreground."""

    vector: np.ndarray  # float32, unit length, FP_SIZE**3
    spread: tuple[float, ...]  # standard deviations (mm) along the principal axes, ascending


def fingerprint(volume: np.ndarray, affine: np.ndarray, *, all_finite: bool = False) -> Fingerprint | None:
    """The fingerprint of a 3-D volume, or ``None``.

    Parameters
    ----------
    volume : ndarray, 3-D
        Decoded voxel values (NaN and exact zeros are "no data").
    affine : ndarray (4, 4)
        Voxel to world (mm).
    all_finite : bool
        Every value is known to be finite (saves a pass over the volume).

    Returns
    -------
    Fingerprint or None
        ``None`` for a volume too small (``FP_MIN_EDGE``), without enough
        data, or of one value.
    """
    from scipy.ndimage import gaussian_filter, gaussian_filter1d, map_coordinates

    vol = _native(volume)
    if vol.ndim != 3 or min(vol.shape) < FP_MIN_EDGE:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    integral = vol.dtype != np.float32  # small integers: finite, summed exactly in float32 as before
    valid = vol != 0 if all_finite or integral else np.isfinite(vol) & (vol != 0)
    n_valid = int(np.count_nonzero(valid))
    if n_valid < 64:
        return None
    dense = n_valid == vol.size  # no "no data" voxel: the counts below are separable
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    # 1. the size of the data region sets how much to smooth
    step = max(1, math.ceil((vol.size / MOMENT_VOXELS) ** (1 / 3)))
    _, cov0 = _moments(valid[::step, ::step, ::step].astype(np.float32))
    a_sub = affine[:3, :3] * step
    s0 = math.sqrt(max(float(np.linalg.eigvalsh(a_sub @ cov0 @ a_sub.T).mean()), 0.0))
    h0 = 2 * FP_EXTENT * max(s0, float(zooms.max())) / FP_SIZE  # about the grid spacing (mm)
    # 2. block means to about a third of that, then a Gaussian (normalised convolution)
    f = [max(1, int(h0 / (3 * z))) for z in zooms]
    while math.prod(math.ceil(n / k) for n, k in zip(vol.shape, f)) > SMOOTH_VOXELS:  # bound the work
        f = [k + 1 if z * (k + 1) <= h0 else k for k, z in zip(f, zooms)] if any(
            z * (k + 1) <= h0 for k, z in zip(f, zooms)) else [k + 1 for k in f]
    # where every value is finite, the invalid voxels already hold zero (-0.0 at worst: the same sums)
    filled = vol if dense or all_finite or integral else np.where(valid, vol, np.float32(0))
    if max(f) > 1:
        filled = _block_sum(filled, f, dtype=np.float32)
    elif filled.dtype != np.float32:
        filled = filled.astype(np.float32)
    aff = affine @ np.diag([f[0], f[1], f[2], 1.0])
    aff[:3, 3] = affine[:3, :3] @ ((np.array(f, dtype=np.float64) - 1) / 2) + affine[:3, 3]
    zred = zooms * np.array(f)
    blur = FP_SMOOTH * h0
    sigma = [math.sqrt(max(blur**2 - (z**2 / 12 if k > 1 else 0.0), 0.0)) / z for z, k in zip(zred, f)]
    sm = gaussian_filter(filled, sigma, mode="constant", truncate=3.0)
    if dense:  # block counts of an all-ones volume: a product of three 1-D profiles, and so is their Gaussian
        prof = [gaussian_filter1d(_block_sum(np.ones((n, 1, 1), np.float32), (k, 1, 1))[:, 0, 0], sd,
                                  mode="constant", truncate=3.0) for n, k, sd in zip(vol.shape, f, sigma)]
        sc = prof[0][:, None, None] * prof[1][None, :, None] * prof[2][None, None, :]
    else:
        sc = gaussian_filter(_block_sum(valid, f, dtype=np.float32) if max(f) > 1 else valid.astype(np.float32),
                             sigma, mode="constant", truncate=3.0)
    cover = sc / float(f[0] * f[1] * f[2])
    inside = cover > 0.5
    vals = np.where(inside, sm / np.where(inside, sc, 1.0), 0.0)
    # 3. foreground: Otsu on clipped log intensities
    v = vals[inside]
    pos = v[v > 0]
    if pos.size < 8:
        return None
    q_lo, q_hi = np.percentile(pos, [FP_FLOOR_Q, 99.0])
    floor = max(float(q_lo), float(q_hi) * FP_FLOOR_REL)
    lv = np.log(np.maximum(v, floor))
    tl = _otsu(lv)
    low, high = lv[lv <= tl], lv[lv > tl]
    if low.size and high.size and float(high.mean() - low.mean()) > FP_BG_GAP:
        t = max(math.exp(tl), floor)
        fg = inside & (vals > t)
    else:  # no dark background mode: every datum is foreground
        t = floor
        fg = inside
    if np.count_nonzero(fg) < 8:
        return None
    # 4. frame: centroid, principal axes, isotropic spread
    centre, cov = _moments(fg.astype(np.float32))
    centre_w = aff[:3, :3] @ centre + aff[:3, 3]
    cov_w = aff[:3, :3] @ cov @ aff[:3, :3].T
    spread = math.sqrt(max(float(np.linalg.eigvalsh(cov_w).mean()), 0.0))
    if not spread > 0:
        return None
    rot = _frame(cov_w)
    half = FP_EXTENT * spread
    u = (np.arange(FP_SIZE) + 0.5) / FP_SIZE * 2 - 1
    gx, gy, gz = np.meshgrid(u, u, u, indexing="ij")
    world = rot @ (np.stack([gx.ravel(), gy.ravel(), gz.ravel()]) * half) + centre_w[:, None]
    inv = np.linalg.inv(aff)
    vox = inv[:3, :3] @ world + inv[:3, 3:4]
    samples = map_coordinates(vals, vox, order=1, mode="constant", cval=0.0, prefilter=False)
    covered = map_coordinates(cover, vox, order=1, mode="constant", cval=0.0, prefilter=False) > 0.5
    # 5. log intensities clamped at the threshold; outside the data = background
    inner = samples[covered & (samples > t)]
    clamp = max(t, float(np.percentile(inner, FP_CLAMP_Q))) if inner.size else t
    x = np.log(np.maximum(np.where(covered, samples, clamp), clamp))
    x -= x.mean()
    norm = float(np.linalg.norm(x))
    if not norm > 1e-9 * max(1.0, abs(math.log(clamp))):
        return None
    axes = np.sqrt(np.maximum(np.linalg.eigvalsh(cov_w), 0.0))
    return Fingerprint((x / norm).astype(np.float32), tuple(round(float(a), 4) for a in axes))


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of ``values`` (the lowest value when they hardly vary)."""
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
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(mids[int(np.argmax(between[:-1]))])


def moments(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centroid (3,) and covariance (3, 3) of voxel indices, from the three plane sums."""
    w = np.asarray(weights)
    idx = [np.arange(n, dtype=np.float64) for n in w.shape]
    p01 = w.sum(axis=2, dtype=np.float64)  # (x, y)
    p02 = w.sum(axis=1, dtype=np.float64)  # (x, z)
    p12 = w.sum(axis=0, dtype=np.float64)  # (y, z)
    marg = [p01.sum(axis=1), p01.sum(axis=0), p02.sum(axis=0)]
    total = float(marg[0].sum())
    centre = np.array([(marg[a] * idx[a]).sum() / total for a in range(3)])
    cov = np.empty((3, 3))
    for a in range(3):
        cov[a, a] = (marg[a] * idx[a] ** 2).sum() / total - centre[a] ** 2
    for (a, b), plane in (((0, 1), p01), ((0, 2), p02), ((1, 2), p12)):
        cov[a, b] = cov[b, a] = float(idx[a] @ plane @ idx[b]) / total - centre[a] * centre[b]
    return centre, cov


_moments = moments


def _signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in permutations(range(3)):
        for signs in product((1.0, -1.0), repeat=3):
            p = np.zeros((3, 3))
            for col, (row, s) in enumerate(zip(perm, signs)):
                p[row, col] = s
            if np.linalg.det(p) > 0:
                out.append(p)
    return out


_ROTATIONS = _signed_permutations()


def _frame(cov: np.ndarray) -> np.ndarray:
    """The rotation to sample in: the principal axes of ``cov``, signed and ordered closest to the world axes.

    When two principal spreads are nearly equal the axes in their plane are
    arbitrary (noise turns them); the rotation is then drawn towards the
    world axes, fully below a relative gap of ``FRAME_GAP[0]``, not at all
    above ``FRAME_GAP[1]`` (continuous in between, so no copy jumps frames).
    """
    from scipy.spatial.transform import Rotation

    vals, vecs = np.linalg.eigh(cov)
    if np.linalg.det(vecs) < 0:
        vecs[:, 0] = -vecs[:, 0]
    best, score = np.eye(3), -math.inf
    for p in _ROTATIONS:
        r = vecs @ p
        s = float(np.trace(r))
        if s > score + 1e-12:
            best, score = r, s
    sd = np.sqrt(np.maximum(vals, 0.0))
    gap = min(float((sd[1] - sd[0]) / max(sd[1], 1e-12)), float((sd[2] - sd[1]) / max(sd[2], 1e-12)))
    lo, hi = FRAME_GAP
    trust = min(max((gap - lo) / (hi - lo), 0.0), 1.0)
    if trust >= 1.0:
        return best
    out: np.ndarray = Rotation.from_rotvec(trust * Rotation.from_matrix(best).as_rotvec()).as_matrix()
    return out


def _block_sum(a: np.ndarray, f: Sequence[int], dtype: np.dtype | type | None = None) -> np.ndarray:
    """Sums over blocks of ``f`` voxels (the last, partial blocks sum what they hold), in ``dtype`` (``a``'s).

    The last axis first: for the Fortran-ordered volumes of the image pass
    those are whole planes, and the strided first axis is summed last, on
    data already reduced (six times faster than the other way round).
    """
    out = a
    for axis in reversed(range(len(f))):
        k = f[axis]
        if k <= 1:
            continue
        n = out.shape[axis]
        m = math.ceil(n / k)
        idx: list[slice] = [slice(None)] * 3
        idx[axis] = slice(0, None, k)
        acc = np.array(out[tuple(idx)], dtype=dtype or out.dtype)  # first voxel of every block (m of them)
        dtype = None
        for i in range(1, k):
            idx[axis] = slice(i, None, k)
            part = out[tuple(idx)]
            if part.shape[axis] == m:
                acc += part
            else:  # the last block is partial
                head: list[slice] = [slice(None)] * 3
                head[axis] = slice(0, part.shape[axis])
                acc[tuple(head)] += part
        out = acc
    return out


def _native(volume: np.ndarray) -> np.ndarray:
    """``volume`` itself when it holds 8- or 16-bit integers (exact in float32), as float32 otherwise."""
    v = np.asarray(volume)
    if v.dtype.kind in "iu" and v.dtype.itemsize <= 2:
        return v
    return np.asarray(v, dtype=np.float32)


def encode(vector: np.ndarray) -> str:
    """Base64 of little-endian float16 (how a summary stores a fingerprint)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    """The float16 vector of :func:`encode` (length 0 for an empty string)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f2")


# ------------------------------------------------------------ patch sketch
#: Smallest patch hashes kept per image (bottom-k sketch).
SKETCH_K = 256
#: One in this many voxels (chosen by a hash of the voxel's own value) starts a patch.
SKETCH_RATE = 16
#: A hash value held by more images than this is not informative (a shared pattern, not a shared scan).
SKETCH_COMMON = 64
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
    v = _native(volume)  # 8- and 16-bit integers: through a table of their float32 bits
    if v.ndim != 3 or min(v.shape) < 2:
        return None
    flat = v.reshape(-1, order="A")
    sample = flat[:: max(1, flat.size // 4096)]
    sample = sample[np.isfinite(sample)]
    if sample.size < 64 or _unique(sample).size < 256:  # checked on ~4096 voxels, before any full pass
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
    h = _unique(_mix(h))
    return PatchSketch(h[:SKETCH_K].copy(), int(h.size))


def _unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-D array without NaN, by one sort (numpy 2's hash-based ``unique`` is 20 times slower here)."""
    s = np.sort(a)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


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


def sketch_pairs(sketches: Sequence[np.ndarray], counts: Sequence[int],
                 min_containment: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of images whose patch sets overlap by at least ``min_containment`` (of the smaller set).

    Candidates share at least one sketched hash (an inverted file: one sort of
    every hash of every sketch; hashes held by more than ``SKETCH_COMMON``
    images are ignored); each candidate is confirmed with
    :func:`sketch_containment`. Time and memory grow with the number of
    hashes (``SKETCH_K`` per image), not with the number of pairs.
    """
    empty = np.zeros(0, dtype=np.int64)
    lengths = np.array([len(s) for s in sketches], dtype=np.int64)
    if len(sketches) < 2 or lengths.sum() == 0:
        return empty, empty, np.zeros(0)
    values = np.concatenate([np.asarray(s, dtype=np.uint64) for s in sketches])
    owner = np.repeat(np.arange(len(sketches), dtype=np.int64), lengths)
    order = np.argsort(values, kind="stable")
    values, owner = values[order], owner[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    ci: list[np.ndarray] = []
    cj: list[np.ndarray] = []
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= SKETCH_COMMON)]).tolist():
        s0 = starts[sizes == size]
        members = owner[s0[:, None] + np.arange(size)[None, :]]  # (runs, size)
        a, b = np.triu_indices(size, 1)
        ci.append(members[:, a].ravel())
        cj.append(members[:, b].ravel())
    if not ci:
        return empty, empty, np.zeros(0)
    i, j = np.concatenate(ci), np.concatenate(cj)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = lo != hi
    key = _unique(lo[keep] * len(sketches) + hi[keep])
    lo, hi = key // len(sketches), key % len(sketches)
    sim = np.array([sketch_containment(sketches[a], counts[a], sketches[b], counts[b])
                     for a, b in zip(lo.tolist(), hi.tolist())], dtype=np.float64)
    ok = sim >= min_containment
    return lo[ok], hi[ok], sim[ok]


# ------------------------------------------------------------------ search
class Residuals(NamedTuple):
    """A group's fingerprints as float32, their mean, and each one's distance from it."""

    x: np.ndarray  # (n, d) float32
    mean: np.ndarray  # (d,) float32
    dot_mean: np.ndarray  # (n,) x . mean
    norms: np.ndarray  # (n,) |x - mean|

    def unit(self, rows: np.ndarray | slice) -> np.ndarray:
        """``(x - mean) / |x - mean|`` of ``rows`` (float32)."""
        r = self.x[rows] - self.mean
        scale = self.norms[rows]
        r /= np.where(scale > 0, scale, 1.0).astype(np.float32)[:, None]
        return r

    def cosine(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Relative similarity of row pairs (float64), from ``x_i . x_j`` alone."""
        out = np.empty(len(i), dtype=np.float64)
        mm = float(self.mean @ self.mean)
        for s in _chunks(len(i), 4096):
            a, b = i[s], j[s]
            dots = np.einsum("ij,ij->i", self.x[a], self.x[b], dtype=np.float64)
            num = dots - self.dot_mean[a] - self.dot_mean[b] + mm
            den = self.norms[a] * self.norms[b]
            out[s] = num / np.where(den > 0, den, 1.0)
        return out


def residuals(vectors: np.ndarray) -> Residuals:
    """:class:`Residuals` of a group (one float32 copy when ``vectors`` are float16)."""
    n, d = vectors.shape
    if vectors.dtype == np.float32:
        x = np.ascontiguousarray(vectors)
    else:
        x = np.empty((n, d), dtype=np.float32)
        for s in _chunks(n, 8192):
            x[s] = vectors[s]
    total = np.zeros(d, dtype=np.float64)
    ones = np.ones(8192, dtype=np.float32)
    for s in _chunks(n, 8192):
        total += ones[:s.stop - s.start] @ x[s]  # column sums through BLAS, per chunk
    mean = (total / max(n, 1)).astype(np.float32)
    dot_mean = np.empty(n, dtype=np.float64)
    sq = np.empty(n, dtype=np.float64)
    for s in _chunks(n, 8192):
        dot_mean[s] = x[s] @ mean
        sq[s] = np.einsum("ij,ij->i", x[s], x[s])
    norms = np.sqrt(np.maximum(sq - 2 * dot_mean + float(mean @ mean), 0.0))
    return Residuals(x, mean, dot_mean, norms)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def near_pairs(vectors: np.ndarray, threshold: float, *, n_probe: int = 12, seed: int = 0,
               exact_max: int = EXACT_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Pairs of rows whose relative similarity is at least ``threshold``.

    Parameters
    ----------
    vectors : ndarray (n, d)
        Fingerprints of one group (float16 or float32); not modified.
    threshold : float
        On the cosine of ``vector - group mean``.
    n_probe : int
        Cells each row looks in (groups larger than ``exact_max`` only).
    exact_max : int
        Up to this many rows, every pair is screened in the projection (no
        pair above the threshold can be missed).

    Returns
    -------
    i, j : ndarray of int64
        Row pairs, ``i < j``, sorted.
    sim : ndarray of float64
        Their relative similarity.
    stats : dict
        ``candidates`` (pairs confirmed with the full vectors) and ``exact``
        (1.0 when every pair was screened).
    """
    n = len(vectors)
    empty = np.zeros(0, dtype=np.int64)
    if n < MIN_GROUP:
        return empty, empty, np.zeros(0), {"candidates": 0.0, "exact": 1.0}
    clock = [time.perf_counter()]
    res = residuals(vectors)
    clock.append(time.perf_counter())
    usable = np.flatnonzero(res.norms > 1e-6)
    if len(usable) < 2:
        return empty, empty, np.zeros(0), {"candidates": 0.0, "exact": 1.0}
    proj = _project(res, usable, seed=seed)
    clock.append(time.perf_counter())
    radius = math.sqrt(max(2.0 - 2.0 * threshold, 0.0))
    screened_all = len(usable) <= exact_max
    budget = _Budget(CANDIDATES_PER_ROW * len(usable) + 10_000)
    if screened_all:
        _all_within(proj, radius, budget)
    else:
        _ivf_candidates(proj, radius, budget, n_probe=n_probe, seed=seed)
    ci, cj = budget.pairs()
    clock.append(time.perf_counter())
    i, j = usable[ci], usable[cj]
    sim = res.cosine(i, j)
    clock.append(time.perf_counter())
    keep = sim >= threshold
    lo, hi, s = _sorted(i[keep], j[keep], sim[keep])
    exact = screened_all and not budget.pruned
    seconds = dict(zip(("residuals_s", "projection_s", "search_s", "confirm_s"), np.diff(clock).tolist()))
    return lo, hi, s, {"candidates": float(len(ci)), "exact": 1.0 if exact else 0.0,
                       "pruned": float(budget.pruned), **seconds}


class _Budget:
    """Candidate pairs with their projected squared distance; beyond ``limit`` only the closest are kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.i: list[np.ndarray] = []
        self.j: list[np.ndarray] = []
        self.d: list[np.ndarray] = []
        self.size = 0
        self.pruned = 0

    def add(self, i: np.ndarray, j: np.ndarray, d2: np.ndarray) -> None:
        if not len(i):
            return
        self.i.append(i.astype(np.int64))
        self.j.append(j.astype(np.int64))
        self.d.append(d2.astype(np.float32))
        self.size += len(i)
        if self.size > 4 * self.limit:
            self._prune()

    def _prune(self) -> None:
        i, j, d = (np.concatenate(x) for x in (self.i, self.j, self.d))
        key = i * (max(int(i.max(initial=0)), int(j.max(initial=0))) + 1) + j
        key, first = np.unique(key, return_index=True)
        i, j, d = i[first], j[first], d[first]
        if len(d) > self.limit:
            keep = np.argpartition(d, self.limit - 1)[:self.limit]
            self.pruned += len(d) - self.limit
            i, j, d = i[keep], j[keep], d[keep]
        self.i, self.j, self.d, self.size = [i], [j], [d], len(i)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.i:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self._prune()
        return self.i[0], self.j[0]


def _sorted(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    order = np.lexsort((hi, lo))
    return lo[order], hi[order], s[order]


def _project(res: Residuals, rows: np.ndarray, *, seed: int) -> np.ndarray:
    """Unit residuals of ``rows`` on their top principal axes (fitted on a sample), float32 (n, k)."""
    rng = np.random.default_rng(seed)
    sample = rows[np.sort(rng.choice(len(rows), size=min(len(rows), 4096), replace=False))]
    x = res.unit(sample)
    x -= x.mean(axis=0)
    k = min(SEARCH_DIMS, x.shape[0], x.shape[1])
    # randomised range finder with a few power iterations; orthonormalised through the small Gram matrix
    q = x.T @ rng.standard_normal((x.shape[0], k + 8)).astype(np.float32)
    for _ in range(3):
        q = _orthonormal(x.T @ (x @ _orthonormal(q)))
    _, _, vt = np.linalg.svd((x @ q).astype(np.float64), full_matrices=False)
    axes = np.ascontiguousarray((q.astype(np.float64) @ vt.T)[:, :k].astype(np.float32))  # (d, k' <= k)
    shift = res.mean @ axes
    out = np.empty((len(rows), axes.shape[1]), dtype=np.float32)
    every = len(rows) == len(res.x)  # all rows: slices, no gathered copies
    for s in _chunks(len(rows), 8192):
        r = s if every else rows[s]
        out[s] = (res.x[r] @ axes - shift) / res.norms[r].astype(np.float32)[:, None]
    return out


def _orthonormal(q: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``q`` (through the eigen-decomposition of ``q.T q``)."""
    g = q.T.astype(np.float64) @ q.astype(np.float64)
    w, v = np.linalg.eigh(g)
    keep = w > w.max() * 1e-10
    out: np.ndarray = (q.astype(np.float64) @ (v[:, keep] / np.sqrt(w[keep]))).astype(np.float32)
    return out


def _bound(sq_a: np.ndarray, sq_b: np.ndarray, dots: np.ndarray) -> np.ndarray:
    """A lower bound of the full squared distance of unit residuals from their projections.

    ``|a - b|^2 = |Pa - Pb|^2 + |Qa - Qb|^2 >= |Pa - Pb|^2 + (|Qa| - |Qb|)^2`` with
    ``|Qa|^2 = 1 - |Pa|^2`` (``Q``: the part off the projection axes).
    """
    qa = np.sqrt(np.maximum(1 - sq_a, 0))
    qb = np.sqrt(np.maximum(1 - sq_b, 0))
    out: np.ndarray = sq_a[:, None] + sq_b[None, :] - 2 * dots + (qa[:, None] - qb[None, :]) ** 2
    return out


def _all_within(p: np.ndarray, radius: float, budget: _Budget) -> None:
    """Every pair of rows of ``p`` whose full distance may be within ``radius``."""
    sq = np.einsum("ij,ij->i", p, p)
    r2 = np.float32(radius * radius + 1e-3)  # float32 rounding never drops a pair at the threshold
    for s in _chunks(len(p), 2048):
        d2 = _bound(sq[s], sq, p[s] @ p.T)
        a, b = np.nonzero(d2 <= r2)
        keep = a + s.start < b
        budget.add(a[keep] + s.start, b[keep], d2[a[keep], b[keep]])


def _ivf_candidates(p: np.ndarray, radius: float, budget: _Budget, *, n_probe: int, seed: int) -> None:
    """Row pairs within ``radius`` of each other in ``p``, looking only in each row's ``n_probe`` nearest cells."""
    n = len(p)
    n_cells = max(1, min(int(2 * math.sqrt(n)), n // 8))
    centres = _kmeans(p, n_cells, seed=seed)
    sq = np.einsum("ij,ij->i", p, p)
    csq = np.einsum("ij,ij->i", centres, centres)
    n_probe = min(n_probe, n_cells)
    home = np.empty(n, dtype=np.int64)
    probes = np.empty((n, n_probe), dtype=np.int64)
    for s in _chunks(n, 16384):
        d2 = sq[s, None] + csq[None, :] - 2 * (p[s] @ centres.T)
        home[s] = np.argmin(d2, axis=1)
        if n_probe < n_cells:
            probes[s] = np.argpartition(d2, n_probe - 1, axis=1)[:, :n_probe]
        else:
            probes[s] = np.arange(n_cells)
    order = np.argsort(home, kind="stable")
    starts = np.searchsorted(home[order], np.arange(n_cells + 1))
    q_rows = np.repeat(np.arange(n), n_probe)
    q_cells = probes.ravel()
    q_order = np.argsort(q_cells, kind="stable")
    q_starts = np.searchsorted(q_cells[q_order], np.arange(n_cells + 1))
    r2 = np.float32(radius * radius + 1e-3)  # float32 rounding never drops a pair at the threshold
    for c in range(n_cells):
        members = order[starts[c]:starts[c + 1]]
        queries = q_rows[q_order[q_starts[c]:q_starts[c + 1]]]
        if not len(members) or not len(queries):
            continue
        pm, sm = p[members], sq[members]
        for s in _chunks(len(queries), 4096):
            qs = queries[s]
            d2 = _bound(sq[qs], sm, p[qs] @ pm.T)
            a, b = np.nonzero(d2 <= r2)
            qa, mb = qs[a], members[b]
            keep = qa != mb  # found from either side: a pair counts when one row probes the other's cell
            budget.add(np.minimum(qa[keep], mb[keep]), np.maximum(qa[keep], mb[keep]), d2[a[keep], b[keep]])


def _kmeans(p: np.ndarray, k: int, *, seed: int, iters: int = 10) -> np.ndarray:
    """Lloyd's k-means on a sample of ``p`` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    sample = p[np.sort(rng.choice(len(p), size=min(len(p), max(30 * k, 10000)), replace=False))]
    centres = sample[np.sort(rng.choice(len(sample), size=k, replace=False))].copy()
    ssq = np.einsum("ij,ij->i", sample, sample)
    for _ in range(iters):
        labels = np.empty(len(sample), dtype=np.int64)
        csq = np.einsum("ij,ij->i", centres, centres)
        for s in _chunks(len(sample), 16384):
            labels[s] = np.argmin(ssq[s, None] + csq[None, :] - 2 * (sample[s] @ centres.T), axis=1)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros((k, p.shape[1]), dtype=np.float64)
        for dim in range(p.shape[1]):
            sums[:, dim] = np.bincount(labels, weights=sample[:, dim], minlength=k)
        filled = counts > 0
        centres[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return centres
