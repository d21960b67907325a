"""Folds: scikit-learn's ``StratifiedGroupKFold`` (shuffle=True), batched over many random states.

``tests/splits/test_splitting.py`` checks that it gives the same folds as scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["sgkf", "sgkf_batch", "stage_states"]


def sgkf(y: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int) -> np.ndarray:
    """Fold (0..n_splits-1) of each sample, as ``StratifiedGroupKFold(n_splits, shuffle=True,
    random_state=random_state)`` assigns it; see :func:`sgkf_batch`."""
    return sgkf_batch(y, groups, n_splits, [random_state])[0]


def sgkf_batch(y: np.ndarray, groups: np.ndarray, n_splits: int, states: Sequence[int]) -> np.ndarray:
    """Folds of each sample for several random states at once, shape (len(states), n).

    scikit-learn's ``StratifiedGroupKFold`` (shuffle=True) algorithm: the groups in a shuffled
    order (``RandomState(state).shuffle``), those with the most unequal class mix first (stable
    sort), each into the fold that keeps the per-class fold proportions most even (mean over
    classes of their SD over folds); a near tie (``np.isclose``) goes to the fold with fewer
    samples, then the first. The arithmetic uses the same ufuncs in the same order, so it is
    bit-identical and ties break exactly as in scikit-learn; the states run side by side, so a
    search over hundreds of them costs about as much as a few single runs. Unlike scikit-learn
    it does not refuse a class with fewer members than folds (the search handles that).
    """
    n_states = len(states)
    _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
    n_classes = len(y_cnt)
    _, groups_inv, groups_cnt = np.unique(groups, return_inverse=True, return_counts=True)
    n_groups = len(groups_cnt)
    per_group = np.zeros((n_groups, n_classes))
    np.add.at(per_group, (groups_inv, y_inv), 1)
    spread = np.std(per_group, axis=1)
    seq = np.empty((n_states, n_groups), dtype=np.intp)  # original group index placed at each step
    for t, state in enumerate(states):
        perm = np.arange(n_groups)
        np.random.RandomState(state).shuffle(perm)
        seq[t] = perm[np.argsort(-spread[perm], kind="stable")]
    rows = np.arange(n_states)
    per_fold = np.zeros((n_states, n_splits, n_classes))
    fold_of = np.empty((n_states, n_groups), dtype=np.intp)
    eye = np.eye(n_splits)[None, :, :, None]
    denom = y_cnt.reshape(1, 1, 1, -1)
    add, div = np.add.reduce, np.true_divide
    for step in range(n_groups):
        gy = per_group[seq[:, step]]  # (T, C)
        cand = (per_fold[:, None, :, :] + eye * gy[:, None, None, :]) / denom  # [t, i]: group added to fold i
        dev = cand - div(add(cand, axis=2, keepdims=True), n_splits)
        evals = div(add(np.sqrt(div(add(dev * dev, axis=2), n_splits)), axis=2), n_classes)  # (T, K)
        sizes = add(per_fold, axis=2)
        best = np.zeros(n_states, dtype=np.intp)
        min_eval = np.full(n_states, np.inf)
        min_size = np.full(n_states, np.inf)
        for i in range(n_splits):
            e, size = evals[:, i], sizes[:, i]
            with np.errstate(invalid="ignore"):
                close = np.isfinite(min_eval) & (np.abs(e - min_eval) <= 1e-8 + 1e-5 * np.abs(min_eval))
            better = (e < min_eval) | (close & (size < min_size))
            best = np.where(better, i, best)
            min_eval = np.where(better, e, min_eval)
            min_size = np.where(better, size, min_size)
        per_fold[rows, best] += gy
        fold_of[rows, seq[:, step]] = best
    return fold_of[:, groups_inv]


def stage_states(seed: int, stage: int, tries: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence([seed, stage]).generate_state(tries)]
