"""The catalogue of check ids and configurable thresholds: plain data read by the configuration and the checks.

The configuration (:mod:`audit.config`) validates a ``bidsaudit.toml``
against it without importing any check; each check family declares its
thresholds by naming its entry here (``@check(..., thresholds=THRESHOLDS[id])``),
and :func:`audit.checks.registry.check` refuses, once at import, a check id
or a threshold table that is not in this catalogue. Override any threshold in
``bidsaudit.toml``: ``[thresholds."shift.covariate"] smd = 0.3``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHECK_IDS", "CONTRACT_CHECK_IDS", "MAX_LEVELS", "THRESHOLDS"]

#: Check ids of the contract (``contract.md``, "Check ids"): valid in a
#: configuration whatever is registered.
CONTRACT_CHECK_IDS = frozenset({
    "bids.invalid", "bids.warning", "bids.unindexed_file", "quality.corrupt_image", "quality.empty_image",
    "quality.inconsistent_geometry", "quality.missing_label", "quality.missing_metadata",
    "quality.absent_images", "quality.participants_table", "quality.unreadable_file", "expectations.failed",
    "split.unknown_subject", "split.unassigned_subject", "split.identical_folds", "split.fold_integrity",
    "quality.label_conflict", "leakage.subject_overlap", "leakage.session_overlap", "leakage.duplicate_image",
    "leakage.near_duplicate_image", "leakage.group_overlap", "leakage.pretrain_overlap",
    "leakage.no_test_split", "confound.label_site", "shift.label", "shift.covariate", "shift.acquisition",
    "shift.image",
})
#: Every check id a check may register under and a configuration may name.
CHECK_IDS = CONTRACT_CHECK_IDS

#: A text column with more levels is an identifier or free text, not a category to compare.
MAX_LEVELS = 20

#: Default thresholds per check id (or per family table shared by several checks: ``shift``).
THRESHOLDS: dict[str, dict[str, Any]] = {
    "confound.label_site": {
        "alpha": 0.05,                 # significance of the association test and of the permutation test
        # Rea & Parker (1992): V 0.2-0.4 moderate, 0.4-0.6 relatively strong (0.2 is also Deepchecks' limit)
        "cramers_v_warning": 0.2,
        "cramers_v_error": 0.4,
        "accuracy_gain_warning": 0.1,  # site alone beats chance by 10 points of balanced accuracy
        "accuracy_gain_error": 0.25,   # ... by 25 points (75 % balanced accuracy on two classes)
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
        "patch_overlap": 0.5,     # share of the smaller image's voxel patches that the other holds (exact values)
        # confirmation stage (full resolution, candidate pairs only; audit.images.confirmpairs)
        "confirm_alpha": 0.01,    # chance of one false confirmation among a group's candidate pairs
        "null_pairs": 30,         # random distinct pairs per group with candidates (the group's null)
        "confirm_floor": 0.5,     # lowest threshold (real anatomy: distinct pairs <= 0.29, copies >= 0.57)
        "confirm_cap": 0.993,     # highest threshold: phantoms, distinct up to 0.989, unresampled copies >= 0.997
        "max_confirmations": 2000,  # candidate pairs confirmed at most; the rest are warnings (or copies by patches)
    },
    # shared by every shift.* check: the one multiple-testing family of the audit
    "shift": {
        # Benjamini-Hochberg false discovery rate over every shift test of the audit. When nothing differs,
        # BH at q bounds the chance of any false discovery by q, and with 300 participants (where the effect
        # thresholds rarely bind) the measured per-audit rate sits at q itself (5.2 % of 1,000 audits at
        # q = 0.05): 0.025 keeps false alarms well under 5 % (bench/sim_false_alarms.py).
        "fdr": 0.025,
        "min_subjects": 3,        # a side with fewer values is not tested
        "max_levels": MAX_LEVELS,  # a text column with more levels is an identifier / free text, not tested
        "equivalence_alpha": 0.05,
        "n_permutations": 2000,   # permutation chi-square for small expected counts
        "seed": 0,
        # "train": each split against the training split (what the model learnt from; the most power);
        # "all": every pair of splits. Without a split named train, every pair.
        "pairs": "train",
    },
    # prevalence shift: Cohen's "small-to-medium" standardised difference; Deepchecks' label drift limit for V
    "shift.label": {"smd": 0.25, "cramers_v": 0.15, "wasserstein": 0.3, "equivalence_margin": 0.25},
    # Stuart (2010): |SMD| > 0.25 is an imbalance worth reporting; Deepchecks' V limit 0.2
    "shift.covariate": {"smd": 0.25, "cramers_v": 0.2, "wasserstein": 0.3, "equivalence_margin": 0.25,
                        "test": "mann-whitney"},
    "shift.acquisition": {"smd": 0.25, "cramers_v": 0.2, "wasserstein": 0.3, "equivalence_margin": 0.25},
    # Deepchecks' domain-classifier drift limit 0.25 is AUC 0.625; 0.7 (drift 0.4) for small test sets
    "shift.image": {"auc": 0.7, "n_permutations": 200, "n_splits": 5, "ridge_alpha": 10.0, "top_features": 3},
}
