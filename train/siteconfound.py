"""Per-site results and the prediction-site test: does the model's output depend on the site beyond the label?

The site of each evaluated image comes from what the audit used: the
certificate's ``--site`` column, else the images' sidecars (scanner
identity, :mod:`audit.scanner`), else a ``site``/``scanner``/``center``
column. :func:`site_analysis` reads each run's predictions of its
evaluation splits (validation, test) and writes

* per-site metrics with bootstrap confidence intervals (by participant), as
  rows of ``summary.tsv`` (its ``site`` column) and in ``site_results.json``;
  a k-fold split whose folds each hold out one site (``split
  --leave-site-out``) is reported as leave-one-site-out beside the pooled
  result;
* ``prediction_confound.json``: the partial confounder test of Spisák (2022,
  *GigaScience* 11:giac082; the *mlconfound* package), H0: the predictions
  are independent of the site given the true label. It is a conditional
  permutation test (Berrett et al. 2020, JRSS-B 82:175): the site labels are
  permuted within each label class (exact for a categorical label: the
  conditional distribution of site given label is the observed one in each
  class; for a regression label, within quintiles of the label), and the
  statistic is the partial R² of the site in ``prediction ~ label + site``
  (the share of the prediction's variance left after the label that the site
  explains: the effect size). p = (C + 1) / (B + 1). The unit is the
  participant (its score averaged over its evaluated images and runs): the
  sessions of one participant share a scanner and are not exchangeable. The package itself is not
  used: mlconfound 0.21.3 pins pygam 0.8.0 and pulls matplotlib, seaborn,
  graphviz and dot2tex into the environment, for a test that is 30 lines of
  numpy for a categorical site.

A warning is raised when p < :data:`ALPHA` and the partial R² is at least
:data:`MIN_PARTIAL_R2`: the predictions are site-driven.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audit.scanner import SITE_COLUMNS, from_sidecars, from_values
from train import metrics as M
from train.maps import read_tsv, write_json

__all__ = ["ALPHA", "MIN_PARTIAL_R2", "N_PERM", "leave_site_out", "partial_confound_test", "per_site_rows",
           "site_analysis", "site_lookup", "site_test_lines", "summary_site_rows"]

ALPHA = 0.05
MIN_PARTIAL_R2 = 0.05
N_PERM = 1000


def site_lookup(index: Any, site_column: str | None) -> tuple[dict[str, str], dict[str, str], str]:
    """``(site by participant, site by image path, where it came from)`` for a verified dataset index."""
    if site_column:
        return _column_sites(index, site_column), {}, f"column '{site_column}' (the audit's --site)"
    ident = from_sidecars(index)
    if ident.source != "none" and ident.by_subject:
        return dict(ident.by_subject), dict(ident.by_image), ident.describe()
    part = index.participants
    for col in SITE_COLUMNS:
        if part is not None and col in part.columns:
            return _column_sites(index, col), {}, f"column '{col}' of participants.tsv"
    return {}, {}, "nothing (no --site, no scanner fields in the sidecars, no site column)"


def _column_sites(index: Any, column: str) -> dict[str, str]:
    part = index.participants
    if part is None or column not in part.columns:
        return {}
    values = {"sub-" + str(p).strip().removeprefix("sub-"): v for p, v in zip(part["participant_id"], part[column])}
    return dict(from_values(values, column=column).by_subject)


def _partial_r2(yhat: np.ndarray, base: np.ndarray, site: np.ndarray) -> float:
    """Share of the residual variance of ``yhat ~ base`` that the site dummies explain."""
    def rss(x: np.ndarray) -> float:
        beta, *_ = np.linalg.lstsq(x, yhat, rcond=None)
        r = yhat - x @ beta
        return float(r @ r)

    levels = np.unique(site)
    dummies = (site[:, None] == levels[None, 1:]).astype(float)
    r0 = rss(base)
    if r0 <= 1e-15:
        return 0.0
    return max(0.0, 1.0 - rss(np.hstack([base, dummies])) / r0)


def partial_confound_test(y: Sequence[Any], yhat: Sequence[float], site: Sequence[str], *, categorical_y: bool,
                          n_perm: int = N_PERM, seed: int = 0) -> dict[str, Any]:
    """Partial confounder test of ``yhat`` (a score per image) against ``site`` given the label ``y``.

    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 40); site = np.tile(["A", "B"], 40)
    >>> driven = partial_confound_test(y, y + (site == "A") * 1.0 + rng.normal(0, .3, 80), site, categorical_y=True)
    >>> driven["p_value"] < 0.01 and driven["partial_r2"] > 0.5
    True
    >>> clean = partial_confound_test(y, y + rng.normal(0, .3, 80), site, categorical_y=True)
    >>> clean["p_value"] > 0.05
    True
    """
    yhat = np.asarray(yhat, float)
    site = np.asarray([str(s) for s in site])
    n = len(yhat)
    out: dict[str, Any] = {"test": "partial confounder test (Spisak 2022): conditional permutation of site "
                                   "within label strata, statistic partial R2 of site in prediction ~ label + site",
                           "n": n, "sites": sorted(set(site.tolist())), "n_perm": n_perm}
    if n < 4 or len(set(site.tolist())) < 2:
        out.update(p_value=None, partial_r2=None, reason="fewer than two sites (or four participants) evaluated")
        return out
    if categorical_y:
        strata = np.unique(np.asarray([str(v) for v in y]), return_inverse=True)[1]
    else:
        yv = np.asarray(y, float)
        edges = np.quantile(yv, [0.2, 0.4, 0.6, 0.8])
        strata = np.searchsorted(edges, yv)
    levels = np.unique(strata)
    base = np.hstack([np.ones((n, 1)), (strata[:, None] == levels[None, 1:]).astype(float)])
    stat = _partial_r2(yhat, base, site)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == s) for s in levels]
    count = 0
    for _ in range(n_perm):
        perm = site.copy()
        for g in groups:
            perm[g] = site[rng.permutation(g)]
        count += _partial_r2(yhat, base, perm) >= stat - 1e-12
    p = (count + 1) / (n_perm + 1)
    out.update(p_value=p, partial_r2=stat, alpha=ALPHA, min_partial_r2=MIN_PARTIAL_R2,
               site_driven=bool(p < ALPHA and stat >= MIN_PARTIAL_R2))
    return out


def _score_column(head: Sequence[str], classes: Sequence[str], task: str) -> str | None:
    if task == "regression":
        return "predicted_value"
    if len(classes) == 2:
        return f"proba_{classes[M.positive_class(classes)]}"
    return None  # more classes: the probability of the true class


def _evaluated(maps: Any, runs: Sequence[Mapping[str, Any]], selection: str) -> list[dict[str, Any]]:
    """Every evaluated prediction row of every run, with fold, seed and split."""
    out = []
    for r in runs:
        run_dir = maps.run_dir(r["fold"], r["seed"])
        for split in (r.get("metrics") or {}):
            path = run_dir / "predictions" / f"{split}_best-{selection}.tsv"
            if path.is_file():
                for row in read_tsv(path):
                    out.append({**row, "_fold": r["fold"], "_seed": r["seed"], "_split": split})
    return out


def _metrics(task: str, classes: Sequence[str], rows: Sequence[Mapping[str, Any]], *, n_boot: int,
             seed: int) -> dict[str, dict[str, Any]]:
    if task == "classification":
        y = np.array([classes.index(str(r["true_label"])) if str(r["true_label"]) in classes else -1 for r in rows])
        keep = y >= 0
        proba = np.array([[float(r[f"proba_{c}"]) for c in classes] for r in rows]).reshape(len(rows), len(classes))
        y, proba = y[keep], proba[keep]
        groups = [r["participant_id"] for r, k in zip(rows, keep) if k]

        def f(idx: np.ndarray | None = None, engine: str = "numpy") -> Mapping[str, float]:
            sel = slice(None) if idx is None else idx
            return M.classification_metrics(y[sel], proba[sel], classes, engine=engine)
    else:
        y = np.array([float(r["true_value"]) for r in rows])
        pred = np.array([float(r["predicted_value"]) for r in rows])
        groups = [r["participant_id"] for r in rows]

        def f(idx: np.ndarray | None = None, engine: str = "numpy") -> Mapping[str, float]:
            sel = slice(None) if idx is None else idx
            return M.regression_metrics(y[sel], pred[sel], engine=engine)
    if not groups:
        return {}
    point = f(None, "numpy")
    return M.with_ci(point, M.bootstrap_ci(f, groups, n_boot=n_boot, seed=seed))


def per_site_rows(task: str, classes: Sequence[str], rows: Sequence[Mapping[str, Any]], sites: Mapping[str, str],
                  *, n_boot: int, seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {site: {"n_images", "n_participants", "metrics": {...with CI}}}}`` over every run's predictions."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    keyed: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["_split"], sites.get(r["image"]) or sites.get(r["participant_id"]) or "unknown"),
                         []).append(r)
    for (split, site), rs in sorted(keyed.items()):
        out.setdefault(split, {})[site] = {
            "n_images": len({r["image"] for r in rs}), "n_participants": len({r["participant_id"] for r in rs}),
            "metrics": _metrics(task, classes, rs, n_boot=n_boot, seed=seed)}
    return out


def leave_site_out(rows: Sequence[Mapping[str, Any]], sites: Mapping[str, str]) -> dict[int, str] | None:
    """``{fold: held-out site}`` when each fold's validation images come from one site, a different one per fold."""
    by_fold: dict[int, set[str]] = {}
    for r in rows:
        if r["_split"] == "validation":
            by_fold.setdefault(int(r["_fold"]), set()).add(sites.get(r["image"]) or sites.get(r["participant_id"])
                                                            or "unknown")
    if len(by_fold) < 2 or any(len(s) != 1 for s in by_fold.values()):
        return None
    held = {f: next(iter(s)) for f, s in by_fold.items()}
    return held if len(set(held.values())) == len(held) and "unknown" not in held.values() else None


def site_analysis(maps: Any, runs: Sequence[Mapping[str, Any]], *, index: Any, site_column: str | None,
                  task: str, classes: Sequence[str], selection: str, n_boot: int,
                  seed: int = 0) -> dict[str, Any] | None:
    """Per-site results, leave-one-site-out when the folds are so made, and ``prediction_confound.json``."""
    if task not in ("classification", "regression"):
        return None
    by_subject, by_image, source = site_lookup(index, site_column)
    sites = {**by_subject, **by_image}
    rows = _evaluated(maps, runs, selection)
    doc: dict[str, Any] = {"source": source, "per_site": per_site_rows(task, classes, rows, sites, n_boot=n_boot,
                                                                        seed=seed)}
    held = leave_site_out(rows, sites)
    if held:
        doc["leave_site_out"] = {str(site): next(((r.get("metrics") or {}).get("validation") for r in runs
                                                  if r["fold"] == f), None) for f, site in held.items()}
    # the test: one value per participant (the unit that is exchangeable: sessions share a scanner), its score
    # averaged over its evaluated images and the runs that evaluated them
    col = _score_column(list(rows[0]) if rows else [], classes, task)
    scores: dict[str, list[float]] = {}
    truth: dict[str, Any] = {}
    for r in rows:
        pid = r["participant_id"]
        if task == "classification":
            lab = str(r["true_label"])
            if lab not in classes:
                continue
            v = float(r[col]) if col else float(r[f"proba_{lab}"])
            truth.setdefault(pid, lab)
        else:
            v = float(r["predicted_value"])
            truth.setdefault(pid, float(r["true_value"]))
        if math.isfinite(v):
            scores.setdefault(pid, []).append(v)
    pids = sorted(scores)
    p_sites = [by_subject.get(p) for p in pids]
    keep = [k for k, s in enumerate(p_sites) if s]
    test = partial_confound_test([truth[pids[k]] for k in keep], [float(np.mean(scores[pids[k]])) for k in keep],
                                 [str(p_sites[k]) for k in keep], categorical_y=task == "classification",
                                 seed=seed)
    test.update(site_source=source, score=col or "probability of the true class",
                participants_without_site=len(pids) - len(keep), unit="participant",
                splits=sorted({r["_split"] for r in rows}))
    if test.get("site_driven"):
        test["warning"] = (f"the model's predictions depend on the site beyond the label (partial R² "
                           f"{test['partial_r2']:.2f}, p = {test['p_value']:.3g}): it may read the scanner, not the "
                           "disease; check per-site and leave-one-site-out results")
    write_json(maps.root / "prediction_confound.json", test)
    doc["prediction_confound"] = test
    write_json(maps.root / "site_results.json", doc)
    return doc


def summary_site_rows(doc: Mapping[str, Any] | None) -> list[list[Any]]:
    """Per-site rows of ``summary.tsv``: ``[split, "all", "all", metric, value, ci_low, ci_high, site]``."""
    out: list[list[Any]] = []
    for split, by_site in ((doc or {}).get("per_site") or {}).items():
        for site, d in by_site.items():
            for name, m in (d.get("metrics") or {}).items():
                out.append([split, "all", "all", name, m.get("value"), m.get("ci_low"), m.get("ci_high"), site])
    return out



def site_test_lines(test: Mapping[str, Any] | None) -> list[str]:
    """The prediction-site test in one line (the CLI's and the demo's)."""
    if not test:
        return []
    if test.get("p_value") is None:
        return [f"  prediction-site test: not run ({test.get('reason')})"]
    verdict = "WARNING: predictions are site-driven" if test.get("site_driven") else "no site dependence found"
    return [f"  prediction-site test (given the label, {test['n']} participants): partial R² "
            f"{test['partial_r2']:.2f}, p = {test['p_value']:.3g}: {verdict}"]
