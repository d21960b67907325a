"""Learning curves: the validation metric against the number of training participants.

``train --learning-curve 0.25,0.5,0.75,1.0`` trains, for every fold and seed,
on growing participant-level subsets of the fold's training set. Subsets are
stratified on the label (classification: each class keeps its share, at
least one participant; regression: quartiles of the label, from 8
participants), seeded by (seed, fold), and nested: the order of
participants within a stratum is drawn once, and a fraction takes the first
``ceil(f * n)`` of each stratum, so every subset contains the smaller ones.
Preprocessing is refitted on each subset (nothing of the rest of the training
set leaks into it). Fraction 1.0 is the fold's ordinary run.

Writes ``learning_curve.tsv`` (one row per fraction, fold and seed) and
``learning_curve.json`` (the rows and, per fraction, mean and sd over folds
and seeds); runs live in ``learning-curve/fraction-<f>/split-<fold>/seed-<seed>/``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from audit.errors import InputError
from train import data
from train.maps import write_json, write_tsv
from train.samples import mix_seed

__all__ = ["nested_subsets", "learning_curve"]


_STRATA = {"classification": "classes", "regression": "quartiles"}


def nested_subsets(items: Sequence[Any], fractions: Sequence[float], *, seed: int,
                   stratify: bool | str) -> dict[float, list[Any]]:
    """Participant-level nested, stratified subsets of ``items`` for each fraction (items keep their order).

    ``stratify``: ``True`` or ``"classes"`` (one stratum per label value),
    ``"quartiles"`` (regression: quartiles of the numeric label), ``False``.
    """
    by_subject: dict[str, list[Any]] = {}
    for it in items:
        by_subject.setdefault(it.participant_id, []).append(it)
    key_of: dict[str, str] = {pid: "" for pid in by_subject}
    if stratify == "quartiles":
        values = {pid: float(its[0].label) for pid, its in by_subject.items() if its[0].label is not None}
        if len(values) >= 8:
            cuts = np.quantile(list(values.values()), [0.25, 0.5, 0.75])
            key_of.update({pid: f"q{int(np.searchsorted(cuts, v, side='right'))}" for pid, v in values.items()})
    elif stratify:
        key_of = {pid: str(its[0].label) for pid, its in by_subject.items()}
    strata: dict[str, list[str]] = {}
    for pid in sorted(by_subject):
        strata.setdefault(key_of[pid], []).append(pid)
    order: dict[str, list[str]] = {}
    for key, pids in sorted(strata.items()):
        rng = np.random.default_rng(mix_seed(seed, len(key), sum(map(ord, key))))
        order[key] = [pids[i] for i in rng.permutation(len(pids))]
    out = {}
    for f in fractions:
        keep = set()
        for pids in order.values():
            keep.update(pids[:max(1, math.ceil(f * len(pids) - 1e-9))])
        out[f] = [it for it in items if it.participant_id in keep]
    return out


def learning_curve(folds_items: dict[int, dict[str, list[Any]]], cfg: Any, store: Any, maps: Any, dev: Any,
                   runs: Sequence[dict[str, Any]], *, echo: Callable[[str], None], progress: bool, config_hash: str,
                   write: bool = True) -> dict[str, Any]:
    """Train the smaller fractions, collect the validation metric of every (fraction, fold, seed)."""
    from train.loop import FoldData, prepare_arrays, train_run  # torch

    metric, direction = cfg.main_metric
    fractions = list(cfg.learning_curve)
    full = {(r["fold"], r["seed"]): r for r in runs}
    rows = []
    for fold, items in folds_items.items():
        if not items.get("validation"):
            raise InputError(None, "a learning curve needs a validation split", field="--learning-curve",
                             expected="a split with validation participants")
        for seed in cfg.seed_list:
            subsets = nested_subsets(items["train"], fractions, seed=seed * 1009 + fold,
                                     stratify=_STRATA.get(cfg.task, False))
            for f in fractions:
                sub = subsets[f]
                n_subj = len({it.participant_id for it in sub})
                if f >= 1.0:
                    result = full[(fold, seed)]
                else:
                    prep = data.fit_preprocessing(sub, store, task=cfg.task, shape=cfg.shape, resize=cfg.resize,
                                             norm=cfg.norm)
                    its = {"train": sub, "validation": items["validation"]}
                    fd = FoldData(fold, its, prep)
                    for name, xs in its.items():
                        fd.arrays[name] = prepare_arrays(xs, store, prep, cfg.task)
                    run_dir = maps.root / "learning-curve" / f"fraction-{f:g}" / f"split-{fold}" / f"seed-{seed}"
                    result = train_run(fd, cfg, run_dir, seed=seed, device=dev, echo=echo, progress=progress,
                                       config_hash=config_hash)
                value = ((result.get("metrics") or {}).get("validation") or {}).get(metric, {}).get("value")
                rows.append({"fraction": f, "n_train_participants": n_subj, "n_train_images": len(sub),
                             "fold": fold, "seed": seed, "metric": metric, "value": value})
                echo(f"learning curve: fraction {f:g} ({n_subj} participants), fold {fold} seed {seed}: "
                     f"validation {metric} " + ("n/a" if value is None else f"{value:.3f}"))
    summary = []
    for f in fractions:
        sel = [r for r in rows if r["fraction"] == f]
        vals = np.array([r["value"] for r in sel if r["value"] is not None], dtype=float)
        summary.append({"fraction": f, "n_train_participants": sorted({r["n_train_participants"] for r in sel}),
                        "mean": None if not vals.size else round(float(vals.mean()), 6),
                        "sd": None if vals.size < 2 else round(float(vals.std(ddof=1)), 6),
                        "min": None if not vals.size else round(float(vals.min()), 6),
                        "max": None if not vals.size else round(float(vals.max()), 6), "n": int(vals.size)})
    out = {"metric": metric, "direction": direction, "split": "validation", "fractions": fractions,
           "stratified_on": cfg.label if cfg.task in _STRATA else None,
           "strata": _STRATA.get(cfg.task), "rows": rows, "summary": summary}
    if write:
        cols = ["fraction", "n_train_participants", "n_train_images", "fold", "seed", "metric", "value"]
        write_tsv(maps.root / "learning_curve.tsv", cols, [[r[c] for c in cols] for r in rows])
        write_json(maps.root / "learning_curve.json", out)
    return out
