"""Effect sizes with confidence intervals, and the rules that turn them into warnings.

A shift or confound finding is decided by *how large* the difference is,
with its uncertainty shown, not by a p-value alone: with 50,000
participants trivial differences are significant, with 20 a domain
classifier that separates the splits perfectly may not survive a
multiplicity correction. Every function here returns an :class:`Effect`
(estimate, confidence interval, sample sizes, and, where the effect has
one, an analytic p-value), and :func:`classify_effect` turns an effect
into a :class:`Decision`: a magnitude (``large``, ``moderate``, ``small``,
``negligible``), whether it is a warning, and the sentence that says so.

Effects (each with a two-sided ``level`` confidence interval, 95 % by default)

* :func:`hedges_g` (``kind="smd"``): standardised mean difference of a
  continuous variable (evaluation minus reference), small-sample corrected;
  CI by inverting the noncentral t distribution (exact under normality),
  the normal approximation for very large samples; Student's t p-value.
* :func:`proportion_difference` (``kind="proportion_difference"``): each
  class's share per split and its difference, with Newcombe's hybrid score
  (Wilson) interval; the estimate is the class with the largest absolute
  difference, its interval Bonferroni-widened over the classes when there
  are more than two (the largest of K differences is a selected one).
* :func:`cramers_v` (``kind="cramers_v"``): Cramér's V of a contingency
  table (Bergsma's bias correction), CI by inverting the noncentral
  chi-square distribution of Pearson's statistic, chi-square p-value.
* :func:`auc_effect` (``kind="auc"``): ROC AUC of a domain classifier's
  out-of-fold scores (evaluation split positive), a score interval with
  the Hanley-McNeil variance (DeLong's standard error in details), and
  the analytic Mann-Whitney p-value (normal approximation with tie and
  continuity correction, identical to
  ``scipy.stats.mannwhitneyu(method="asymptotic")``): no permutation floor.
  :func:`domain_auc` fits the domain classifier and calibrates that
  p-value for cross-validation (out-of-fold scores are not independent):
  the same statistic standardised by its mean and SD under label
  permutations, solved in one pass.

Rules (:data:`RULES`, :data:`EVIDENCE`; the defaults are tuned by
``bench/sim_power.py``)

* below the ``negligible`` bound: never a warning, however small its p;
* ``small`` (negligible to moderate): not a warning;
* ``moderate`` (moderate to large): a warning only with evidence, the
  Benjamini-Hochberg adjusted p-value at most ``fdr`` (or, when the caller
  has no family p-value, the CI clear of the negligible region);
* ``large``: a warning when chance alone is an unlikely explanation,
  ``p <= alpha_large`` *unadjusted* or the adjusted p at most ``fdr`` (the
  CI clear of "no effect" when no p-value is given): the size of the
  effect carries it past the multiplicity penalty. Worded "large, uncertain with n = ..." when the CI
  reaches below the large bound.

Nothing here raises on bad input: an empty side, a single value, constant
values, one class or NaN give an effect with ``estimate=None`` and a
``reason`` that says why it was not measured. Every figure is a finite
``float`` or ``None``. scipy is imported inside the functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LEVEL",
    "MIN_PER_SIDE",
    "RULES",
    "EVIDENCE",
    "KINDS",
    "Effect",
    "Decision",
    "hedges_g",
    "wilson_interval",
    "newcombe_interval",
    "proportion_difference",
    "cramers_v",
    "auc_effect",
    "domain_auc",
    "mann_whitney_p",
    "classify_effect",
    "decide",
    "label_mix",
]

#: Default two-sided confidence level of every interval.
LEVEL = 0.95
#: Fewer values than this on a side: the effect is not measured.
MIN_PER_SIDE = 2

#: Magnitude bounds per kind of effect (on ``|estimate|``; the AUC on the estimate itself).
#: Conventions: Cohen (1988) for the SMD (0.2 small, 0.5 medium, 1.0 well past "large" 0.8);
#: Rea & Parker / Cohen's w for V with two classes (0.1 small, 0.3 medium, 0.5 large); Hosmer &
#: Lemeshow's discrimination bands for the AUC (0.6-0.7 poor, 0.7-0.8 acceptable, >= 0.9 outstanding);
#: class shares in proportion points (5 negligible, 10 moderate, 25 large: a 50/50 mix against 75/25).
RULES: dict[str, dict[str, float]] = {
    "smd": {"negligible": 0.2, "moderate": 0.5, "large": 1.0},
    "proportion_difference": {"negligible": 0.05, "moderate": 0.10, "large": 0.25},
    "cramers_v": {"negligible": 0.1, "moderate": 0.3, "large": 0.5},
    "auc": {"negligible": 0.6, "moderate": 0.7, "large": 0.9},
}
KINDS = tuple(RULES)

#: The evidence a warning needs besides its magnitude.
EVIDENCE: dict[str, Any] = {
    # moderate effects: Benjamini-Hochberg adjusted p-value at most this (the shift family's rate)
    "fdr": 0.025,
    # large effects: unadjusted p-value at most this (a Bonferroni level for a family of ten at 5 %). Tuned
    # with bench/sim_power.py (2,400 null audits at 10 and 20 evaluation participants, 11 tests each):
    # 0.005 -> 2.9 % and 2.7 % of null audits alarm; 0.0075 -> 4.0 % and 4.7 %; 0.01 -> 4.7 % and 5.2 %.
    # The price: a 90/10 test split of 20 against 50/50 has Fisher p ~ 0.005 and is found in 89-96 % of
    # audits (94 % at 0.0075).
    "alpha_large": 0.005,
    # when the moderate tier may use the CI clear of the negligible region instead of the adjusted p:
    # "without_p" (only when no p_adjusted is given), "always", or "never". A 95 % CI is not adjusted for
    # multiplicity, so "always" raises false alarms in a family of tests (bench/sim_power.py --ci-evidence).
    "ci_evidence": "without_p",
}

_NAMES = {"smd": "SMD (Hedges' g)", "proportion_difference": "class-share difference",
          "cramers_v": "Cramér's V", "auc": "ROC AUC"}
_NULL = {"smd": 0.0, "proportion_difference": 0.0, "cramers_v": 0.0, "auc": 0.5}
_SIGNED = frozenset({"smd", "proportion_difference"})


# --------------------------------------------------------------------------- results
def _finite(x: Any, digits: int | None = 6) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}") if digits is not None else v


@dataclass(frozen=True)
class Effect:
    """One effect size with its confidence interval (``estimate is None``: not measured, ``reason`` says why)."""

    kind: str
    estimate: float | None
    ci: tuple[float, float] | None
    n: tuple[int, ...]
    level: float = LEVEL
    p_value: float | None = None
    test: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.estimate is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: finite floats or ``None``, lists for tuples."""
        out: dict[str, Any] = {"kind": self.kind, "estimate": _finite(self.estimate),
                               "ci": None if self.ci is None else [_finite(c) for c in self.ci],
                               "level": self.level, "n": list(self.n), "p_value": _finite(self.p_value),
                               "test": self.test}
        if self.reason:
            out["not_measured"] = self.reason
        if self.details:
            out["details"] = _jsonable(self.details)
        return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _finite(x)
    return x


def _not_measured(kind: str, n: Sequence[int], reason: str, **details: Any) -> Effect:
    return Effect(kind, None, None, tuple(int(v) for v in n), reason=reason, details=details)


def _clean(values: Iterable[Any]) -> tuple[np.ndarray, int]:
    """Finite floats of ``values`` and how many were dropped (NaN, infinite, not numbers)."""
    out: list[float] = []
    dropped = 0
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            dropped += 1
            continue
        if math.isfinite(f):
            out.append(f)
        else:
            dropped += 1
    return np.asarray(out, dtype=float), dropped


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


# --------------------------------------------------------------------------- standardised mean difference
def _hedges_j(df: float) -> float:
    """Exact small-sample correction factor of Hedges (1981)."""
    if df > 300:
        return 1 - 3 / (4 * df - 1)
    return math.exp(math.lgamma(df / 2) - math.log(math.sqrt(df / 2)) - math.lgamma((df - 1) / 2))


def _nct_interval(t: float, df: float, level: float) -> tuple[float, float] | None:
    """Noncentrality parameters whose t distributions put ``t`` at the upper and lower tail (``None``: failed)."""
    from scipy.optimize import brentq
    from scipy.special import nctdtr  # the noncentral t CDF (scipy.stats.nct.cdf without its overhead)

    alpha = 1 - level
    width = 6 * math.sqrt(1 + t * t / (2 * df)) + 4

    def solve(target: float) -> float:
        def f(ncp: float) -> float:
            return float(nctdtr(df, ncp, t)) - target

        lo, hi = t - width, t + width
        for _ in range(20):
            if f(lo) > 0 > f(hi):
                return float(brentq(f, lo, hi, xtol=1e-10))
            lo, hi = lo - width, hi + width
        raise ValueError("no bracket")

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return solve(1 - alpha / 2), solve(alpha / 2)
        except (ValueError, RuntimeError, ArithmeticError):
            return None


def hedges_g(reference: Iterable[Any], evaluation: Iterable[Any], *, level: float = LEVEL) -> Effect:
    """Standardised mean difference (evaluation minus reference) with its confidence interval.

    Hedges' g: the mean difference over the pooled SD times the exact
    small-sample correction ``J``. The interval is for the population SMD,
    from the noncentral t distribution of Student's statistic (Steiger &
    Fouladi 1997; exact for normal data), or the normal approximation
    ``sqrt(1/n_a + 1/n_b + g^2 / (2 (n_a + n_b)))`` when the samples are
    very large. The p-value is Student's two-sided t-test. Non-finite
    values are dropped (counted in ``details``).

    >>> e = hedges_g([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])
    >>> e.estimate, [round(c, 2) for c in e.ci], round(e.p_value, 4)
    (1.1418, [-0.15, 2.62], 0.0805)
    >>> hedges_g([1, 1, 1], [1, 1]).reason
    'constant values: every value is 1 in both splits'
    >>> hedges_g([1.0], [2.0, float("nan"), 3.0]).reason
    'fewer than 2 values in the reference split (1)'
    """
    from scipy.stats import t as t_dist

    a, drop_a = _clean(reference)
    b, drop_b = _clean(evaluation)
    n = (int(a.size), int(b.size))
    details: dict[str, Any] = {}
    if drop_a or drop_b:
        details["dropped_non_finite"] = [drop_a, drop_b]
    for name, x in (("reference", a), ("evaluation", b)):
        if x.size < MIN_PER_SIDE:
            return _not_measured("smd", n, f"fewer than {MIN_PER_SIDE} values in the {name} split ({x.size})",
                                 **details)
    df = a.size + b.size - 2
    var = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df
    diff = float(b.mean() - a.mean())
    if var <= 1e-24 * max(1.0, float(np.abs(np.concatenate([a, b])).max()) ** 2):
        if diff == 0:
            return _not_measured("smd", n, f"constant values: every value is {a[0]:g} in both splits", **details)
        return _not_measured("smd", n, f"constant values within each split ({a[0]:g} and {b[0]:g}): the "
                                       "standardised difference is infinite (a complete separation)",
                             separation=True, **details)
    sp = math.sqrt(var)
    d = diff / sp
    g = _hedges_j(df) * d
    c = math.sqrt(1 / a.size + 1 / b.size)
    t = d / c
    p = float(2 * t_dist.sf(abs(t), df))
    ci = _nct_interval(t, df, level) if (df <= 2000 and abs(t) <= 30) else None
    if ci is not None:
        lo, hi = ci[0] * c, ci[1] * c
        method = "noncentral t"
    else:
        se = math.sqrt(c * c + g * g / (2 * (a.size + b.size)))
        z = _z(level)
        lo, hi = g - z * se, g + z * se
        method = "normal approximation"
    details.update(mean=[_finite(a.mean()), _finite(b.mean())], sd_pooled=_finite(sp), ci_method=method,
                   d_uncorrected=_finite(d))
    return Effect("smd", _finite(g, 5), (float(_finite(lo, 5) or 0.0), float(_finite(hi, 5) or 0.0)), n,
                  level=level, p_value=_finite(p), test="student_t", details=details)


# --------------------------------------------------------------------------- proportions
def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (``(0, 1)`` when ``n == 0``).

    >>> [round(x, 4) for x in wilson_interval(18, 20)]
    [0.699, 0.9721]
    """
    if n <= 0:
        return 0.0, 1.0
    z = _z(level)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(k_a: int, n_a: int, k_b: int, n_b: int, level: float = LEVEL) -> tuple[float, float]:
    """Newcombe's (1998, method 10) hybrid score interval of ``k_b / n_b - k_a / n_a``.

    >>> [round(x, 3) for x in newcombe_interval(50, 100, 18, 20)]
    [0.177, 0.52]
    """
    pa, pb = k_a / n_a, k_b / n_b
    la, ua = wilson_interval(k_a, n_a, level)
    lb, ub = wilson_interval(k_b, n_b, level)
    d = pb - pa
    return d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)


def _table(table: Any) -> np.ndarray | None:
    try:
        t = np.asarray(table, dtype=float)
    except (TypeError, ValueError):
        return None
    if t.ndim != 2 or not np.isfinite(t).all() or (t < 0).any():
        return None
    return t


def proportion_difference(table: Any, levels: Sequence[Any] | None = None, *, level: float = LEVEL,
                          splits: tuple[str, str] = ("reference", "evaluation")) -> Effect:
    """Each class's share in two splits and the largest difference, with a Newcombe interval.

    ``table`` is 2 x K counts: row 0 the reference split (train), row 1 the
    evaluation split; columns the classes (``levels`` names them). The
    estimate is the signed difference (evaluation minus reference) of the
    class whose share differs most, in proportion units (0.40 = 40 points).
    With more than two classes its interval is Newcombe's at the
    Bonferroni level ``1 - (1 - level) / K`` (simultaneous over the classes,
    so that picking the largest does not shrink the coverage); with two
    classes both differences are the same number, so no widening is
    needed. ``details`` holds every class's shares, difference and interval
    and the total variation distance (half the sum of absolute differences).
    p-value: none (the caller's association test supplies it).

    >>> e = proportion_difference([[50, 50], [18, 2]], ["AD", "CN"], splits=("train", "test"))
    >>> e.estimate, [round(c, 3) for c in e.ci], e.details["class"]
    (0.4, [0.177, 0.52], 'AD')
    >>> proportion_difference([[5, 0], [3, 0]], ["AD", "CN"]).reason
    'a single class (AD) in both splits: nothing can differ'
    """
    t = _table(table)
    if t is None or t.shape[0] != 2:
        return _not_measured("proportion_difference", (), "not a 2 x K table of non-negative counts")
    names = [str(v) for v in levels] if levels is not None else [str(j) for j in range(t.shape[1])]
    present = t.sum(0) > 0
    t = t[:, present]
    names = [nm for nm, keep in zip(names, present) if keep]
    na, nb = int(t[0].sum()), int(t[1].sum())
    n = (na, nb)
    for name, m in zip(splits, n):
        if m < MIN_PER_SIDE:
            return _not_measured("proportion_difference", n, f"fewer than {MIN_PER_SIDE} participants in "
                                                            f"{name} ({m})")
    if t.shape[1] < 2:
        return _not_measured("proportion_difference", n,
                             f"a single class ({names[0] if names else '?'}) in both splits: nothing can differ")
    k = t.shape[1]
    sim_level = level if k == 2 else 1 - (1 - level) / k
    sa, sb = t[0] / na, t[1] / nb
    diffs = sb - sa
    cis = [newcombe_interval(int(t[0, j]), na, int(t[1, j]), nb, sim_level) for j in range(k)]
    # the class whose share differs most; a tie (two classes always tie) goes to the one that grows
    j = max(range(k), key=lambda i: (round(abs(float(diffs[i])), 12), float(diffs[i]) > 0, -i))
    details = {"class": names[j], "levels": names, "shares": {splits[0]: [_finite(x, 4) for x in sa],
                                                              splits[1]: [_finite(x, 4) for x in sb]},
               "differences": [_finite(x, 4) for x in diffs], "intervals": [[_finite(lo, 4), _finite(hi, 4)]
                                                                            for lo, hi in cis],
               "interval_level": _finite(sim_level, 6), "total_variation": _finite(0.5 * np.abs(diffs).sum(), 4),
               "splits": list(splits)}
    lo, hi = cis[j]
    return Effect("proportion_difference", _finite(diffs[j], 4), (float(_finite(lo, 4) or 0.0),
                                                                  float(_finite(hi, 4) or 0.0)),
                  n, level=level, details=details)


# --------------------------------------------------------------------------- Cramér's V
def _bergsma_v(t: np.ndarray, chi2: float) -> float | None:
    r, k = t.shape
    n = float(t.sum())
    phi2c = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    rc = r - (r - 1) ** 2 / (n - 1)
    kc = k - (k - 1) ** 2 / (n - 1)
    denom = min(kc - 1, rc - 1)
    if denom <= 0:
        return None
    return math.sqrt(phi2c / denom)


def _ncx2_bounds(x: float, df: int, level: float) -> tuple[float, float] | None:
    """Noncentrality parameters that put ``x`` at the upper and lower ``(1 - level) / 2`` tails (0 at the floor)."""
    from scipy.optimize import brentq
    from scipy.special import chdtr, chndtr  # chi-square and noncentral chi-square CDFs

    alpha = 1 - level

    def solve(target: float) -> float:
        if float(chdtr(df, x)) <= target:
            return 0.0

        def f(lam: float) -> float:
            return float(chndtr(x, df, lam)) - target

        hi = max(10.0, 2 * x)
        for _ in range(60):
            if f(hi) < 0:
                return float(brentq(f, 0.0, hi, xtol=1e-8 * max(1.0, x)))
            hi *= 2
        raise ValueError("no bracket")

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return solve(1 - alpha / 2), solve(alpha / 2)
        except (ValueError, RuntimeError, ArithmeticError):
            return None


def cramers_v(table: Any, *, level: float = LEVEL, names: tuple[str, str] = ("rows", "columns")) -> Effect:
    """Cramér's V of a contingency table (Bergsma's bias correction) with a noncentral chi-square interval.

    Pearson's statistic is approximately noncentral chi-square with
    noncentrality ``lambda = n * m * V^2`` (``m = min(r, k) - 1``); the
    interval inverts that distribution at the observed statistic
    (Smithson 2003) and maps ``lambda`` back to V. The lower bound is 0
    when independence is not rejected at ``(1 - level) / 2``. p-value:
    Pearson's chi-square (asymptotic; ``details["min_expected"]`` says
    whether to trust it). Empty rows and columns are dropped first.

    >>> e = cramers_v([[40, 10], [10, 40]])
    >>> e.estimate, [round(c, 2) for c in e.ci], e.p_value < 1e-8
    (0.5945, [0.4, 0.8], True)
    >>> cramers_v([[5, 5]], names=("site", "label")).reason
    'fewer than two sites with participants (1)'
    """
    t = _table(table)
    if t is None:
        return _not_measured("cramers_v", (), "not a table of non-negative counts")
    t = t[t.sum(1) > 0][:, t.sum(0) > 0] if t.size else t
    n_total = int(t.sum())
    r, k = t.shape if t.size else (0, 0)
    plural = {"rows": "rows", "columns": "columns", "site": "sites", "label": "classes", "class": "classes"}
    for name, count in zip(names, (r, k)):
        if count < 2:
            return _not_measured("cramers_v", (n_total,), f"fewer than two {plural.get(name, name + 's')} "
                                                          f"with participants ({count})")
    if n_total < 3:
        return _not_measured("cramers_v", (n_total,), f"fewer than 3 participants ({n_total})")
    from scipy.stats import chi2 as chi2_dist

    expected = np.outer(t.sum(1), t.sum(0)) / n_total
    chi2 = float(((t - expected) ** 2 / expected).sum())
    df = (r - 1) * (k - 1)
    m = min(r, k) - 1
    v = _bergsma_v(t, chi2)
    p = float(chi2_dist.sf(chi2, df))
    bounds = _ncx2_bounds(chi2, df, level)
    if bounds is None:
        z = _z(level)
        half = z * math.sqrt(2 * (df + 2 * max(chi2 - df, 0.0)))  # variance of a noncentral chi-square
        bounds = (max(0.0, chi2 - df - half), max(0.0, chi2 - df + half))
    lo, hi = (min(1.0, math.sqrt(b / (n_total * m))) for b in bounds)
    details = {"chi_square": _finite(chi2), "dof": df, "min_expected": _finite(float(expected.min()), 4),
               "v_uncorrected": _finite(math.sqrt(min(1.0, chi2 / (n_total * m))), 4), "shape": [r, k]}
    if v is None:
        return _not_measured("cramers_v", (n_total,), "too few participants for the bias correction", **details)
    return Effect("cramers_v", _finite(v, 4), (float(_finite(lo, 4) or 0.0), float(_finite(hi, 4) or 0.0)),
                  (n_total,), level=level, p_value=_finite(p), test="chi_square", details=details)


# --------------------------------------------------------------------------- ROC AUC
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
        details["null"] = {"mean": _finite(null[0], 4), "sd": _finite(null[1], 4)}
    else:
        p = mann_whitney_p(x, y, alternative=alternative)
    return Effect("auc", _finite(auc, 5), (float(_finite(lo, 4) or 0.0), float(_finite(hi, 4) or 0.0)), n,
                  level=level, p_value=p, test=test, details=details)


def domain_auc(X: Any, evaluation: Sequence[bool] | np.ndarray, *, n_splits: int = 5, alpha: float = 10.0,
               n_permutations: int = 200, seed: int = 0, level: float = LEVEL) -> Effect:
    """Out-of-fold ROC AUC of a linear domain classifier, with a calibrated p-value and interval.

    ``X`` holds one row of features per participant of both splits,
    ``evaluation`` marks the evaluation split's rows. The classifier and
    folds are :mod:`audit.stats`'s (ridge on +-1 targets of fold-standardised
    features, ``StratifiedKFold``; missing values: the feature's median;
    constant features dropped). The null moments of the AUC come from
    ``n_permutations`` permutations of the labels *within* each fold (the
    folds' class counts kept), all solved at once as extra regression
    targets, so that calibration costs about one more fit; the result is
    :func:`auc_effect` with ``null=(mean, sd)``. ``details["scores"]`` are
    not kept (they are per participant); ``details["folds"]`` is the
    number of folds.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 5)); X[:15] += 3.0
    >>> e = domain_auc(X, [True] * 15 + [False] * 45)
    >>> e.estimate > 0.99, e.p_value < 1e-4, e.test
    (True, True, 'auc_permutation_moments')
    """
    from audit.stats import _folds, _ridge_oof

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
    folds = _folds(y, k, seed)
    rng = np.random.default_rng(seed + 1)
    labels = np.empty((y.size, n_permutations + 1), dtype=np.int64)
    labels[:, 0] = y
    for _tr, te in folds:
        labels[te, 1:] = rng.permuted(np.broadcast_to(y[te][:, None], (te.size, n_permutations)), axis=0)
    scores = _ridge_oof(x, np.where(labels == 1, 1.0, -1.0), folds, alpha)
    null = None
    if n_permutations >= 2:
        ranks = scores[:, 1:].argsort(0).argsort(0) + 1.0  # continuous scores: ties are negligible here
        aucs = ((ranks * labels[:, 1:]).sum(0) - n1 * (n1 + 1) / 2) / (n1 * n[0])
        null = (float(aucs.mean()), float(aucs.std(ddof=1)))
    eff = auc_effect(scores[y == 1, 0], scores[y == 0, 0], level=level, null=null)
    return Effect(eff.kind, eff.estimate, eff.ci, eff.n, level=eff.level, p_value=eff.p_value, test=eff.test,
                  reason=eff.reason, details={**eff.details, "folds": k, "n_permutations": n_permutations,
                                              "features_used": len(keep)})


# --------------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Decision:
    """What :func:`classify_effect` concluded: magnitude, warning or not, why, and the sentence."""

    kind: str
    magnitude: str  # "large" | "moderate" | "small" | "negligible" | "not measured"
    warning: bool
    evidence: str | None  # "alpha_large" | "fdr" | "ci" | None: what made it a warning
    uncertain: bool  # the CI reaches below the large bound (large) or into the negligible region
    wording: str
    estimate: float | None
    ci: tuple[float, float] | None
    p_adjusted: float | None
    p_value: float | None
    n: tuple[int, ...]
    bounds: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "magnitude": self.magnitude, "warning": self.warning, "evidence": self.evidence,
                "uncertain": self.uncertain, "wording": self.wording, "estimate": _finite(self.estimate),
                "ci": None if self.ci is None else [_finite(c) for c in self.ci],
                "p_adjusted": _finite(self.p_adjusted), "p_value": _finite(self.p_value), "n": list(self.n),
                "bounds": dict(self.bounds)}


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}".rstrip("0").rstrip(".") if p < 0.1 else f"{p:.2f}"


def _fmt_value(kind: str, x: float) -> str:
    if kind == "proportion_difference":
        return f"{100 * x:+.0f} points"
    if kind == "smd":
        return f"{x:+.2f}"
    return f"{x:.2f}"


def _fmt_n(n: Sequence[int]) -> str:
    return " and ".join(str(v) for v in n) if n else "?"


def _size(kind: str, x: float) -> float:
    return abs(x) if kind in _SIGNED else x


def classify_effect(kind: str, estimate: float | None, ci: Sequence[float] | None, p_adjusted: float | None,
                    n: int | Sequence[int], *, p_value: float | None = None, level: float = LEVEL,
                    rules: Mapping[str, Any] | None = None, what: str = "", reason: str | None = None,
                    test_name: str = "") -> Decision:
    """Magnitude of an effect, whether it is a warning, and the sentence that says so.

    ``kind`` is one of :data:`KINDS`; ``ci`` the ``level`` interval of the
    estimate; ``p_adjusted`` its Benjamini-Hochberg adjusted p-value in the
    audit's family (``None``: no family); ``p_value`` the unadjusted one
    (for the large tier); ``n`` the sample size(s) shown in the wording.
    ``rules`` overrides :data:`RULES` ``[kind]`` and :data:`EVIDENCE`
    (``{"large": 0.8, "fdr": 0.05}``). ``what`` starts the sentence;
    ``test_name`` names the test of the p-value in it (``"Mann-Whitney"``).

    * ``|estimate| < negligible``: ``negligible``, never a warning;
    * ``< moderate``: ``small``, not a warning;
    * ``< large``: ``moderate``, a warning with ``p_adjusted <= fdr`` (or,
      by ``ci_evidence``, the CI clear of the negligible region);
    * else ``large``, a warning with ``p_value <= alpha_large`` or
      ``p_adjusted <= fdr`` (no p-value at all: the CI clear of no effect);
      "uncertain" when the CI reaches below the large bound.

    An AUC below 0.5 (a cross-validated classifier doing worse than chance)
    is negligible. A missing or non-finite estimate is "not measured".

    >>> d = classify_effect("auc", 1.0, (0.93, 1.0), 0.2, (80, 20), p_value=1e-9)
    >>> d.magnitude, d.warning, d.wording
    ('large', True, 'ROC AUC 1.00 (95% CI 0.93 to 1.00): large, n = 80 and 20 (p=1e-09, adjusted 0.20)')
    >>> d = classify_effect("smd", 1.3, (0.5, 2.1), 0.04, (93, 20), p_value=0.001)
    >>> d.magnitude, d.warning, d.uncertain
    ('large', True, True)
    >>> classify_effect("smd", 0.03, (0.02, 0.04), 1e-30, (50000, 50000)).warning
    False
    >>> classify_effect("smd", None, None, None, (1, 5), reason="fewer than 2 values").wording
    "SMD (Hedges' g) not measured: fewer than 2 values"
    """
    if kind not in RULES:
        raise ValueError(f"unknown kind of effect {kind!r}; expected one of {', '.join(KINDS)}")
    th: dict[str, Any] = {**RULES[kind], **EVIDENCE}
    if rules:
        th.update({k: v for k, v in rules.items() if k in th})
    bounds = {k: float(th[k]) for k in ("negligible", "moderate", "large")}
    ns = (int(n),) if isinstance(n, (int, np.integer)) else tuple(int(v) for v in n)
    label = _NAMES[kind]
    head = f"{what}: " if what else ""
    est = _finite(estimate, None)
    interval = None
    if ci is not None:
        lo_hi = [_finite(c, None) for c in ci]
        if len(lo_hi) == 2 and None not in lo_hi:
            interval = (min(lo_hi), max(lo_hi))  # type: ignore[type-var]
    p_adj = _finite(p_adjusted, None)
    p_raw = _finite(p_value, None)
    if est is None:
        why = reason or "no estimate"
        return Decision(kind, "not measured", False, None, False, f"{head}{label} not measured: {why}", None,
                        None, p_adj, p_raw, ns, bounds)
    size = _size(kind, est)
    if kind == "auc":
        size = max(size, 0.5)
    if size < bounds["negligible"]:
        magnitude = "negligible"
    elif size < bounds["moderate"]:
        magnitude = "small"
    elif size < bounds["large"]:
        magnitude = "moderate"
    else:
        magnitude = "large"
    null = _NULL[kind]
    neg = bounds["negligible"]
    if interval is None:
        clear_null = clear_negligible = False
        reaches_below_large = True
    elif kind in _SIGNED:
        lo, hi = interval
        clear_null = lo > null or hi < null
        clear_negligible = lo >= neg or hi <= -neg
        reaches_below_large = (lo < bounds["large"]) if est > 0 else (hi > -bounds["large"])
    else:
        lo, hi = interval
        clear_null = lo > null
        clear_negligible = lo >= neg
        reaches_below_large = lo < bounds["large"]
    fdr_ok = p_adj is not None and p_adj <= float(th["fdr"])
    ci_mode = str(th["ci_evidence"])
    ci_ok = clear_negligible and (ci_mode == "always" or (ci_mode == "without_p" and p_adj is None))
    evidence: str | None = None
    if magnitude == "large":
        if fdr_ok:
            evidence = "fdr"
        elif p_raw is not None and p_raw <= float(th["alpha_large"]):
            evidence = "alpha_large"
        elif p_raw is None and p_adj is None and clear_null:
            evidence = "ci"
    elif magnitude == "moderate":
        evidence = "fdr" if fdr_ok else "ci" if ci_ok else None
    warn = evidence is not None
    uncertain = reaches_below_large if magnitude == "large" else (interval is None or not clear_negligible)
    shown = _fmt_value(kind, est)
    if interval is not None:
        lo_s, hi_s = (_fmt_value(kind, v).replace(" points", "") for v in interval)
        shown += f" ({round(100 * level):d}% CI {lo_s} to {hi_s})"
    stats = []
    if p_raw is not None:
        stats.append(f"{test_name + ' ' if test_name else ''}p={_fmt_p(p_raw)}")
    if p_adj is not None:
        stats.append(f"adjusted {_fmt_p(p_adj)}" if p_raw is not None else f"adjusted p={_fmt_p(p_adj)}")
    tail = f" ({', '.join(stats)})" if stats else ""
    n_words = f"n = {_fmt_n(ns)}"
    if magnitude == "large" and warn:
        verdict = f"large, uncertain with {n_words}" if uncertain else f"large, {n_words}"
    elif magnitude == "large":
        verdict = f"large but not distinguishable from chance with {n_words}; not a warning"
    elif magnitude == "moderate" and warn:
        verdict = f"moderate, {n_words}"
    elif magnitude == "moderate":
        verdict = f"moderate but not distinguishable from chance with {n_words}; not a warning"
    elif magnitude == "small":
        verdict = f"small (below the moderate bound {_fmt_value(kind, bounds['moderate']).lstrip('+')}); " \
                  "not a warning"
    else:
        verdict = f"negligible (below {_fmt_value(kind, bounds['negligible']).lstrip('+')}); not a warning"
    if kind == "auc" and est < 0.5:
        verdict = "below chance (a cross-validation artefact, not a shift); not a warning"
    wording = f"{head}{label} {shown}: {verdict}{tail}"
    return Decision(kind, magnitude, warn, evidence, uncertain, wording, est, interval, p_adj, p_raw, ns, bounds)


def decide(effect: Effect, p_adjusted: float | None = None, *, p_value: float | None = None,
           rules: Mapping[str, Any] | None = None, what: str = "", test_name: str = "") -> Decision:
    """:func:`classify_effect` of an :class:`Effect` (its own p-value unless ``p_value`` is given).

    >>> decide(proportion_difference([[50, 50], [18, 2]], ["AD", "CN"]), 0.004, p_value=0.0004,
    ...        what="AD share, train vs test", test_name="Fisher's exact").wording
    "AD share, train vs test: class-share difference +40 points (95% CI +18 to +52): large, uncertain with n = 100 and 20 (Fisher's exact p=0.0004, adjusted 0.004)"
    """
    return classify_effect(effect.kind, effect.estimate, effect.ci, p_adjusted, effect.n,
                           p_value=effect.p_value if p_value is None else p_value, level=effect.level,
                           rules=rules, what=what, reason=effect.reason, test_name=test_name)


# --------------------------------------------------------------------------- label mix
def label_mix(reference: Mapping[str, int], evaluation: Mapping[str, int], *,
              recall: Mapping[str, float] | None = None,
              splits: tuple[str, str] = ("train", "test")) -> dict[str, Any]:
    """What the evaluation split's class mix does to the metrics a trainer reports.

    ``reference`` and ``evaluation`` are class counts. Returns each
    class's share per split; the largest share difference; the total
    variation distance ``TV``; what a majority-class predictor (the
    reference split's most common class) scores on each split (its
    accuracy moves with the mix, its balanced accuracy is ``1 / classes``
    on both: balanced accuracy does not depend on the mix); and the
    expected accuracy of a classifier with fixed per-class ``recall`` under
    each mix (``sum_c share_c * recall_c``). Without ``recall``:
    ``accuracy_change_per_recall_gap`` is TV, the most the accuracy can
    move per unit of gap between the best and worst class recall.

    >>> m = label_mix({"AD": 50, "CN": 50}, {"AD": 18, "CN": 2}, recall={"AD": 0.7, "CN": 0.9})
    >>> m["majority_class"], m["majority_accuracy"], m["expected_accuracy"]
    ('AD', {'train': 0.5, 'test': 0.9}, {'train': 0.8, 'test': 0.72})
    >>> m["sentence"]
    'AD is 50% of train and 90% of test; always predicting AD scores accuracy 0.50 on train and 0.90 on test (balanced accuracy 0.50 on both); with per-class recall AD 0.70, CN 0.90 the expected accuracy is 0.80 on the train mix and 0.72 on the test mix'
    """
    a_name, b_name = splits
    classes = sorted({str(c) for c in reference} | {str(c) for c in evaluation})
    ca = {c: max(0, int(reference.get(c, 0))) for c in classes}
    cb = {c: max(0, int(evaluation.get(c, 0))) for c in classes}
    na, nb = sum(ca.values()), sum(cb.values())
    out: dict[str, Any] = {"classes": classes, "counts": {a_name: ca, b_name: cb}}
    if na == 0 or nb == 0:
        out["not_measured"] = f"no labelled participants in {a_name if na == 0 else b_name}"
        return out
    sa = {c: ca[c] / na for c in classes}
    sb = {c: cb[c] / nb for c in classes}
    diff = {c: sb[c] - sa[c] for c in classes}
    worst = max(classes, key=lambda c: (round(abs(diff[c]), 12), diff[c] > 0, -classes.index(c)))
    majority = max(classes, key=lambda c: (ca[c], c == classes[0]))
    k = len(classes)
    tv = 0.5 * sum(abs(v) for v in diff.values())
    out.update(
        shares={a_name: {c: _finite(sa[c], 4) for c in classes}, b_name: {c: _finite(sb[c], 4) for c in classes}},
        largest_difference={"class": worst, "difference": _finite(diff[worst], 4)},
        total_variation=_finite(tv, 4), majority_class=majority,
        majority_accuracy={a_name: _finite(sa[majority], 4), b_name: _finite(sb[majority], 4)},
        majority_balanced_accuracy=_finite(1 / k, 4), accuracy_change_per_recall_gap=_finite(tv, 4),
    )
    sentence = (f"{worst} is {100 * sa[worst]:.0f}% of {a_name} and {100 * sb[worst]:.0f}% of {b_name}; always "
                f"predicting {majority} scores accuracy {sa[majority]:.2f} on {a_name} and {sb[majority]:.2f} on "
                f"{b_name} (balanced accuracy {1 / k:.2f} on both)")
    if recall:
        r = {c: _finite(recall.get(c), None) for c in classes}
        if all(v is not None and 0 <= v <= 1 for v in r.values()):
            ea = sum(sa[c] * r[c] for c in classes)  # type: ignore[operator]
            eb = sum(sb[c] * r[c] for c in classes)  # type: ignore[operator]
            out["expected_accuracy"] = {a_name: _finite(ea, 4), b_name: _finite(eb, 4)}
            out["recall"] = r
            sentence += (f"; with per-class recall {', '.join(f'{c} {r[c]:.2f}' for c in classes)} the expected "
                         f"accuracy is {ea:.2f} on the {a_name} mix and {eb:.2f} on the {b_name} mix")
        else:
            out["recall_ignored"] = "recall must give a number in [0, 1] for every class"
    else:
        sentence += (f"; a classifier's accuracy can move by up to {tv:.2f} per unit of gap between its best and "
                     "worst class recall")
    out["sentence"] = sentence
    return out
