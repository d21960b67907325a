"""Effect sizes with confidence intervals: how large a difference between two splits is, and how sure.

A shift or confound finding is decided by *how large* the difference is,
with its uncertainty shown, not by a p-value alone: with 50,000
participants trivial differences are significant, with 20 a domain
classifier that separates the splits perfectly may not survive a
multiplicity correction. Every function here returns an :class:`Effect`
(estimate, confidence interval, sample sizes, and, where the effect has
one, an analytic p-value); :mod:`audit.decisions` turns an effect into a
decision (magnitude, warning or not, the sentence), and :mod:`audit.auc`
measures the domain classifier's ROC AUC.

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

Nothing here raises on bad input: an empty side, a single value, constant
values, one class or NaN give an effect with ``estimate=None`` and a
``reason`` that says why it was not measured. Every figure is a finite
``float`` or ``None``. scipy is imported inside the functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.stats import finite

__all__ = [
    "LEVEL",
    "MIN_PER_SIDE",
    "KINDS",
    "Effect",
    "hedges_g",
    "wilson_interval",
    "newcombe_interval",
    "proportion_difference",
    "cramers_v",
]

#: Default two-sided confidence level of every interval.
LEVEL = 0.95
#: Fewer values than this on a side: the effect is not measured.
MIN_PER_SIDE = 2
#: The kinds of effect (:attr:`Effect.kind`): the three here and the domain classifier's ``auc``.
KINDS = ("smd", "proportion_difference", "cramers_v", "auc")


# --------------------------------------------------------------------------- results
_finite = finite  # audit.stats.finite: a float rounded to significant digits, None when missing or not finite


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


def _both_tails(solve: Callable[[float], float], alpha: float) -> tuple[float, float] | None:
    """The parameters that put the observed statistic at the upper and lower ``alpha / 2`` tails (``None``: failed)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return solve(1 - alpha / 2), solve(alpha / 2)
        except (ValueError, RuntimeError, ArithmeticError):
            return None


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

    return _both_tails(solve, 1 - level)


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

    return _both_tails(solve, 1 - level)


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
