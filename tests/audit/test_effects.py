"""audit.effects, audit.auc, audit.decisions: effect sizes with confidence intervals and the rules that make them warnings."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

import audit.effects
from audit import auc, decisions, effects


@pytest.mark.parametrize("module", [effects, auc, decisions], ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_module_docstring_names_the_concept():
    assert audit.effects.__doc__.splitlines()[0].startswith("Effect sizes with confidence intervals")


# --------------------------------------------------------------------------- coverage (quick simulations)
REPS = 300


def _coverage(draw, truth, reps=REPS, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        e = draw(rng)
        assert e.ci is not None
        hits += e.ci[0] <= truth <= e.ci[1]
    return hits / reps


def test_hedges_g_interval_covers_at_the_nominal_rate():
    cov = _coverage(lambda r: effects.hedges_g(r.normal(0, 1, 15), r.normal(0.5, 1, 25)), 0.5)
    assert 0.91 <= cov <= 0.985, cov


def test_hedges_g_normal_approximation_for_large_samples_covers():
    cov = _coverage(lambda r: effects.hedges_g(r.normal(0, 1, 1500), r.normal(0.2, 1, 1500)), 0.2, reps=150)
    assert 0.89 <= cov <= 0.995, cov
    assert effects.hedges_g(np.arange(3000.0), np.arange(3000.0) + 1).details["ci_method"] == "normal approximation"


def test_newcombe_interval_covers_the_difference_in_shares():
    def draw(r):
        a, b = r.binomial(60, 0.3), r.binomial(20, 0.5)
        return effects.proportion_difference([[a, 60 - a], [b, 20 - b]])

    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(REPS):
        e = draw(rng)
        # the estimate is the class that grew most; its true difference is +0.2 for class 0, -0.2 for class 1
        truth = 0.2 if e.details["class"] == "0" else -0.2
        hits += e.ci[0] <= truth <= e.ci[1]
    assert 0.91 <= hits / REPS <= 0.99, hits / REPS


def test_cramers_v_interval_covers():
    # three sites, P(label | site) = 0.5 + (a, 0, -a): population V = a * sqrt(8/3)
    a = 0.3 / math.sqrt(8 / 3)

    def draw(r):
        site = r.integers(0, 3, 300)
        label = (r.random(300) < 0.5 + a * np.array([1, 0, -1])[site]).astype(int)
        t = np.zeros((3, 2), int)
        np.add.at(t, (site, label), 1)
        return effects.cramers_v(t)

    cov = _coverage(draw, 0.3, seed=2)
    assert 0.90 <= cov <= 0.99, cov


def test_auc_interval_covers_for_independent_scores():
    from scipy.stats import norm

    truth = float(norm.cdf(1 / math.sqrt(2)))  # two normals one SD apart
    cov = _coverage(lambda r: auc.auc_effect(r.normal(1, 1, 30), r.normal(0, 1, 40)), truth, seed=3)
    assert 0.91 <= cov <= 0.985, cov


def test_auc_interval_is_not_degenerate_at_a_perfect_separation():
    e = auc.auc_effect(np.arange(20) + 100.0, np.arange(80.0))
    assert e.estimate == 1.0 and e.ci[1] == 1.0 and 0.85 < e.ci[0] < 0.95
    assert e.p_value < 1e-10  # analytic: no permutation floor


# --------------------------------------------------------------------------- the analytic AUC p-value
@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_mann_whitney_p_matches_scipy(alternative):
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(4)
    for n1, n0 in ((5, 7), (20, 80), (40, 3)):
        x = rng.integers(0, 6, n1).astype(float)  # ties
        y = rng.integers(0, 5, n0).astype(float)
        ref = mannwhitneyu(x, y, alternative=alternative, method="asymptotic").pvalue
        assert auc.mann_whitney_p(x, y, alternative=alternative) == pytest.approx(ref, rel=1e-5, abs=1e-12)


def test_auc_effect_p_value_is_the_mann_whitney_p():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(5)
    x, y = rng.normal(0.8, 1, 20), rng.normal(0, 1, 80)
    e = auc.auc_effect(x, y)
    assert e.p_value == pytest.approx(mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue,
                                      rel=1e-5)
    assert e.estimate == pytest.approx(mannwhitneyu(x, y).statistic / (20 * 80), abs=1e-5)


def test_domain_auc_is_calibrated_for_cross_validation():
    rng = np.random.default_rng(6)
    flag = np.r_[np.ones(20, bool), np.zeros(60, bool)]
    null_p = [auc.domain_auc(rng.normal(size=(80, 10)), flag, seed=i, n_permutations=100).p_value
              for i in range(40)]
    assert np.mean(np.array(null_p) < 0.05) <= 0.2  # nominal 5 %; the raw pooled p is ~11 %
    X = rng.normal(size=(80, 10))
    X[:20, :3] += 2.0
    e = auc.domain_auc(X, flag)
    assert e.estimate > 0.9 and e.p_value < 1e-5 and e.details["variance_inflation"] >= 1.0
    # large, and its p passes the family: one of eleven comparisons whose ten others show nothing
    adjusted = decisions.family_adjust([e.p_value] + NULL_PS, ["auc"] + NULL_KINDS)
    assert decisions.decide(e, adjusted[0]).warning


# --------------------------------------------------------------------------- the rules
#: The ten other comparisons of an audit (sim_power's family: label, sex, site, age, image for train-validation
#: and train-test, and label x site) when nothing else differs: p-values spread over (0, 1).
NULL_PS = [0.08, 0.15, 0.23, 0.31, 0.42, 0.5, 0.61, 0.72, 0.85, 0.95]
NULL_KINDS = ["proportion_difference"] * 5 + ["smd", "smd", "auc", "cramers_v", "proportion_difference"]


def test_large_effect_with_twenty_participants_is_a_warning_worded_uncertain():
    from audit.stats import association_test

    train = [1] * 50 + [0] * 50
    table = [[train.count(1), train.count(0)], [18, 2]]  # a 90/10 test split of 20 against 50/50
    eff = effects.proportion_difference(table, ["AD", "CN"], splits=("train", "test"))
    p = association_test(table).p_value
    adjusted = decisions.family_adjust([p] + NULL_PS, ["proportion_difference"] + NULL_KINDS)
    d = decisions.decide(eff, p_adjusted=adjusted[0], p_value=p, what="AD share")
    assert d.magnitude == "large" and d.warning and d.evidence == "fdr"
    assert "large, uncertain with n = 100 and 20" in d.wording
    assert "+40 points" in d.wording and "95% CI" in d.wording
    # not by an unadjusted level for large effects: that is off by default
    assert not decisions.decide(eff, p_adjusted=0.2, p_value=0.0004).warning
    assert decisions.decide(eff, p_adjusted=0.2, p_value=0.0004, rules={"alpha_large": 0.005}).evidence == \
        "alpha_large"


def test_perfect_domain_classifier_is_a_warning_in_a_large_family():
    e = auc.auc_effect(np.arange(20) + 100.0, np.arange(80.0))
    # its p passes even among 200 comparisons of which it has the smallest weight
    kinds = ["auc"] + ["smd", "proportion_difference"] * 100
    adjusted = decisions.family_adjust([e.p_value] + [0.5] * 200, kinds)
    d = decisions.decide(e, p_adjusted=adjusted[0])
    assert d.magnitude == "large" and d.warning


def test_family_adjust_spends_the_error_rate_by_weight_and_controls_the_null():
    # weights rescaled to average 1: with one effect among eleven, weight w passes about at p <= fdr * w / 11
    kinds = ["smd"] * 2 + ["proportion_difference"] * 6 + ["auc"] * 2 + ["cramers_v"]
    w = np.array([decisions.WEIGHTS[k] for k in kinds])
    level = decisions.EVIDENCE["fdr"] * w / w.mean() / len(kinds)
    for i in (0, 2, 8, 10):
        ps = [0.9] * len(kinds)
        ps[i] = level[i] * 0.99
        assert decisions.family_adjust(ps, kinds)[i] <= decisions.EVIDENCE["fdr"]
        ps[i] = level[i] * 1.01
        assert decisions.family_adjust(ps, kinds)[i] > decisions.EVIDENCE["fdr"]
    assert level[0] > level[2] > level[8]  # an SMD gets the most (it needs it at 20 participants), an AUC little
    # uniform null p-values: any adjusted p <= fdr in at most about fdr of families (weights do not change that)
    rng = np.random.default_rng(3)
    q = decisions.EVIDENCE["fdr"]
    hits = np.mean([min(decisions.family_adjust(list(rng.random(len(kinds))), kinds)) <= q for _ in range(4000)])
    assert hits < q + 0.01  # 4,000 families: the Monte-Carlo SD is 0.0034 at q = 0.05
    assert decisions.family_adjust([None, 0.01], ["smd", "auc"]) == [None, 0.01]
    with pytest.raises(ValueError):
        decisions.family_adjust([0.1], [])


def test_tiny_effect_is_never_a_warning_however_small_its_p():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 100_000), rng.normal(0.03, 1, 100_000)
    e = effects.hedges_g(a, b)
    assert e.p_value < 1e-6 and abs(e.estimate) < 0.1
    d = decisions.decide(e, p_adjusted=e.p_value)
    assert d.magnitude == "negligible" and not d.warning and "not a warning" in d.wording


def test_small_effect_is_not_a_warning():
    d = decisions.classify_effect("smd", 0.35, (0.3, 0.4), 1e-20, (5000, 5000), p_value=1e-21)
    assert d.magnitude == "small" and not d.warning


def test_moderate_effect_needs_evidence():
    base = dict(kind="auc", estimate=0.78, ci=(0.62, 0.9), n=(93, 20))
    assert not decisions.classify_effect(**base, p_adjusted=0.2, p_value=0.004).warning
    d = decisions.classify_effect(**base, p_adjusted=0.01)
    assert d.warning and d.evidence == "fdr" and d.magnitude == "moderate"
    # no family p-value: the CI clear of the negligible region is the evidence
    d = decisions.classify_effect(**base, p_adjusted=None)
    assert d.warning and d.evidence == "ci"
    assert not decisions.classify_effect("auc", 0.78, (0.55, 0.9), None, (93, 20)).warning


def test_large_effect_that_chance_explains_is_not_a_warning():
    d = decisions.classify_effect("smd", 1.2, (-0.1, 2.5), 0.4, (5, 5), p_value=0.09)
    assert d.magnitude == "large" and not d.warning
    assert "not distinguishable from chance with n = 5 and 5" in d.wording


def test_auc_below_chance_is_negligible():
    d = decisions.classify_effect("auc", 0.3, (0.15, 0.5), 0.9, (60, 20))
    assert d.magnitude == "negligible" and not d.warning and "below chance" in d.wording


def test_rules_can_be_overridden():
    assert decisions.classify_effect("cramers_v", 0.45, (0.3, 0.6), 0.001, 200).magnitude == "moderate"
    d = decisions.classify_effect("cramers_v", 0.45, (0.3, 0.6), 0.001, 200, rules={"large": 0.4})
    assert d.magnitude == "large" and d.bounds["large"] == 0.4
    with pytest.raises(ValueError):
        decisions.classify_effect("odds", 1.0, None, None, 10)


def test_signed_effects_use_their_magnitude():
    d = decisions.classify_effect("smd", -1.6, (-2.1, -1.1), 0.001, (900, 200), p_value=1e-9)
    assert d.magnitude == "large" and d.warning and not d.uncertain and "large, n = 900 and 200" in d.wording
    assert decisions.classify_effect("smd", -1.4, (-2.0, -0.8), 0.001, (90, 20)).uncertain
    d = decisions.classify_effect("proportion_difference", -0.12, (-0.2, -0.06), None, (300, 300))
    assert d.magnitude == "moderate" and d.warning and d.evidence == "ci"


# --------------------------------------------------------------------------- edge cases
EDGE = {
    "n=1": lambda: effects.hedges_g([1.0], [2.0, 3.0]),
    "empty": lambda: effects.hedges_g([], [1.0, 2.0]),
    "constant": lambda: effects.hedges_g([3, 3, 3], [3, 3]),
    "constant, different": lambda: effects.hedges_g([3, 3, 3], [4, 4]),
    "all NaN": lambda: effects.hedges_g([math.nan, math.nan], [1.0, 2.0]),
    "strings": lambda: effects.hedges_g(["a", None, "b"], [1.0, 2.0]),
    "one class": lambda: effects.proportion_difference([[7, 0], [3, 0]], ["AD", "CN"]),
    "proportions n=1": lambda: effects.proportion_difference([[7, 3], [1, 0]]),
    "proportions empty": lambda: effects.proportion_difference([[7, 3], [0, 0]]),
    "proportions NaN": lambda: effects.proportion_difference([[7, math.nan], [1, 2]]),
    "proportions 3 rows": lambda: effects.proportion_difference([[1, 2], [3, 4], [5, 6]]),
    "V one site": lambda: effects.cramers_v([[4, 6]], names=("site", "label")),
    "V one class": lambda: effects.cramers_v([[4], [6]], names=("site", "label")),
    "V empty": lambda: effects.cramers_v(np.zeros((0, 0))),
    "V n=2": lambda: effects.cramers_v([[1, 0], [0, 1]]),
    "V not a table": lambda: effects.cramers_v("abc"),
    "AUC n=1": lambda: auc.auc_effect([0.3], [0.1, 0.2]),
    "AUC NaN": lambda: auc.auc_effect([math.nan, math.nan, 0.2], [0.1, 0.2]),
    "domain one side": lambda: auc.domain_auc(np.ones((5, 2)), [True, False, False, False, False]),
    "domain constant": lambda: auc.domain_auc(np.ones((6, 2)), [True] * 3 + [False] * 3),
}


@pytest.mark.parametrize("case", sorted(EDGE))
def test_edge_cases_are_not_measured_with_a_reason(case):
    e = EDGE[case]()
    assert e.estimate is None and e.ci is None
    assert isinstance(e.reason, str) and len(e.reason) > 10
    d = decisions.decide(e, p_adjusted=0.001)
    assert d.magnitude == "not measured" and not d.warning and "not measured: " + e.reason in d.wording
    json.dumps(e.to_dict(), allow_nan=False)
    json.dumps(d.to_dict(), allow_nan=False)


def test_edge_case_reasons_say_what_is_wrong():
    assert "fewer than 2 values in the reference split (1)" == EDGE["n=1"]().reason
    assert "every value is 3" in EDGE["constant"]().reason
    assert "infinite" in EDGE["constant, different"]().reason
    assert "a single class (AD)" in EDGE["one class"]().reason
    assert EDGE["V one site"]().reason == "fewer than two sites with participants (1)"
    assert EDGE["V one class"]().reason == "fewer than two classes with participants (1)"


def test_nan_values_are_dropped_and_counted():
    e = effects.hedges_g([1.0, 2.0, math.nan, 3.0], [2.0, 3.0, 4.0, math.inf])
    assert e.n == (3, 3) and e.details["dropped_non_finite"] == [1, 1]
    json.dumps(e.to_dict(), allow_nan=False)


def test_constant_scores_give_an_uninformative_auc():
    e = auc.auc_effect([0.5, 0.5, 0.5], [0.5, 0.5])
    assert e.estimate == 0.5 and e.ci == (0.0, 1.0) and e.p_value == 1.0
    assert not decisions.decide(e).warning


def test_classify_rejects_non_finite_estimates_as_not_measured():
    d = decisions.classify_effect("smd", math.nan, (math.nan, 1.0), None, 10)
    assert d.magnitude == "not measured" and not d.warning


# --------------------------------------------------------------------------- label mix
def test_label_mix_describes_what_the_test_mix_does_to_the_metric():
    m = decisions.label_mix({"AD": 50, "CN": 50}, {"AD": 18, "CN": 2})
    assert m["shares"]["test"] == {"AD": 0.9, "CN": 0.1}
    assert m["majority_accuracy"] == {"train": 0.5, "test": 0.9}
    assert m["majority_balanced_accuracy"] == 0.5
    assert m["largest_difference"] == {"class": "AD", "difference": 0.4}
    assert m["accuracy_change_per_recall_gap"] == 0.4
    assert "up to 0.40 per unit of gap" in m["sentence"]


def test_label_mix_with_recall_and_three_classes():
    m = decisions.label_mix({"a": 30, "b": 30, "c": 40}, {"a": 10, "b": 0, "c": 10},
                          recall={"a": 1.0, "b": 0.5, "c": 0.8}, splits=("train", "validation"))
    assert m["expected_accuracy"] == {"train": pytest.approx(0.77), "validation": pytest.approx(0.9)}
    assert m["majority_class"] == "c" and m["majority_balanced_accuracy"] == pytest.approx(0.3333)


def test_label_mix_edge_cases():
    assert "no labelled participants in test" == decisions.label_mix({"a": 3}, {})["not_measured"]
    m = decisions.label_mix({"a": 3, "b": 1}, {"a": 1, "b": 1}, recall={"a": 2.0})
    assert "recall_ignored" in m and "expected_accuracy" not in m


# --------------------------------------------------------------------------- the simulation harness
def test_sim_power_quick_runs_and_writes_json(tmp_path, capsys):
    from bench import sim_power

    out = tmp_path / "power.json"
    assert sim_power.main(["--quick", "--null-audits", "8", "--audits", "4", "--n-eval", "20",
                           "--scenarios", "label,image", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["null"][0]["audits"] == 8 and {r["scenario"] for r in data["power"]} == {"label", "image"}
    assert data["rules"] == decisions.RULES
    # a 90/10 test split of 20 and a perfectly separable image shift are found
    assert all(r["rate"] == 1.0 for r in data["power"])
    assert "detection rate" in capsys.readouterr().out
    # reproducible: the same arguments write the same JSON, byte for byte (timings are printed, not written)
    again = tmp_path / "again.json"
    assert sim_power.main(["--quick", "--null-audits", "8", "--audits", "4", "--n-eval", "20",
                           "--scenarios", "label,image", "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_sim_power_fast_null_and_large_effects(tmp_path):
    """A small run of the whole-audit simulation: few audits, so loose bounds; the long run is the slow test."""
    from bench import sim_power

    out = tmp_path / "small.json"
    assert sim_power.main(["--large", "--null-audits", "25", "--audits", "8", "--n-eval", "20",
                           "--scenarios", "label,image,confound", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["weights"] == decisions.WEIGHTS and data["evidence"]["fdr"] == decisions.EVIDENCE["fdr"]
    assert data["null"][0]["alarms"] <= 3  # about fdr (4 %) of 25 audits; 4 or more: p < 0.02 at a 4 % rate
    assert all(r["rate"] >= 0.8 for r in data["power"]), data["power"]


@pytest.mark.slow
def test_sim_power_long_run_meets_the_null_goal(tmp_path):
    """On random splits of one population the family warns in fewer than 5 % of audits (seeded: reproducible).

    Detection of the goal's large effects at 20 evaluation participants is measured beside it; the figures
    and their binomial intervals are in docs/effects.md (site 0.40 and an SMD of exactly 1.0 are at the
    limit of what a 4 % family allows, so they are bounded loosely here).
    """
    from bench import sim_power

    null, large = tmp_path / "null.json", tmp_path / "large.json"
    assert sim_power.main(["--null-audits", "500", "--n-eval", "10,20", "--scenarios=", "--out", str(null)]) == 0
    for r in json.loads(null.read_text())["null"]:
        assert r["rate"] <= 0.05, r
    assert sim_power.main(["--large", "--null-audits", "0", "--audits", "100", "--n-eval", "20",
                           "--out", str(large)]) == 0
    rate = {r["scenario"]: r["rate"] for r in json.loads(large.read_text())["power"]}
    for scenario in ("label", "image", "confound"):
        assert rate[scenario] >= 0.85, rate
    assert rate["covariate"] >= 0.75 and rate["acquisition"] >= 0.5, rate
