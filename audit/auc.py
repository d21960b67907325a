"""The domain classifier's ROC AUC as an effect size: how well features tell two splits apart.

* :func:`auc_effect` (``kind="auc"``): ROC AUC of a domain classifier's
  out-of-fold scores (evaluation split positive), a score interval with
  the Hanley-McNeil variance (DeLong's standard error in details), and
  the analytic Mann-Whitney p-value (normal approximation with tie and
  continuity correction, identical to
  ``scipy.stats.mannwhitneyu(method="asymptotic")``): no permutation floor.
* :func:`domain_auc` fits the domain classifier (:mod:`audit.predictors`'
  ridge solver and folds) and calibrates that p-value for
  cross-validation (out-of-fold scores are not independent): the same
  statistic standardised by its mean and SD under label permutations,
  solved in one pass.

Bad input gives an :class:`~audit.effects.Effect` with ``estimate=None``
and a reason, never an exception. scipy is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from audit.effects import LEVEL, MIN_PER_SIDE, Effect, _clean, _finite, _not_measured, _z
from audit.predictors import ridge_oof, stratified_folds

__all__ = ["mann_whitney_p", "auc_effect", "domain_auc"]


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(x), dtype=float)


def mann_whitney_p(evaluation: Iterable[Any], reference: Iterable[Any], *,
                   alternative: str = "greater") -> float | None:
    """Analytic Mann-Whitney p-value of ``evaluation`` against ``reference`` (no permutations, no floor).

    The normal approximation with the tie correction of the variance and a
    continuity correction of 0.5, as ``scipy.stats.mannwhitneyu(evaluation,
    reference, alternative=..., method="asymptotic")``. ``"greater"``: the
    evaluation values tend to be larger (for domain-classifier scores: the
    classifier recognises the evaluation split). ``None`` when a side is
    empty; 1.0 when every value is the same.

    >>> round(mann_whitney_p([3, 4, 5, 6], [1, 2, 3]), 4)
    0.0372
    """
    from scipy.stats import norm

    x, _ = _clean(evaluation)
    y, _ = _clean(reference)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return None
    pooled = np.concatenate([x, y])
    r = _ranks(pooled)
    u1 = float(r[:n1].sum() - n1 * (n1 + 1) / 2)
    u2 = n1 * n2 - u1
    n = n1 + n2
    _, counts = np.unique(pooled, return_counts=True)
    tie = float((counts**3 - counts).sum())
    var = n1 * n2 / 12 * ((n + 1) - tie / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    u = {"greater": u1, "less": u2}.get(alternative, max(u1, u2))
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(var)
    p = float(norm.sf(z)) * (2 if alternative not in ("greater", "less") else 1)
    return _finite(min(1.0, max(0.0, p)))


def _hm_variance(theta: float, n1: int, n0: int) -> float:
    """Hanley & McNeil's (1982) variance of an AUC estimate when the true AUC is ``theta``."""
    q1, q2 = theta / (2 - theta), 2 * theta * theta / (1 + theta)
    return (theta * (1 - theta) + (n1 - 1) * (q1 - theta * theta) + (n0 - 1) * (q2 - theta * theta)) / (n1 * n0)


def _mw_sd(n1: int, n0: int) -> float:
    """SD of the AUC of independent scores under no difference (no ties): ``sqrt((n + 1) / (12 n1 n0))``."""
    return math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))


def _auc_score_interval(auc: float, n1: int, n0: int, level: float, inflation: float = 1.0) -> tuple[float, float]:
    """The AUCs ``theta`` with ``(auc - theta)^2 <= z^2 var(theta)``: a Wilson-type (score) interval.

    The variance is evaluated at each candidate ``theta``, not at the
    estimate, so the interval stays inside [0, 1] and is not degenerate at
    a perfect separation (where the estimate's own variance is 0), as
    Wilson's interval is not at 0 % or 100 % (Newcombe 2006).
    """
    from scipy.optimize import brentq

    z2 = _z(level) ** 2 * inflation

    def f(theta: float) -> float:
        return (auc - theta) ** 2 - z2 * _hm_variance(theta, n1, n0)

    grid = np.linspace(0.0, 1.0, 2001)
    values = (auc - grid) ** 2 - z2 * _hm_variance(grid, n1, n0)  # type: ignore[arg-type]
    inside = float(grid[int(np.argmin(values))])  # f < 0 there: the interval holds this point
    if f(inside) >= 0:
        return auc, auc
    lo = 0.0 if f(0.0) <= 0 else float(brentq(f, 0.0, inside, xtol=1e-9))
    hi = 1.0 if f(1.0) <= 0 else float(brentq(f, inside, 1.0, xtol=1e-9))
    return min(lo, auc), max(hi, auc)


def auc_effect(evaluation_scores: Iterable[Any], reference_scores: Iterable[Any], *, level: float = LEVEL,
               alternative: str = "greater", null: tuple[float, float] | None = None) -> Effect:
    """ROC AUC of scores that should be higher in the evaluation split, DeLong CI, analytic p-value.

    For a domain classifier: pass the pooled out-of-fold decision values of
    the evaluation split's participants and of the reference split's. The
    AUC is the chance that an evaluation participant scores above a
    reference one (ties count half); 0.5 means the classifier cannot tell
    the splits apart. The interval is a score (Wilson-type) interval with
    Hanley & McNeil's (1982) variance taken at each candidate AUC (Newcombe
    2006): unlike a Wald interval with DeLong's (1988) variance (whose
    standard error is kept in ``details``), it is not degenerate at a
    perfect separation (AUC 1.00 with 20 against 80 participants: 95 % CI
    about 0.91 to 1). The p-value is
    :func:`mann_whitney_p` (``alternative="greater"`` by default: an
    out-of-fold AUC below 0.5 is a cross-validation artefact, not a shift).

    Out-of-fold scores are not independent (each fold's model learnt from
    the other folds' labels), and the analytic p-value is then too small
    (under no shift, p < 0.05 in ~11 % of audits, p < 0.005 in ~2 %:
    ``bench/sim_power.py``). Pass ``null=(mean, sd)``, the AUC's mean and
    SD under label permutations (:func:`domain_auc` does): the p-value is
    then the normal tail of ``(auc - mean) / sd`` (the Mann-Whitney
    statistic standardised by its permutation moments instead of the
    analytic ones; no floor), and the interval's variance is multiplied by
    ``(sd / analytic sd)^2`` when that is above 1 (the design effect of
    cross-validation).

    >>> e = auc_effect([0.9, 0.8, 0.7, 0.65], [0.1, 0.3, 0.2, 0.6, 0.4])
    >>> e.estimate, [round(c, 2) for c in e.ci], round(e.p_value, 4)
    (1.0, [0.61, 1.0], 0.01)
    >>> auc_effect([0.5, 0.5], [0.5, 0.5]).estimate
    0.5
    >>> auc_effect([0.3], [0.1, 0.2]).reason
    'fewer than 2 participants in the evaluation split (1)'
    """
    x, drop_x = _clean(evaluation_scores)
    y, drop_y = _clean(reference_scores)
    n1, n0 = int(x.size), int(y.size)
    n = (n0, n1)
    details: dict[str, Any] = {}
    if drop_x or drop_y:
        details["dropped_non_finite"] = [drop_y, drop_x]
    for name, m in (("reference", n0), ("evaluation", n1)):
        if m < MIN_PER_SIDE:
            return _not_measured("auc", n, f"fewer than {MIN_PER_SIDE} participants in the {name} split ({m})",
                                 **details)
    pooled = np.concatenate([x, y])
    r = _ranks(pooled)
    rx, ry = _ranks(x), _ranks(y)
    v10 = (r[:n1] - rx) / n0          # for each evaluation score: share of reference scores below it
    v01 = 1 - (r[n1:] - ry) / n1      # for each reference score: share of evaluation scores above it
    auc = float(v10.mean())
    details["se_delong"] = _finite(math.sqrt(max(0.0, float(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0))), 4)
    if np.ptp(pooled) == 0:
        lo, hi = 0.0, 1.0
        details["interval"] = "none (every score is the same)"
    else:
        inflation = 1.0
        if null is not None and _finite(null[1], None) and null[1] > 0:
            inflation = max(1.0, (float(null[1]) / _mw_sd(n1, n0)) ** 2)
            details["variance_inflation"] = _finite(inflation, 4)
        lo, hi = _auc_score_interval(auc, n1, n0, level, inflation)
        details["interval"] = "score interval, Hanley-McNeil variance"
    details["alternative"] = alternative
    test = "mann_whitney_asymptotic"
    if null is not None and _finite(null[0], None) is not None and _finite(null[1], None) and null[1] > 0:
        from scipy.stats import norm

        zval = (auc - float(null[0])) / float(null[1])
        tail = {"greater": norm.sf(zval), "less": norm.cdf(zval)}.get(alternative, 2 * norm.sf(abs(zval)))
        p = _finite(min(1.0, float(tail)))
        test = "auc_permutation_moments"
        details["permutation_moments"] = {"mean": _finite(null[0], 4), "sd": _finite(null[1], 4)}
    else:
        p = mann_whitney_p(x, y, alternative=alternative)
    return Effect("auc", _finite(auc, 5), (float(_finite(lo, 4) or 0.0), float(_finite(hi, 4) or 0.0)), n,
                  level=level, p_value=p, test=test, details=details)


def domain_auc(X: Any, evaluation: Sequence[bool] | np.ndarray, *, n_splits: int = 5, alpha: float = 10.0,
               n_permutations: int = 200, seed: int = 0, level: float = LEVEL) -> Effect:
    """Out-of-fold ROC AUC of a linear domain classifier, with a calibrated p-value and interval.

    ``X`` holds one row of features per participant of both splits,
    ``evaluation`` marks the evaluation split's rows. The classifier and
    folds are :mod:`audit.predictors`' (ridge on +-1 targets of fold-standardised
    features, ``StratifiedKFold``; missing values: the feature's median;
    constant features dropped). The null moments of the AUC come from
    ``n_permutations`` permutations of the labels *within* each fold (the
    folds' class counts kept), all solved at once as extra regression
    targets, so that calibration costs about one more fit; the result is
    :func:`auc_effect` with ``null=(mean, sd)``. ``details["scores"]`` are
    not kept (they are per participant); ``details["folds"]`` is the
    number of folds.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 5)); X[:15] += 3.0
    >>> e = domain_auc(X, [True] * 15 + [False] * 45)
    >>> e.estimate > 0.99, e.p_value < 1e-4, e.test
    (True, True, 'auc_permutation_moments')
    """
    x = np.asarray(X, dtype=float)
    y = np.asarray(evaluation, dtype=bool).astype(np.int64)
    n1 = int(y.sum())
    n = (int(y.size - n1), n1)
    if x.ndim != 2 or x.shape[0] != y.size:
        return _not_measured("auc", n, "features and labels do not match")
    for name, m in (("reference", n[0]), ("evaluation", n[1])):
        if m < MIN_PER_SIDE:
            return _not_measured("auc", n, f"fewer than {MIN_PER_SIDE} participants in the {name} split ({m})")
    x = x.copy()
    for j in range(x.shape[1]):
        col = x[:, j]
        bad = ~np.isfinite(col)
        col[bad] = float(np.median(col[~bad])) if (~bad).any() else 0.0
    keep = [j for j in range(x.shape[1]) if np.ptp(x[:, j]) > 1e-12]
    if not keep:
        return _not_measured("auc", n, "no feature varies")
    x = x[:, keep]
    k = int(min(n_splits, n[0], n[1]))
    folds = stratified_folds(y, k, seed)
    rng = np.random.default_rng(seed + 1)
    labels = np.empty((y.size, n_permutations + 1), dtype=np.int64)
    labels[:, 0] = y
    for _tr, te in folds:
        labels[te, 1:] = rng.permuted(np.broadcast_to(y[te][:, None], (te.size, n_permutations)), axis=0)
    scores = ridge_oof(x, np.where(labels == 1, 1.0, -1.0), folds, alpha)
    null = None
    if n_permutations >= 2:
        ranks = scores[:, 1:].argsort(0).argsort(0) + 1.0  # continuous scores: ties are negligible here
        aucs = ((ranks * labels[:, 1:]).sum(0) - n1 * (n1 + 1) / 2) / (n1 * n[0])
        null = (float(aucs.mean()), float(aucs.std(ddof=1)))
    eff = auc_effect(scores[y == 1, 0], scores[y == 0, 0], level=level, null=null)
    return Effect(eff.kind, eff.estimate, eff.ci, eff.n, level=eff.level, p_value=eff.p_value, test=eff.test,
                  reason=eff.reason, details={**eff.details, "folds": k, "n_permutations": n_permutations,
                                              "features_used": len(keep)})
