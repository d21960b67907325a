"""Image features of each participant's reference image: what shift.image and the scanner signature compare.

Shared by ``shift.image`` (a domain classifier telling two splits apart
from them) and ``confound.label_site``'s scanner signature (telling sites
apart), and charted by the report (:mod:`audit.outputs.distributions`).
Computed once per audit from the one image pass (no image is read here).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.scanner import reference_images

if TYPE_CHECKING:
    from audit.context import AuditContext

__all__ = ["IMAGE_FEATURES", "N_THUMBNAIL_COMPONENTS", "N_HISTOGRAM_COMPONENTS", "PCA_SAMPLE", "ImageFeatures",
           "image_features", "computed_features"]

IMAGE_FEATURES: tuple[str, ...] = (
    "intensity_scale",     # log10 of the median foreground intensity (scanner gain, unless images are normalised)
    "low_over_median",     # p01 / p50 inside the foreground: dark tissue contrast
    "high_over_median",    # p99 / p50 inside the foreground: bright tissue contrast, bright artefacts
    "mean_over_median",    # whole-volume mean / foreground median: background share and level
    "coefficient_of_variation",  # std / mean of the whole volume
    "foreground_fraction",  # share of voxels in the (above-mean) foreground: head size / field of view
    "nonzero_fraction",    # zeroed background (defacing, masking, skull stripping)
    "voxel_volume",        # log10 of the voxel volume (mm^3)
    "field_of_view",       # log10 of the imaged volume (mm^3)
    # MRIQC-style quality metrics of the one decode (audit.images.features), all scale-free but the volume
    "snr",                 # log10 of mean / SD of the Otsu foreground (MRIQC snr)
    "snr_dietrich",        # log10 of the foreground mean over the air-background SD (MRIQC snr_dietrich)
    "cnr",                 # contrast-to-noise of the two Otsu classes of the foreground (MRIQC cnr)
    "cjv",                 # coefficient of joint variation of those classes (MRIQC cjv)
    "foreground_volume",   # log10 of the Otsu foreground volume (mL): head size, field of view, defacing
    "fg_p05_over_median",  # robust percentiles of the Otsu foreground over its median
    "fg_p95_over_median",
    "fg_iqr_over_median",  # (p75 - p25) / p50: spread of the tissue intensities
    "bright_class_fraction",  # share of the foreground in the bright Otsu class (white matter on a T1w)
)
N_THUMBNAIL_COMPONENTS = 5
#: Principal components of the 32-bin foreground histograms (the shape of the contrast) used as features.
N_HISTOGRAM_COMPONENTS = 3


@dataclass(frozen=True)
class ImageFeatures:
    """Per-participant feature vectors of each participant's reference image (one image suffix)."""

    suffix: str | None
    names: list[str]
    by_subject: dict[str, np.ndarray]
    excluded: dict[str, int]


def image_features(ctx: AuditContext) -> ImageFeatures:
    """Per-participant image features from the one image pass (computed once per audit).

    The reference image of a participant is its first image of the dataset's
    most common suffix. Features are :data:`IMAGE_FEATURES` (header facts,
    intensity statistics and the MRIQC-style quality metrics of
    :mod:`audit.images.features`: SNR, CNR, CJV, Otsu-foreground percentiles
    and volume) plus the first principal components of the 16^3 thumbnails
    (the coarse anatomy and contrast layout) and of the 32-bin foreground
    histograms (the shape of the contrast); PCA over every participant, no
    split used.
    """
    return ctx.once(_compute)


def computed_features(ctx: AuditContext) -> ImageFeatures | None:
    """The image features when a check computed them in this audit (``None`` otherwise; nothing is read)."""
    return ctx.computed(_compute)


def _compute(ctx: AuditContext) -> ImageFeatures:
    assert ctx.index is not None
    suffix, ref = reference_images(ctx.index)
    summaries = ctx.images.by_path()
    rows: dict[str, list[float]] = {}
    with_thumb: dict[str, Any] = {}
    hists: dict[str, Any] = {}
    excluded: Counter[str] = Counter()
    for sub, path in sorted(ref.items()):
        s = summaries.get(path)
        if s is None:
            excluded["content absent"] += 1
            continue
        if not s.ok:
            excluded[s.status] += 1
            continue

        def ratio(x: float | None, y: float | None) -> float:
            return float(x) / float(y) if x is not None and y not in (None, 0) else math.nan

        def log10(x: float | None) -> float:
            return math.log10(x) if x is not None and x > 0 else math.nan

        zooms = list(s.zooms or [])[:3]
        vox = float(np.prod(zooms)) if len(zooms) == 3 else None
        shape = list(s.spatial_shape or [])
        fov = vox * float(np.prod(shape)) if vox is not None and len(shape) == 3 else None
        q = s.iqm or {}

        def num(x: Any) -> float:
            return float(x) if x is not None else math.nan

        iqr = (q["fg_p75"] - q["fg_p25"]) if q.get("fg_p75") is not None and q.get("fg_p25") is not None else None
        rows[sub] = [log10(s.p50), ratio(s.p01, s.p50), ratio(s.p99, s.p50), ratio(s.mean, s.p50),
                     ratio(s.std, s.mean), s.foreground_fraction if s.foreground_fraction is not None else math.nan,
                     s.nonzero_fraction if s.nonzero_fraction is not None else math.nan, log10(vox), log10(fov),
                     log10(q.get("snr")), log10(q.get("snr_dietrich")), num(q.get("cnr")), num(q.get("cjv")),
                     log10(q.get("fg_volume_ml")), ratio(q.get("fg_p05"), q.get("fg_p50")),
                     ratio(q.get("fg_p95"), q.get("fg_p50")), ratio(iqr, q.get("fg_p50")),
                     num(q.get("high_fraction"))]
        if s.thumbnail:
            with_thumb[sub] = s
        if q.get("histogram"):
            hists[sub] = np.asarray(q["histogram"], dtype=np.float64)
    names = list(IMAGE_FEATURES)
    by_subject = {p: np.asarray(v, dtype=float) for p, v in rows.items()}
    for prefix, pcs in (("thumbnail", _thumbnail_components(with_thumb)),
                        ("histogram", _components(hists, N_HISTOGRAM_COMPONENTS))):
        if pcs:
            k = len(next(iter(pcs.values())))
            names += [f"{prefix}_pc{i + 1}" for i in range(k)]
            for p in by_subject:
                by_subject[p] = np.concatenate([by_subject[p], pcs.get(p, np.full(k, np.nan))])
    return ImageFeatures(suffix, names, by_subject, dict(excluded))


#: The thumbnail components are fitted on at most this many thumbnails (a seeded sample), then every
#: thumbnail is projected one at a time: memory stays small on a 50,000-image dataset.
PCA_SAMPLE = 2000


def _components(vectors: Mapping[str, Any], k_max: int) -> dict[str, Any]:
    """First ``k_max`` principal-component scores of equal-length finite vectors (seeded sample fit)."""
    subs = sorted(p for p, v in vectors.items() if np.isfinite(v).all())
    if len(subs) < 4:
        return {}
    size = Counter(len(vectors[p]) for p in subs).most_common(1)[0][0]
    subs = [p for p in subs if len(vectors[p]) == size]
    if len(subs) < 4:
        return {}
    rng = np.random.default_rng(0)
    sample = subs if len(subs) <= PCA_SAMPLE else [subs[i] for i in sorted(rng.choice(len(subs), PCA_SAMPLE,
                                                                                        replace=False))]
    m = np.stack([vectors[p] for p in sample])
    mean = m.mean(0)
    k = min(k_max, len(sample) - 1)
    _u, _sv, vt = np.linalg.svd(m - mean, full_matrices=False)
    basis = vt[:k]
    return {p: basis @ (vectors[p] - mean) for p in subs}


def _thumbnail_components(summaries: Mapping[str, Any]) -> dict[str, Any]:
    """First :data:`N_THUMBNAIL_COMPONENTS` principal-component scores of each participant's thumbnail."""
    def vector(s: Any) -> Any:
        v = s.thumbnail_vector().astype(np.float64)
        return v if v.size and np.isfinite(v).all() else None

    subs = sorted(summaries)
    if len(subs) < 4:
        return {}
    sizes = Counter(len(summaries[p].thumbnail) for p in subs)
    size = sizes.most_common(1)[0][0]
    subs = [p for p in subs if len(summaries[p].thumbnail) == size]
    rng = np.random.default_rng(0)
    sample = subs if len(subs) <= PCA_SAMPLE else [subs[i] for i in sorted(rng.choice(len(subs), PCA_SAMPLE,
                                                                                        replace=False))]
    vecs = [(p, vector(summaries[p])) for p in sample]
    vecs = [(p, v) for p, v in vecs if v is not None]
    if len(vecs) < 4:
        return {}
    m = np.stack([v for _, v in vecs])
    mean = m.mean(0)
    k = min(N_THUMBNAIL_COMPONENTS, len(vecs) - 1)
    _u, _sv, vt = np.linalg.svd(m - mean, full_matrices=False)
    basis = vt[:k]
    out = {}
    for p in subs:
        v = vector(summaries[p])
        if v is not None:
            out[p] = basis @ (v - mean)
    return out
