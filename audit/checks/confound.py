"""confound.label_site: is the label a shortcut through the site or scanner?

A CNN recognises the scanner of a scan (73 % across 15 pooled studies,
Wachinger et al. 2019); when the label follows the site, the network can
score well by recognising scanners. This check measures how much the label
follows the site, on the participants of the dataset (participants.tsv;
without a dataset: every participant of the split files), one row per
participant with both a label and a site value. Site is the identity of
:mod:`audit.scanner` (``--site`` or the sidecars; evidence says which
fields).

Computed (:mod:`audit.stats`)
    * the site x label contingency table (in evidence);
    * the association: Fisher's exact test for 2x2, else chi-square, or a
      permutation chi-square when expected counts are small; Cramér's V
      (bias corrected);
    * how well site alone predicts the label: cross-validated balanced
      accuracy of the best single-feature rule (the majority label of each
      site), against chance (``1 / classes``, the majority baseline's
      balanced accuracy), with a permutation p-value.
    A continuous label (a regression target) gets a Kruskal-Wallis test
    and epsilon-squared instead.

Decision (by effect size: :mod:`audit.decisions`, ``docs/effects.md``)
    Cramér's V with its 95 % confidence interval decides, with the
    catalogue's bounds (``v_negligible``, ``v_moderate``, ``v_large``;
    overridable through ``config["thresholds"]["confound.label_site"]``):
    a large V is an error when its adjusted p in the audit's family
    (weighted Benjamini-Hochberg) is at most ``fdr``, worded "large,
    uncertain with n = ..." when the interval reaches below the large
    bound; a moderate V is a warning with the adjusted p at most ``fdr``;
    a small or negligible V is never more than an info finding, however
    small its p. When the audit has splits, the dataset's test joins the
    audit's one family with every shift test (:mod:`audit.checks.shift_family`);
    without splits its p is its own. The site-only classifier is evidence
    and named in the sentence; it no longer raises the severity by itself.
    A continuous label keeps Kruskal-Wallis (``p < alpha``) and
    epsilon-squared (``epsilon2_*``).

Splits
    The check is about the dataset, so it needs no split. When splits are
    given it is also computed on each training split (each fold's), because
    that is what the network learns from: a training split can be
    confounded when the dataset is not (a sampling accident or a biased
    split). A training split is reported only when it is worse than the
    whole population (otherwise the dataset finding says it all).

Scanner signature (an info finding under the same id; it needs images, and
the label too so that the check runs or is skipped as a whole)
    How well per-image features (intensity percentiles and ratios, SNR, CNR,
    foreground, voxel size, thumbnail components: see
    :mod:`audit.checks.features`) predict the site: a
    cross-validated linear classifier's balanced accuracy with a
    permutation p-value. A significant result is a scanner signature a CNN
    can learn, whatever the label.

Bad input gives an info finding that says why nothing was measured: a label
column missing or all empty, a single class, no site information, a single
site.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from audit.catalogue import THRESHOLDS
from audit.checks.features import image_features
from audit.checks.label_site import (
    dataset_confound,
    decide_confound,
    measure,
    settings,
)
from audit.checks.registry import check
from audit.checks.shift_family import shift_family
from audit.context import AuditContext
from audit.findings import Finding, finding
from audit.predictors import domain_classifier

__all__ = ["THRESHOLDS", "measure", "label_site", "scanner_signature"]


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.2f}"


def _p(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}".rstrip("0").rstrip(".")


def _sentence(label: str, m: Mapping[str, Any], where: str) -> str:
    if m.get("label_kind") == "continuous":
        t = m["test"]
        strength = {"error": "strongly", "warning": "moderately"}.get(m["severity"], "not notably")
        return (f"{label} {'differs' if m['severity'] != 'info' else 'does not differ notably'} between sites"
                f"{where} ({'' if m['severity'] == 'info' else strength + ': '}epsilon-squared {_fmt(t['epsilon2'])}, "
                f"Kruskal-Wallis p={_p(t['p_value'])}, {m['participants']} participants, {m['sites']} sites)")
    c = m["site_only_classifier"]
    figures = (f"{m['decision']['wording']}; "
               f"site alone predicts {label} with balanced accuracy {_fmt(c['balanced_accuracy'])} "
               f"(chance {_fmt(c['chance'])}, permutation p={_p(c['p_value'])}); "
               f"{m['participants']} participants, {m['sites']} sites")
    if m["severity"] == "error":
        return (f"{label} is strongly associated with site{where} ({figures}): a network can learn the scanner "
                f"instead of {label}")
    if m["severity"] == "warning":
        return f"{label} is associated with site{where} ({figures})"
    return f"{label} is not notably associated with site{where} ({figures})"


def _family_p(ctx: AuditContext) -> tuple[float | None, int | None]:
    """The dataset test's Benjamini-Hochberg adjusted p in the audit's family, and the family's size."""
    if ctx.splits is None:
        return None, None
    fam = shift_family(ctx)
    recs = fam.of("confound.label_site")
    return (recs[0].get("p_adjusted"), len(fam.records)) if recs else (None, None)


@check("confound.label_site", default="error", needs={"label"}, thresholds=THRESHOLDS["confound.label_site"])
def label_site(ctx: AuditContext) -> Iterator[Finding]:
    """The label is strongly associated with site or scanner."""
    th, ignored = settings(ctx)
    dc = dataset_confound(ctx)
    column = dc.column
    assert column is not None
    base = {"label": column, "thresholds": th, **({"ignored_overrides": ignored} if ignored else {})}
    if dc.measure is None:
        yield finding(f"label/site confounding not measured: {dc.why}", severity="info", evidence=base)
        return
    ident = ctx.scanner_identity
    base["site_source"] = ident.evidence()
    labels = dc.labels
    m = dict(dc.measure)
    if m["status"] != "ok":
        m.pop("_effect", None)
        yield finding(f"label/site confounding not measured: {m['status']}", severity="info",
                      evidence={**base, **m})
        return
    if m.get("label_kind") != "continuous":
        p_adjusted, family = _family_p(ctx)
        decide_confound(m, th, p_adjusted if family else m["association"]["p_value"])
        m["p_adjusted"] = p_adjusted if family else m["association"]["p_value"]
        m["tests_in_family"] = family or 1
    yield finding(_sentence(column, m, ""), severity=None if m["severity"] == "error" else m["severity"],
                  evidence={**base, **m, "site": ident.describe(), "scope": "dataset"})
    if ctx.splits is None:
        return
    rank = {"info": 0, "warning": 1, "error": 2}
    for fold, tables in ctx.splits.views():
        train = tables.get("train")
        if train is None:
            continue
        mt = measure(labels, ident.by_subject, th, train.subjects())
        if mt["status"] == "ok" and "_effect" in mt:
            # a second look at nearly the same data, outside the family: its own p
            decide_confound(mt, th, mt["association"]["p_value"])
        mt.pop("_effect", None)
        if mt["status"] == "ok" and rank[mt["severity"]] > rank[m["severity"]]:
            scope = " in the training split" + ("" if fold is None else f" (fold {fold})")
            yield finding(_sentence(column, mt, scope), splits=("train",),
                          severity=None if mt["severity"] == "error" else mt["severity"],
                          evidence={**base, **mt, "site": ident.describe(), "scope": "train",
                                    **({} if fold is None else {"fold": fold}),
                                    "dataset_severity": m["severity"]})


@check("confound.label_site", default="error", needs={"images", "label"})
def scanner_signature(ctx: AuditContext) -> Iterator[Finding]:
    """Image features predict the site or scanner: a signature a CNN can learn (info)."""
    th, _ignored = settings(ctx)
    ident = ctx.scanner_identity
    if not ident.by_subject or len(set(ident.by_subject.values())) < 2:
        return  # label_site already says there is no (or one) site
    feats = image_features(ctx)
    by = feats.by_subject
    pids = sorted(p for p in by if p in ident.by_subject)
    counts: dict[str, int] = {}
    for p in pids:
        counts[ident.by_subject[p]] = counts.get(ident.by_subject[p], 0) + 1
    sites = {s for s, c in counts.items() if c >= 2}
    pids = [p for p in pids if ident.by_subject[p] in sites]
    base = {"site_source": ident.evidence(), "features": feats.names, "reference_suffix": feats.suffix,
            "images_excluded": feats.excluded}
    if len(sites) < 2 or len(pids) < int(th["min_subjects"]):
        yield finding("scanner signature not measured: fewer than two sites with two or more readable images",
                      severity="info", evidence=base)
        return
    X = np.stack([by[p] for p in pids])
    res = domain_classifier(X, [ident.by_subject[p] for p in pids], feature_names=feats.names,
                            n_splits=int(th["n_splits"]), n_permutations=int(th["n_permutations"]),
                            seed=int(th["seed"]))
    score, p = res["score"], res["p_value"]
    top = sorted(res["coefficients"].items(), key=lambda kv: -abs(kv[1] or 0.0))[:3]
    metric = "ROC AUC" if res["metric"] == "roc_auc" else "balanced accuracy"
    # the majority-class baseline: balanced accuracy 1 / sites (= res["chance"]), plain accuracy the largest share
    site_counts = sorted((c for s, c in counts.items() if s in sites), reverse=True)
    baseline = {"balanced_accuracy": res["chance"], "accuracy": round(site_counts[0] / len(pids), 4),
                "rule": "always predict the largest site"}
    chance = "chance" if res["metric"] == "roc_auc" else "majority-class baseline"
    if p is not None and p < th["alpha"]:
        msg = (f"image features predict the site ({ident.describe()}) with {metric} {_fmt(score)} "
               f"({chance} {_fmt(res['chance'])}, permutation p={_p(p)}, {len(pids)} participants): a scanner "
               f"signature a CNN can learn; strongest features: {', '.join(k for k, _ in top)}")
    else:
        msg = (f"image features do not predict the site better than chance ({metric} {_fmt(score)}, {chance} "
               f"{_fmt(res['chance'])}, permutation p={_p(p)}, {len(pids)} participants)")
    yield finding(msg, severity="info", evidence={**base, "classifier": res, "participants": len(pids),
                                                  "sites": sorted(sites), "baseline": baseline})
