"""audit.images.features: MRIQC-style quality metrics on numpy arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from audit.images.features import CLIP_PERCENTILES, DIETRICH_FACTOR, HIST_BINS, histogram, otsu_threshold, quality_metrics


def head(shape=(40, 40, 40), *, noise=3.0, wm=110.0, gm=70.0, seed=0) -> np.ndarray:
    """A sphere (outer shell ``gm``, core ``wm``) in Rayleigh-like air noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1).reshape(3, 1, 1, 1) / 2
    r = np.sqrt(((grid - centre) ** 2).sum(0)) / (min(shape) / 2)
    tissue = np.where(r < 0.8, np.where(r < 0.5, wm, gm), 0.0)
    return tissue + np.abs(rng.normal(0.0, noise, shape))


def test_otsu_separates_two_populations():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(10, 1, 5000), rng.normal(50, 2, 3000)])
    t = otsu_threshold(v)
    assert (v[:5000] <= t).all() and (v[5000:] > t).all()
    assert otsu_threshold(np.full(10, 3.0)) is None
    assert otsu_threshold(np.array([np.nan, np.inf])) is None


def test_otsu_matches_scikit_image_when_installed():
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.normal(10, 3, 4000), rng.normal(40, 5, 2000)])
    ours = otsu_threshold(v)
    theirs = float(filters.threshold_otsu(v, nbins=256))
    assert abs(ours - theirs) <= (v.max() - v.min()) / 256  # same cut; we return the bin edge, skimage its centre


def test_histogram_is_normalised_and_scale_free():
    rng = np.random.default_rng(3)
    v = rng.normal(100, 10, 10000)
    h = histogram(v, 80, 120)
    assert len(h) == HIST_BINS and math.isclose(sum(h), 1.0, abs_tol=1e-4)
    assert h == histogram(3 * v + 7, 3 * 80 + 7, 3 * 120 + 7)  # linear rescaling: same shape
    assert histogram(v, 5, 5) is None and histogram(np.array([]), 0, 1) is None


def test_quality_metrics_of_a_phantom():
    vol = head()
    q = quality_metrics(vol, voxel_volume_mm3=8.0)
    assert q["mask"] == "otsu"
    fg = vol > q["threshold"]
    # the Otsu foreground is the sphere of radius 0.8 * 20 voxels (2 mm): 4/3 pi 16^3 voxels * 8 mm^3
    expected_ml = 4 / 3 * math.pi * 16**3 * 8 / 1000
    assert q["fg_volume_ml"] == pytest.approx(expected_ml, rel=0.05)
    assert q["fg_p01"] < q["fg_p50"] < q["fg_p99"] and 60 < q["fg_p05"] < 80 and 100 < q["fg_p99"] < 125
    w = np.clip(vol, *np.percentile(vol, CLIP_PERCENTILES))  # winsorised first
    mu = w[fg].mean()
    assert q["snr"] == pytest.approx(mu / (w[fg].std(ddof=1)), rel=1e-4)
    assert q["snr_dietrich"] == pytest.approx(DIETRICH_FACTOR * mu / w[~fg].std(), rel=1e-4)
    # two tissue classes 40 apart with noise SD ~3: a high CNR, a low CJV
    assert q["cnr"] > 5 and 0 < q["cjv"] < 0.3
    assert len(q["histogram"]) == HIST_BINS
    json.dumps(q, allow_nan=False)


def test_more_noise_lowers_snr_and_cnr_and_scaling_changes_nothing():
    clean, noisy = quality_metrics(head(noise=2.0)), quality_metrics(head(noise=8.0))
    assert noisy["snr_dietrich"] < clean["snr_dietrich"] and noisy["cnr"] < clean["cnr"]
    scaled = quality_metrics(head(noise=2.0) * 4.0)
    for k in ("snr", "snr_dietrich", "cnr", "cjv"):
        assert scaled[k] == pytest.approx(clean[k], rel=1e-3)


def test_masked_background_has_no_dietrich_snr():
    vol = head(noise=0.0)
    vol[vol < 1] = 0.0  # skull-stripped: the background is exactly zero
    vol += np.random.default_rng(4).normal(0, 1, vol.shape) * (vol > 0)
    q = quality_metrics(vol)
    assert q["snr_dietrich"] is None and q["snr"] is not None and q["cnr"] is not None
    assert q["fg_volume_ml"] is None  # no voxel size given


@pytest.mark.parametrize("vol", [np.zeros((2, 2, 2)), np.full((10, 10, 10), np.nan), np.ones((10, 10, 10))])
def test_degenerate_volumes_give_none_not_nan(vol):
    assert quality_metrics(vol) is None


def test_nan_voxels_are_ignored():
    vol = head()
    vol[:5] = np.nan
    q = quality_metrics(vol)
    assert q is not None and all(not (isinstance(v, float) and math.isnan(v)) for v in q.values())
    json.dumps(q, allow_nan=False)


def test_a_few_hot_voxels_change_nothing_much():
    vol = head()
    clean = quality_metrics(vol)
    vol[0, 0, 0], vol[1, 0, 0] = 1e6, 5e5  # spikes
    spiked = quality_metrics(vol)
    assert spiked["mask"] == "otsu"
    for k in ("snr", "snr_dietrich", "cnr", "fg_fraction", "fg_p99"):
        assert spiked[k] == pytest.approx(clean[k], rel=0.01), k
