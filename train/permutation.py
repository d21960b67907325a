"""Shuffled-label runs of the training pipeline: the null distribution, the permutation p-value, the leak verdict.

``bidsaudit train --permutation-test N`` trains N more models per fold with
the labels shuffled, on the arrays the real run already decoded and
preprocessed (no image is read again), with the real run's settings and
first seed, and writes ``permutation_test.tsv`` (one row per shuffled run,
fold and evaluation split) and ``permutation_test.json`` into the model
folder.

How labels are shuffled. As in scikit-learn's ``permutation_test_score``
(which permutes ``y`` before cross-validating), the labels of a fold's
participants are permuted across all of its splits (training, validation,
test), one label per participant, so a shuffled label travels with its
participant's images. That is what makes a hidden identity leak visible: when
slices or copies of one brain reach both sides of a split, the model can
memorise the brain's (shuffled) label and score above chance on the
evaluation side; with no such path the shuffled runs score at chance. The
preprocessing is refitted per shuffled run where it depends on the labels
(the regression targets' scale); the image statistics (``--norm train``) are
fitted on the training images, which shuffling does not change, so the real
run's fit is reused.

Scores. The score is the balanced accuracy (classification: chance level
exactly ``1/K`` for K classes whenever predictions do not depend on the true
labels) or R² (regression: chance 0) on each evaluation split, averaged over
folds. The real model's p-value is ``(C + 1) / (N + 1)``, C the number of
shuffled runs scoring at least as well (Ojala & Garriga 2010, scikit-learn's
``permutation_test_score``).

The leak rule (:func:`null_verdict`). The pipeline is *leaking* on a split
when the shuffled runs' mean score is above chance by more than their own
spread allows: the one-sided 95 % lower confidence bound of the null mean
(one-sample t, ``mean - t(0.95, N-1) * sd / sqrt(N)``) lies above the chance
level, and the mean exceeds chance by at least :data:`MIN_EFFECT` (0.05 in
balanced accuracy or R², so that a consistent but negligible bias of a large
N is not called a leak). Shuffled labels carry no information, so only
something other than the label (a copy, a slice, a shared normalisation) can
lift the null above chance (Yagis et al. 2021). A leaking pipeline is a
``leakage.pipeline`` finding [error]: ``train`` exits 1.

torch is imported only by :func:`run_permutations`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import InputError
from audit.findings import Finding
from train.items import Item
from train.maps import write_json, write_tsv
from train.samples import mix_seed

__all__ = ["ALPHA", "MIN_EFFECT", "SCORE", "chance_level", "check_permutation_option", "leakage_findings",
           "null_verdict", "permutation_lines", "permutation_p_value", "permutation_test", "permuted_items",
           "run_permutations", "summarise_permutations", "write_permutation_test"]

#: The score of each supervised task and its direction.
SCORE = {"classification": "balanced_accuracy", "regression": "r2"}
#: One-sided level of the bound on the null mean.
ALPHA = 0.05
#: The least excess over chance (in the score's units) that counts as a leak.
MIN_EFFECT = 0.05

Echo = Callable[[str], None]


def chance_level(task: str, n_classes: int) -> float:
    """The score of a model whose predictions do not depend on the labels.

    >>> chance_level("classification", 2), chance_level("classification", 4), chance_level("regression", 0)
    (0.5, 0.25, 0.0)
    """
    return 1.0 / n_classes if task == "classification" else 0.0


def permutation_p_value(real: float | None, null: Sequence[float]) -> float | None:
    """``(C + 1) / (N + 1)``: C shuffled runs scoring at least ``real`` (higher is better), N runs.

    >>> permutation_p_value(0.9, [0.5, 0.4, 0.95, 0.6])
    0.4
    """
    vals = [v for v in null if v is not None and math.isfinite(v)]
    if real is None or not math.isfinite(real) or not vals:
        return None
    c = sum(v >= real for v in vals)
    return (c + 1) / (len(vals) + 1)


def null_verdict(null: Sequence[float], chance: float, *, alpha: float = ALPHA,
                 min_effect: float = MIN_EFFECT) -> dict[str, Any]:
    """Mean, sd and one-sided lower bound of the null scores, and whether they are clearly above ``chance``.

    >>> v = null_verdict([0.95, 1.0, 0.9, 1.0], 0.5)
    >>> v["leaking"], round(v["lower_bound"], 3)
    (True, 0.906)
    >>> null_verdict([0.5, 0.75, 0.25, 0.5], 0.5)["leaking"]
    False
    """
    from scipy import stats

    vals = np.asarray([v for v in null if v is not None and math.isfinite(v)], float)
    n = len(vals)
    out: dict[str, Any] = {"n": n, "chance": chance, "alpha": alpha, "min_effect": min_effect,
                           "mean": None, "sd": None, "lower_bound": None, "leaking": False,
                           "rule": f"leaking when the one-sided {1 - alpha:.0%} lower bound of the null mean "
                                   f"(one-sample t) is above chance and the mean exceeds chance by >= {min_effect}"}
    if n == 0:
        out["reason"] = "no shuffled run gave a score"
        return out
    mean = float(vals.mean())
    out["mean"] = mean
    if n < 2:
        out["reason"] = "one shuffled run: no spread to judge by (use --permutation-test 2 or more)"
        return out
    sd = float(vals.std(ddof=1))
    bound = mean - float(stats.t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n)
    out.update(sd=sd, lower_bound=bound, leaking=bool(bound > chance and mean - chance >= min_effect))
    return out


def permuted_items(items: Mapping[str, Sequence[Item]], rng: np.random.Generator) -> dict[str, list[Item]]:
    """The fold's items with labels permuted among its participants, across all splits (one label each).

    >>> its = {"train": [Item("sub-1", None, "a", "", "AD"), Item("sub-2", None, "b", "", "CN")],
    ...        "validation": [Item("sub-3", None, "c", "", "CN")]}
    >>> out = permuted_items(its, np.random.default_rng(0))
    >>> sorted(i.label for s in out.values() for i in s)
    ['AD', 'CN', 'CN']
    """
    owners: dict[str, str | None] = {}
    for its in items.values():
        for it in its:
            owners.setdefault(it.participant_id, it.label)
    pids = list(owners)
    labels = [owners[p] for p in pids]
    perm = rng.permutation(len(pids))
    new = {p: labels[j] for p, j in zip(pids, perm)}
    return {name: [dataclasses.replace(it, label=new[it.participant_id]) for it in its] for name, its in items.items()}


def _refit_targets(prep: Any, train: Sequence[Item], task: str) -> Any:
    if task != "regression":
        return prep
    y = np.asarray([float(it.label or "nan") for it in train], float)
    return dataclasses.replace(prep, target_mean=float(np.nanmean(y)), target_std=float(np.nanstd(y)) or 1.0)


def run_permutations(fds: Sequence[Any], cfg: Any, work: Path, device: Any, n: int, *,
                     echo: Echo = print) -> list[dict[str, Any]]:
    """Train ``n`` shuffled-label runs of every fold in ``fds`` (:class:`train.loop.FoldData`); one row per score.

    Each run reuses the fold's preprocessed arrays (only the targets change),
    trains into a scratch folder under ``work`` (removed afterwards) with the
    real run's settings and first seed, and is scored on every evaluation
    split. Returns rows ``{"permutation", "fold", "split", "score", "epochs"}``.
    """
    from train.loop import FoldData, train_run  # torch

    score = SCORE[cfg.task]
    quiet = dataclasses.replace(cfg, bootstrap=0)
    rows: list[dict[str, Any]] = []
    try:
        for i in range(1, n + 1):
            shown = []
            for fd in fds:
                rng = np.random.default_rng(mix_seed(cfg.seed, fd.fold, i, 7))
                items = permuted_items(fd.items, rng)
                prep = _refit_targets(fd.prep, items.get("train", ()), cfg.task)
                pfd = FoldData(fd.fold, items, prep)
                for name, arr in fd.arrays.items():
                    pfd.arrays[name] = (arr[0], [prep.target(it, cfg.task) for it in items[name]], arr[2])
                run_dir = work / f"perm-{i:03d}" / f"split-{fd.fold}"
                res = train_run(pfd, quiet, run_dir, seed=cfg.seed, device=device, echo=_silent, progress=False)
                for split, ms in (res.get("metrics") or {}).items():
                    v = (ms.get(score) or {}).get("value")
                    rows.append({"permutation": i, "fold": fd.fold, "split": split, "score": v,
                                 "epochs": res.get("epochs_run")})
                    shown.append(f"{split} {_f(v)}")
                shutil.rmtree(run_dir.parent, ignore_errors=True)
            echo(f"shuffled-label run {i}/{n}: {score} " + ", ".join(shown))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _silent(_: str) -> None:
    return None


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summarise_permutations(task: str, n_classes: int, runs: Sequence[Mapping[str, Any]],
                           rows: Sequence[Mapping[str, Any]], *, n: int, seconds: float | None = None,
                           real_seconds: float | None = None) -> dict[str, Any]:
    """``permutation_test.json``: per evaluation split, the real score, the null, the p-value and the verdict.

    ``runs`` are the real runs (``summary.json``'s), ``rows`` what
    :func:`run_permutations` returned.
    """
    score = SCORE[task]
    chance = chance_level(task, n_classes)
    splits: dict[str, Any] = {}
    names = sorted({r["split"] for r in rows}, key=lambda s: (s != "validation", s))
    for split in names:
        real_vals = [((r.get("metrics") or {}).get(split) or {}).get(score, {}).get("value") for r in runs]
        real_vals = [float(v) for v in real_vals if v is not None]
        real = float(np.mean(real_vals)) if real_vals else None
        by_perm: dict[int, list[float]] = {}
        for r in rows:
            if r["split"] == split and r["score"] is not None:
                by_perm.setdefault(int(r["permutation"]), []).append(float(r["score"]))
        null = [float(np.mean(v)) for _, v in sorted(by_perm.items())]
        splits[split] = {"real": real, "null": null, "p_value": permutation_p_value(real, null),
                         "verdict": null_verdict(null, chance)}
    leaking = sorted(s for s, d in splits.items() if d["verdict"]["leaking"])
    return {"metric": score, "chance": chance, "n_permutations": n, "shuffle": "labels permuted among each fold's "
            "participants across all its splits (one label per participant), as permutation_test_score permutes y",
            "splits": splits, "leaking": bool(leaking), "leaking_splits": leaking,
            "seconds": seconds, "real_run_seconds": real_seconds}


def leakage_findings(doc: Mapping[str, Any]) -> list[Finding]:
    """The ``leakage.pipeline`` finding [error] of a leaking permutation test (else none)."""
    if not doc.get("leaking"):
        return []
    parts = []
    for split in doc.get("leaking_splits") or []:
        v = doc["splits"][split]["verdict"]
        parts.append(f"{split}: mean {v['mean']:.3f} over {v['n']} runs, lower bound {v['lower_bound']:.3f}")
    msg = (f"models trained on shuffled labels score above chance ({doc['metric']} chance {doc['chance']:.3g}; "
           + "; ".join(parts) + "): something other than the label carries information across splits")
    evidence = {"metric": doc["metric"], "chance": doc["chance"], "n_permutations": doc["n_permutations"],
                "splits": {s: {k: d[k] for k in ("real", "p_value")} | {"null_mean": d["verdict"]["mean"],
                                                                       "null_sd": d["verdict"]["sd"],
                                                                       "lower_bound": d["verdict"]["lower_bound"]}
                           for s, d in doc["splits"].items()},
                "rule": next(iter(doc["splits"].values()))["verdict"]["rule"], "file": "permutation_test.json"}
    return [Finding("leakage.pipeline", "error", msg, splits=tuple(doc.get("leaking_splits") or ()),
                    evidence=evidence)]


def write_permutation_test(root: Path, doc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """``permutation_test.tsv`` (one row per shuffled run, fold and split) and ``permutation_test.json``."""
    write_tsv(root / "permutation_test.tsv", ["permutation", "fold", "split", "metric", "score", "epochs"],
              [[r["permutation"], r["fold"], r["split"], doc["metric"], r["score"], r["epochs"]] for r in rows])
    write_json(root / "permutation_test.json", {**doc, "findings": [f.to_dict() for f in leakage_findings(doc)]})


def check_permutation_option(n: int, task: str, world: int = 1) -> None:
    """``--permutation-test N``: an integer >= 0, a task with labels, one process."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InputError(None, field="--permutation-test", expected="an integer >= 0 (shuffled-label runs)",
                         got=repr(n))
    if n and task not in SCORE:
        raise InputError(None, f"a {task} model has no labels to shuffle", field="--permutation-test",
                         expected="--task classification or regression")
    if n and world > 1:
        raise InputError(None, "the shuffled-label runs train in one process", field="--permutation-test",
                         expected="a run without --nproc-per-node / torchrun")


def permutation_test(fds: Sequence[Any], cfg: Any, maps: Any, device: Any, run: Any,
                     runs: Sequence[Mapping[str, Any]], real_seconds: float) -> dict[str, Any]:
    """Run, summarise and write the permutation test of a finished training call (``train.run``'s hook).

    A resumed call whose folder already holds ``permutation_test.json`` reads it instead.
    """
    import json
    import time

    done = maps.root / "permutation_test.json"
    if done.is_file():
        return dict(json.loads(done.read_text(encoding="utf-8")))
    n = int(run.permutation_test)
    run.echo(f"permutation test: {n} shuffled-label run(s) of {len(fds)} fold(s), on the arrays already prepared")
    t0 = time.perf_counter()
    rows = run_permutations(fds, cfg, maps.root / ".permutation-work", device, n, echo=run.echo)
    seconds = time.perf_counter() - t0
    n_classes = len(fds[0].prep.classes) if fds else 2
    doc = summarise_permutations(cfg.task, n_classes, runs, rows, n=n, seconds=round(seconds, 3),
                                 real_seconds=round(real_seconds, 3))
    write_permutation_test(maps.root, doc, rows)
    doc["findings"] = [f.to_dict() for f in leakage_findings(doc)]
    maps.meta["permutation_test"] = {k: doc[k] for k in ("metric", "chance", "n_permutations", "leaking",
                                                         "leaking_splits", "seconds", "real_run_seconds")}
    return doc


def permutation_lines(doc: Mapping[str, Any] | None) -> list[str]:
    """The verdict in a few lines (the CLI's and the demo's)."""
    if not doc:
        return []
    out = [f"  permutation test ({doc['n_permutations']} shuffled-label runs, {doc['metric']}, chance "
           f"{doc['chance']:.3g}): " + ("LEAKING (leakage.pipeline)" if doc.get("leaking") else "no leak found")]
    for split, d in (doc.get("splits") or {}).items():
        v = d["verdict"]
        p = d.get("p_value")
        out.append(f"    {split}: real {_f(d.get('real'))}, null mean {_f(v.get('mean'))} ± {_f(v.get('sd'))}, "
                   f"p = {'n/a' if p is None else f'{p:.3g}'}" + (" — above chance" if v.get("leaking") else ""))
    return out
