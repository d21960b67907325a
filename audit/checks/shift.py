"""shift.* checks: do the splits come from the same population, scanners and images?

What is compared
    Each split against the training split, in every fold view
    (train/validation, train/test; a k-fold layout's shared test set against
    each fold's train), one value per participant. The training split is
    what the model learnt from, so a shift relative to it is what changes
    its measured performance; leaving out validation/test also keeps the
    number of tests, and so the multiplicity penalty, down
    (``pairs = "all"`` compares every pair; a layout without a split
    named train always does):

    * ``shift.label``: the label column (``--label``, or ``diagnosis``);
    * ``shift.covariate``: every other participant column (participants.tsv
      when a dataset is given, else the columns the split files carry: a
      reviewer holding only the split files gets this check too), minus
      identifiers, the site and group columns;
    * ``shift.acquisition``: the site/scanner identity (:mod:`audit.scanner`:
      ``--site`` or the sidecars) and the protocol of each participant's
      reference image (the most common suffix, e.g. T1w): field strength,
      TR, TE, TI, flip angle (sidecars) and voxel size (image headers,
      from the one image pass). A protocol field or site column is tested
      only when the scanner identity does not determine it already (in most
      datasets TR is a property of the scanner, and testing it again would
      only add tests);
    * ``shift.image``: per-image features (:mod:`audit.checks.features`: intensity
      statistics, MRIQC-style SNR, CNR, CJV and foreground volume, histogram
      and thumbnail components) of each participant's reference image,
      through a domain classifier; a finding names the features that differ
      most (standardised mean difference) with their permutation importance
      (the cross-validated AUC lost when the feature is shuffled).

Tests and effect sizes (:mod:`audit.stats`, :mod:`audit.effects`, :mod:`audit.auc`)
    Continuous variables (numbers with more than ten distinct values):
    Mann-Whitney U (Kolmogorov-Smirnov as an option and always in evidence)
    and Hedges' g (evaluation minus reference) with a noncentral-t 95 %
    interval. Categorical: Boschloo's exact test (2x2 up to
    :data:`audit.stats.BOSCHLOO_MAX_N` participants, else Fisher's),
    chi-square or a permutation chi-square (small expected counts), and the
    largest difference of a class's share with Newcombe's interval
    (Cramér's V in evidence). ``shift.label`` also describes the label mix:
    each class's share per split and what always predicting the training
    majority scores on each. Images: a cross-validated linear domain
    classifier's ROC AUC with a score interval and a p-value calibrated
    by label permutations (no floor).

A finding is decided by the size of the effect (:mod:`audit.decisions`)
    The p-values of every shift test of the audit (all four checks, all
    folds and pairs) and the dataset's label x site test are adjusted
    together (weighted Benjamini-Hochberg, weights ``weight_smd``,
    ``weight_share``, ``weight_auc``, ``weight_v`` of the ``shift`` table).
    A large effect (``|SMD| >= smd_large``, a class-share difference of
    ``share_large``, an AUC of ``auc_large``) or a moderate one is a
    warning when its adjusted p is at most ``fdr``, a large one worded
    "large, uncertain with n = ..." when its interval reaches below the
    large bound; a small or negligible one is never a
    warning, however small its p (50,000 participants make trivial
    differences significant). Measured by ``bench/sim_power.py`` and
    ``bench/sim_false_alarms.py``: on random splits of one population,
    fewer than 5 % of audits get any ``shift.*`` or ``confound.*`` warning
    (about ``fdr``, by construction); the large planted effects at 20
    evaluation participants are found in 86-100 % of audits, a 40-point
    site-mix shift in about 60 % (``docs/effects.md`` says what the two goals
    cost each other).

Equivalence
    For users who must *show* balance rather than fail to show imbalance,
    every comparison also carries a TOST equivalence p-value that the
    standardised difference lies inside ``±equivalence_margin``
    (``balanced: true`` when it is below ``equivalence_alpha``); each
    check's summary (severity info) lists them.

Values
    ``"89+"``/``">89"`` are read as 89 (censored, counted in evidence),
    ``"26-30"`` as 28 (binned); a column with a few non-numeric cells in
    numbers is compared on its numbers and the others are reported (info);
    a column that mixes numbers and text, or looks like an identifier
    (nearly one value per participant) is not tested, and the summary says
    why. Fewer than ``min_subjects`` values on a side: the pair is not
    tested (summary says so).

Which columns are compared and how they are read: :mod:`audit.checks.variables`;
the comparisons and their adjustment: :mod:`audit.checks.shift_family`; here,
the wording and the checks. Thresholds (:data:`audit.checks.shift_family.THRESHOLDS`)
are declared with the checks and read from ``config.thresholds[check_id]`` over
the defaults (``config.thresholds["shift"]`` for the shared ones).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from statistics import NormalDist
from typing import Any

from audit.checks.features import image_features
from audit.checks.registry import check, shared_thresholds
from audit.checks.shift_family import THRESHOLDS, ShiftFamily, family_level, shift_family
from audit.checks.variables import Variable
from audit.context import AuditContext
from audit.findings import Finding, finding

__all__ = ["THRESHOLDS", "MAX_TESTS_LISTED", "label_shift", "covariate_shift", "acquisition_shift", "image_shift"]

MAX_TESTS_LISTED = 500

shared_thresholds("shift", THRESHOLDS["shift"])


# --------------------------------------------------------------------------- wording
def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    if x != 0 and abs(x) < 10 ** -nd:
        return f"{x:.1g}"
    return f"{x:.{nd}f}"


def _pair(r: Mapping[str, Any]) -> str:
    a, b = r["splits"]
    return f"{a} and {b}" + (f" (fold {r['fold']})" if r.get("fold") is not None else "")


def _what_differs(r: Mapping[str, Any], what: str) -> str:
    a, b = r["splits"]
    if r["kind"] == "continuous":
        da, db = r["describe"][a], r["describe"][b]
        s = r["effect"]["smd"] or 0.0
        word = ("older" if s > 0 else "younger") if r["variable"].lower().startswith("age") else \
            ("higher" if s > 0 else "lower")
        return (f"{what} differs between {_pair(r)}: {b} is {word} (mean {_fmt(db['mean'])} vs {_fmt(da['mean'])}); "
                f"{r['decision']['wording']}")
    d = r["describe"]
    pa, pb = d["proportions"][a], d["proportions"][b]
    j = max(range(len(d["levels"])), key=lambda i: abs((pa[i] or 0) - (pb[i] or 0)))
    out = (f"{what} differs between {_pair(r)}: {d['levels'][j]} is {100 * (pa[j] or 0):.0f}% of {a} and "
           f"{100 * (pb[j] or 0):.0f}% of {b}; {r['decision']['wording']}")
    mix = r.get("label_mix") or {}
    if mix.get("majority_class") is not None:
        acc = mix["majority_accuracy"]
        out += (f"; always predicting {mix['majority_class']} scores accuracy {_fmt(acc[a])} on {a} and "
                f"{_fmt(acc[b])} on {b} (balanced accuracy {_fmt(mix['majority_balanced_accuracy'])} on both)")
    return out


def _thresholds_evidence(fam: ShiftFamily, check_id: str) -> dict[str, Any]:
    out = {"shared": fam.thresholds["shift"], check_id: fam.thresholds[check_id]}
    if fam.ignored_config:
        out["ignored_overrides"] = fam.ignored_config
    return out


def _emit(ctx: AuditContext, check_id: str, what: str) -> Iterator[Finding]:
    fam = shift_family(ctx)
    records = fam.of(check_id)
    variables = [v for v in fam.variables if v.check == check_id]
    flagged: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["flagged"]:
            flagged[(r["variable"], *r["splits"])].append(r)
    for (name, a, b), rs in sorted(flagged.items()):
        worst = max(rs, key=lambda r: abs(_effect_value(r)))
        label = what.format(name=name)
        message = _what_differs(worst, label)
        if len(rs) > 1:
            message += f"; in {len(rs)} folds"
        yield finding(message, splits=(a, b), evidence={
            "variable": name, "kind": worst["kind"], "folds": [r.get("fold") for r in rs],
            "worst": worst, "tests": rs, "thresholds": _thresholds_evidence(fam, check_id),
            "tests_in_family": len(fam.records),
            **({"site_source": fam.info.get("site_source")} if check_id == "shift.acquisition" else {}),
        })
    for v in variables:
        if v.kind != "skipped" and v.notes.get("non_numeric"):
            yield finding(
                f"{v.name}: {v.notes['non_numeric']} values are not numbers ("
                + ", ".join(repr(x) for x in v.notes["non_numeric_examples"][:3])
                + f"); compared on the {len(v.values)} numeric values",
                severity="info", evidence={"variable": v.name, **v.summary()})
    yield _summary(fam, check_id, records, variables)


def _effect_value(r: Mapping[str, Any]) -> float:
    """The size of a comparison's effect (the worst fold is the largest): ``|estimate|``, the AUC itself."""
    est = (r.get("effect_size") or {}).get("estimate")
    return 0.0 if est is None else abs(float(est))


def _detectable(fam: ShiftFamily, records: list[dict[str, Any]]) -> tuple[float, int, str] | None:
    """The smallest standardised shift detectable with 80 % power in the least powered comparison.

    Normal approximation for a two-sample comparison of a continuous variable
    at the level a lone real effect gets in the family (:func:`family_level`:
    ``fdr * w / m`` with the SMD weight ``w`` rescaled over the family's
    ``m`` tests): ``(z(1 - level / 2) + z(0.8)) * sqrt(1/n_a + 1/n_b)``.
    Returns ``(smd, participants in the smaller split, its name)``.
    """
    pairs = [(r["n"][0], r["n"][1], r["splits"][1]) for r in records
             if r.get("kind") in ("continuous", "categorical") and min(r["n"]) > 0]
    if not pairs:
        return None
    level = min(0.5, family_level(fam, "smd"))
    z = NormalDist().inv_cdf(1 - level / 2) + NormalDist().inv_cdf(0.8)
    na, nb, name = max(pairs, key=lambda t: 1 / t[0] + 1 / t[1])
    return round(z * math.sqrt(1 / na + 1 / nb), 2), min(na, nb), name


def _summary(fam: ShiftFamily, check_id: str, records: list[dict[str, Any]], variables: list[Variable]) -> Finding:
    tested = sorted({r["variable"] for r in records})
    skipped = {v.name: v.reason for v in variables if v.kind == "skipped"}
    untested = [u for u in fam.untested if u["check"] == check_id]
    n_flag = sum(r["flagged"] for r in records)
    n_bal = sum(bool(r.get("balanced")) for r in records)
    by_magnitude = {m: sum(r.get("magnitude") == m for r in records)
                    for m in ("large", "moderate", "small", "negligible", "not measured")}
    noun = {"shift.label": "label", "shift.covariate": "covariate", "shift.acquisition": "acquisition",
            "shift.image": "image"}[check_id]
    if not records:
        if fam.pairs == 0:
            message = f"{noun} shift not measured: fewer than two splits to compare"
        elif skipped and not untested:
            message = f"{noun} shift not measured: " + "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        elif untested:
            message = f"{noun} shift not measured: too few participants with a value on a side " + \
                      ", ".join(sorted({' vs '.join(u['splits']) for u in untested}))
        else:
            message = f"{noun} shift not measured: nothing to compare"
    else:
        names = ", ".join(tested[:8]) + (f" and {len(tested) - 8} more" if len(tested) > 8 else "")
        head = (f"{noun} shift: {n_flag} warning{'s' if n_flag != 1 else ''} in {len(records)} comparisons" if n_flag
                else f"no {noun} shift found in {len(records)} comparisons")
        sizes = (f"{by_magnitude['large']} large, {by_magnitude['moderate']} moderate, "
                 f"{by_magnitude['small'] + by_magnitude['negligible']} small or negligible")
        message = (f"{head} ({names}; {sizes}; decided by effect size, bounds in evidence, false discovery rate "
                   f"{fam.thresholds['shift']['fdr']:g})")
        unmeasured = sorted({f"{r['variable']}: {r['effect_size']['not_measured']}" for r in records
                             if (r.get("effect_size") or {}).get("not_measured") and r.get("note") is None})
        if unmeasured:
            message += "; not measured: " + "; ".join(unmeasured[:5])
        if check_id != "shift.image":
            margin = fam.thresholds[check_id]["equivalence_margin"]
            message += f"; balance within ±{margin:g} SD shown by equivalence test for {n_bal} of {len(records)}"
            mde = _detectable(fam, records)
            if mde is not None and not n_flag and mde[0] > 2 * margin:
                message += (f"; with {mde[1]} participants in {mde[2]} only shifts of about {mde[0]:.1f} SD or more "
                            "can be detected (80 % power)")
        single = sorted({r["variable"] for r in records if r.get("note") == "a single value on both sides"})
        if single:
            message += "; a single value in every split (nothing can differ): " + ", ".join(single)
        if untested:
            message += f"; {len(untested)} not tested (too few participants on a side)"
        if skipped:
            message += "; not compared: " + "; ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
    mde = _detectable(fam, records)
    evidence: dict[str, Any] = {
        "comparisons": len(records), "flagged": n_flag, "balanced": n_bal, "by_magnitude": by_magnitude,
        "detectable_smd": None if mde is None else {"smd": mde[0], "split": mde[2], "participants": mde[1],
                                                    "power": 0.8},
        "tests_in_family": len(fam.records),
        "variables": {v.name: v.summary() for v in variables},
        "tests": records[:MAX_TESTS_LISTED], "tests_listed": min(len(records), MAX_TESTS_LISTED),
        "untested": untested[:MAX_TESTS_LISTED], "thresholds": _thresholds_evidence(fam, check_id),
    }
    if check_id == "shift.acquisition":
        evidence.update(fam.info)
    return finding(message, severity="info", splits=tuple(sorted({s for r in records for s in r["splits"]})),
                   evidence=evidence)


# --------------------------------------------------------------------------- checks
@check("shift.label", default="warning", needs={"splits", "label"}, thresholds=THRESHOLDS["shift.label"])
def label_shift(ctx: AuditContext) -> Iterator[Finding]:
    """The label distribution differs between splits (prevalence shift)."""
    yield from _emit(ctx, "shift.label", "the distribution of {name}")


@check("shift.covariate", default="warning", needs={"splits"}, thresholds=THRESHOLDS["shift.covariate"])
def covariate_shift(ctx: AuditContext) -> Iterator[Finding]:
    """A participant variable (age, sex, ...) differs between splits (population shift)."""
    yield from _emit(ctx, "shift.covariate", "{name}")


@check("shift.acquisition", default="warning", needs={"splits"}, thresholds=THRESHOLDS["shift.acquisition"])
def acquisition_shift(ctx: AuditContext) -> Iterator[Finding]:
    """The site, scanner or protocol mix differs between splits (acquisition shift)."""
    fam = shift_family(ctx)
    if not any(v.check == "shift.acquisition" for v in fam.variables):
        src = fam.info.get("site_source", {})
        yield finding(
            "acquisition shift not measured: no site or scanner information (no --site column, no scanner "
            "fields in sidecars, no site column)", severity="info", evidence={"site_source": src})
        return
    yield from _emit(ctx, "shift.acquisition", "the {name} mix")


@check("shift.image", default="warning", needs={"splits", "images"}, thresholds=THRESHOLDS["shift.image"])
def image_shift(ctx: AuditContext) -> Iterator[Finding]:
    """Image content differs between splits (a classifier tells them apart)."""
    fam = shift_family(ctx)
    th = fam.thresholds["shift.image"]
    k = int(th["top_features"])
    for r in fam.of("shift.image"):
        if not r["flagged"]:
            continue
        top = r["features"][:k]
        named = ", ".join(f"{d['feature']} (" + (f"AUC drop {d['auc_drop']:.2f}, " if d.get("auc_drop") is not None
                                                  else "") + f"SMD {d['smd']:+.2f})"
                          for d in top if d["smd"] is not None)
        yield finding(
            f"a classifier tells {_pair(r)} apart from image features: {r['decision']['wording']}; "
            f"driven by {named}",
            splits=tuple(r["splits"]),
            evidence={**r, "thresholds": _thresholds_evidence(fam, "shift.image"),
                      "tests_in_family": len(fam.records)})
    feats = image_features(ctx) if ctx.index is not None else None
    summary = _summary(fam, "shift.image", fam.of("shift.image"), [])
    ev = dict(summary.evidence)
    ev["features"] = feats.names if feats is not None else []
    ev["reference_suffix"] = feats.suffix if feats is not None else None
    ev["images_excluded"] = feats.excluded if feats is not None else {}
    yield finding(summary.message, severity="info", splits=summary.splits, evidence=ev)
