"""audit.stats: the small-sample statistics behind confound.* and shift.* (and the doctests of stats/scanner)."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.scanner
import audit.predictors
import audit.stats
from audit import predictors, stats


@pytest.mark.parametrize("module", [audit.stats, audit.predictors, audit.scanner])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- contingency tests
def test_two_by_two_uses_boschloo_then_fisher_and_matches_scipy():
    # Boschloo's exact test for small 2x2 tables (more power than Fisher's at 20 evaluation participants,
    # still exact); Fisher's above BOSCHLOO_MAX_N, where Boschloo's cost grows and the two agree
    from scipy.stats import boschloo_exact, fisher_exact

    t = np.array([[7, 2], [1, 6]])
    a = stats.association_test(t)
    assert a.test == "boschloo_exact"
    assert a.p_value == pytest.approx(boschloo_exact(t).pvalue, rel=1e-5)
    assert a.p_value <= fisher_exact(t).pvalue
    big = np.array([[150, 110], [20, 30]])
    b = stats.association_test(big)
    assert b.test == "fisher_exact" and b.p_value == pytest.approx(fisher_exact(big).pvalue, rel=1e-5)


def test_large_expected_counts_use_chi_square_and_match_scipy():
    from scipy.stats import chi2_contingency

    t = np.array([[30, 12, 20], [10, 40, 22]])
    a = stats.association_test(t)
    res = chi2_contingency(t, correction=False)
    assert a.test == "chi_square" and a.dof == 2
    assert a.statistic == pytest.approx(res.statistic, rel=1e-5)
    assert a.p_value == pytest.approx(res.pvalue, rel=1e-4)


def test_small_expected_counts_use_a_seeded_permutation_test():
    t = np.array([[3, 1, 2], [0, 4, 2], [5, 0, 1]])
    a = stats.association_test(t, n_permutations=999, seed=3)
    b = stats.association_test(t, n_permutations=999, seed=3)
    assert a.test == "permutation_chi_square" and a.n_permutations == 999
    assert a == b
    assert 1 / 1000 <= a.p_value <= 1


def test_degenerate_tables_have_no_test_and_no_nan():
    for t in ([[3, 4]], [[0, 0], [0, 0]], [[5], [6]]):
        a = stats.association_test(np.array(t))
        assert a.test == "none" and a.p_value is None and a.cramers_v is None
        json.dumps(a.to_dict(), allow_nan=False)


def test_cramers_v_bias_correction():
    rng = np.random.default_rng(0)
    # independent data, small n: the raw V is far from 0, the corrected one is not
    raws, corr = [], []
    for _ in range(200):
        x = rng.integers(0, 3, 20)
        y = rng.integers(0, 2, 20)
        t, _, _ = stats.contingency(x.tolist(), y.tolist())
        raws.append(stats.cramers_v(t, corrected=False) or 0.0)
        corr.append(stats.cramers_v(t) or 0.0)
    assert np.mean(raws) > 0.2
    assert np.mean(corr) < 0.1
    assert stats.cramers_v([[10, 0], [0, 10]]) == 1.0
    assert stats.cramers_v([[10, 10]]) is None


def test_proportion_smd_does_not_shrink_with_a_small_split():
    big = stats.proportion_smd(np.array([[500, 500], [70, 30]]))
    same = stats.proportion_smd(np.array([[50, 50], [70, 30]]))
    assert big == pytest.approx(same)
    v_big = stats.cramers_v(np.array([[500, 500], [70, 30]]))
    v_same = stats.cramers_v(np.array([[50, 50], [70, 30]]))
    assert v_big < v_same  # V depends on the split sizes; the proportion SMD does not
    assert stats.proportion_smd(np.array([[10, 0], [0, 10]])) == 10.0
    assert stats.proportion_smd(np.array([[0, 0], [3, 4]])) is None


# --------------------------------------------------------------------------- continuous
def test_smd_wasserstein_and_tests_on_shifted_samples():
    rng = np.random.default_rng(1)
    a = rng.normal(70, 7, 400)
    b = rng.normal(75, 7, 400)
    s = stats.smd(a, b)
    assert 0.5 < s < 0.95
    assert stats.wasserstein(a, b) >= abs(s) - 1e-9
    assert stats.mann_whitney(a, b)[1] < 1e-6
    assert stats.ks_test(a, b)[1] < 1e-6
    assert stats.tost_smd(a, b, 0.25) > 0.5  # not equivalent
    same = rng.normal(70, 7, 400)
    assert stats.tost_smd(a, same, 0.5) < 0.05  # equivalent within half an SD


def test_continuous_helpers_handle_empty_constant_and_nan():
    assert stats.smd([], [1.0]) is None
    assert stats.smd([2.0, 2.0], [2.0, 2.0]) is None
    assert stats.smd([1.0, 1.0], [2.0, 2.0]) == 10.0
    assert stats.smd([1.0, float("nan"), 3.0], [2.0, 3.0, 4.0]) == pytest.approx(1 / math.sqrt(1.5), abs=1e-5)
    assert stats.mann_whitney([1.0], []) == (None, None)
    assert stats.mann_whitney([1.0, 1.0], [1.0, 1.0])[1] == 1.0
    assert stats.tost_smd([1.0], [1.0, 2.0], 0.25) is None
    assert stats.wasserstein([1.0, 1.0], [1.0, 1.0]) == 0.0


@pytest.mark.parametrize(("cell", "expected"), [
    ("71", (71.0, None)), ("89+", (89.0, "censored")), (">89", (89.0, "censored")),
    ("<18", (18.0, "censored")), ("26-30", (28.0, "range")), ("old", (None, "text")),
    ("n/a", (None, "missing")), ("", (None, "missing")), ("inf", (None, "text")), ("nan", (None, "missing")),
])
def test_parse_number(cell, expected):
    assert stats.parse_number(cell) == expected


# --------------------------------------------------------------------------- multiplicity
def test_benjamini_hochberg_known_values():
    adj = stats.benjamini_hochberg([0.01, 0.02, 0.03, 0.04, 0.05])
    assert adj == pytest.approx([0.05] * 5)
    assert stats.benjamini_hochberg([]) == []
    assert stats.benjamini_hochberg([None, None]) == [None, None]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=30))
def test_benjamini_hochberg_properties(ps):
    adj = stats.benjamini_hochberg(ps)
    assert len(adj) == len(ps)
    pairs = [(p, q) for p, q in zip(ps, adj) if p is not None]
    assert all(q is not None and p - 1e-6 <= q <= 1.0 for p, q in pairs)
    # order preserving
    pairs.sort()
    qs = [q for _, q in pairs]
    assert all(x <= y + 1e-6 for x, y in zip(qs, qs[1:]))
    assert all(q is None for p, q in zip(ps, adj) if p is None)


# --------------------------------------------------------------------------- predictors
def test_label_from_site_confounded_and_independent():
    rng = np.random.default_rng(2)
    site = rng.integers(0, 3, 60)
    confounded = np.where(rng.random(60) < 0.9, site % 2, 1 - site % 2)
    r = predictors.label_from_site(site.tolist(), confounded.tolist(), n_permutations=100)
    assert r["balanced_accuracy"] > 0.8 and r["p_value"] < 0.02 and r["chance"] == 0.5
    independent = rng.integers(0, 2, 60)
    r = predictors.label_from_site(site.tolist(), independent.tolist(), n_permutations=100)
    assert r["p_value"] > 0.05
    one_site = predictors.label_from_site([0] * 10, independent[:10].tolist())
    assert one_site["balanced_accuracy"] is None and one_site["p_value"] is None
    json.dumps(one_site, allow_nan=False)


def test_domain_classifier_matches_sklearn_ridge_pipeline():
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 6))
    y = np.array([0] * 40 + [1] * 10)
    X[y == 1, 0] += 1.5
    r = predictors.domain_classifier(X, y, n_permutations=50, seed=4, alpha=10.0)
    dv = cross_val_predict(make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0)), X, y,
                           cv=StratifiedKFold(5, shuffle=True, random_state=4), method="decision_function")
    assert r["score"] == pytest.approx(predictors.roc_auc(y, dv), abs=1e-6)
    assert r["p_value"] < 0.05
    assert max(r["coefficients"], key=lambda k: abs(r["coefficients"][k])) == "x0"


def test_domain_classifier_null_stops_early_and_handles_bad_columns():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 4))
    X[:, 2] = 7.0  # constant: dropped
    X[3, 1] = np.nan  # imputed
    y = ["a"] * 30 + ["b"] * 10
    r = predictors.domain_classifier(X, y, n_permutations=200, seed=1)
    assert "x2" not in r["features"]
    assert r["p_value"] > 0.05 and r["n_permutations"] < 200
    json.dumps(r, allow_nan=False)
    single = predictors.domain_classifier(X, ["a"] * 40)
    assert single["score"] is None and single["p_value"] is None


def test_permutation_p_values_are_calibrated_under_the_null():
    rng = np.random.default_rng(6)
    ps = []
    for i in range(60):
        X = rng.normal(size=(30, 3))
        y = [0] * 20 + [1] * 10
        ps.append(predictors.domain_classifier(X, y, n_permutations=40, seed=i)["p_value"])
    assert np.mean(np.array(ps) < 0.1) < 0.25
    assert all(0 < p <= 1 for p in ps)


def test_finite_never_returns_nan():
    for x in (float("nan"), float("inf"), "abc", None):
        assert stats.finite(x) is None
    assert math.isfinite(stats.finite(1e-300))
