"""Decisions by effect size: the magnitude of an effect, whether it is a warning, and the sentence that says so.

:func:`classify_effect` (and :func:`decide`, for an
:class:`~audit.effects.Effect`) turns an effect size with its confidence
interval into a :class:`Decision`; :func:`label_mix` says what an
evaluation split's class mix does to the metrics a trainer reports. The
bounds and evidence are the catalogue's (:data:`audit.catalogue.EFFECT_BOUNDS`,
:data:`audit.catalogue.EFFECT_EVIDENCE`; configurable per check, tuned with
``bench/sim_power.py``; ``docs/effects.md`` is the user's page):

* below the ``negligible`` bound: never a warning, however small its p;
* ``small`` (negligible to moderate): not a warning;
* ``moderate`` and ``large``: a warning when chance alone is an unlikely
  explanation: the comparison's adjusted p-value in the audit's family
  (:func:`family_adjust`: weighted Benjamini-Hochberg, weights per kind of
  effect) at most ``fdr`` (or, when the caller has no p-value, the CI clear
  of the negligible region, moderate, or of no effect, large). Worded
  "large, uncertain with n = ..." when the CI reaches below the large
  bound. Under no shift at all the family's chance of any warning is then
  at most ``fdr`` whatever the number of comparisons (``docs/effects.md``).
  ``alpha_large`` (off by default) restores an unadjusted level for large
  effects, outside that control.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.catalogue import EFFECT_BOUNDS, EFFECT_EVIDENCE, FAMILY_WEIGHTS
from audit.effects import KINDS, LEVEL, Effect, _finite
from audit.stats import benjamini_hochberg

__all__ = ["RULES", "EVIDENCE", "WEIGHTS", "KINDS", "Decision", "classify_effect", "decide", "rules_from", "label_mix",
           "family_adjust", "weights_from"]

#: Magnitude bounds per kind of effect (the catalogue's :data:`~audit.catalogue.EFFECT_BOUNDS`).
RULES: dict[str, dict[str, float]] = EFFECT_BOUNDS
#: The evidence a warning needs besides its magnitude (the catalogue's :data:`~audit.catalogue.EFFECT_EVIDENCE`).
EVIDENCE: dict[str, Any] = EFFECT_EVIDENCE
#: Each kind of comparison's weight in the audit's family (the catalogue's :data:`~audit.catalogue.FAMILY_WEIGHTS`).
WEIGHTS: dict[str, float] = FAMILY_WEIGHTS

_NAMES = {"smd": "SMD (Hedges' g)", "proportion_difference": "class-share difference",
          "cramers_v": "Cramér's V", "auc": "ROC AUC"}
_NULL = {"smd": 0.0, "proportion_difference": 0.0, "cramers_v": 0.0, "auc": 0.5}
_SIGNED = frozenset({"smd", "proportion_difference"})


def rules_from(table: Mapping[str, Any], prefix: str, shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``rules`` of :func:`classify_effect` from a check's threshold table (``{prefix}_large``, ...).

    The evidence keys (``fdr``, ``alpha_large``, ``ci_evidence``) come from
    ``shared`` (the family's table) when given, else from ``table``;
    missing ones keep the defaults.

    >>> rules_from({"smd_negligible": 0.1, "smd_moderate": 0.4, "smd_large": 0.8}, "smd", {"fdr": 0.05})
    {'negligible': 0.1, 'moderate': 0.4, 'large': 0.8, 'fdr': 0.05}
    """
    out: dict[str, Any] = {b: table[f"{prefix}_{b}"] for b in ("negligible", "moderate", "large")
                           if f"{prefix}_{b}" in table}
    source = table if shared is None else shared
    out.update({k: source[k] for k in EVIDENCE if k in source})
    return out


def weights_from(table: Mapping[str, Any]) -> dict[str, float]:
    """The family weights of a threshold table (``weight_smd``, ``weight_share``, ``weight_auc``, ``weight_v``...).

    >>> weights_from({"weight_smd": 2})["smd"], weights_from({})["auc"] == WEIGHTS["auc"]
    (2.0, True)
    """
    names = {"smd": "smd", "proportion_difference": "share", "auc": "auc", "cramers_v": "v",
             "label_site": "label_site"}
    return {kind: float(table.get(f"weight_{short}", WEIGHTS[kind])) for kind, short in names.items()}


def family_adjust(p_values: Sequence[float | None], kinds: Sequence[str],
                  weights: Mapping[str, float] | None = None) -> list[float | None]:
    """Weighted Benjamini-Hochberg adjusted p-values of one audit's family of comparisons.

    Each comparison's p-value is divided by its kind's weight (``weights``,
    default :data:`WEIGHTS`), the weights rescaled to average 1 over the
    comparisons that have a p-value, then Benjamini-Hochberg (Genovese,
    Roeder & Wasserman 2006). With one real effect among ``m`` comparisons a
    comparison of weight ``w`` is a warning about when ``p <= fdr * w / m``:
    the family's error rate is spent where a large effect needs it. When
    nothing differs, the chance that any adjusted p is at most ``q`` is at
    most ``q`` (independent or positively dependent tests), whatever ``m``
    and the mix of kinds. ``None`` stays ``None`` and does not count.

    >>> family_adjust([0.004, 0.004, None, 0.5], ["smd", "proportion_difference", "auc", "auc"],
    ...               {"smd": 3, "proportion_difference": 1, "auc": 1})
    [0.00666667, 0.01, None, 0.833333]
    """
    table = {**WEIGHTS, **(weights or {})}
    if len(kinds) != len(p_values):
        raise ValueError("one kind per p-value")
    have = [i for i, p in enumerate(p_values) if p is not None and np.isfinite(float(p))]
    if not have:
        return [None] * len(p_values)
    w = np.array([max(float(table.get(kinds[i], 1.0)), 1e-12) for i in have])
    w = w / w.mean()
    scaled: list[float | None] = [None] * len(p_values)
    for i, wi in zip(have, w):
        scaled[i] = min(1.0, float(p_values[i]) / float(wi))  # type: ignore[arg-type]
    return benjamini_hochberg(scaled)


@dataclass(frozen=True)
class Decision:
    """What :func:`classify_effect` concluded: magnitude, warning or not, why, and the sentence."""

    kind: str
    magnitude: str  # "large" | "moderate" | "small" | "negligible" | "not measured"
    warning: bool
    evidence: str | None  # "alpha_large" | "fdr" | "ci" | None: what made it a warning
    uncertain: bool  # the CI reaches below the large bound (large) or into the negligible region
    wording: str
    estimate: float | None
    ci: tuple[float, float] | None
    p_adjusted: float | None
    p_value: float | None
    n: tuple[int, ...]
    bounds: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "magnitude": self.magnitude, "warning": self.warning, "evidence": self.evidence,
                "uncertain": self.uncertain, "wording": self.wording, "estimate": _finite(self.estimate),
                "ci": None if self.ci is None else [_finite(c) for c in self.ci],
                "p_adjusted": _finite(self.p_adjusted), "p_value": _finite(self.p_value), "n": list(self.n),
                "bounds": dict(self.bounds)}


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}".rstrip("0").rstrip(".") if p < 0.1 else f"{p:.2f}"


def _fmt_value(kind: str, x: float) -> str:
    if kind == "proportion_difference":
        return f"{100 * x:+.0f} points"
    if kind == "smd":
        return f"{x:+.2f}"
    return f"{x:.2f}"


def _fmt_n(n: Sequence[int]) -> str:
    return " and ".join(str(v) for v in n) if n else "?"


def _size(kind: str, x: float) -> float:
    return abs(x) if kind in _SIGNED else x


def classify_effect(kind: str, estimate: float | None, ci: Sequence[float] | None, p_adjusted: float | None,
                    n: int | Sequence[int], *, p_value: float | None = None, level: float = LEVEL,
                    rules: Mapping[str, Any] | None = None, what: str = "", reason: str | None = None,
                    test_name: str = "") -> Decision:
    """Magnitude of an effect, whether it is a warning, and the sentence that says so.

    ``kind`` is one of :data:`KINDS`; ``ci`` the ``level`` interval of the
    estimate; ``p_adjusted`` its Benjamini-Hochberg adjusted p-value in the
    audit's family (``None``: no family); ``p_value`` the unadjusted one
    (for the large tier); ``n`` the sample size(s) shown in the wording.
    ``rules`` overrides :data:`RULES` ``[kind]`` and :data:`EVIDENCE`
    (``{"large": 0.8, "fdr": 0.05}``). ``what`` starts the sentence;
    ``test_name`` names the test of the p-value in it (``"Mann-Whitney"``).

    * ``|estimate| < negligible``: ``negligible``, never a warning;
    * ``< moderate``: ``small``, not a warning;
    * ``< large``: ``moderate``, a warning with ``p_adjusted <= fdr`` (or,
      by ``ci_evidence``, the CI clear of the negligible region);
    * else ``large``, a warning with ``p_adjusted <= fdr`` (or, when
      ``alpha_large`` is set above 0, ``p_value <= alpha_large``; no
      p-value at all: the CI clear of no effect); "uncertain" when the CI
      reaches below the large bound.

    An AUC below 0.5 (a cross-validated classifier doing worse than chance)
    is negligible. A missing or non-finite estimate is "not measured".

    >>> d = classify_effect("auc", 1.0, (0.93, 1.0), 2e-7, (80, 20), p_value=1e-9)
    >>> d.magnitude, d.warning, d.wording
    ('large', True, 'ROC AUC 1.00 (95% CI 0.93 to 1.00): large, n = 80 and 20 (p=1e-09, adjusted 2e-07)')
    >>> classify_effect("auc", 1.0, (0.93, 1.0), 0.2, (80, 20), p_value=1e-9).warning  # the family decides
    False
    >>> d = classify_effect("smd", 1.3, (0.5, 2.1), 0.04, (93, 20), p_value=0.001)
    >>> d.magnitude, d.warning, d.uncertain
    ('large', True, True)
    >>> classify_effect("smd", 0.03, (0.02, 0.04), 1e-30, (50000, 50000)).warning
    False
    >>> classify_effect("smd", None, None, None, (1, 5), reason="fewer than 2 values").wording
    "SMD (Hedges' g) not measured: fewer than 2 values"
    """
    if kind not in RULES:
        raise ValueError(f"unknown kind of effect {kind!r}; expected one of {', '.join(KINDS)}")
    th: dict[str, Any] = {**RULES[kind], **EVIDENCE}
    if rules:
        th.update({k: v for k, v in rules.items() if k in th})
    bounds = {k: float(th[k]) for k in ("negligible", "moderate", "large")}
    ns = (int(n),) if isinstance(n, (int, np.integer)) else tuple(int(v) for v in n)
    label = _NAMES[kind]
    head = f"{what}: " if what else ""
    est = _finite(estimate, None)
    interval = None
    if ci is not None:
        lo_hi = [_finite(c, None) for c in ci]
        if len(lo_hi) == 2 and None not in lo_hi:
            interval = (min(lo_hi), max(lo_hi))  # type: ignore[type-var]
    p_adj = _finite(p_adjusted, None)
    p_raw = _finite(p_value, None)
    if est is None:
        why = reason or "no estimate"
        return Decision(kind, "not measured", False, None, False, f"{head}{label} not measured: {why}", None,
                        None, p_adj, p_raw, ns, bounds)
    size = _size(kind, est)
    if kind == "auc":
        size = max(size, 0.5)
    if size < bounds["negligible"]:
        magnitude = "negligible"
    elif size < bounds["moderate"]:
        magnitude = "small"
    elif size < bounds["large"]:
        magnitude = "moderate"
    else:
        magnitude = "large"
    null = _NULL[kind]
    neg = bounds["negligible"]
    if interval is None:
        clear_null = clear_negligible = False
        reaches_below_large = True
    elif kind in _SIGNED:
        lo, hi = interval
        clear_null = lo > null or hi < null
        clear_negligible = lo >= neg or hi <= -neg
        reaches_below_large = (lo < bounds["large"]) if est > 0 else (hi > -bounds["large"])
    else:
        lo, hi = interval
        clear_null = lo > null
        clear_negligible = lo >= neg
        reaches_below_large = lo < bounds["large"]
    fdr_ok = p_adj is not None and p_adj <= float(th["fdr"])
    ci_mode = str(th["ci_evidence"])
    ci_ok = clear_negligible and (ci_mode == "always" or (ci_mode == "without_p" and p_adj is None))
    evidence: str | None = None
    alpha_large = float(th["alpha_large"] or 0.0)
    if magnitude == "large":
        if fdr_ok:
            evidence = "fdr"
        elif p_raw is not None and alpha_large > 0 and p_raw <= alpha_large:
            evidence = "alpha_large"
        elif p_raw is None and p_adj is None and clear_null:
            evidence = "ci"
    elif magnitude == "moderate":
        evidence = "fdr" if fdr_ok else "ci" if ci_ok else None
    warn = evidence is not None
    uncertain = reaches_below_large if magnitude == "large" else (interval is None or not clear_negligible)
    shown = _fmt_value(kind, est)
    if interval is not None:
        lo_s, hi_s = (_fmt_value(kind, v).replace(" points", "") for v in interval)
        shown += f" ({round(100 * level):d}% CI {lo_s} to {hi_s})"
    stats = []
    if p_raw is not None:
        stats.append(f"{test_name + ' ' if test_name else ''}p={_fmt_p(p_raw)}")
    if p_adj is not None:
        stats.append(f"adjusted {_fmt_p(p_adj)}" if p_raw is not None else f"adjusted p={_fmt_p(p_adj)}")
    tail = f" ({', '.join(stats)})" if stats else ""
    n_words = f"n = {_fmt_n(ns)}"
    if magnitude == "large" and warn:
        verdict = f"large, uncertain with {n_words}" if uncertain else f"large, {n_words}"
    elif magnitude == "large":
        verdict = f"large but not distinguishable from chance with {n_words}; not a warning"
    elif magnitude == "moderate" and warn:
        verdict = f"moderate, {n_words}"
    elif magnitude == "moderate":
        verdict = f"moderate but not distinguishable from chance with {n_words}; not a warning"
    elif magnitude == "small":
        verdict = f"small (below the moderate bound {_fmt_value(kind, bounds['moderate']).lstrip('+')}); " \
                  "not a warning"
    else:
        verdict = f"negligible (below {_fmt_value(kind, bounds['negligible']).lstrip('+')}); not a warning"
    if kind == "auc" and est < 0.5:
        verdict = "below chance (a cross-validation artefact, not a shift); not a warning"
    wording = f"{head}{label} {shown}: {verdict}{tail}"
    return Decision(kind, magnitude, warn, evidence, uncertain, wording, est, interval, p_adj, p_raw, ns, bounds)


def decide(effect: Effect, p_adjusted: float | None = None, *, p_value: float | None = None,
           rules: Mapping[str, Any] | None = None, what: str = "", test_name: str = "") -> Decision:
    """:func:`classify_effect` of an :class:`Effect` (its own p-value unless ``p_value`` is given).

    >>> from audit.effects import proportion_difference
    >>> decide(proportion_difference([[50, 50], [18, 2]], ["AD", "CN"]), 0.004, p_value=0.0004,
    ...        what="AD share, train vs test", test_name="Fisher's exact").wording
    "AD share, train vs test: class-share difference +40 points (95% CI +18 to +52): large, uncertain with n = 100 and 20 (Fisher's exact p=0.0004, adjusted 0.004)"
    """
    return classify_effect(effect.kind, effect.estimate, effect.ci, p_adjusted, effect.n,
                           p_value=effect.p_value if p_value is None else p_value, level=effect.level,
                           rules=rules, what=what, reason=effect.reason, test_name=test_name)


# --------------------------------------------------------------------------- label mix
def label_mix(reference: Mapping[str, int], evaluation: Mapping[str, int], *,
              recall: Mapping[str, float] | None = None,
              splits: tuple[str, str] = ("train", "test")) -> dict[str, Any]:
    """What the evaluation split's class mix does to the metrics a trainer reports.

    ``reference`` and ``evaluation`` are class counts. Returns each
    class's share per split; the largest share difference; the total
    variation distance ``TV``; what a majority-class predictor (the
    reference split's most common class) scores on each split (its
    accuracy moves with the mix, its balanced accuracy is ``1 / classes``
    on both: balanced accuracy does not depend on the mix); and the
    expected accuracy of a classifier with fixed per-class ``recall`` under
    each mix (``sum_c share_c * recall_c``). Without ``recall``:
    ``accuracy_change_per_recall_gap`` is TV, the most the accuracy can
    move per unit of gap between the best and worst class recall.

    >>> m = label_mix({"AD": 50, "CN": 50}, {"AD": 18, "CN": 2}, recall={"AD": 0.7, "CN": 0.9})
    >>> m["majority_class"], m["majority_accuracy"], m["expected_accuracy"]
    ('AD', {'train': 0.5, 'test': 0.9}, {'train': 0.8, 'test': 0.72})
    >>> m["sentence"]
    'AD is 50% of train and 90% of test; always predicting AD scores accuracy 0.50 on train and 0.90 on test (balanced accuracy 0.50 on both); with per-class recall AD 0.70, CN 0.90 the expected accuracy is 0.80 on the train mix and 0.72 on the test mix'
    """
    a_name, b_name = splits
    classes = sorted({str(c) for c in reference} | {str(c) for c in evaluation})
    ca = {c: max(0, int(reference.get(c, 0))) for c in classes}
    cb = {c: max(0, int(evaluation.get(c, 0))) for c in classes}
    na, nb = sum(ca.values()), sum(cb.values())
    out: dict[str, Any] = {"classes": classes, "counts": {a_name: ca, b_name: cb}}
    if na == 0 or nb == 0:
        out["not_measured"] = f"no labelled participants in {a_name if na == 0 else b_name}"
        return out
    sa = {c: ca[c] / na for c in classes}
    sb = {c: cb[c] / nb for c in classes}
    diff = {c: sb[c] - sa[c] for c in classes}
    worst = max(classes, key=lambda c: (round(abs(diff[c]), 12), diff[c] > 0, -classes.index(c)))
    majority = max(classes, key=lambda c: (ca[c], c == classes[0]))
    k = len(classes)
    tv = 0.5 * sum(abs(v) for v in diff.values())
    out.update(
        shares={a_name: {c: _finite(sa[c], 4) for c in classes}, b_name: {c: _finite(sb[c], 4) for c in classes}},
        largest_difference={"class": worst, "difference": _finite(diff[worst], 4)},
        total_variation=_finite(tv, 4), majority_class=majority,
        majority_accuracy={a_name: _finite(sa[majority], 4), b_name: _finite(sb[majority], 4)},
        majority_balanced_accuracy=_finite(1 / k, 4), accuracy_change_per_recall_gap=_finite(tv, 4),
    )
    sentence = (f"{worst} is {100 * sa[worst]:.0f}% of {a_name} and {100 * sb[worst]:.0f}% of {b_name}; always "
                f"predicting {majority} scores accuracy {sa[majority]:.2f} on {a_name} and {sb[majority]:.2f} on "
                f"{b_name} (balanced accuracy {1 / k:.2f} on both)")
    if recall:
        r = {c: _finite(recall.get(c), None) for c in classes}
        if all(v is not None and 0 <= v <= 1 for v in r.values()):
            ea = sum(sa[c] * r[c] for c in classes)  # type: ignore[operator]
            eb = sum(sb[c] * r[c] for c in classes)  # type: ignore[operator]
            out["expected_accuracy"] = {a_name: _finite(ea, 4), b_name: _finite(eb, 4)}
            out["recall"] = r
            sentence += (f"; with per-class recall {', '.join(f'{c} {r[c]:.2f}' for c in classes)} the expected "
                         f"accuracy is {ea:.2f} on the {a_name} mix and {eb:.2f} on the {b_name} mix")
        else:
            out["recall_ignored"] = "recall must give a number in [0, 1] for every class"
    else:
        sentence += (f"; a classifier's accuracy can move by up to {tv:.2f} per unit of gap between its best and "
                     "worst class recall")
    out["sentence"] = sentence
    return out
