"""What the image pass measures on a reference volume: statistics, thumbnail, IQMs, fingerprint, sketch, spectrum.

:func:`measure_reference` fills the summary content from the reference
volume (the image, or the mean over time of a 4D image) in closest-canonical
orientation, as :func:`audit.images.contenthash.hash_content` leaves it.

Statistics
    ``min``/``max`` come from the content hash's pass over every finite
    voxel; ``mean``, ``std`` over the finite voxels of the reference volume;
    ``p01``, ``p50``, ``p99`` inside a crude foreground mask (reference
    voxels above the reference mean; all finite voxels when that is empty).
    Past :data:`STATS_VOXELS` voxels (about 50**3) these come from a regular
    subsample (every 2nd, 3rd... voxel along each axis): deterministic
    estimates, for QC and shift checks, at a fraction of the cost.
    ``iqm``: MRIQC-style quality metrics (Otsu foreground percentiles and
    volume, SNR, CNR, CJV, a 32-bin histogram) of the same subsample,
    :mod:`audit.images.features`.

Thumbnail (``thumbnail``)
    The reference volume sampled (trilinear) at the centres of a
    ``THUMB_SIZE**3`` (16x16x16) grid spanning the world-space bounding box
    of its foreground, then z-scored and rounded to float16. It
    survives reorientation, translation, resampling, intensity rescaling and
    mild noise (a quick look at the content).

Near-duplicate fingerprint (``fingerprint``, ``fingerprint_spread``)
    :func:`audit.images.fingerprint.fingerprint` of the reference volume, as
    base64 float16, and the foreground's spreads (mm) along its principal
    axes. Empty for images smaller than ``FP_MIN_EDGE`` voxels along an axis.

Patch sketch (``patch_sketch``, ``patch_count``)
    :func:`audit.images.sketch.patch_sketch` of the reference volume: the
    256 smallest hashes of its 2x2x2 blocks of exact voxel values (crops and
    pads keep them).

Near-duplicate spectrum (``spectrum``)
    :func:`audit.images.spectrum.spectrum` of the reference volume, as
    base64 float16: a frame-free descriptor (translation and flip invariant,
    crop tolerant) that the candidate search ranks within each image's
    neighbourhood.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from audit.images import features
from audit.images.fingerprint import encode as encode_fingerprint
from audit.images.fingerprint import fingerprint
from audit.images.sketch import encode_sketch, patch_sketch
from audit.images.spectrum import encode_spectrum, spectrum
from audit.images.voxels import moments

__all__ = ["STATS_VOXELS", "THUMB_SIZE", "measure_reference"]

THUMB_SIZE = 16
#: Statistics and thumbnail placement use a regular subsample of at most about this many voxels.
STATS_VOXELS = 2**17


def measure_reference(ref: np.ndarray, affine: np.ndarray, out: dict[str, Any], *,
                      known_finite: bool = False) -> None:
    """Statistics and thumbnail of the reference volume (``affine``: its canonical affine).

    ``ref`` is float32, or int16 for unscaled integer images (their values
    exactly: every result is the same as for the float32 copy).

    ``known_finite``: every voxel of ``ref`` is known to be finite (no check needed).
    """
    from scipy.ndimage import map_coordinates

    step = max(1, math.ceil((ref.size / STATS_VOXELS) ** (1 / 3)))
    if step > 1:
        sub = np.ascontiguousarray(ref[::step, ::step, ::step], dtype=np.float32)
    else:
        sub = ref if ref.dtype == np.float32 else ref.astype(np.float32)
    finite = None if known_finite else np.isfinite(sub)
    all_finite = known_finite or bool(finite.all())  # type: ignore[union-attr]
    vals = sub if all_finite else sub[finite]
    mean = float(vals.mean(dtype=np.float64))
    out["mean"] = mean
    out["std"] = float(vals.std(dtype=np.float64))
    fg = sub > mean  # False where NaN
    if not fg.any():
        fg = finite if finite is not None else np.ones(sub.shape, dtype=bool)
    out["foreground_fraction"] = float(np.count_nonzero(fg)) / sub.size
    p01, p50, p99 = np.percentile(sub[fg], [1, 50, 99])
    out["p01"], out["p50"], out["p99"] = float(p01), float(p50), float(p99)
    out["iqm"] = features.quality_metrics(sub, voxel_volume_mm3=abs(float(np.linalg.det(affine[:3, :3]))),
                                          total_voxels=ref.size)
    # thumbnail: a cube centred on the foreground's intensity-weighted centroid, 2 * 2.2 of its largest
    # world-space standard deviation wide (moments from marginal sums: no per-voxel coordinate arrays)
    weights = np.where(fg, sub - np.float32(mean), np.float32(0.0))
    if not weights.sum(dtype=np.float64) > 0:
        weights = fg.astype(np.float32)
    centre, cov = moments(weights)
    sub_affine = affine @ np.diag([step, step, step, 1.0])
    centre_w = sub_affine[:3, :3] @ centre + sub_affine[:3, 3]
    cov_w = sub_affine[:3, :3] @ cov @ sub_affine[:3, :3].T
    half = 2.2 * math.sqrt(max(float(np.max(np.diag(cov_w))), 0.0))
    if not half > 0:
        half = float(np.max(np.sqrt((affine[:3, :3] ** 2).sum(axis=0))))
    wmin, wmax = centre_w - half, centre_w + half
    all_finite = known_finite or (bool(np.isfinite(ref).all()) if step > 1 else all_finite)
    g = THUMB_SIZE
    steps = (np.arange(g) + 0.5) / g
    axes = [wmin[i] + steps * (wmax[i] - wmin[i]) for i in range(3)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    points = np.stack([gx.ravel(), gy.ravel(), gz.ravel(), np.ones(gx.size)])
    vox = (np.linalg.inv(affine) @ points)[:3]
    filled = ref if all_finite else np.where(np.isfinite(ref), ref, np.float32(0.0))
    samples = map_coordinates(filled, vox, order=1, mode="constant", cval=0.0, prefilter=False,
                              output=np.float32)  # as for float32 data when ref holds int16
    sd = float(samples.std())
    thumb = (samples - samples.mean()) / sd if sd > 0 else np.zeros_like(samples)
    out["thumbnail"] = base64.b64encode(thumb.astype("<f2").tobytes()).decode("ascii")
    try:
        fp = fingerprint(ref, affine, all_finite=all_finite)
    except (ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError):  # never a reason to fail an image
        fp = None
    if fp is not None:
        out["fingerprint"] = encode_fingerprint(fp.vector)
        out["fingerprint_spread"] = fp.spread
    try:
        sp = spectrum(ref, affine)
    except (ValueError, ArithmeticError, IndexError, MemoryError, np.linalg.LinAlgError):
        sp = None
    if sp is not None:
        out["spectrum"] = encode_spectrum(sp)
    try:
        sk = patch_sketch(ref)
    except (ValueError, ArithmeticError, IndexError, MemoryError):
        sk = None
    if sk is not None:
        out["patch_sketch"] = encode_sketch(sk)
        out["patch_count"] = sk.count
