"""The shift family: every shift comparison of an audit, computed once and adjusted together.

Each split is compared with the training split in every fold view (every
pair with ``pairs = "all"``, or without a split named train), one value per
participant, for every :mod:`~audit.checks.variables` variable
(Mann-Whitney or Kolmogorov-Smirnov, SMD and Wasserstein/SD for continuous
ones; Fisher, chi-square or a permutation chi-square, Cramér's V and the
largest standardised proportion difference for categorical ones; a TOST
equivalence p-value for both) and on the image features
(:mod:`~audit.checks.features`) through a cross-validated domain classifier
(:func:`audit.auc.domain_auc`: out-of-fold ROC AUC with a p-value
calibrated by label permutations, no floor) and per-feature permutation
importance. Every comparison carries an effect size with its 95 %
confidence interval (:mod:`audit.effects`: Hedges' g, the largest
difference of a class's share, the AUC). The p-values of all four checks,
all folds and pairs, and the dataset's label x site test
(:mod:`audit.checks.label_site`) are adjusted together
(weighted Benjamini-Hochberg, :func:`audit.decisions.family_adjust`, weights
per kind of effect); then :func:`audit.decisions.classify_effect` decides
each comparison by its effect size (moderate or large: a warning with the
adjusted p at most ``fdr``; small or negligible: never). The wording and
the checks are in :mod:`audit.checks.shift`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.auc import domain_auc
from audit.catalogue import THRESHOLDS
from audit.checks.features import image_features
from audit.checks.label_site import KEY as CONFOUND, TEST_NAMES as ASSOCIATION_TESTS, dataset_confound, settings
from audit.checks.variables import (
    Variable,
    acquisition_variables,
    covariate_variables,
    label_variables,
)
from audit.decisions import classify_effect, family_adjust, label_mix, rules_from, weights_from
from audit.effects import cramers_v, hedges_g, proportion_difference
from audit.predictors import domain_classifier
from audit.stats import (
    association_test,
    contingency,
    finite,
    ks_test,
    mann_whitney,
    proportion_smd,
    smd,
    tost_proportions,
    tost_smd,
    wasserstein,
)

if TYPE_CHECKING:
    from audit.context import AuditContext

__all__ = ["SHIFT_TABLES", "THRESHOLDS", "TEST_NAMES", "ShiftFamily", "shift_family", "computed_family",
           "permutation_importance", "family_kinds", "family_level"]

#: How each test is named in a sentence.
TEST_NAMES = {**ASSOCIATION_TESTS, "mann_whitney": "Mann-Whitney", "kolmogorov_smirnov": "Kolmogorov-Smirnov",
              "auc_permutation_moments": ""}
#: The catalogue's threshold prefix of each kind of effect.
_PREFIX = {"smd": "smd", "proportion_difference": "share", "auc": "auc", "cramers_v": "v"}

#: The catalogue's threshold tables of the shift family (the shared ``shift`` table first).
SHIFT_TABLES = ("shift", "shift.label", "shift.covariate", "shift.acquisition", "shift.image")


def _seed(base: int, *parts: Any) -> int:
    return (base + zlib.crc32("|".join(map(str, parts)).encode())) % (2**31 - 1)



# --------------------------------------------------------------------------- comparisons
def _describe_continuous(x: Sequence[float]) -> dict[str, Any]:
    a = np.asarray(x, dtype=float)
    return {"n": int(a.size), "mean": finite(a.mean(), 4), "sd": finite(a.std(ddof=1), 4) if a.size > 1 else None,
            "median": finite(np.median(a), 4), "min": finite(a.min(), 4), "max": finite(a.max(), 4)}


def _compare(var: Variable, a: str, b: str, va: list[Any], vb: list[Any], th: Mapping[str, Any],
             shared: Mapping[str, Any], seed: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"check": var.check, "variable": var.name, "kind": var.kind, "splits": [a, b],
                           "n": [len(va), len(vb)]}
    margin = th["equivalence_margin"]
    if var.kind == "continuous":
        u, p_mw = mann_whitney(va, vb)
        d, p_ks = ks_test(va, vb)
        use_ks = str(th.get("test", "mann-whitney")).lower() in ("ks", "kolmogorov-smirnov")
        rec.update(test="kolmogorov_smirnov" if use_ks else "mann_whitney",
                   statistic=d if use_ks else u, p_value=p_ks if use_ks else p_mw,
                   other_tests={"kolmogorov_smirnov": {"statistic": d, "p_value": p_ks}}
                   if not use_ks else {"mann_whitney": {"statistic": u, "p_value": p_mw}})
        eff = hedges_g(va, vb)  # evaluation (b) minus reference (a)
        rec["effect_size"] = eff.to_dict()
        rec["effect"] = {"smd": eff.estimate if eff.measured else smd(va, vb), "wasserstein_std": wasserstein(va, vb)}
        rec["equivalence_p"] = tost_smd(va, vb, margin)
        rec["describe"] = {a: _describe_continuous(va), b: _describe_continuous(vb)}
    else:
        rows = [a] * len(va) + [b] * len(vb)
        table, row_levels, levels = contingency(rows, list(va) + list(vb))
        if row_levels != [a, b]:  # contingency sorts the rows
            table = table[::-1]
        assoc = association_test(table, n_permutations=int(shared["n_permutations"]), seed=seed)
        ps = proportion_smd(table)
        rec.update(test=assoc.test, statistic=assoc.statistic, p_value=assoc.p_value)
        rec["effect"] = {"cramers_v": assoc.cramers_v, "proportion_smd": ps}
        rec["effect_size"] = proportion_difference(table, levels, splits=(a, b)).to_dict()
        rec["cramers_v"] = cramers_v(table, names=("split", var.name)).to_dict()
        if var.check == "shift.label":
            rec["label_mix"] = label_mix(dict(zip(map(str, levels), map(int, table[0]))),
                                         dict(zip(map(str, levels), map(int, table[1]))), splits=(a, b))
        rec["equivalence_p"] = tost_proportions(table, margin) if len(levels) > 1 else None
        rec["describe"] = {"levels": [str(v) for v in levels], "counts": {a: table[0].tolist(), b: table[1].tolist()},
                           "proportions": {a: [finite(c / max(len(va), 1), 4) for c in table[0]],
                                           b: [finite(c / max(len(vb), 1), 4) for c in table[1]]}}
        if len(levels) < 2:
            rec["p_value"] = None  # one level on both sides: nothing can differ
            rec["equivalence_p"] = None
            rec["note"] = "a single value on both sides"
    rec["balanced"] = rec.get("equivalence_p") is not None and rec["equivalence_p"] <= shared["equivalence_alpha"]
    rec["rules"] = rules_from(th, _PREFIX[rec["effect_size"]["kind"]], shared)
    return rec


def _image_compare(ctx: AuditContext, a: str, b: str, sa: frozenset[str], sb: frozenset[str],
                   th: Mapping[str, Any], shared: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    feats = image_features(ctx)
    by = feats.by_subject
    both = sa & sb
    pa = sorted(p for p in sa - both if p in by)
    pb = sorted(p for p in sb - both if p in by)
    rec: dict[str, Any] = {"check": "shift.image", "variable": "image features", "kind": "image",
                           "splits": [a, b], "n": [len(pa), len(pb)], "reference_suffix": feats.suffix}
    if len(pa) < shared["min_subjects"] or len(pb) < shared["min_subjects"]:
        return None
    X = np.stack([by[p] for p in pa + pb])
    y = [0] * len(pa) + [1] * len(pb)
    eff = domain_auc(X, [False] * len(pa) + [True] * len(pb), n_splits=int(th["n_splits"]),
                     alpha=float(th["ridge_alpha"]), n_permutations=int(th["n_permutations"]), seed=seed)
    # one fit (no permutations) for the standardised coefficients that name the drivers
    res = domain_classifier(X, y, feature_names=feats.names, n_splits=int(th["n_splits"]), n_permutations=0,
                            seed=seed, alpha=float(th["ridge_alpha"]))
    auc = eff.estimate
    rec.update(test=eff.test or "auc_permutation_moments", statistic=auc, p_value=eff.p_value,
               effect_size=eff.to_dict())
    rec["effect"] = {"auc": auc, "drift": None if auc is None else round(max(2 * auc - 1, 0.0), 6)}
    rec["classifier"] = {"classifier": res["classifier"], "n_splits": eff.details.get("folds"),
                         "n_permutations": int(th["n_permutations"]), "p_value": "Mann-Whitney statistic "
                         "standardised by its mean and SD under label permutations within folds"}
    names = feats.names
    drivers = []
    for j, name in enumerate(names):
        if name not in res["features"]:
            continue
        col_a, col_b = X[: len(pa), j], X[len(pa):, j]
        drivers.append({"feature": name, "smd": smd(col_a[np.isfinite(col_a)], col_b[np.isfinite(col_b)]),
                        "coefficient": res["coefficients"].get(name), "auc_drop": None})
    # ranked by |SMD|: how far apart the splits are on each feature alone. The permutation importance
    # (auc_drop, computed for flagged comparisons after the family's decisions) is kept beside it but not
    # used to rank: correlated features (SNR, CNR, CJV, histogram components) share their information, so
    # shuffling one of them costs the classifier little.
    drivers.sort(key=lambda d: -abs(d["smd"] or 0.0))
    rec["features_ranked_by"] = "|smd|"
    rec["features"] = drivers
    rec["equivalence_p"] = None
    rec["balanced"] = False
    rec["rules"] = rules_from(th, "auc", shared)
    rec["_importance"] = (X, y, names, res["features"], auc, th, seed)
    return rec


#: Shuffles of each feature column for its permutation importance.
IMPORTANCE_REPEATS = 3


def permutation_importance(X: Any, y: list[int], names: list[str], used: list[str], observed: float | None,
                            th: Mapping[str, Any], seed: int) -> dict[str, float | None]:
    """Drop of the cross-validated ROC AUC when one feature's values are shuffled (same folds, seeded).

    The classic permutation importance (Breiman 2001; scikit-learn's
    ``permutation_importance``), measured out of fold: the AUC the
    classifier loses without that feature's information. Features the
    classifier dropped (constant) are left out.
    """
    if observed is None:
        return {}
    rng = np.random.default_rng(seed + 7)
    out: dict[str, float | None] = {}
    for j, name in enumerate(names):
        if name not in used:
            continue
        scores = []
        for _ in range(IMPORTANCE_REPEATS):
            Xp = X.copy()
            Xp[:, j] = Xp[rng.permutation(Xp.shape[0]), j]
            r = domain_classifier(Xp, y, feature_names=names, n_splits=int(th["n_splits"]), n_permutations=0,
                                  seed=seed, alpha=float(th["ridge_alpha"]))
            if r["score"] is not None:
                scores.append(float(r["score"]))
        out[name] = finite(observed - float(np.mean(scores)), 4) if scores else None
    return out


# --------------------------------------------------------------------------- the family
@dataclass
class ShiftFamily:
    """Every shift test of the audit, adjusted together."""

    records: list[dict[str, Any]]
    variables: list[Variable]
    untested: list[dict[str, Any]]
    thresholds: dict[str, dict[str, Any]]
    ignored_config: list[str]
    info: dict[str, Any]
    pairs: int

    def of(self, check_id: str) -> list[dict[str, Any]]:
        """The records of one check."""
        return [r for r in self.records if r["check"] == check_id]


def _pairs(names: list[str], mode: str) -> list[tuple[str, str]]:
    """The pairs of splits compared: each against ``train`` (``mode == "train"`` and a train split), else all."""
    if mode.lower() == "train" and "train" in names:
        return [("train", n) for n in names if n != "train"]
    return list(combinations(names, 2))


def shift_family(ctx: AuditContext) -> ShiftFamily:
    """Every shift comparison of the audit, their p-values adjusted together (computed once per audit)."""
    return ctx.once(_compute)


def computed_family(ctx: AuditContext) -> ShiftFamily | None:
    """The shift family when a check computed it in this audit (``None`` otherwise)."""
    return ctx.computed(_compute)


def _compute(ctx: AuditContext) -> ShiftFamily:
    th = {key: ctx.thresholds(key, THRESHOLDS[key]) for key in SHIFT_TABLES}
    ignored = ctx.config.ignored_overrides(*SHIFT_TABLES)
    shared = th["shift"]
    assert ctx.splits is not None
    variables = label_variables(ctx, shared) + covariate_variables(ctx, shared)
    acq, info = acquisition_variables(ctx, shared)
    variables += acq
    images = ctx.index is not None and ctx.missing("images") is None
    records: list[dict[str, Any]] = []
    untested: list[dict[str, Any]] = []
    done: set[tuple[int, int]] = set()
    pairs = 0
    min_n = int(shared["min_subjects"])
    for fold, tables in ctx.splits.views():
        for a, b in _pairs(list(tables), str(shared["pairs"])):
            ta, tb = tables[a], tables[b]
            if (id(ta), id(tb)) in done:
                continue
            done.add((id(ta), id(tb)))
            pairs += 1
            sa, sb = ta.subjects(), tb.subjects()
            where = {} if fold is None else {"fold": fold}
            for var in variables:
                if var.kind == "skipped":
                    continue
                va = [var.values[p] for p in sorted(sa) if p in var.values]
                vb = [var.values[p] for p in sorted(sb) if p in var.values]
                if len(va) < min_n or len(vb) < min_n:
                    untested.append({"check": var.check, "variable": var.name, "splits": [a, b], **where,
                                     "n": [len(va), len(vb)],
                                     "reason": f"fewer than {min_n} participants with a value on a side"})
                    continue
                rec = _compare(var, a, b, va, vb, th[var.check], shared,
                               _seed(int(shared["seed"]), fold, a, b, var.check, var.name))
                rec.update(where)
                records.append(rec)
            if images:
                rec = _image_compare(ctx, a, b, sa, sb, th["shift.image"], shared,
                                     _seed(int(shared["seed"]), fold, a, b, "image"))
                if rec is None:
                    untested.append({"check": "shift.image", "variable": "image features", "splits": [a, b], **where,
                                     "reason": f"fewer than {min_n} participants with a readable reference image "
                                               "on a side"})
                else:
                    rec.update(where)
                    records.append(rec)
    confound = _confound_record(ctx)
    if confound is not None:
        records.append(confound)
    adjusted = family_adjust([r.get("p_value") for r in records], family_kinds(records), weights_from(shared))
    q = float(shared["fdr"])
    for r, p in zip(records, adjusted):
        r["p_adjusted"] = p
        r["significant"] = p is not None and p <= q  # the old meaning, for readers of earlier results
        es = r["effect_size"]
        d = classify_effect(es["kind"], es["estimate"], es["ci"], p, es["n"], p_value=r.get("p_value"),
                            level=es["level"], rules=r.pop("rules"), reason=es.get("not_measured"),
                            test_name=TEST_NAMES.get(str(r.get("test")), str(r.get("test"))))
        r["decision"] = d.to_dict()
        r["magnitude"] = d.magnitude
        r["effect_large"] = d.magnitude == "large"
        r["flagged"] = d.warning
        args = r.pop("_importance", None)
        if args is not None:
            drops = permutation_importance(*args) if d.warning else {}
            for f in r["features"]:
                f["auc_drop"] = drops.get(f["feature"])
    return ShiftFamily(records, variables, untested, th, ignored, info, pairs)


def family_kinds(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The kind of effect of each record of the family (its weight's key): the label x site test has its own."""
    return ["label_site" if r["check"] == CONFOUND else r["effect_size"]["kind"] for r in records]


def family_level(fam: ShiftFamily, kind: str) -> float:
    """The level a lone real effect of ``kind`` is tested at in this family: ``fdr * w / m`` (weights rescaled).

    With every other comparison null, weighted Benjamini-Hochberg rejects a
    comparison of normalised weight ``w`` about when ``p <= fdr * w / m``.
    """
    shared = fam.thresholds["shift"]
    weights = weights_from(shared)
    tested = [k for r, k in zip(fam.records, family_kinds(fam.records)) if r.get("p_value") is not None]
    m = max(1, len(tested))
    mean_w = sum(weights.get(k, 1.0) for k in tested) / m if tested else 1.0
    return float(shared["fdr"]) * weights.get(kind, 1.0) / (mean_w * m)


def _confound_record(ctx: AuditContext) -> dict[str, Any] | None:
    """The dataset's label x site test as a member of the family (``None``: not measured or continuous)."""
    if ctx.label_column is None:
        return None
    m = dataset_confound(ctx).measure
    if m is None or m.get("status") != "ok" or "_effect" not in m:
        return None
    th, _ignored = settings(ctx)
    a = m["association"]
    return {"check": CONFOUND, "variable": "label x site", "kind": "categorical", "splits": [], "n": [m["participants"]],
            "test": a["test"], "statistic": a["statistic"], "p_value": a["p_value"],
            "effect_size": m["effect_size"], "rules": rules_from(th, "v")}
