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

Severity (thresholds in :data:`THRESHOLDS`, overridable through
``config["thresholds"]["confound.label_site"]``)
    error when the association is significant (``p < alpha``) and either
    Cramér's V reaches ``cramers_v_error`` or site alone beats chance by
    ``accuracy_gain_error`` (permutation ``p < alpha``); warning at the
    ``*_warning`` thresholds; otherwise an info finding with the figures.

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
from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding, normalise_subject
from audit.predictors import domain_classifier, label_from_site
from audit.scanner import participant_values
from audit.stats import association_test, contingency, kruskal_test
from audit.values import parse_number

__all__ = ["THRESHOLDS", "measure", "label_site", "scanner_signature"]

MAX_SITES_LISTED = 200


def _settings(ctx: AuditContext) -> tuple[dict[str, Any], list[str]]:
    key = "confound.label_site"
    return ctx.thresholds(key, THRESHOLDS[key]), ctx.config.ignored_overrides(key)


def _population(ctx: AuditContext) -> set[str] | None:
    """Participants of the dataset (participants.tsv), or of the split files; ``None``: no restriction known."""
    if ctx.index is not None and ctx.index.participants is not None:
        return {normalise_subject(p) for p in ctx.index.participants["participant_id"].tolist() if str(p).strip()}
    if ctx.index is not None:
        return set(ctx.index.subjects)
    if ctx.splits is not None:
        out: set[str] = set()
        for t in ctx.splits.tables:
            out |= t.subjects()
        return out
    return None


def _kind_of_label(values: Mapping[str, str]) -> str:
    nums = [parse_number(v)[0] for v in values.values()]
    parsed = [x for x in nums if x is not None]
    if values and len(parsed) >= 0.9 * len(values) and len(set(parsed)) > 10:
        return "continuous"
    return "categorical"


def measure(labels: Mapping[str, str], sites: Mapping[str, str], th: Mapping[str, Any],
            subjects: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """Association of label and site over ``subjects`` (all when ``None``): figures and a severity.

    Returns ``{"status": "ok" | <why not measured>, "severity": "error" | "warning" | "info", ...figures}``.
    """
    pids = sorted(p for p in labels if p in sites and (subjects is None or p in subjects))
    out: dict[str, Any] = {"participants": len(pids), "severity": "info"}
    if len(pids) < int(th["min_subjects"]):
        out["status"] = f"only {len(pids)} participants have both a label and a site value"
        return out
    lab = [labels[p] for p in pids]
    site = [sites[p] for p in pids]
    n_sites = len(set(site))
    n_classes = len(set(lab))
    out.update(sites=n_sites, classes=n_classes)
    if n_sites < 2:
        out["status"] = f"a single site ({site[0]}): label and site cannot be associated"
        return out
    kind = _kind_of_label({p: labels[p] for p in pids})
    out["label_kind"] = kind
    if kind == "continuous":
        values = [parse_number(v)[0] for v in lab]
        keep = [i for i, v in enumerate(values) if v is not None]
        res = kruskal_test([values[i] for i in keep], [site[i] for i in keep])  # type: ignore[misc]
        out.update(status="ok", test=res)
        e2, p = res["epsilon2"], res["p_value"]
        sig = p is not None and p < th["alpha"]
        if sig and e2 is not None and e2 >= th["epsilon2_error"]:
            out["severity"] = "error"
        elif sig and e2 is not None and e2 >= th["epsilon2_warning"]:
            out["severity"] = "warning"
        by_site: dict[str, list[float]] = {}
        for i in keep:
            by_site.setdefault(site[i], []).append(values[i])  # type: ignore[arg-type]
        out["by_site"] = {s: {"n": len(v), "median": float(sorted(v)[len(v) // 2])}
                          for s, v in sorted(by_site.items())[:MAX_SITES_LISTED]}
        return out
    if n_classes < 2:
        out["status"] = f"a single class ({lab[0]}): nothing for the site to predict"
        return out
    table, site_levels, label_levels = contingency(site, lab)
    assoc = association_test(table, n_permutations=2000, seed=int(th["seed"]))
    pred = label_from_site(site, lab, n_splits=int(th["n_splits"]), n_permutations=int(th["n_permutations"]),
                           seed=int(th["seed"]))
    out.update(status="ok", association=assoc.to_dict(), site_only_classifier=pred,
               table={"sites": [str(s) for s in site_levels[:MAX_SITES_LISTED]],
                      "labels": [str(v) for v in label_levels],
                      "counts": table[:MAX_SITES_LISTED].tolist(), "sites_total": len(site_levels)})
    sig = assoc.p_value is not None and assoc.p_value < th["alpha"]
    v = assoc.cramers_v or 0.0
    gain = pred["gain"] if pred["p_value"] is not None and pred["p_value"] < th["alpha"] else None
    if sig and (v >= th["cramers_v_error"] or (gain is not None and gain >= th["accuracy_gain_error"])):
        out["severity"] = "error"
    elif sig and (v >= th["cramers_v_warning"] or (gain is not None and gain >= th["accuracy_gain_warning"])):
        out["severity"] = "warning"
    return out


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.2f}"


def _p(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}".rstrip("0").rstrip(".")


_TESTS = {"fisher_exact": "Fisher's exact", "chi_square": "chi-square",
          "permutation_chi_square": "permutation chi-square"}


def _sentence(label: str, m: Mapping[str, Any], where: str) -> str:
    if m.get("label_kind") == "continuous":
        t = m["test"]
        strength = {"error": "strongly", "warning": "moderately"}.get(m["severity"], "not notably")
        return (f"{label} {'differs' if m['severity'] != 'info' else 'does not differ notably'} between sites"
                f"{where} ({'' if m['severity'] == 'info' else strength + ': '}epsilon-squared {_fmt(t['epsilon2'])}, "
                f"Kruskal-Wallis p={_p(t['p_value'])}, {m['participants']} participants, {m['sites']} sites)")
    a, c = m["association"], m["site_only_classifier"]
    figures = (f"Cramér's V {_fmt(a['cramers_v'])}, {_TESTS.get(a['test'], a['test'])} p={_p(a['p_value'])}; "
               f"site alone predicts {label} with balanced accuracy {_fmt(c['balanced_accuracy'])} "
               f"(chance {_fmt(c['chance'])}, permutation p={_p(c['p_value'])}); "
               f"{m['participants']} participants, {m['sites']} sites")
    if m["severity"] == "error":
        return (f"{label} is strongly associated with site{where} ({figures}): a network can learn the scanner "
                f"instead of {label}")
    if m["severity"] == "warning":
        return f"{label} is associated with site{where} ({figures})"
    return f"{label} is not notably associated with site{where} ({figures})"


@check("confound.label_site", default="error", needs={"label"}, thresholds=THRESHOLDS["confound.label_site"])
def label_site(ctx: AuditContext) -> Iterator[Finding]:
    """The label is strongly associated with site or scanner."""
    th, ignored = _settings(ctx)
    column = ctx.label_column
    assert column is not None
    labels = participant_values(ctx, column, label=True)
    population = _population(ctx)
    if population is not None:
        labels = {p: v for p, v in labels.items() if p in population}
    base = {"label": column, "thresholds": th, **({"ignored_overrides": ignored} if ignored else {})}
    has_column = ((ctx.index is not None and ctx.index.participants is not None
                   and column in ctx.index.participants.columns)
                  or (ctx.splits is not None and any(column in t.columns or t.label_column == column
                                                     for t in ctx.splits.tables)))
    if not labels:
        why = "has no values" if has_column else "is not a column of participants.tsv or of the split files"
        yield finding(f"label/site confounding not measured: the label column '{column}' {why}",
                      severity="info", evidence=base)
        return
    ident = ctx.scanner_identity
    base["site_source"] = ident.evidence()
    if not ident.by_subject:
        yield finding("label/site confounding not measured: no site or scanner information (no --site column, "
                      "no scanner fields in sidecars, no site column)", severity="info", evidence=base)
        return
    m = measure(labels, ident.by_subject, th)
    if m["status"] != "ok":
        yield finding(f"label/site confounding not measured: {m['status']}", severity="info",
                      evidence={**base, **m})
        return
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
    th, _ignored = _settings(ctx)
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
