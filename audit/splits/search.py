"""Split search: seeded candidates for the test set, validation set or folds, the best-balanced kept.

Each stage draws ``tries`` random states (:func:`audit.splits.folds.stage_states`),
cuts the groups with the batched splitter, scores every candidate (balance,
class mix, size) and repairs a missing class by moving whole groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from audit.splits.balance import SplitData
from audit.splits.folds import sgkf_batch, stage_states
from audit.splits.plan import SplitPlan, _round

__all__ = ["class_counts", "quantile_bins", "search_folds", "search_test", "search_validation"]


def quantile_bins(values: np.ndarray, g: np.ndarray, need: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Quantile bins of a numeric label, as many (<= 5) as leave ``need`` groups in each."""
    for q in range(5, 1, -1):
        edges = np.unique(np.quantile(values, np.linspace(0, 1, q + 1)))
        if len(edges) < 3:
            continue
        y = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        used = np.unique(y)
        y = np.searchsorted(used, y)
        ok = all(len(np.unique(g[y == c])) >= need for c in range(len(used)))
        if ok:
            names = tuple(f"[{_fmt(edges[u])}, {_fmt(edges[u + 1])}{']' if u + 2 == len(edges) else ')'}"
                          for u in used)
            return names, y
    return ("all",), np.zeros(len(values), dtype=np.intp)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _group_fold(fold: np.ndarray, g: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, -1, dtype=np.intp)
    out[g] = fold
    return out


def class_counts(part_of_group: np.ndarray, member: np.ndarray, n_parts: int) -> np.ndarray:
    """(P, C) number of groups holding each class, per part (parts < 0 ignored)."""
    out = np.zeros((n_parts, member.shape[1]))
    ok = part_of_group >= 0
    np.add.at(out, part_of_group[ok], member[ok])
    return out


def search_test(d: SplitData, plan: SplitPlan, k: int, need: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean mask over groups: the test set."""
    n = len(d.pids)
    n_groups = len(d.group_names)
    total = d.feats.matrix.sum(axis=0)
    gtotal = d.member.sum(axis=0)
    rest_need = need - 1
    best_key: tuple[float, float] | None = None
    best: tuple[int, int, int, np.ndarray] | None = None
    scores: list[float] = []
    states = stage_states(plan.seed, 1, plan.tries)
    all_folds = sgkf_batch(d.y, d.g, k, states)
    for t, state in enumerate(states):
        fold = all_folds[t]
        masks = fold[None, :] == np.arange(k)[:, None]
        s = d.feats.sums(masks)
        rest = total - s
        smd = d.feats.smd(s, rest)
        smd_max = smd.max(-1) if smd.shape[-1] else np.zeros(k)
        score = smd_max + d.feats.label_dev(s) + np.abs(s[:, 0] / n - plan.test_size)
        gfold = _group_fold(fold, d.g, n_groups)
        cnt = class_counts(gfold, d.member, k)
        deficit = np.maximum(0, 1 - cnt).sum(1) + np.maximum(0, rest_need - (gtotal - cnt)).sum(1)
        for j in range(k):
            scores.append(float(score[j]))
            key = (float(deficit[j]), float(score[j]))
            if best_key is None or key < best_key:
                best_key, best = key, (t, j, state, gfold == j)
    assert best is not None and best_key is not None
    t, j, state, test = best
    parts = np.where(test, 0, 1)
    repaired = False
    if best_key[0] > 0:
        need_m = np.array([[1] * d.member.shape[1], [rest_need] * d.member.shape[1]])
        parts = _repair(parts, d.member, need_m, d.gsize)
        repaired = True
    info = {"candidates": len(scores), "try": t, "fold": j, "random_state": state,
            "score": _round(best_key[1]), "median_score": _round(float(np.median(scores))),
            "repaired": repaired}
    return parts == 0, info


def search_validation(d: SplitData, plan: SplitPlan, k: int, test: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Per group: -1 test, 0 validation, 1 train."""
    n = len(d.pids)
    in_rest = ~test[d.g]
    idx = np.flatnonzero(in_rest)
    st = d.feats.sums(test[d.g][None, :])[0]
    sub = d.feats.matrix[idx]
    rtotal = sub.sum(axis=0)
    rgroups = ~test
    gtotal = d.member[rgroups].sum(axis=0)
    best_key: tuple[float, float] | None = None
    best: tuple[int, int, int, np.ndarray] | None = None
    scores: list[float] = []
    for t, state, fold, s, gfold in _candidates(d, plan, idx, k, stage=2):
        train = rtotal - s
        pair = np.concatenate([d.feats.smd(s, train), d.feats.smd(s, st), d.feats.smd(train, st)], axis=-1)
        smd_max = pair.max(-1) if pair.shape[-1] else np.zeros(k)
        ldev = np.maximum.reduce([d.feats.label_dev(s), d.feats.label_dev(train),
                                  np.broadcast_to(d.feats.label_dev(st), (k,))])
        score = smd_max + ldev + np.abs(s[:, 0] / n - plan.val_size)
        cnt = class_counts(gfold, d.member, k)
        deficit = np.maximum(0, 1 - cnt).sum(1) + np.maximum(0, 1 - (gtotal - cnt)).sum(1)
        for j in range(k):
            scores.append(float(score[j]))
            key = (float(deficit[j]), float(score[j]))
            if best_key is None or key < best_key:
                best_key, best = key, (t, j, state, gfold)
    assert best is not None and best_key is not None
    t, j, state, gfold = best
    parts = np.where(test, -1, np.where(gfold == j, 0, 1))
    repaired = False
    if best_key[0] > 0:
        parts = _repair(parts, d.member, np.ones((2, d.member.shape[1])), d.gsize)
        repaired = True
    info = {"candidates": len(scores), "try": t, "fold": j, "random_state": state,
            "score": _round(best_key[1]), "median_score": _round(float(np.median(scores))),
            "repaired": repaired}
    return parts, info


def search_folds(d: SplitData, plan: SplitPlan, test: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Per group: -1 test, else its fold (0..k-1)."""
    k = plan.folds
    idx = np.flatnonzero(~test[d.g])
    sub = d.feats.matrix[idx]
    ptotal = sub.sum(axis=0)
    npool = len(idx)
    best_key: tuple[float, float] | None = None
    best: tuple[int, int, np.ndarray] | None = None
    scores: list[float] = []
    for t, state, _fold, s, gfold in _candidates(d, plan, idx, k, stage=3):
        smd = d.feats.smd(s, ptotal - s)
        smd_max = float(smd.max()) if smd.size else 0.0
        score = (smd_max + float(d.feats.label_dev(s).max())
                 + float(np.abs(s[:, 0] / npool - 1 / k).max()))
        deficit = float(np.maximum(0, 1 - class_counts(gfold, d.member, k)).sum())
        scores.append(score)
        key = (deficit, score)
        if best_key is None or key < best_key:
            best_key, best = key, (t, state, gfold)
    assert best is not None and best_key is not None
    t, state, gfold = best
    parts = gfold.copy()
    repaired = False
    if best_key[0] > 0:
        parts = _repair(parts, d.member, np.ones((k, d.member.shape[1])), d.gsize)
        repaired = True
    info = {"candidates": len(scores), "try": t, "random_state": state, "score": _round(best_key[1]),
            "median_score": _round(float(np.median(scores))), "repaired": repaired}
    return parts, info


def _candidates(d: SplitData, plan: SplitPlan, idx: np.ndarray, k: int, *, stage: int,
                ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """The search's candidates: per random state of ``stage``, the k folds of the participants ``idx``.

    Yields ``(try, state, fold per participant, (k, F) feature sums per fold, fold per group (-1: not in idx))``.
    """
    n_groups = len(d.group_names)
    sub = d.feats.matrix[idx]
    states = stage_states(plan.seed, stage, plan.tries)
    all_folds = sgkf_batch(d.y[idx], d.g[idx], k, states)
    for t, state in enumerate(states):
        fold = all_folds[t]
        masks = (fold[None, :] == np.arange(k)[:, None]).astype(float)
        yield t, state, fold, masks @ sub, _group_fold(fold, d.g[idx], n_groups)


def _repair(parts: np.ndarray, member: np.ndarray, need: np.ndarray, gsize: np.ndarray) -> np.ndarray:
    """Move whole groups between parts (>= 0) until every part holds ``need[p, c]`` groups of class c,
    or no move helps. Smallest groups move first; deterministic."""
    parts = parts.copy()
    n_parts = need.shape[0]
    for _ in range(len(parts) * member.shape[1] + 1):
        have = class_counts(parts, member, n_parts)
        deficit = np.maximum(0, need - have)
        total = deficit.sum()
        if total == 0:
            break
        p, c = (int(v) for v in np.argwhere(deficit > 0)[0])
        best: tuple[tuple[float, int, int], int] | None = None
        for gi in np.flatnonzero(member[:, c] & (parts >= 0) & (parts != p)):
            q = parts[gi]
            new = have.copy()
            new[q] -= member[gi]
            new[p] += member[gi]
            key = (float(np.maximum(0, need - new).sum()), int(gsize[gi]), int(gi))
            if best is None or key < best[0]:
                best = (key, int(gi))
        if best is None or best[0][0] >= total:
            break
        parts[best[1]] = p
    # whatever the classes, no part may be left without groups (an empty validation fold is worse
    # than a class missing from it, which is reported)
    floor = need.max(axis=1)
    for _ in range(len(parts) + 1):
        count = np.bincount(parts[parts >= 0], minlength=n_parts)
        short = np.flatnonzero(count < floor)
        spare = count - floor
        if not short.size or spare.max() <= 0:
            break
        donor = int(np.argmax(spare))
        cands = np.flatnonzero(parts == donor)
        parts[cands[np.lexsort((cands, gsize[cands]))[0]]] = int(short[0])
    return parts
