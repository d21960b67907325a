"""The label x site association of the dataset: measured once, shared by confound.label_site and the shift family.

:func:`measure` computes, over the participants with a label and a site
value, the site x label table, the association test (:mod:`audit.stats`),
Cramér's V with its confidence interval (:func:`audit.effects.cramers_v`)
and how well site alone predicts the label (:mod:`audit.predictors`); a
continuous label gets Kruskal-Wallis and epsilon-squared instead.
:func:`dataset_confound` is that measure on the dataset's population,
computed once per audit: ``confound.label_site`` reports it, and the shift
family (:mod:`audit.checks.shift_family`) adds its test to the audit's one
Benjamini-Hochberg family, so that every effect-size decision of an audit
shares one false-discovery rate. The decision (magnitude, warning, wording)
is :func:`audit.decisions.decide`'s, with the catalogue's ``v_*`` bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit.catalogue import THRESHOLDS
from audit.decisions import decide, rules_from
from audit.effects import cramers_v
from audit.findings import normalise_subject
from audit.predictors import label_from_site
from audit.scanner import participant_values
from audit.stats import association_test, contingency, kruskal_test
from audit.values import parse_number

if TYPE_CHECKING:
    from audit.context import AuditContext

__all__ = ["KEY", "MAX_SITES_LISTED", "TEST_NAMES", "DatasetConfound", "settings", "population", "measure",
           "decide_confound", "dataset_confound"]

KEY = "confound.label_site"
MAX_SITES_LISTED = 200
TEST_NAMES = {"fisher_exact": "Fisher's exact", "boschloo_exact": "Boschloo's exact", "chi_square": "chi-square",
              "permutation_chi_square": "permutation chi-square"}


def settings(ctx: AuditContext) -> tuple[dict[str, Any], list[str]]:
    """The check's thresholds (defaults with the configured overrides) and the overrides left out."""
    return ctx.thresholds(KEY, THRESHOLDS[KEY]), ctx.config.ignored_overrides(KEY)


def population(ctx: AuditContext) -> set[str] | None:
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


def decide_confound(m: dict[str, Any], th: Mapping[str, Any], p_adjusted: float | None) -> None:
    """Set ``m``'s decision and severity from its Cramér's V (in place): error large, warning moderate."""
    eff = m.pop("_effect")
    a = m["association"]
    d = decide(eff, p_adjusted, p_value=a["p_value"], rules=rules_from(th, "v"),
               test_name=TEST_NAMES.get(a["test"], a["test"]))
    m["decision"] = d.to_dict()
    m["magnitude"] = d.magnitude
    m["severity"] = ("error" if d.magnitude == "large" else "warning") if d.warning else "info"


def measure(labels: Mapping[str, str], sites: Mapping[str, str], th: Mapping[str, Any],
            subjects: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """Association of label and site over ``subjects`` (all when ``None``): figures, not yet a decision.

    Returns ``{"status": "ok" | <why not measured>, "severity": ..., ...figures}``; for a categorical
    label, ``"_effect"`` holds the :class:`~audit.effects.Effect` (Cramér's V) that
    :func:`decide_confound` turns into the decision and severity. A continuous label is decided here
    (Kruskal-Wallis p below ``alpha`` and epsilon-squared at the ``epsilon2_*`` bounds).
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
    eff = cramers_v(table, names=("site", "label"))
    out.update(status="ok", association=assoc.to_dict(), site_only_classifier=pred, effect_size=eff.to_dict(),
               table={"sites": [str(s) for s in site_levels[:MAX_SITES_LISTED]],
                      "labels": [str(v) for v in label_levels],
                      "counts": table[:MAX_SITES_LISTED].tolist(), "sites_total": len(site_levels)})
    out["_effect"] = eff
    return out


@dataclass(frozen=True)
class DatasetConfound:
    """The label x site measure of the dataset's population (``measure is None``: nothing to measure, why)."""

    column: str | None
    labels: dict[str, str]
    has_column: bool
    measure: dict[str, Any] | None
    why: str | None


def dataset_confound(ctx: AuditContext) -> DatasetConfound:
    """The label x site measure on the dataset's population, computed once per audit (undecided)."""
    return ctx.once(_compute)


def _compute(ctx: AuditContext) -> DatasetConfound:
    th, _ignored = settings(ctx)
    column = ctx.label_column
    if column is None:
        return DatasetConfound(None, {}, False, None, "no label column")
    labels = participant_values(ctx, column, label=True)
    pop = population(ctx)
    if pop is not None:
        labels = {p: v for p, v in labels.items() if p in pop}
    has_column = ((ctx.index is not None and ctx.index.participants is not None
                   and column in ctx.index.participants.columns)
                  or (ctx.splits is not None and any(column in t.columns or t.label_column == column
                                                     for t in ctx.splits.tables)))
    if not labels:
        why = "has no values" if has_column else "is not a column of participants.tsv or of the split files"
        return DatasetConfound(column, labels, has_column, None, f"the label column '{column}' {why}")
    ident = ctx.scanner_identity
    if not ident.by_subject:
        return DatasetConfound(column, labels, has_column, None, "no site or scanner information (no --site "
                               "column, no scanner fields in sidecars, no site column)")
    return DatasetConfound(column, labels, has_column, measure(labels, ident.by_subject, th), None)
