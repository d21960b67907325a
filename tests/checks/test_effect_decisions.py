"""Decisions by effect size, end to end: large shifts warn at 20 test participants, tiny ones never do.

The issue "Verdicts a CI can trust" (items 3 and 4): a perfectly separable
image shift and a 50/50 vs 90/10 label shift with 20 test participants are
warnings worded "large, uncertain with n = ..."; a tiny effect with 100,000
participants is not a warning however small its p-value; findings keep
their effect size with its interval, the JSON result still validates, and
the report shows each effect with its interval and the label mix.
"""

from __future__ import annotations

import json
from types import MappingProxyType

import numpy as np
import pytest

from audit.context import AuditContext, AuditOptions
from audit.runner import run_checks
from audit.splits import SplitRow, SplitSet, SplitTable
from tests.builders import make_bids, write_image

N_TRAIN, N_TEST = 60, 20


def _write_splits(folder, assign, diagnosis):
    folder.mkdir(parents=True, exist_ok=True)
    for name, pids in assign.items():
        lines = ["participant_id\tdiagnosis"] + [f"sub-{p}\t{diagnosis[p]}" for p in pids]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """60 train participants (30 AD / 30 CN), 20 test (18 AD / 2 CN) whose images are 4x brighter."""
    from audit.api import audit_splits

    tmp = tmp_path_factory.mktemp("effects")
    train = [f"{i:03d}" for i in range(1, N_TRAIN + 1)]
    test = [f"{i:03d}" for i in range(N_TRAIN + 1, N_TRAIN + N_TEST + 1)]
    diagnosis = {p: "AD" if i % 2 else "CN" for i, p in enumerate(train)}
    diagnosis.update({p: "AD" if i < 18 else "CN" for i, p in enumerate(test)})
    rng = np.random.default_rng(0)
    rows = {p: {"age": f"{rng.normal(70, 7):.1f}", "sex": "MF"[i % 2], "diagnosis": diagnosis[p]}
            for i, p in enumerate(train + test)}
    ds = make_bids(tmp / "ds", train + test, participants=rows)
    for i, p in enumerate(test):  # a different scanner gain: perfectly separable on intensity
        data = np.random.default_rng(1000 + i).normal(400, 80, size=(8, 9, 10)).astype(np.float32)
        write_image(ds / f"sub-{p}" / "anat" / f"sub-{p}_T1w.nii.gz", data)
    sp = tmp / "splits"
    _write_splits(sp, {"train": train, "test": test}, diagnosis)
    result = audit_splits(ds, sp, AuditOptions(label="diagnosis", run_validator=False, workers=1))
    return result


def _warning(result, check):
    found = [f for f in result.findings if f.check == check and f.severity == "warning"]
    assert found, [(f.check, f.severity, f.message) for f in result.findings if f.check.startswith("shift")]
    return found[0]


def test_ninety_ten_label_split_of_twenty_is_a_large_uncertain_warning(shifted):
    f = _warning(shifted, "shift.label")
    worst = f.evidence["worst"]
    es, d = worst["effect_size"], worst["decision"]
    assert es["kind"] == "proportion_difference" and es["estimate"] == pytest.approx(0.4)
    assert es["ci"][0] < 0.25 < es["ci"][1] and es["n"] == [N_TRAIN, N_TEST]  # large, but uncertain
    assert d["magnitude"] == "large" and d["warning"] and d["uncertain"]
    assert "large, uncertain with n = 60 and 20" in f.message and "95% CI" in f.message
    assert worst["test"] == "boschloo_exact" and worst["p_value"] < 0.005
    mix = worst["label_mix"]
    assert mix["shares"]["test"]["AD"] == 0.9 and mix["majority_accuracy"]["test"] == 0.9
    assert "always predicting AD scores accuracy 0.50 on train and 0.90 on test" in f.message


def test_perfectly_separable_image_shift_at_twenty_is_a_warning(shifted):
    f = _warning(shifted, "shift.image")
    es, d = f.evidence["effect_size"], f.evidence["decision"]
    assert es["kind"] == "auc" and es["estimate"] > 0.99 and es["ci"][0] > 0.8
    assert es["p_value"] < 1e-4  # no permutation floor (1/201 before)
    assert d["magnitude"] == "large" and d["warning"]
    assert "ROC AUC 1.00 (95% CI" in f.message and "driven by" in f.message


def test_result_validates_and_the_report_shows_effects_with_intervals(shifted):
    import jsonschema

    from reports.render import render_report
    from schemas import json_schema

    data = json.loads(shifted.to_json())
    jsonschema.validate(data, json_schema("result"))
    html = render_report(data)
    assert 'class="effects"' in html and "class-share difference" in html and "ROC AUC" in html
    assert "large, uncertain" in html and "effect sizes with 95% confidence intervals" in html
    assert 'class="labelmix"' in html and "always predicting AD: accuracy" in html


def _reviewer_split(assign, columns):
    tables = []
    for name, pids in assign.items():
        rows = [SplitRow(p, None, None, f"{name}.tsv", i + 2, MappingProxyType({c: v[p] for c, v in columns.items()}))
                for i, p in enumerate(pids)]
        tables.append(SplitTable(name, None, f"{name}.tsv", rows, columns=["participant_id", *columns]))
    return SplitSet(format="folder", root="", files=tuple(t.path for t in tables), tables=tuple(tables))


def test_tiny_effect_at_large_n_is_not_a_warning():
    rng = np.random.default_rng(3)
    n_train, n_test = 80_000, 20_000
    pids = [f"sub-{i:06d}" for i in range(n_train + n_test)]
    age = np.r_[rng.normal(70, 7, n_train), rng.normal(70 + 0.06 * 7, 7, n_test)]  # SMD 0.06
    splits = _reviewer_split({"train": pids[:n_train], "test": pids[n_train:]},
                             {"age": {p: f"{a:.2f}" for p, a in zip(pids, age)}})
    ctx = AuditContext(options=AuditOptions(check_images=False, workers=1), splits=splits)
    findings, _ = run_checks(ctx, ("shift",))
    assert not [f for f in findings if f.severity in ("warning", "error")]
    (summary,) = [f for f in findings if f.check == "shift.covariate"]
    (rec,) = summary.evidence["tests"]
    assert rec["p_value"] < 1e-6 and rec["p_adjusted"] < 1e-6  # overwhelmingly "significant" ...
    assert rec["magnitude"] == "negligible" and not rec["flagged"]  # ... and negligible: not a warning
    assert rec["effect_size"]["ci"][1] < 0.2 and "not a warning" in rec["decision"]["wording"]


def test_family_level_is_the_weighted_share_of_fdr():
    """The detectable-shift sentence uses the level a lone effect of a kind really gets (weights rescaled)."""
    from audit.checks.shift_family import ShiftFamily, family_level

    def rec(check, kind, p=0.5):
        return {"check": check, "effect_size": {"kind": kind}, "p_value": p}

    records = [rec("shift.covariate", "smd"), rec("shift.covariate", "smd"), rec("shift.label", "proportion_difference"),
               rec("shift.image", "auc"), rec("shift.image", "auc", None), rec("confound.label_site", "cramers_v")]
    shared = {"fdr": 0.05, "weight_smd": 3, "weight_share": 1, "weight_auc": 0.5, "weight_label_site": 1.5}
    fam = ShiftFamily(records, [], [], {"shift": shared}, [], {}, 1)
    # five tests with a p-value: weights 3, 3, 1, 0.5, 1.5 (mean 1.8)
    assert family_level(fam, "smd") == pytest.approx(0.05 * 3 / (1.8 * 5))
    assert family_level(fam, "auc") == pytest.approx(0.05 * 0.5 / (1.8 * 5))
    assert family_level(fam, "label_site") == pytest.approx(0.05 * 1.5 / (1.8 * 5))
