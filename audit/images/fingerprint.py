"""The near-duplicate fingerprint of one volume: log intensities sampled in a frame the image defines.

Pure functions over arrays. The image pass (:mod:`audit.images.measures`)
calls :func:`fingerprint` once per image (on the decoded, closest-canonical
reference volume it already holds); the candidate search
(:mod:`audit.images.candidates`) compares the fingerprints of a dataset.

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
    3. *Foreground*: Otsu's threshold (:func:`audit.images.features.otsu_threshold`,
       ``FP_OTSU_BINS`` bins) on log intensities (clipped below the
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

Fingerprints are stored as base64 of little-endian float16
(:func:`encode`, :func:`decode`).
"""

from __future__ import annotations

import base64
import math
from itertools import permutations, product
from typing import NamedTuple

import numpy as np

from audit.images.features import otsu_threshold
from audit.images.voxels import MOMENT_VOXELS, block_affine, block_sum, moments, native

__all__ = ["FINGERPRINT_VERSION", "FP_MIN_EDGE", "FP_SIZE", "Fingerprint", "SMOOTH_VOXELS", "decode", "encode",
           "fingerprint"]

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
#: Bins of the Otsu threshold that splits background from foreground (step 3).
FP_OTSU_BINS = 128
#: Changes whenever the fingerprint's definition changes.
FINGERPRINT_VERSION = f"fp3-{FP_SIZE}-log-pca-frame-floor{FP_FLOOR_REL:g}-max{SMOOTH_VOXELS}-zyx-otsu{FP_OTSU_BINS}edge"


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

    vol = native(volume)
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
    _, cov0 = moments(valid[::step, ::step, ::step].astype(np.float32))
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
        filled = block_sum(filled, f, dtype=np.float32)
    elif filled.dtype != np.float32:
        filled = filled.astype(np.float32)
    aff = block_affine(affine, f)
    zred = zooms * np.array(f)
    blur = FP_SMOOTH * h0
    sigma = [math.sqrt(max(blur**2 - (z**2 / 12 if k > 1 else 0.0), 0.0)) / z for z, k in zip(zred, f)]
    sm = gaussian_filter(filled, sigma, mode="constant", truncate=3.0)
    if dense:  # block counts of an all-ones volume: a product of three 1-D profiles, and so is their Gaussian
        prof = [gaussian_filter1d(block_sum(np.ones((n, 1, 1), np.float32), (k, 1, 1))[:, 0, 0], sd,
                                  mode="constant", truncate=3.0) for n, k, sd in zip(vol.shape, f, sigma)]
        sc = prof[0][:, None, None] * prof[1][None, :, None] * prof[2][None, None, :]
    else:
        sc = gaussian_filter(block_sum(valid, f, dtype=np.float32) if max(f) > 1 else valid.astype(np.float32),
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
    tl = otsu_threshold(lv, bins=FP_OTSU_BINS)
    tl = float(lv.min()) if tl is None else tl  # one value: no background
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
    centre, cov = moments(fg.astype(np.float32))
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


def encode(vector: np.ndarray) -> str:
    """Base64 of little-endian float16 (how a summary stores a fingerprint)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    """The float16 vector of :func:`encode` (length 0 for an empty string)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f2")
