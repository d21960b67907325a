"""Image quality metrics of one volume, in the spirit of MRIQC's IQMs (small pure functions on numpy arrays).

:func:`quality_metrics` is called once per image from the single decode of
:mod:`audit.images.measures` (on the same reference volume and the same regular
subsample as its statistics), and its result is kept in the image summary
(``ImageSummary.iqm``), so the hash cache holds it and a cached re-run reads
no image. ``shift.image`` and the scanner signature of
``confound.label_site`` use it (:func:`audit.checks.shift.image_features`).

Definitions (``fg``: foreground, ``bg``: background, both over finite voxels)

Winsorising
    The finite voxels are first clipped to their 0.1th-99.9th percentiles
    (:data:`CLIP_PERCENTILES`), so a few hot voxels (spikes, a bright
    artefact) decide neither the mask nor the noise estimates.
Foreground mask (``mask = "otsu"``)
    Otsu's threshold (:func:`otsu_threshold`: the cut of a 256-bin histogram
    that maximises the between-class variance) over the finite voxels:
    ``fg = v > t``, ``bg = v <= t``. It separates head from air on raw
    scans; on skull-stripped or masked images the zero background is the
    low class. A mask that keeps fewer than :data:`MIN_CLASS` voxels on a
    side falls back to ``v > mean`` (``mask = "mean"``).
Robust intensity percentiles (``fg_p01``, ``fg_p05`` ... ``fg_p99``)
    Percentiles 1, 5, 25, 50, 75, 95, 99 of the foreground's intensities.
Foreground volume (``fg_volume_ml``)
    The foreground's share of the (sub)sampled voxels times the volume of
    the whole field of view (voxel count x voxel volume from the affine),
    in millilitres.
SNR (``snr``)
    MRIQC's ``snr`` on the whole foreground: ``mean(fg) / (sd(fg) *
    sqrt(n / (n - 1)))``. It needs no background, so it is defined for
    skull-stripped and defaced images too.
SNR after Dietrich (``snr_dietrich``)
    MRIQC's ``snr_dietrich``: ``sqrt((4 - pi) / 2) * mean(fg) / sd(bg)``
    (air noise in magnitude images follows a Rayleigh distribution, whose
    SD is ``sqrt((4 - pi) / 2)`` times the noise SD). ``None`` when the
    background is constant (masked, zero-filled) or too small: there is
    then no noise to measure.
CNR and CJV (``cnr``, ``cjv``)
    The foreground split in two intensity classes by a second Otsu cut
    (``low``: e.g. grey matter and CSF on a T1w, ``high``: white matter).
    ``cnr = |mean(high) - mean(low)| / sqrt(sd(low)^2 + sd(high)^2 +
    sd(bg)^2)`` as MRIQC's ``cnr`` (background term left out when there is
    no background noise); ``cjv = (sd(low) + sd(high)) / |mean(high) -
    mean(low)|`` as MRIQC's ``cjv``.
Histogram (``histogram``)
    :data:`HIST_BINS` bins over the foreground's robust range
    ``[fg_p01, fg_p99]`` (values outside are counted in the end bins),
    normalised to sum to 1. Invariant to intensity scaling and offset, it
    keeps the shape of the contrast (how many tissue peaks, how far apart).

Every figure is a finite float or ``None``: never NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["IQM_VERSION", "HIST_BINS", "PERCENTILES", "otsu_threshold", "quality_metrics", "histogram"]

#: Part of the image-summary cache version: bump when a metric's definition changes.
IQM_VERSION = "iqm2"
HIST_BINS = 32
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
#: Every value is first clipped to these percentiles of the finite voxels (hot voxels, spikes).
CLIP_PERCENTILES = (0.1, 99.9)
#: Fewest voxels on either side of a threshold for its classes to be used.
MIN_CLASS = 16
_OTSU_BINS = 256
#: sqrt((4 - pi) / 2): the SD of a Rayleigh distribution over its scale (MRIQC's DIETRICH_FACTOR).
DIETRICH_FACTOR = math.sqrt((4 - math.pi) / 2)


def _finite(x: float, nd: int = 6) -> float | None:
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def otsu_threshold(values: np.ndarray, bins: int = _OTSU_BINS) -> float | None:
    """Otsu's threshold of finite ``values``: the histogram cut maximising the between-class variance.

    Returns the upper edge of the last bin of the low class (so ``values >
    t`` is the high class), or ``None`` when the values are constant or
    empty. Same definition as ``skimage.filters.threshold_otsu`` (which
    returns the bin centre).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return None
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts, dtype=np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(counts * centres)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    i = int(np.argmax(between[:-1]))
    return float(edges[i + 1])


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> list[float] | None:
    """Normalised histogram of ``values`` over ``[lo, hi]`` (outside values clipped into the end bins)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not (math.isfinite(lo) and math.isfinite(hi)) or not hi > lo:
        return None
    counts, _ = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    return [round(float(c), 6) for c in counts / counts.sum()]


def _split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    t = otsu_threshold(values)
    if t is None:
        return None
    high = values > t
    n_high = int(np.count_nonzero(high))
    if n_high < MIN_CLASS or values.size - n_high < MIN_CLASS:
        return None
    return values[~high], values[high], t


def quality_metrics(volume: np.ndarray, *, voxel_volume_mm3: float | None = None,
                    total_voxels: int | None = None) -> dict[str, Any] | None:
    """The quality metrics of a volume (module docstring); ``None`` when it has too few finite voxels.

    Parameters
    ----------
    volume : ndarray
        The (possibly subsampled) reference volume; NaN and inf are ignored.
    voxel_volume_mm3 : float, optional
        Volume of one voxel of the full-resolution image (for ``fg_volume_ml``).
    total_voxels : int, optional
        Voxels of the full-resolution volume (default ``volume.size``).
    """
    v = np.asarray(volume, dtype=np.float32).ravel()
    finite = np.isfinite(v)
    vals = v if bool(finite.all()) else v[finite]
    if vals.size < 2 * MIN_CLASS:
        return None
    vals = vals.astype(np.float64)
    # winsorise: a few hot voxels (spikes, a bright artefact) must not decide the mask, the noise or the range
    lo_clip, hi_clip = np.percentile(vals, CLIP_PERCENTILES)
    if hi_clip > lo_clip:
        np.clip(vals, lo_clip, hi_clip, out=vals)
    mask = "otsu"
    parts = _split(vals)
    if parts is None:
        mean = float(vals.mean())
        fg_sel = vals > mean
        if not 0 < np.count_nonzero(fg_sel) < vals.size:
            return None
        bg, fg, thr = vals[~fg_sel], vals[fg_sel], mean
        mask = "mean"
    else:
        bg, fg, thr = parts
    out: dict[str, Any] = {"mask": mask, "threshold": _finite(thr)}
    pct = np.percentile(fg, PERCENTILES)
    for q, x in zip(PERCENTILES, pct):
        out[f"fg_p{q:02d}"] = _finite(x)
    frac = fg.size / v.size
    out["fg_fraction"] = _finite(frac)
    n_total = total_voxels if total_voxels is not None else v.size
    out["fg_volume_ml"] = (_finite(frac * n_total * voxel_volume_mm3 / 1000.0, 3)
                           if voxel_volume_mm3 is not None and voxel_volume_mm3 > 0 else None)
    mu_fg, sd_fg = float(fg.mean()), float(fg.std())
    n = fg.size
    out["snr"] = _finite(mu_fg / (sd_fg * math.sqrt(n / (n - 1)))) if sd_fg > 0 and n > 1 else None
    sd_bg = float(bg.std()) if bg.size >= MIN_CLASS else 0.0
    noise = sd_bg > 1e-6 * max(abs(mu_fg), 1e-30)
    out["snr_dietrich"] = _finite(DIETRICH_FACTOR * mu_fg / sd_bg) if noise else None
    out["bg_sd"] = _finite(sd_bg) if bg.size >= MIN_CLASS else None
    classes = _split(fg)
    out["cnr"] = out["cjv"] = None
    if classes is not None:
        low, high, _t = classes
        gap = abs(float(high.mean()) - float(low.mean()))
        sd_l, sd_h = float(low.std()), float(high.std())
        denom = math.sqrt(sd_l ** 2 + sd_h ** 2 + (sd_bg ** 2 if noise else 0.0))
        out["cnr"] = _finite(gap / denom) if denom > 0 else None
        out["cjv"] = _finite((sd_l + sd_h) / gap) if gap > 0 else None
        out["high_fraction"] = _finite(high.size / fg.size)
    lo, hi = float(pct[0]), float(pct[-1])
    out["histogram"] = histogram(fg, lo, hi)
    return out
