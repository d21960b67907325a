"""The catalogue of check ids and configurable thresholds: plain data read by the configuration and the checks.

The configuration (:mod:`audit.config`) validates a ``bidsaudit.toml``
against it without importing any check; each check family declares its
thresholds by naming its entry here (``@check(..., thresholds=THRESHOLDS[id])``),
and :func:`audit.checks.registry.check` refuses, once at import, a check id
or a threshold table that is not in this catalogue. Override any threshold in
``bidsaudit.toml``: ``[thresholds."shift.covariate"] smd_large = 0.8``.

The shift and confound checks decide by effect size (:mod:`audit.decisions`,
``docs/effects.md``): each kind of effect has three magnitude bounds
(:data:`EFFECT_BOUNDS`) and a warning needs, besides its magnitude, the
evidence of :data:`EFFECT_EVIDENCE`. The check tables below carry those
defaults under their own names (``smd_large``, ``share_moderate``,
``auc_large``, ``v_large``, ``fdr``, ``alpha_large``); threshold names of
earlier releases are read through :data:`RENAMED_THRESHOLDS` for one release.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHECK_IDS", "CONTRACT_CHECK_IDS", "MAX_LEVELS", "EFFECT_BOUNDS", "EFFECT_EVIDENCE", "FAMILY_WEIGHTS",
           "RENAMED_THRESHOLDS", "THRESHOLDS"]

#: Check ids of the contract (``contract.md``, "Check ids"): valid in a
#: configuration whatever is registered.
CONTRACT_CHECK_IDS = frozenset({
    "bids.invalid", "bids.warning", "bids.unindexed_file", "quality.corrupt_image", "quality.empty_image",
    "quality.inconsistent_geometry", "quality.missing_label", "quality.missing_metadata",
    "quality.absent_images", "quality.participants_table", "quality.unreadable_file", "expectations.failed",
    "split.unknown_subject", "split.unassigned_subject", "split.identical_folds", "split.fold_integrity",
    "quality.label_conflict", "leakage.subject_overlap", "leakage.session_overlap", "leakage.duplicate_image",
    "leakage.near_duplicate_image", "leakage.group_overlap", "leakage.pretrain_overlap",
    "leakage.no_test_split", "leakage.pipeline", "confound.label_site", "shift.label", "shift.covariate", "shift.acquisition",
    "shift.image",
})
#: Every check id a check may register under and a configuration may name.
CHECK_IDS = CONTRACT_CHECK_IDS

#: A text column with more levels is an identifier or free text, not a category to compare.
MAX_LEVELS = 20

#: Magnitude bounds per kind of effect (on ``|estimate|``; the AUC on the estimate itself): below
#: ``negligible`` an effect is negligible, then small, moderate from ``moderate``, large from ``large``.
#: Conventions: Cohen (1988) for the SMD (0.2 small, 0.5 medium, 1.0 well past "large" 0.8); Rea & Parker /
#: Cohen's w for V with two classes (0.1 small, 0.3 medium, 0.5 large); Hosmer & Lemeshow's discrimination
#: bands for the AUC (0.6-0.7 poor, 0.7-0.8 acceptable, >= 0.9 outstanding); class shares in proportion
#: units (0.05 negligible, 0.10 moderate, 0.25 large: a 50/50 mix against 75/25).
EFFECT_BOUNDS: dict[str, dict[str, float]] = {
    "smd": {"negligible": 0.2, "moderate": 0.5, "large": 1.0},
    "proportion_difference": {"negligible": 0.05, "moderate": 0.10, "large": 0.25},
    "cramers_v": {"negligible": 0.1, "moderate": 0.3, "large": 0.5},
    "auc": {"negligible": 0.6, "moderate": 0.7, "large": 0.9},
}

#: The evidence a warning needs besides its magnitude (bench/sim_power.py measures these choices).
EFFECT_EVIDENCE: dict[str, Any] = {
    # moderate and large effects: the weighted Benjamini-Hochberg adjusted p-value (audit.decisions.family_adjust,
    # weights FAMILY_WEIGHTS) at most this, in the audit's one family. When nothing differs, the chance that an
    # audit warns at all is at most this, whatever the number of comparisons (docs/effects.md: measured
    # 2.4-3.6 % at 10-200 evaluation participants). 0.05, the goal's own bound, was measured too and left at
    # it: 4.6 % of 1,000 null audits at 10 evaluation participants, 5.6 % of the first 500.
    "fdr": 0.04,
    # an unadjusted level for large effects besides the family (0: off). The previous default 0.005 was
    # outside the family's control: the audit's null rate grew with its number of comparisons.
    "alpha_large": 0.0,
    # when a moderate effect may pass on its CI clear of the negligible region instead of the adjusted p:
    # "without_p" (only when there is no p-value), "always" or "never". A 95 % CI is not adjusted for
    # multiplicity, so "always" raises false alarms in a family of tests.
    "ci_evidence": "without_p",
}

#: Each kind of comparison's weight in the audit's family (weighted Benjamini-Hochberg, the weights rescaled to
#: average 1 over the audit's comparisons; with one real effect among m a comparison of weight w warns about
#: when p <= fdr * w / m). Where a large effect needs the error rate at 20 evaluation participants
#: (bench/sim_power.py, docs/effects.md "What the goals cost each other"): an SMD of 1.0 against ~93 training
#: participants is 4 standard errors out and needs p <= 0.0104 to be found 90 % of the time, a 90/10 label split
#: against 50/50 p <= 0.0045 (Boschloo, exact); the domain classifier's AUC 0.9+ and the dataset's Cramér's V 0.5
#: are 5-6 standard errors out and are found at levels 10-100 times smaller. The label x site test
#: (confound.label_site) has a weight of its own: it is decided on the whole dataset, which may be small (the
#: demo's 24 participants: V 0.68, p 0.0017, not even a warning at the site-mix weight 0.25), and it is the
#: confound the field reports most (patients from one hospital, controls from another). In the simulation's
#: 11-comparison audit these weights give age 0.0070 and each class share 0.0035 (the levels needed by all the
#: large effects add up to more than 0.05: the weights move power between kinds, not the family's error rate).
FAMILY_WEIGHTS: dict[str, float] = {"smd": 2.0, "proportion_difference": 1.0, "auc": 0.25, "cramers_v": 0.25,
                                    "label_site": 1.0}


def _bounds(prefix: str, kind: str) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in EFFECT_BOUNDS[kind].items()}


#: Default thresholds per check id (or per family table shared by several checks: ``shift``).
THRESHOLDS: dict[str, dict[str, Any]] = {
    "confound.label_site": {
        # Cramér's V of site x label decides (bounds below, evidence as every effect: EFFECT_EVIDENCE); the
        # dataset's test joins the audit's Benjamini-Hochberg family when the audit has splits
        **_bounds("v", "cramers_v"),
        "fdr": EFFECT_EVIDENCE["fdr"],
        "alpha_large": EFFECT_EVIDENCE["alpha_large"],
        "accuracy_gain_warning": 0.1,  # evidence only: site alone beats chance by 10 points of balanced accuracy
        "accuracy_gain_error": 0.25,   # ... by 25 points (named in the sentence, no longer deciding)
        "alpha": 0.05,                 # the permutation tests of the site-only rule and the scanner signature
        "epsilon2_warning": 0.08,      # continuous label: medium effect of site (Kruskal-Wallis)
        "epsilon2_error": 0.26,        # continuous label: large effect
        "n_permutations": 200,
        "n_splits": 5,
        "min_subjects": 6,             # fewer participants with label and site: not measured
        "seed": 0,
    },
    "leakage.near_duplicate_image": {
        # candidate stage (coarse, every pair): links pairs for the confirmation stage to decide
        "similarity": 0.90,       # relative fingerprint similarity (cosine after removing the suffix's mean)
        "size_tolerance": 0.04,   # largest |log| ratio of the principal spreads (4 %)
        # adaptive per suffix (audit.checks.content.near_duplicates): searched at the floor, kept when the pairs
        # fit the budget, else raised to the budget's boundary; similarity / size_tolerance above are the ceiling
        "similarity_floor": 0.80,   # IXI: rotations, resampling, bias, noise become candidates (0.90 misses them)
        "size_tolerance_floor": 0.06,
        "candidate_budget": 100,    # pairs a suffix keeps at least ...
        "candidate_budget_per_image": 0.1,  # ... or a tenth of a pair per image (confirmations 0.1-0.5 s each)
        "patch_overlap": 0.5,     # share of the smaller image's voxel patches that the other holds (exact values)
        "spectrum_z": 4.0,        # spectrum pairs (audit.images.spectrum): robust z within the images' neighbourhoods
        "spectrum_budget_fraction": 0.25,  # new spectrum pairs at most this share of the fingerprints' budget
        # mutual nearest neighbours by spectrum z + fingerprint z (audit.images.mutual): at most this many new pairs
        # per image (0: off); IXI: finds the flipped+turned+noised and the 10-degree copies both cuts missed; its
        # search costs about 0.1 s of CPU on 41 clean 1 mm heads (image pass 8 s)
        "mutual_budget_per_image": 0.05,
        # confirmation stage (full resolution, candidate pairs only; audit.images.confirmpairs)
        "confirm_alpha": 0.01,    # chance of one false confirmation among a group's candidate pairs
        "null_pairs": 30,         # random distinct pairs per group with candidates (the group's null)
        "confirm_floor": 0.5,     # lowest threshold (real anatomy: distinct pairs <= 0.29, copies >= 0.57)
        "confirm_cap": 0.993,     # highest threshold: phantoms, distinct up to 0.989, unresampled copies >= 0.997
        "max_confirmations": 2000,  # candidate pairs confirmed at most; the rest are warnings (or copies by patches)
    },
    # shared by every shift.* check: the one multiple-testing family of the audit
    "shift": {
        # weighted Benjamini-Hochberg level over every shift comparison and the label x site test of the audit
        # (EFFECT_EVIDENCE; the weights per kind of effect below, FAMILY_WEIGHTS). When nothing differs, it
        # bounds the chance that the audit warns at all.
        "fdr": EFFECT_EVIDENCE["fdr"],
        "weight_smd": FAMILY_WEIGHTS["smd"],
        "weight_share": FAMILY_WEIGHTS["proportion_difference"],
        "weight_auc": FAMILY_WEIGHTS["auc"],
        "weight_v": FAMILY_WEIGHTS["cramers_v"],
        "weight_label_site": FAMILY_WEIGHTS["label_site"],
        "min_subjects": 3,        # a side with fewer values is not tested
        "max_levels": MAX_LEVELS,  # a text column with more levels is an identifier / free text, not tested
        "equivalence_alpha": 0.05,
        "n_permutations": 2000,   # permutation chi-square for small expected counts
        "seed": 0,
        # "train": each split against the training split (what the model learnt from; the most power);
        # "all": every pair of splits. Without a split named train, every pair.
        "pairs": "train",
        # a large effect is also a warning with an unadjusted p at most this (0: off, the default)
        "alpha_large": EFFECT_EVIDENCE["alpha_large"],
        "ci_evidence": EFFECT_EVIDENCE["ci_evidence"],
    },
    # categorical variables are judged by the largest difference of a class's share (share_*, proportion
    # units), continuous ones by Hedges' g (smd_*); equivalence_margin is the TOST balance margin (SMD)
    "shift.label": {**_bounds("share", "proportion_difference"), **_bounds("smd", "smd"), "equivalence_margin": 0.25},
    "shift.covariate": {**_bounds("share", "proportion_difference"), **_bounds("smd", "smd"),
                        "equivalence_margin": 0.25, "test": "mann-whitney"},
    "shift.acquisition": {**_bounds("share", "proportion_difference"), **_bounds("smd", "smd"),
                          "equivalence_margin": 0.25},
    # the domain classifier's out-of-fold ROC AUC (p-value calibrated by n_permutations label permutations)
    "shift.image": {**_bounds("auc", "auc"), "n_permutations": 200, "n_splits": 5, "ridge_alpha": 10.0,
                    "top_features": 3},
}

#: Threshold names of earlier releases, read for one release: ``{table: {old: new}}`` (``new`` ``None``: the
#: threshold no longer decides anything, and the override is reported as ignored with that reason).
RENAMED_THRESHOLDS: dict[str, dict[str, str | None]] = {
    "confound.label_site": {"cramers_v_warning": "v_moderate", "cramers_v_error": "v_large"},
    **{key: {"smd": "smd_moderate", "cramers_v": None, "wasserstein": None}
       for key in ("shift.label", "shift.covariate", "shift.acquisition")},
    "shift.image": {"auc": "auc_moderate"},
}
