"""Statistics for confound and shift checks: small samples first, no NaN out.

Pure functions over plain sequences and numpy arrays; nothing here reads a
file or knows about checks. Every figure a function returns is a finite
``float``, an ``int`` or ``None`` (never NaN or infinity), so it can go into
a finding's evidence as it is. scipy and scikit-learn are imported inside
the functions that need them (``bidsaudit --help`` stays fast).

Tests chosen for small neuroimaging samples (10-20 test subjects):

Categorical association (:func:`association_test`)
    A 2x2 table gets Boschloo's exact test (Fisher's p-value as the
    statistic, maximised over the nuisance proportion: exact like Fisher's
    and uniformly more powerful; a 90/10 test split of 20 against 50/50 has
    p ~ 0.0007 instead of Fisher's ~ 0.001), or Fisher's when the table has
    more than :data:`BOSCHLOO_MAX_N` observations (Boschloo's cost grows
    with the table, and the two agree closely there). A larger table gets Pearson's
    chi-square when every expected count is at least
    :data:`MIN_EXPECTED` (Cochran's rule) or when it has more than
    :data:`PERMUTATION_MAX_N` observations; otherwise a Monte-Carlo
    permutation chi-square (the column labels shuffled ``n_permutations``
    times, seeded; ``p = (1 + #{chi2* >= chi2}) / (1 + B)``). The effect size
    is Cramér's V with Bergsma's (2013) bias correction, which is near 0 on
    independent data at any sample size (the uncorrected V is not: ~0.3 for
    20 subjects).

Continuous two-sample comparison
    Mann-Whitney U and Kolmogorov-Smirnov (exact for small samples), the
    standardised mean difference over the pooled SD (:func:`smd`), the
    Wasserstein distance over the pooled SD (:func:`wasserstein`), and an
    equivalence test (:func:`tost_smd`: two one-sided Welch t-tests that
    the SMD lies inside ``±margin``).

Multiplicity
    :func:`benjamini_hochberg` (step-up adjusted p-values).

Cross-validated predictors (the site-only rule, the domain classifier)
    live in :mod:`audit.predictors`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.values import (  # re-exported: the statistics read cells so
    is_missing,
    parse_number,
)

__all__ = [
    "MIN_EXPECTED",
    "PERMUTATION_MAX_N",
    "BOSCHLOO_MAX_N",
    "Association",
    "finite",
    "is_missing",
    "parse_number",
    "contingency",
    "cramers_v",
    "association_test",
    "proportion_smd",
    "tost_proportions",
    "kruskal_test",
    "smd",
    "wasserstein",
    "mann_whitney",
    "ks_test",
    "tost_smd",
    "benjamini_hochberg",
]

#: Cochran's rule: Pearson's chi-square only when every expected count reaches this.
MIN_EXPECTED = 5.0
#: Above this many observations the asymptotic chi-square is used whatever the expected counts.
PERMUTATION_MAX_N = 5000
#: 2x2 tables of at most this many observations get Boschloo's exact test (~0.1 s at 250), larger ones Fisher's.
BOSCHLOO_MAX_N = 250


# --------------------------------------------------------------------------- plain values
def finite(x: Any, digits: int | None = 6) -> float | None:
    """``x`` as a float rounded to ``digits`` significant digits, or ``None`` when missing, NaN or infinite.

    >>> finite(0.1234567891), finite(1.23456789e-12), finite(float("nan")), finite(None), finite(3)
    (0.123457, 1.23457e-12, None, None, 3.0)
    """
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}") if digits is not None else v


# --------------------------------------------------------------------------- contingency tables
def contingency(rows: Sequence[Hashable], cols: Sequence[Hashable]) -> tuple[np.ndarray, list[Any], list[Any]]:
    """Cross-tabulate two aligned sequences: ``(counts, row levels, column levels)``, levels sorted.

    >>> t, r, c = contingency(["a", "a", "b"], ["x", "y", "y"])
    >>> t.tolist(), r, c
    ([[1, 1], [0, 1]], ['a', 'b'], ['x', 'y'])
    """
    if len(rows) != len(cols):
        raise ValueError("rows and cols must have the same length")
    r_levels = sorted(set(rows), key=str)
    c_levels = sorted(set(cols), key=str)
    ri = {v: i for i, v in enumerate(r_levels)}
    ci = {v: i for i, v in enumerate(c_levels)}
    table = np.zeros((len(r_levels), len(c_levels)), dtype=np.int64)
    for a, b in zip(rows, cols):
        table[ri[a], ci[b]] += 1
    return table, r_levels, c_levels


def _drop_empty(table: np.ndarray) -> np.ndarray:
    t = np.asarray(table, dtype=np.int64)
    return t[t.sum(1) > 0][:, t.sum(0) > 0]


def _chi2_stat(table: np.ndarray) -> float:
    t = np.asarray(table, dtype=float)
    n = t.sum()
    if n == 0:
        return 0.0
    expected = np.outer(t.sum(1), t.sum(0)) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (t - expected) ** 2 / expected, 0.0)
    return float(terms.sum())


def cramers_v(table: np.ndarray, *, corrected: bool = True) -> float | None:
    """Cramér's V of a contingency table (Bergsma's bias correction by default).

    ``None`` when the table has fewer than two non-empty rows or columns.
    The corrected V is 0 when the association is no stronger than chance.

    >>> cramers_v([[8, 2], [2, 8]]), cramers_v([[8, 2], [2, 8]], corrected=False), cramers_v([[5, 5], [5, 5]])
    (0.5696, 0.6, 0.0)
    """
    t = _drop_empty(np.asarray(table))
    r, k = t.shape if t.ndim == 2 else (0, 0)
    n = float(t.sum())
    if r < 2 or k < 2 or n < 2:
        return None
    phi2 = _chi2_stat(t) / n
    if not corrected:
        return finite(math.sqrt(phi2 / min(r - 1, k - 1)))
    phi2c = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc = r - (r - 1) ** 2 / (n - 1)
    kc = k - (k - 1) ** 2 / (n - 1)
    denom = min(kc - 1, rc - 1)
    if denom <= 0:
        return None
    return finite(math.sqrt(phi2c / denom))


@dataclass(frozen=True)
class Association:
    """The result of :func:`association_test` (JSON-ready through :meth:`to_dict`)."""

    test: str  # "boschloo_exact" | "fisher_exact" | "chi_square" | "permutation_chi_square" | "none"
    statistic: float | None
    p_value: float | None
    dof: int | None
    cramers_v: float | None
    cramers_v_uncorrected: float | None
    min_expected: float | None
    n: int
    n_permutations: int | None = None
    odds_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: (finite(v) if isinstance(v, float) else v) for k, v in out.items()}


def association_test(table: np.ndarray, *, n_permutations: int = 2000, seed: int = 0) -> Association:
    """Test independence of rows and columns of a contingency table.

    Rule (documented in the module docstring): 2x2 -> Boschloo's exact test (Fisher's above
    :data:`BOSCHLOO_MAX_N` observations);
    larger -> Pearson's chi-square when every expected count is at least
    :data:`MIN_EXPECTED` or ``n`` exceeds :data:`PERMUTATION_MAX_N`, else a
    seeded Monte-Carlo permutation chi-square. Empty rows and columns are
    dropped first; a table with fewer than two non-empty rows or columns
    cannot show an association (``test == "none"``, ``p_value`` ``None``).

    >>> a = association_test([[8, 1], [1, 8]])
    >>> a.test, round(a.p_value, 4)
    ('boschloo_exact', 0.0013)
    >>> association_test([[3, 4]]).test
    'none'
    """
    t = _drop_empty(np.asarray(table))
    n = int(t.sum())
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 2:
        return Association("none", None, None, None, None, None, None, n)
    expected = np.outer(t.sum(1), t.sum(0)) / n
    min_exp = float(expected.min())
    chi2 = _chi2_stat(t)
    dof = (t.shape[0] - 1) * (t.shape[1] - 1)
    v = cramers_v(t)
    v_raw = cramers_v(t, corrected=False)
    if t.shape == (2, 2):
        from scipy.stats import fisher_exact

        res = fisher_exact(t)
        odds = float(res.statistic) if np.isfinite(res.statistic) else None
        test, p = "fisher_exact", float(res.pvalue)
        if n <= BOSCHLOO_MAX_N:
            from scipy.stats import boschloo_exact

            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                pb = float(boschloo_exact(t.astype(np.int64)).pvalue)
            if math.isfinite(pb):
                test, p = "boschloo_exact", min(pb, p)  # Boschloo's p is at most Fisher's; guard rounding
        return Association(test, finite(chi2), finite(p), dof, v, v_raw, finite(min_exp), n,
                           odds_ratio=finite(odds))
    if min_exp >= MIN_EXPECTED or n > PERMUTATION_MAX_N:
        from scipy.stats import chi2 as chi2_dist

        p = float(chi2_dist.sf(chi2, dof))
        return Association("chi_square", finite(chi2), finite(p), dof, v, v_raw, finite(min_exp), n)
    p = _permutation_chi2(t, chi2, n_permutations, seed)
    return Association("permutation_chi_square", finite(chi2), finite(p), dof, v, v_raw, finite(min_exp), n,
                       n_permutations=n_permutations)


def _permutation_chi2(t: np.ndarray, observed: float, n_permutations: int, seed: int) -> float:
    """Monte-Carlo p-value of Pearson's chi-square with both margins fixed (column labels shuffled)."""
    r, k = t.shape
    rows = np.repeat(np.arange(r), t.sum(1))
    cols = np.repeat(np.arange(k), t.sum(0))
    n = rows.size
    rng = np.random.default_rng(seed)
    row_tot = t.sum(1).astype(float)
    col_tot = t.sum(0).astype(float)
    expected = np.outer(row_tot, col_tot) / n
    hits = 0
    done = 0
    batch = max(1, min(n_permutations, 2_000_000 // max(n, 1)))
    while done < n_permutations:
        b = min(batch, n_permutations - done)
        perm = rng.permuted(np.broadcast_to(cols, (b, n)), axis=1)
        codes = rows[None, :] * k + perm + (np.arange(b) * r * k)[:, None]
        tables = np.bincount(codes.ravel(), minlength=b * r * k).reshape(b, r, k)
        stats = (((tables - expected) ** 2) / expected).sum(axis=(1, 2))
        hits += int((stats >= observed - 1e-9).sum())
        done += b
    return (1 + hits) / (1 + n_permutations)


def proportion_smd(table: np.ndarray) -> float | None:
    """Largest standardised difference in a level's proportion between the two rows of a 2xk table.

    ``|p_a - p_b| / sqrt((p_a (1 - p_a) + p_b (1 - p_b)) / 2)`` (Austin 2009),
    the largest over levels. Unlike Cramér's V it does not shrink when one
    split is much smaller than the other. ``None`` when a row is empty.

    >>> round(proportion_smd([[50, 50], [70, 30]]), 3)
    0.417
    >>> proportion_smd([[10, 0], [10, 0]])
    0.0
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != 2:
        raise ValueError("proportion_smd needs a 2 x k table")
    na, nb = t.sum(1)
    if na == 0 or nb == 0:
        return None
    pa, pb = t[0] / na, t[1] / nb
    var = (pa * (1 - pa) + pb * (1 - pb)) / 2
    diff = np.abs(pa - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(var > 0, diff / np.sqrt(var), np.where(diff > 0, np.inf, 0.0))
    best = float(d.max()) if d.size else 0.0
    return finite(best, None) if math.isfinite(best) else 10.0  # all-or-none on each side: cap at 10


def tost_proportions(table: np.ndarray, margin: float) -> float | None:
    """Equivalence p-value that every level's proportion differs by less than ``margin`` standardised units.

    For each level, two one-sided z-tests that ``p_a - p_b`` lies inside
    ``±margin * sqrt((p_a (1 - p_a) + p_b (1 - p_b)) / 2)``; the p-value is
    the largest over levels and sides (intersection-union). Normal
    approximation: reliable with at least ~10 per side. ``None`` when a row
    is empty.
    """
    from scipy.stats import norm

    t = np.asarray(table, dtype=float)
    na, nb = t.sum(1)
    if na < 2 or nb < 2:
        return None
    worst = 0.0
    for j in range(t.shape[1]):
        pa, pb = t[0, j] / na, t[1, j] / nb
        sd = math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 2)
        if sd == 0:
            continue  # the level is absent (or everything) on both sides: identical
        bound = margin * sd
        se = math.sqrt(max(pa * (1 - pa) / na + pb * (1 - pb) / nb, 1e-12))
        d = pa - pb
        p = max(float(norm.sf((d + bound) / se)), float(norm.cdf((d - bound) / se)))
        worst = max(worst, p)
    return finite(worst)


def kruskal_test(values: Sequence[float], groups: Sequence[Hashable]) -> dict[str, Any]:
    """Kruskal-Wallis test of a continuous variable across groups, with epsilon-squared.

    ``epsilon2 = H / (n - 1)`` (Tomczak & Tomczak 2014): 0 no effect, ~0.01
    small, ~0.08 medium, ~0.26 large. Groups with one value still count.
    """
    from scipy.stats import kruskal

    by: dict[Any, list[float]] = {}
    for v, g in zip(values, groups):
        by.setdefault(g, []).append(float(v))
    samples = [np.asarray(s) for s in by.values() if len(s)]
    n = sum(len(s) for s in samples)
    if len(samples) < 2 or n < 3 or len(set(np.concatenate(samples).tolist())) < 2:
        return {"test": "kruskal_wallis", "statistic": None, "p_value": None, "epsilon2": None, "n": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = kruskal(*samples)
    h = float(res.statistic)
    return {"test": "kruskal_wallis", "statistic": finite(h), "p_value": finite(float(res.pvalue)),
            "epsilon2": finite(min(1.0, h / (n - 1))), "n": n}


# --------------------------------------------------------------------------- two continuous samples
def _arr(x: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(x), dtype=float)
    return a[np.isfinite(a)]


def _pooled_sd(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 and b.size < 2:
        return None
    va = float(a.var(ddof=1)) if a.size >= 2 else None
    vb = float(b.var(ddof=1)) if b.size >= 2 else None
    vs = [v for v in (va, vb) if v is not None]
    sd = math.sqrt(sum(vs) / len(vs))
    return sd if sd > 1e-12 else None


def smd(a: Iterable[float], b: Iterable[float]) -> float | None:
    """Standardised mean difference ``(mean_b - mean_a) / sqrt((var_a + var_b) / 2)``.

    Signed (positive: ``b`` is larger). ``None`` when a sample is empty or
    both are constant and equal; two different constants give ±10 (capped).

    >>> smd([1, 2, 3], [2, 3, 4])
    1.0
    >>> smd([1, 1], [1, 1]) is None, smd([], [1, 2]) is None
    (True, True)
    """
    x, y = _arr(a), _arr(b)
    if x.size == 0 or y.size == 0:
        return None
    diff = float(y.mean() - x.mean())
    sd = _pooled_sd(x, y)
    if sd is None:
        return None if diff == 0 else math.copysign(10.0, diff)
    return finite(max(-10.0, min(10.0, diff / sd)))


def wasserstein(a: Iterable[float], b: Iterable[float], *, standardise: bool = True) -> float | None:
    """First Wasserstein (earth mover's) distance between two samples, over the pooled SD by default.

    At least ``|SMD|``; it also grows with differences in spread and shape.

    >>> wasserstein([0, 1, 2], [0, 1, 2])
    0.0
    >>> wasserstein([0, 1, 2], [1, 2, 3], standardise=False)
    1.0
    """
    from scipy.stats import wasserstein_distance

    x, y = _arr(a), _arr(b)
    if x.size == 0 or y.size == 0:
        return None
    w = float(wasserstein_distance(x, y))
    if not standardise:
        return finite(w)
    sd = _pooled_sd(x, y)
    if sd is None:
        return 0.0 if w == 0 else 10.0
    return finite(min(10.0, w / sd))


def mann_whitney(a: Iterable[float], b: Iterable[float]) -> tuple[float | None, float | None]:
    """Two-sided Mann-Whitney U test: ``(U, p)`` (exact when small and tie-free); ``None`` if a sample is empty."""
    from scipy.stats import mannwhitneyu

    x, y = _arr(a), _arr(b)
    if x.size == 0 or y.size == 0:
        return None, None
    if np.ptp(np.concatenate([x, y])) == 0:
        return finite(x.size * y.size / 2), 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mannwhitneyu(x, y, alternative="two-sided", method="auto")
    return finite(float(res.statistic)), finite(float(res.pvalue))


def ks_test(a: Iterable[float], b: Iterable[float]) -> tuple[float | None, float | None]:
    """Two-sided two-sample Kolmogorov-Smirnov test: ``(D, p)`` (exact for small samples)."""
    from scipy.stats import ks_2samp

    x, y = _arr(a), _arr(b)
    if x.size == 0 or y.size == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ks_2samp(x, y, alternative="two-sided", method="auto")
    return finite(float(res.statistic)), finite(float(res.pvalue))


def tost_smd(a: Iterable[float], b: Iterable[float], margin: float) -> float | None:
    """Equivalence (TOST) p-value for ``|SMD| < margin`` (small p: the samples are shown to be balanced).

    Two one-sided Welch t-tests of the mean difference against
    ``±margin * pooled SD`` (the SD taken as known). ``None`` when a side has
    fewer than two values or no spread.

    >>> p = tost_smd(list(range(100)), list(range(100)), 0.5)
    >>> p < 0.01
    True
    """
    from scipy.stats import t as t_dist

    x, y = _arr(a), _arr(b)
    if x.size < 2 or y.size < 2:
        return None
    sd = _pooled_sd(x, y)
    if sd is None:
        return None
    va, vb = float(x.var(ddof=1)), float(y.var(ddof=1))
    se2 = va / x.size + vb / y.size
    if se2 <= 0:
        return None
    se = math.sqrt(se2)
    df = se2**2 / ((va / x.size) ** 2 / (x.size - 1) + (vb / y.size) ** 2 / (y.size - 1) or 1e-300)
    d = float(y.mean() - x.mean())
    bound = margin * sd
    p_low = float(t_dist.sf((d + bound) / se, df))
    p_high = float(t_dist.cdf((d - bound) / se, df))
    return finite(max(p_low, p_high))


# --------------------------------------------------------------------------- multiplicity
def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (``None`` stays ``None`` and does not count as a test).

    The adjustment is scipy's ``false_discovery_control`` (``method="bh"``);
    this wrapper leaves out the missing p-values and keeps figures finite.

    A test is significant at false discovery rate ``q`` when its adjusted
    p-value is at most ``q``. Under the complete null this also bounds the
    chance of any false discovery by ``q``.

    >>> benjamini_hochberg([0.01, 0.04, None, 0.03, 0.5])
    [0.04, 0.0533333, None, 0.0533333, 0.5]
    """
    from scipy.stats import false_discovery_control

    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(float(p))]
    out: list[float | None] = [None] * len(p_values)
    if not idx:
        return out
    adj = false_discovery_control([float(p_values[i]) for i in idx], method="bh")  # type: ignore[arg-type]
    for i, a in zip(idx, adj):
        out[i] = finite(min(float(a), 1.0))
    return out
