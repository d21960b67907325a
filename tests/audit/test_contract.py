"""Contract tests run over every registered check (after scikit-learn's common tests)."""

from __future__ import annotations

import re

import pytest

from audit.checks.registry import all_checks
from audit.context import AuditContext
from audit.findings import SEVERITIES
from audit.runner import run_checks

CONTRACT_IDS = {
    "bids.invalid": "error", "bids.warning": "warning", "quality.corrupt_image": "error",
    "quality.empty_image": "error", "quality.inconsistent_geometry": "warning", "quality.missing_label": "warning",
    "quality.missing_metadata": "warning", "split.unknown_subject": "error", "split.unassigned_subject": "info",
    "split.identical_folds": "warning", "split.fold_integrity": "warning", "quality.label_conflict": "error",
    "leakage.subject_overlap": "error", "leakage.session_overlap": "error", "leakage.duplicate_image": "error",
    "leakage.near_duplicate_image": "error", "leakage.group_overlap": "error", "leakage.pretrain_overlap": "error",
    "leakage.no_test_split": "warning", "leakage.pipeline": "error", "confound.label_site": "error", "shift.label": "warning",
    "shift.covariate": "warning", "shift.acquisition": "warning", "shift.image": "warning",
}
SPECS = list(all_checks().values())


@pytest.mark.parametrize("spec", SPECS, ids=[s.id + ":" + s.func.__name__ for s in SPECS])
def test_registered_check_is_well_formed(spec):
    assert re.fullmatch(r"(bids|quality|split|leakage|confound|shift|expectations)\.[a-z_]+", spec.id)
    assert spec.default in SEVERITIES
    if spec.id in CONTRACT_IDS:
        assert spec.default == CONTRACT_IDS[spec.id], "default severity differs from the contract"
    assert spec.title and spec.func.__doc__


def test_empty_context_runs_and_skips_with_reasons():
    findings, skipped = run_checks(AuditContext())
    assert findings == []
    assert {s["check"] for s in skipped} == {s.id for s in SPECS}
    assert all(s["reason"] for s in skipped)
