"""Metrics (scikit-learn), bootstrap confidence intervals by participant, and summaries over runs.

Classification: accuracy, balanced accuracy, sensitivity, specificity, PPV,
NPV, F1, ROC AUC (binary: of the positive class; more classes: macro
averages, one-vs-rest). Regression: MAE, RMSE, R². Segmentation: Dice and IoU
per class and their mean over the foreground classes. Reconstruction: MSE.

Confidence intervals resample *participants* (with replacement), not images,
so a participant with two sessions counts once: 95 % percentile intervals
from ``n_boot`` resamples with a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONTROL_NAMES",
    "bootstrap_ci",
    "classification_metrics",
    "regression_metrics",
    "segmentation_counts",
    "segmentation_metrics",
    "summarise_runs",
    "positive_class",
]

CONTROL_NAMES = frozenset({"cn", "hc", "nc", "control", "controls", "healthy", "normal", "0", "false", "no",
                           "negative", "neg"})


def positive_class(classes: Sequence[str]) -> int:
    """Index of the positive class of a binary problem: the one that is not a control name, else the second."""
    if len(classes) == 2:
        a, b = (str(c).strip().lower() for c in classes)
        if a in CONTROL_NAMES and b not in CONTROL_NAMES:
            return 1
        if b in CONTROL_NAMES and a not in CONTROL_NAMES:
            return 0
    return 1


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], *,
                           engine: str = "sklearn") -> dict[str, float]:
    """Metrics of class indices ``y_true`` against class probabilities ``proba`` (n, C).

    ``engine="sklearn"`` computes the confusion matrix and ROC AUC with
    scikit-learn (the reported values); ``"numpy"`` computes the same numbers
    without scikit-learn's per-call validation, for the thousands of
    bootstrap resamples (tests check that both agree).
    """
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    k = len(classes)
    y_pred = proba.argmax(axis=1)
    if engine == "sklearn":
        from sklearn.metrics import confusion_matrix

        cm = confusion_matrix(y_true, y_pred, labels=list(range(k))).astype(float)
    else:
        cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(float)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    sens = _div(tp, tp + fn)
    spec = _div(tn, tn + fp)
    ppv = _div(tp, tp + fp)
    npv = _div(tn, tn + fn)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    present = (tp + fn) > 0
    out = {"accuracy": float(tp.sum() / cm.sum()) if cm.sum() else math.nan,
           "balanced_accuracy": float(np.nanmean(sens[present])) if present.any() else math.nan}
    if k == 2:
        p = positive_class(classes)
        out.update(sensitivity=float(sens[p]), specificity=float(spec[p]), ppv=float(ppv[p]), npv=float(npv[p]),
                   f1=float(f1[p]))
    else:
        for name, v in (("sensitivity", sens), ("specificity", spec), ("ppv", ppv), ("npv", npv), ("f1", f1)):
            out[name] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    out["roc_auc"] = _roc_auc(y_true, proba, classes, engine)
    return out


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], engine: str) -> float:
    k = len(classes)
    present = np.unique(y_true)
    if len(present) < 2 or (k > 2 and len(present) < k):
        return math.nan
    if k == 2:
        p = positive_class(classes)
        pairs = [((y_true == p).astype(int), proba[:, p])]
    else:
        pr = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
        if engine == "sklearn":
            from sklearn.metrics import roc_auc_score

            return float(roc_auc_score(y_true, pr, multi_class="ovr", average="macro", labels=list(range(k))))
        pairs = [((y_true == c).astype(int), pr[:, c]) for c in range(k)]
    aucs = []
    for y01, score in pairs:
        if engine == "sklearn":
            from sklearn.metrics import roc_auc_score

            aucs.append(float(roc_auc_score(y01, score)))
        else:
            from scipy.stats import rankdata

            ranks = rankdata(score)
            n_pos = int(y01.sum())
            n_neg = len(y01) - n_pos
            aucs.append(float((ranks[y01 == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return float(np.mean(aucs))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, *, engine: str = "sklearn") -> dict[str, float]:
    """MAE, RMSE and R² (``engine`` as in :func:`classification_metrics`)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ok = len(y_true) >= 2 and np.ptp(y_true) > 0
    if engine == "sklearn":
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        return {"mae": float(mean_absolute_error(y_true, y_pred)),
                "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
                "r2": float(r2_score(y_true, y_pred)) if ok else math.nan}
    err = y_pred - y_true
    ss_res = float((err**2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return {"mae": float(np.abs(err).mean()), "rmse": math.sqrt(float((err**2).mean())),
            "r2": 1 - ss_res / ss_tot if ok else math.nan}


def segmentation_counts(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class (tp, fp, fn) of one image: shape (C, 3)."""
    t, p = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    cm = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm)
    return np.stack([tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp], axis=1).astype(float)


def segmentation_metrics(counts: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Dice and IoU per class (mean over images) and over foreground classes (``dice``, ``iou``).

    ``counts`` has shape (n_images, C, 3) as :func:`segmentation_counts` gives.
    A class absent from both truth and prediction in an image is not counted for that image.
    """
    counts = np.asarray(counts, float)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    dice = _div(2 * tp, 2 * tp + fp + fn)
    iou = _div(tp, tp + fp + fn)
    out: dict[str, float] = {}
    fg_d, fg_i = [], []
    for c, name in enumerate(classes):
        d = float(np.nanmean(dice[:, c])) if np.isfinite(dice[:, c]).any() else math.nan
        j = float(np.nanmean(iou[:, c])) if np.isfinite(iou[:, c]).any() else math.nan
        out[f"dice_{name}"], out[f"iou_{name}"] = d, j
        if c > 0:
            fg_d.append(d)
            fg_i.append(j)
    out["dice"] = float(np.nanmean(fg_d)) if np.isfinite(fg_d).any() else math.nan
    out["iou"] = float(np.nanmean(fg_i)) if np.isfinite(fg_i).any() else math.nan
    return out


def bootstrap_ci(metric: Callable[[np.ndarray], Mapping[str, float]], groups: Sequence[str], *,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float, int]]:
    """Percentile intervals of every metric, resampling ``groups`` (participants) with replacement.

    ``metric(indices)`` computes the metrics on the rows ``indices`` (seeded:
    the same call gives the same intervals). Returns
    ``{name: (low, high, n_valid_resamples)}``; a resample where a metric is
    undefined (one class only, for ROC AUC) is left out of that metric's interval.
    """
    groups = np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    if n_boot <= 0 or len(uniq) < 2:
        return {}
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([members[g] for g in pick])
        for k, v in metric(idx).items():
            if v is not None and np.isfinite(v):
                draws.setdefault(k, []).append(float(v))
    a = (1 - level) / 2
    return {k: (float(np.quantile(v, a)), float(np.quantile(v, 1 - a)), len(v)) for k, v in draws.items()}


def with_ci(point: Mapping[str, float], ci: Mapping[str, tuple[float, float, int]]) -> dict[str, dict[str, Any]]:
    """``{metric: {"value", "ci_low", "ci_high"}}`` (JSON-friendly: NaN becomes None)."""
    out = {}
    for k, v in point.items():
        lo, hi, _ = ci.get(k, (math.nan, math.nan, 0))
        out[k] = {"value": _num(v), "ci_low": _num(lo), "ci_high": _num(hi)}
    return out


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def summarise_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean ± sd (over folds and seeds) of every metric of every split.

    ``runs`` items carry ``metrics``: ``{split: {metric: {"value": ...}}}``.
    Returns ``{split: {metric: {"mean", "sd", "n"}}}``.
    """
    values: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for split, ms in (run.get("metrics") or {}).items():
            for name, m in ms.items():
                v = m.get("value")
                if v is not None:
                    values.setdefault(split, {}).setdefault(name, []).append(float(v))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for split, ms in values.items():
        out[split] = {}
        for name, vs in ms.items():
            arr = np.asarray(vs)
            out[split][name] = {"mean": _num(float(arr.mean())),
                                "sd": _num(float(arr.std(ddof=1))) if len(arr) > 1 else None, "n": len(arr)}
    return out
