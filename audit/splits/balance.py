"""Split balance: per-participant features whose sums give every balance statistic (|SMD|, class mix).

The covariates of a split (numeric or categorical, read with :mod:`audit.values`),
the feature matrix the search scores candidates with, and the balance report
written to ``split_params.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.splits.plan import (
    CATEGORICAL_NAMES,
    PARAMS_FILE,
    SplitPlan,
    SplitResult,
    _round,
)
from audit.values import NUMERIC_COLUMNS, is_missing, parse_number

__all__ = ["SplitData", "summary"]


@dataclass
class _Cov:
    name: str
    kind: str  # "numeric" | "categorical"
    start: int  # first feature column
    levels: tuple[str, ...] = ()
    var0: float = 0.0  # overall variance (numeric)
    center: float = 0.0
    scored: bool = True
    raw: list[str] = field(default_factory=list)
    ignored: int = 0  # non-numeric values treated as missing

    @property
    def width(self) -> int:
        return 3 if self.kind == "numeric" else len(self.levels)


@dataclass
class _Features:
    """Per-participant features whose column sums give every balance statistic."""

    matrix: np.ndarray  # (n, F): [1, label one-hot..., per covariate: (n, sum, sumsq) or level one-hot]
    n_classes: int
    covs: list[_Cov]
    p_all: np.ndarray

    def sums(self, masks: np.ndarray) -> np.ndarray:
        """(P, F) sums for P boolean/0-1 masks of shape (P, n)."""
        return masks.astype(float) @ self.matrix

    def label_dev(self, s: np.ndarray) -> np.ndarray:
        lab = s[..., 1:1 + self.n_classes]
        size = lab.sum(-1)
        with np.errstate(all="ignore"):
            dev = np.abs(lab / size[..., None] - self.p_all).max(-1)
        return np.where(size > 0, dev, 1.0)

    def smd(self, a: np.ndarray, b: np.ndarray, *, scored_only: bool = True) -> np.ndarray:
        """|SMD| per covariate, shape (..., n_cov)."""
        covs = [c for c in self.covs if c.scored or not scored_only]
        shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        if not covs:
            return np.zeros((*shape, 0))
        return np.stack([_smd_one(c, a, b) for c in covs], axis=-1)


def _smd_one(c: _Cov, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if c.kind == "numeric":
            na, sa, qa = a[..., c.start], a[..., c.start + 1], a[..., c.start + 2]
            nb, sb, qb = b[..., c.start], b[..., c.start + 1], b[..., c.start + 2]
            ma, mb = sa / na, sb / nb
            va = np.where(na >= 2, np.maximum(qa - sa * sa / na, 0) / (na - 1), c.var0)
            vb = np.where(nb >= 2, np.maximum(qb - sb * sb / nb, 0) / (nb - 1), c.var0)
            pooled = np.sqrt((va + vb) / 2)
            pooled = np.where(pooled > 1e-12, pooled, math.sqrt(c.var0))
            d = np.abs(ma - mb) / pooled
            ok = (na > 0) & (nb > 0) & (pooled > 1e-12)
            return np.where(ok, d, 0.0)
        ca, cb = a[..., c.start:c.start + c.width], b[..., c.start:c.start + c.width]
        na, nb = ca.sum(-1, keepdims=True), cb.sum(-1, keepdims=True)
        p = (ca + cb) / (na + nb)
        d = np.abs(ca / na - cb / nb) / np.sqrt(p * (1 - p))
        d = np.where((p > 0) & (p < 1) & (na > 0) & (nb > 0), d, 0.0)
        return d.max(-1) if c.width else np.zeros(d.shape[:-1])


def _covariate(name: str, raw: list[str], start: int, *, scored: bool = True) -> _Cov:
    present = [v for v in raw if not is_missing(v)]
    nums = [parse_number(v)[0] for v in present]
    parsed = [x for x in nums if x is not None]
    distinct = len(set(parsed))
    numeric = name.lower() not in CATEGORICAL_NAMES and bool(present) and (
        (len(parsed) == len(present) and (distinct > 5 or name.lower() in NUMERIC_COLUMNS))
        or (len(parsed) >= 0.9 * len(present) and distinct > 5)
    )
    if numeric:
        vals = [x for x in parsed]
        center = float(np.mean(vals)) if vals else 0.0
        var0 = float(np.var(vals, ddof=1)) if len(vals) >= 2 else 0.0
        return _Cov(name, "numeric", start, var0=var0, center=center, scored=scored, raw=raw,
                    ignored=len(present) - len(parsed))
    levels = tuple(sorted(set(present)))
    return _Cov(name, "categorical", start, levels=levels, scored=scored, raw=raw)


def _cov_block(c: _Cov) -> np.ndarray:
    n = len(c.raw)
    block = np.zeros((n, c.width))
    if c.kind == "numeric":
        for i, v in enumerate(c.raw):
            x = parse_number(v)[0]
            if x is not None:
                x -= c.center
                block[i] = (1.0, x, x * x)
    else:
        pos = {lv: j for j, lv in enumerate(c.levels)}
        for i, v in enumerate(c.raw):
            if not is_missing(v):
                block[i, pos[v]] = 1.0
    return block

@dataclass
class SplitData:
    pids: list[str]
    y: np.ndarray  # stratum code per participant
    strata: tuple[str, ...]
    g: np.ndarray  # group code per participant
    group_names: list[str]
    member: np.ndarray  # (G, C) group holds a participant of stratum c
    gsize: np.ndarray  # participants per group
    feats: _Features

def _describe(d: SplitData, mask: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"participants": int(mask.sum()), "groups": int(len(np.unique(d.g[mask])))}
    out["fraction"] = _round(mask.sum() / len(d.pids))
    counts = {name: int(((d.y == c) & mask).sum()) for c, name in enumerate(d.strata)}
    tot = sum(counts.values())
    out["label"] = {"counts": counts,
                    "proportions": {k: _round(v / tot if tot else None) for k, v in counts.items()}}
    covs: dict[str, Any] = {}
    for c in d.feats.covs:
        block = d.feats.matrix[:, c.start:c.start + c.width][mask]
        missing = int(mask.sum() - block.sum() if c.kind == "categorical" else mask.sum() - block[:, 0].sum())
        if c.kind == "numeric":
            present = block[:, 0] > 0
            x = block[present, 1] + c.center
            entry = {"n": int(present.sum()), "missing": missing,
                     "mean": _round(float(x.mean())) if x.size else None,
                     "sd": _round(float(x.std(ddof=1))) if x.size >= 2 else None}
        else:
            n = block.sum()
            entry = {"n": int(n), "missing": missing,
                     "proportions": {lv: _round(block[:, j].sum() / n if n else None)
                                     for j, lv in enumerate(c.levels)}}
        if not c.scored:  # a numeric label
            out["label"].update({k: entry[k] for k in ("n", "mean", "sd")})
        else:
            covs[c.name] = entry
    out["covariates"] = covs
    return out


def _balance(r: SplitResult, d: SplitData, plan: SplitPlan) -> dict[str, Any]:
    pid_idx = {p: i for i, p in enumerate(d.pids)}
    everyone = np.ones(len(d.pids), dtype=bool)

    def mask(members: frozenset[str] | set[str]) -> np.ndarray:
        m = np.zeros(len(d.pids), dtype=bool)
        m[[pid_idx[p] for p in members]] = True
        return m

    covs = d.feats.covs
    scored = [c.name for c in covs if c.scored]

    def smd_pair(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
        s = d.feats.sums(np.stack([a, b]))
        vals = d.feats.smd(s[0], s[1], scored_only=False)
        res: dict[str, Any] = {c.name if c.scored else "label": _round(float(v)) for c, v in zip(covs, vals)}
        if "label" not in res:
            lab = _Cov("label", "categorical", 1, levels=d.strata)
            res["label"] = _round(float(_smd_one(lab, s[0], s[1])))
        res["max_abs_smd"] = _round(max((float(v) for c, v in zip(covs, vals) if c.scored), default=0.0))
        return res

    split_sets = r.splits()
    if plan.folds:
        pool = frozenset(r.assignments) - r.test
        parts = {"test": r.test, "train+validation": pool}
        parts.update(split_sets)
        pairs = [("train+validation", "test")] + [(f"split-{i}/train", f"split-{i}/validation")
                                                   for i in range(plan.folds)]
    else:
        parts = dict(split_sets)
        pairs = [("train", "validation"), ("train", "test"), ("validation", "test")]
    masks = {name: mask(members) for name, members in parts.items()}
    splits: dict[str, Any] = {}
    for name, m in masks.items():
        entry = _describe(d, m)
        rest = everyone & ~m
        if plan.folds and name.startswith("split-"):
            rest = masks["train+validation"] & ~m
        vs = smd_pair(m, rest)
        entry["smd_vs_rest"] = vs
        entry["label_deviation"] = _round(float(d.feats.label_dev(d.feats.sums(m[None, :]))[0]))
        splits[name] = entry
    pair_out = {f"{a}|{b}": smd_pair(masks[a], masks[b]) for a, b in pairs}
    worst = max(((v["max_abs_smd"] or 0.0, k) for k, v in pair_out.items()), default=(0.0, None))
    worst_cov = None
    if worst[1] is not None:
        cand = [(pair_out[worst[1]].get(c) or 0.0, c) for c in scored]
        worst_cov = max(cand)[1] if cand else None
    return {
        "covariates": scored,
        "splits": splits,
        "pairs": pair_out,
        "max_abs_smd": _round(worst[0]),
        "max_abs_smd_where": {"pair": worst[1], "covariate": worst_cov} if worst_cov else None,
        "max_label_deviation": _round(max((v["label_deviation"] or 0.0) for v in splits.values())),
    }


def summary(result: SplitResult) -> list[str]:
    """A few lines for the command line: sizes, classes and the worst imbalance."""
    lines = []
    bal = result.balance.get("splits", {})
    for name, members in result.splits().items():
        counts = bal.get(name, {}).get("label", {}).get("counts", {})
        mix = " / ".join(f"{v} {k}" for k, v in counts.items())
        lines.append(f"{name}: {len(members)} participants" + (f" ({mix})" if mix else ""))
    where = result.balance.get("max_abs_smd_where")
    smd = result.balance.get("max_abs_smd")
    if smd is not None:
        lines.append(f"max |SMD| {smd:.3f}" + (f" ({where['covariate']}, {where['pair']})" if where else "")
                     + f"; max class-proportion deviation {result.balance.get('max_label_deviation', 0):.3f}")
    if result.excluded:
        lines.append(f"excluded: {len(result.excluded)} participant(s) (see {PARAMS_FILE})")
    lines += [f"warning: {w}" for w in result.params.get("warnings", [])]
    return lines
