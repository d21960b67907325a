"""Cross-validated predictors with permutation p-values: site -> label, features -> split or site.

:func:`label_from_site` (how well site alone predicts a label: the Bayes
rule for one categorical feature, the majority label of each site in the
training folds) and :func:`domain_classifier` (a ridge-regularised linear
classifier on standardised features; for two classes the ROC AUC, for more
the balanced accuracy). Permutation p-values shuffle the rows of the
features against the labels with the folds held fixed (valid under the
null of independence; Ojala & Garriga 2010), with Besag & Clifford's (1991)
sequential stop once ``h`` permuted scores have reached the observed one: a
null result stops after ~20 permutations. Every figure is finite or
``None`` (:func:`audit.stats.finite`); scipy and scikit-learn are imported
inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from audit.stats import finite

__all__ = ["roc_auc", "balanced_accuracy", "stratified_folds", "ridge_oof", "label_from_site", "domain_classifier"]


# --------------------------------------------------------------------------- scores
def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for the binary labels ``y`` (1 positive), ties counted half; ``None`` if one class.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(score)
    return finite((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _auc_columns(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each column of ``scores`` (n x B) against binary ``y``."""
    from scipy.stats import rankdata

    y = y.astype(bool)
    n1 = int(y.sum())
    n0 = y.size - n1
    ranks = rankdata(scores, axis=0)
    return (ranks[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int | None = None) -> float | None:
    """Mean recall over the classes present in ``y``.

    >>> balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    0.5
    """
    y = np.asarray(y)
    pred = np.asarray(pred)
    classes = np.unique(y)
    if classes.size == 0:
        return None
    recalls = [float((pred[y == c] == c).mean()) for c in classes]
    return finite(sum(recalls) / len(recalls))


def stratified_folds(y: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y))


def _n_splits(y: np.ndarray, wanted: int) -> int:
    counts = np.bincount(y)
    counts = counts[counts > 0]
    return int(min(wanted, counts.min())) if counts.size else 0


# --------------------------------------------------------------------------- label from site
def _site_rule_predictions(site: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                           n_sites: int, n_classes: int) -> np.ndarray:
    """Out-of-fold predictions of the majority label of each site (training-fold majority for unseen sites)."""
    pred = np.empty_like(y)
    for tr, te in folds:
        counts = np.zeros((n_sites, n_classes))
        np.add.at(counts, (site[tr], y[tr]), 1)
        overall = np.bincount(y[tr], minlength=n_classes)
        # ties broken towards the overall training majority, then the lowest class code
        score = counts + 1e-6 * overall[None, :] / max(overall.sum(), 1)
        rule = score.argmax(1)
        unseen = counts.sum(1) == 0
        rule[unseen] = int(overall.argmax())
        pred[te] = rule[site[te]]
    return pred


def label_from_site(sites: Sequence[Hashable], labels: Sequence[Hashable], *, n_splits: int = 5,
                    n_permutations: int = 200, seed: int = 0, stop_after: int = 10) -> dict[str, Any]:
    """How well site alone predicts the label: cross-validated balanced accuracy and a permutation p-value.

    The classifier is the best one possible from a single categorical
    feature: each site predicts the majority label of its participants in
    the training folds (sites unseen in training: the overall majority).
    Folds: ``StratifiedKFold`` on the label (``n_splits`` lowered to the
    smallest class size), seeded. Balanced accuracy is taken over the
    pooled out-of-fold predictions. ``chance`` is ``1 / classes``, what the
    majority baseline scores. The p-value shuffles the sites against the
    labels with the folds fixed (sequential stop after ``stop_after``
    permuted scores reach the observed one).
    """
    s_levels = {v: i for i, v in enumerate(sorted(set(sites), key=str))}
    y_levels = {v: i for i, v in enumerate(sorted(set(labels), key=str))}
    site = np.array([s_levels[v] for v in sites], dtype=np.int64)
    y = np.array([y_levels[v] for v in labels], dtype=np.int64)
    n_classes = len(y_levels)
    out: dict[str, Any] = {"classifier": "majority label per site", "metric": "balanced_accuracy",
                           "n": int(y.size), "classes": n_classes, "chance": finite(1 / max(n_classes, 1)),
                           "balanced_accuracy": None, "gain": None, "p_value": None, "n_splits": None,
                           "n_permutations": 0}
    k = _n_splits(y, n_splits)
    if n_classes < 2 or len(s_levels) < 2 or k < 2:
        return out
    folds = stratified_folds(y, k, seed)
    observed = balanced_accuracy(y, _site_rule_predictions(site, y, folds, len(s_levels), n_classes))
    assert observed is not None
    rng = np.random.default_rng(seed + 1)
    hits = done = 0
    for _ in range(n_permutations):
        perm = site[rng.permutation(site.size)]
        score = balanced_accuracy(y, _site_rule_predictions(perm, y, folds, len(s_levels), n_classes))
        done += 1
        hits += int(score is not None and score >= observed - 1e-12)
        if hits >= stop_after:
            break
    p = hits / done if hits >= stop_after else (1 + hits) / (1 + done)
    out.update(balanced_accuracy=finite(observed), gain=finite(observed - 1 / n_classes), p_value=finite(p),
               n_splits=k, n_permutations=done)
    return out


# --------------------------------------------------------------------------- domain classifier
def ridge_oof(X: np.ndarray, T: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
               alpha: float) -> np.ndarray:
    """Out-of-fold decision values of ridge regression of targets ``T`` on fold-standardised ``X``."""
    out = np.empty(T.shape, dtype=float)
    eye = alpha * np.eye(X.shape[1])
    for tr, te in folds:
        xt = X[tr]
        mu = xt.mean(0)
        sd = xt.std(0)
        sd[sd < 1e-12] = 1.0
        z = (xt - mu) / sd
        tm = T[tr].mean(0)
        w = np.linalg.solve(z.T @ z + eye, z.T @ (T[tr] - tm))
        out[te] = ((X[te] - mu) / sd) @ w + tm
    return out


def domain_classifier(X: np.ndarray, labels: Sequence[Hashable], *, feature_names: Sequence[str] | None = None,
                      n_splits: int = 5, n_permutations: int = 200, seed: int = 0, alpha: float = 10.0,
                      stop_after: int = 10) -> dict[str, Any]:
    """Cross-validated linear classifier telling groups apart from features, with a permutation p-value.

    The classifier is ridge regression on ±1 targets (one-vs-rest indicator
    targets for more than two groups) of features standardised inside each
    training fold; the same decision function as scikit-learn's
    ``make_pipeline(StandardScaler(), RidgeClassifier(alpha))``, solved in
    numpy so that a permutation test costs milliseconds. Folds:
    ``StratifiedKFold`` (``n_splits`` lowered to the smallest group), seeded.
    Two groups: ``score`` is the ROC AUC of the pooled out-of-fold decision
    values (0.5 = cannot tell them apart); more: the balanced accuracy of
    the arg-max prediction (chance ``1 / groups``). The p-value shuffles the
    rows of ``X`` against the labels, folds fixed, with a sequential stop.

    Also returns, fitted on every row, the standardised coefficients (two
    groups: positive pushes towards the second group in sorted order).
    Constant features are dropped; missing values (NaN) are imputed with the
    feature's median.
    """
    X = np.asarray(X, dtype=float)
    levels = sorted(set(labels), key=str)
    codes = {v: i for i, v in enumerate(levels)}
    y = np.array([codes[v] for v in labels], dtype=np.int64)
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(X.shape[1] if X.ndim == 2 else 0)]
    out: dict[str, Any] = {"classifier": "ridge linear classifier on standardised features",
                           "metric": "roc_auc" if len(levels) == 2 else "balanced_accuracy",
                           "score": None, "chance": finite(0.5 if len(levels) == 2 else 1 / max(len(levels), 1)),
                           "p_value": None, "n": int(y.size), "groups": [str(v) for v in levels],
                           "n_splits": None, "n_permutations": 0, "features": [], "coefficients": {}}
    if X.ndim != 2 or X.shape[0] != y.size or X.shape[1] == 0:
        return out
    X = X.copy()
    for j in range(X.shape[1]):
        col = X[:, j]
        bad = ~np.isfinite(col)
        if bad.all():
            col[:] = 0.0
        elif bad.any():
            col[bad] = float(np.median(col[~bad]))
    keep = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 1e-12]
    X = X[:, keep]
    names = [names[j] for j in keep]
    out["features"] = names
    k = _n_splits(y, n_splits)
    if len(levels) < 2 or k < 2 or not keep:
        return out
    folds = stratified_folds(y, k, seed)
    binary = len(levels) == 2
    T = (np.where(y == 1, 1.0, -1.0)[:, None] if binary else np.eye(len(levels))[y])

    def score_of(x: np.ndarray) -> float:
        dv = ridge_oof(x, T, folds, alpha)
        if binary:
            return float(_auc_columns(y, dv)[0])
        return float(balanced_accuracy(y, dv.argmax(1)) or 0.0)

    observed = score_of(X)
    rng = np.random.default_rng(seed + 1)
    hits = done = 0
    for _ in range(n_permutations):
        done += 1
        hits += int(score_of(X[rng.permutation(y.size)]) >= observed - 1e-12)
        if hits >= stop_after:
            break
    p = hits / done if hits >= stop_after else (1 + hits) / (1 + done)
    mu, sd = X.mean(0), X.std(0)
    z = (X - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (T - T.mean(0)))
    coef = w[:, 0] if binary else np.abs(w).max(1)
    out.update(score=finite(observed), p_value=finite(p), n_splits=k, n_permutations=done,
               coefficients={n: finite(float(c)) for n, c in zip(names, coef)})
    return out
