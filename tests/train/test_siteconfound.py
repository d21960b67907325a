"""Per-site results and the prediction-site test (partial confounder test) of a trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.train.test_train import FAST, _base, _skip_without_torch, case  # noqa: F401  (fixtures)


def _predictions(confounded: bool, n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    site = np.tile(["siteA", "siteB", "siteC"], n // 3)
    score = 0.3 + 0.4 * y + rng.normal(0, 0.1, n)
    if confounded:  # the model reads siteA's signature on top of the label
        score = score + 0.25 * (site == "siteA")
    return y, score, site


def test_site_driven_predictions_are_flagged_and_label_driven_ones_are_not():
    from train.siteconfound import partial_confound_test

    driven = partial_confound_test(*_predictions(True), categorical_y=True, n_perm=300)
    clean = partial_confound_test(*_predictions(False), categorical_y=True, n_perm=300)
    assert driven["site_driven"] and driven["p_value"] < 0.01 and driven["partial_r2"] > 0.3
    assert not clean["site_driven"] and clean["p_value"] > 0.05
    assert 1 / 301 <= driven["p_value"] <= 1


def test_label_explained_site_difference_is_not_a_site_effect():
    """Sites differ in their label mix (a confounded dataset) but the model reads only the label: no warning."""
    from train.siteconfound import partial_confound_test

    rng = np.random.default_rng(0)
    site = np.repeat(["siteA", "siteB"], 40)
    y = np.where(site == "siteA", rng.random(80) < 0.85, rng.random(80) < 0.15).astype(int)
    score = y + rng.normal(0, 0.2, 80)
    res = partial_confound_test(y, score, site, categorical_y=True, n_perm=300)
    assert not res["site_driven"]


def test_regression_labels_are_stratified_by_quintile():
    from train.siteconfound import partial_confound_test

    rng = np.random.default_rng(1)
    y = rng.normal(70, 8, 90)
    site = np.tile(["A", "B", "C"], 30)
    res = partial_confound_test(y, y + 5.0 * (site == "B") + rng.normal(0, 1, 90), site, categorical_y=False,
                                n_perm=200)
    assert res["site_driven"]
    one_site = partial_confound_test(y, y, ["A"] * 90, categorical_y=False)
    assert one_site["p_value"] is None and "two sites" in one_site["reason"]


def test_leave_site_out_is_recognised_from_the_validation_sites():
    from train.siteconfound import leave_site_out

    sites = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    rows = [{"_split": "validation", "_fold": 0, "image": "a1", "participant_id": "x"},
            {"_split": "validation", "_fold": 0, "image": "a2", "participant_id": "x"},
            {"_split": "validation", "_fold": 1, "image": "b1", "participant_id": "y"},
            {"_split": "test", "_fold": 1, "image": "c1", "participant_id": "z"}]
    assert leave_site_out(rows, sites) == {0: "A", 1: "B"}
    rows[1]["image"] = "b1"
    assert leave_site_out(rows, sites) is None


@pytest.mark.torch
def test_training_writes_per_site_results_and_the_site_test(case):
    from train.api import train_model

    train_model(case / "dataset", case / "splits", case / "maps", epochs=1, echo=lambda _: None, **FAST)
    pc = json.loads((case / "maps" / "prediction_confound.json").read_text())
    assert pc["site_source"].startswith("sidecars") and pc["n"] > 0 and "partial_r2" in pc
    rows = (case / "maps" / "summary.tsv").read_text().splitlines()
    assert rows[0].split("\t")[-1] == "site"
    sites = {r.split("\t")[-1] for r in rows[1:]}
    assert "all" in sites and len(sites) >= 2
    per_site = [r.split("\t") for r in rows[1:] if r.split("\t")[-1] != "all"]
    assert any(r[3] == "balanced_accuracy" for r in per_site)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("confounded", [True, False], ids=["confounded", "balanced"])
def test_confounded_dataset_warns_and_balanced_one_does_not(tmp_path, monkeypatch, confounded):
    """Synthetic phantoms: each site has its own contrast and noise; confounded: diagnosis tied to site (85 %)."""
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset
    from tests.train.test_gate import _certify
    from train.api import train_model

    monkeypatch.delenv("BIDSAUDIT_SIGNING_KEY", raising=False)
    make_dataset(tmp_path / "dataset", n_subjects=30, seed=5, shape=(16, 20, 16), voxel_size=(12.0, 12.0, 12.0),
                 confounded=confounded, confound_strength=0.85)
    split_dataset(tmp_path / "dataset", SplitPlan(label="diagnosis", seed=0, test_size=0.3, val_size=0.3),
                  tmp_path / "splits", layout="folder")
    _certify(tmp_path / "dataset", tmp_path / "splits")
    train_model(tmp_path / "dataset", tmp_path / "splits", tmp_path / "maps", epochs=6, norm="image", width=4,
                batch_size=4, lr=3e-3, bootstrap=50, device="cpu", threads=1, progress=False, echo=lambda _: None)
    pc = json.loads((tmp_path / "maps" / "prediction_confound.json").read_text())
    assert pc["site_driven"] is confounded, pc
    assert ("warning" in pc) is confounded
    html = (tmp_path / "maps" / "report.html").read_text()
    assert ("train.prediction_site" in html) is confounded


def test_report_sections_escape_site_names_and_draw_the_null(tmp_path):
    from train.report import render_training_report
    from train.reportproofs import proofs_document

    bad = "<script>alert(1)</script>"
    (tmp_path / "site_results.json").write_text(json.dumps({"source": bad, "per_site": {"test": {bad: {
        "n_images": 2, "n_participants": 2, "metrics": {"balanced_accuracy": {"value": 0.5, "ci_low": 0.0,
                                                                               "ci_high": 1.0}}}}}}))
    (tmp_path / "prediction_confound.json").write_text(json.dumps({
        "test": "t", "site_source": bad, "n": 2, "splits": ["test"], "score": "p", "p_value": 0.001,
        "partial_r2": 0.5, "site_driven": True, "warning": bad, "n_perm": 10}))
    (tmp_path / "permutation_test.json").write_text(json.dumps({
        "metric": "balanced_accuracy", "chance": 0.5, "n_permutations": 3, "shuffle": bad, "leaking": False,
        "splits": {"validation": {"real": 0.9, "null": [0.5, 0.4, 0.6], "p_value": 0.25,
                                  "verdict": {"mean": 0.5, "sd": 0.1, "lower_bound": 0.33, "rule": "r"}}}}))
    meta = {"status": "complete", "config": {"task": "classification"}}
    html = render_training_report(meta, None, {"meta": meta, "runs": [], "warnings": [],
                                               "proofs": proofs_document(tmp_path)})
    assert bad not in html and "&lt;script&gt;" in html
    assert 'class="chart null-distribution"' in html and 'class="real"' in html
    assert "train.prediction_site" in html and "Per-site results" in html
