"""Per-split distributions for the report's charts, computed during the audit.

:func:`split_distributions` returns the compact ``splits.distributions``
block of the JSON result (described in ``schemas/result.schema.json``), so
that ``bidsaudit report RESULT.json`` can draw the charts again from the
saved result alone:

* ``splits``: the split keys charted, as in ``splits.sizes`` (``train``,
  ``test``, ``train/fold-0``...), at most :data:`MAX_SPLITS`; of a k-fold
  layout only its first fold view (``fold``; ``folds`` says how many there
  are): every fold drawn at once is unreadable, and the shift checks'
  findings name any fold that differs;
* ``variables``: the label (``role: label``), the site or scanner
  (``role: site``) and the other participant columns (``role: covariate``,
  at most :data:`MAX_COVARIATES`), one value per participant as the shift
  checks read them (:mod:`audit.checks.variables`: the same covariates,
  read by :func:`~audit.checks.variables.make_variable`). Categorical:
  ``levels`` and per-split ``counts`` (levels past :data:`MAX_LEVELS`
  pooled as one "other" level); continuous: shared histogram ``edges`` and
  per-split ``counts``. ``missing``: participants of the split without a
  value;
* ``image_features``: for the image features that tell the splits apart
  best (the shift.image domain classifier's top features, else the first
  ones), a five-number summary per split, from the one image pass (the
  features the checks computed in this audit; never computed here).

Every number is finite (no NaN reaches the JSON result).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.checks.features import computed_features
from audit.checks.shift_family import computed_family
from audit.checks.variables import MAX_LEVELS as MAX_VARIABLE_LEVELS
from audit.checks.variables import covariate_columns, make_variable
from audit.scanner import participant_values

if TYPE_CHECKING:
    from audit.context import AuditContext

__all__ = ["split_distributions", "MAX_SPLITS", "MAX_LEVELS", "MAX_COVARIATES"]

MAX_SPLITS = 16
MAX_LEVELS = 12
MAX_COVARIATES = 6
MAX_BINS = 12
MAX_IMAGE_FEATURES = 4


def _split_members(ctx: AuditContext) -> tuple[dict[str, frozenset[str]], int | None]:
    """Participants per split key; a k-fold layout: those of its first fold view (and that fold)."""
    assert ctx.splits is not None
    out: dict[str, frozenset[str]] = {}
    if ctx.splits.folds:
        fold, tables = next(iter(ctx.splits.views()))
        for name, table in tables.items():
            key = name if table.fold is None else f"{name}/fold-{table.fold}"
            if len(out) < MAX_SPLITS:
                out[key] = table.subjects()
        return out, fold
    for table in ctx.splits.tables:
        if table.name not in out and len(out) < MAX_SPLITS:
            out[table.name] = ctx.splits.subjects(table.name)
    return out, None


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _categorical(values: Mapping[str, Any], members: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    pooled: Counter[str] = Counter()
    for subs in members.values():
        pooled.update(str(values[p]) for p in subs if p in values)
    ranked = sorted(pooled, key=lambda v: (-pooled[v], v))
    shown = sorted(ranked[:MAX_LEVELS]) if len(ranked) <= MAX_LEVELS else sorted(ranked[:MAX_LEVELS - 1])
    other = len(ranked) - len(shown)
    levels = shown + ([f"other ({other} levels)"] if other else [])
    index = {v: i for i, v in enumerate(shown)}
    counts: dict[str, list[int]] = {}
    for key, subs in members.items():
        row = [0] * len(levels)
        for p in subs:
            if p in values:
                row[index.get(str(values[p]), len(levels) - 1)] += 1
        counts[key] = row
    return {"kind": "categorical", "levels": levels, "counts": counts}


def _continuous(values: Mapping[str, Any], members: Mapping[str, frozenset[str]]) -> dict[str, Any] | None:
    pooled = [float(values[p]) for subs in members.values() for p in subs
              if p in values and math.isfinite(float(values[p]))]
    if not pooled:
        return None
    lo, hi = min(pooled), max(pooled)
    n_unique = len(set(pooled))
    bins = max(1, min(MAX_BINS, int(math.ceil(math.sqrt(len(pooled)))), n_unique))
    if hi == lo:
        edges = [lo - 0.5, hi + 0.5]
    else:
        edges = np.linspace(lo, hi, bins + 1).tolist()
    counts: dict[str, list[int]] = {}
    for key, subs in members.items():
        xs = [float(values[p]) for p in subs if p in values and math.isfinite(float(values[p]))]
        hist, _ = np.histogram(xs, bins=np.asarray(edges)) if xs else (np.zeros(len(edges) - 1, dtype=int), None)
        counts[key] = [int(c) for c in hist]
    return {"kind": "continuous", "edges": [_round(e) for e in edges], "counts": counts}


def _variable_block(var: Any, role: str, members: Mapping[str, frozenset[str]]) -> dict[str, Any] | None:
    if var.kind == "categorical":
        body = _categorical(var.values, members)
    elif var.kind == "continuous":
        body = _continuous(var.values, members)  # type: ignore[assignment]
    else:
        return None
    if body is None:
        return None
    missing = {key: sum(1 for p in subs if p not in var.values) for key, subs in members.items()}
    return {"name": str(var.name), "role": role, **body, "missing": missing}


def _five(xs: list[float]) -> dict[str, Any]:
    q = np.quantile(np.asarray(xs, dtype=float), [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n": len(xs), **{k: _round(float(v)) for k, v in zip(("min", "q1", "median", "q3", "max"), q)}}


def _image_features(ctx: AuditContext, members: Mapping[str, frozenset[str]]) -> dict[str, Any] | None:
    feats = computed_features(ctx)
    if feats is None or not feats.by_subject:
        return None
    names = list(feats.names)
    chosen: list[str] = []
    fam = computed_family(ctx)
    if fam is not None:
        for rec in fam.of("shift.image"):
            for f in (rec.get("features") or [])[:2]:
                if f.get("feature") in names and f["feature"] not in chosen:
                    chosen.append(f["feature"])
    for n in names:
        if len(chosen) >= MAX_IMAGE_FEATURES:
            break
        if n not in chosen:
            chosen.append(n)
    chosen = chosen[:MAX_IMAGE_FEATURES]
    by = feats.by_subject
    out = []
    for name in chosen:
        j = names.index(name)
        summary = {}
        for key, subs in members.items():
            xs = [float(by[p][j]) for p in sorted(subs) if p in by and math.isfinite(float(by[p][j]))]
            if xs:
                summary[key] = _five(xs)
        if summary:
            out.append({"name": name, "by_split": summary})
    if not out:
        return None
    return {"suffix": feats.suffix, "features": out}


def split_distributions(ctx: AuditContext) -> dict[str, Any] | None:
    """The ``splits.distributions`` block (``None`` without splits)."""
    if ctx.splits is None:
        return None
    members, fold = _split_members(ctx)
    max_levels = MAX_VARIABLE_LEVELS
    variables: list[dict[str, Any]] = []
    label = ctx.label_column
    skip: set[str] = set()
    if label:
        var = make_variable("shift.label", label, participant_values(ctx, label, label=True), source="",
                            max_levels=max_levels)
        block = _variable_block(var, "label", members)
        if block:
            variables.append(block)
    ident = ctx.scanner_identity
    if ident.by_subject:
        name = "site" if ident.source != "sidecars" else "scanner"
        if ident.column:
            skip.add(ident.column)
        var = make_variable("shift.acquisition", name, dict(ident.by_subject), source="", max_levels=10**6,
                            categorical=True)
        block = _variable_block(var, "site", members)
        if block:
            variables.append(block)
    covariates = 0
    for c in covariate_columns(ctx):  # the shift checks' own choice of covariates
        if covariates >= MAX_COVARIATES:
            break
        if c in skip or c.lower() in skip:
            continue
        var = make_variable("shift.covariate", c, participant_values(ctx, c), source="", max_levels=max_levels)
        block = _variable_block(var, "covariate", members)
        if block:
            variables.append(block)
            covariates += 1
    out: dict[str, Any] = {"splits": list(members), "variables": variables}
    if fold is not None:
        out["fold"] = fold
        out["folds"] = len(ctx.splits.folds)
    images = _image_features(ctx, members)
    if images:
        out["image_features"] = images
    return out
