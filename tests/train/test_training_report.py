"""The training report (issue #13, point 4): the audit report's styles, CIs, per-epoch curves, the checkpoint,
per-fold columns with mean ± sd, a collapse warning, real settings; and predict --output FILE."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.train.test_train import FAST, _base, _skip_without_torch, case, trained  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def _rules(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [line for line in text[text.index("<style>") + 7:text.index("</style>")].splitlines() if line.strip()]


def test_the_training_report_uses_the_audit_reports_styles():
    audit_rules = set(_rules(ROOT / "reports" / "templates" / "report.html.j2"))
    own = _rules(ROOT / "train" / "templates" / "report.html.j2")
    assert len(own) >= 20 and [r for r in own if r not in audit_rules] == []


def _history(n: int, best: int) -> list[dict[str, str]]:
    return [{"epoch": str(e), "train_loss": str(1.0 - 0.05 * e), "validation_loss": str(abs(e - best) * 0.1 + 0.5),
             "validation_balanced_accuracy": str(0.5 + 0.03 * e)} for e in range(1, n + 1)]


def _meta(folds: list[int]) -> dict:
    return {"status": "complete", "config": {"task": "classification", "model": "conv5fc3", "folds": None,
                                             "lr": 1e-3, "selection": "loss", "shape": None, "mode": "image"},
            "folds": folds, "seeds": [0], "dataset": {"name": "demo"}, "device": "cpu", "tool": {"version": "0"},
            "gate": {}, "summary": {"n_runs": len(folds), "over_runs": {"test": {
                "balanced_accuracy": {"mean": 0.7, "sd": 0.05, "n": len(folds)}}}}}


def _doc(folds: list[int], warnings=()) -> dict:
    runs = [{"fold": f, "seed": 0, "epochs_run": 6, "stopped_early": False, "checkpoint_epoch": 3,
             "history": _history(6, 3), "metrics": {"test": {"balanced_accuracy": {
                 "value": 0.65 + 0.05 * f, "ci_low": 0.4, "ci_high": 0.9}}}} for f in folds]
    return {"runs": runs, "warnings": list(warnings), "selection": "loss", "metric": "balanced_accuracy",
            "folds": folds, "seeds": [0]}


def test_folds_means_cis_checkpoint_and_settings_are_shown():
    from train.report import render_training_report

    html = render_training_report(_meta([0, 1, 2, 3, 4]), None, _doc([0, 1, 2, 3, 4]))
    text = re.sub(r"<[^>]+>", " ", html)
    assert "folds None" not in re.sub(r"\s+", " ", text) and "5 (k-fold: 0, 1, 2, 3, 4)" in text
    assert html.count('class="ci muted"') == 5 and "[0.4, 0.9]" in text
    assert "0.7 ± 0.05" in text and "mean ± sd (5 runs)" in text
    assert "best-loss" in text and "(epoch 3)" in text
    assert html.count('class="chart epoch-curve"') == 10 and html.count('class="checkpoint"') == 10
    assert "None" not in text and "<script" not in html


def test_a_collapsed_model_is_a_warning(tmp_path):
    from train.report import collapsed_predictions, render_training_report

    tsv = tmp_path / "p.tsv"
    tsv.write_text("participant_id\tpredicted_label\nsub-01\tAD\nsub-02\tAD\nsub-03\tAD\n")
    assert collapsed_predictions(tsv) == "AD"
    tsv.write_text("participant_id\tpredicted_label\nsub-01\tAD\nsub-02\tCN\n")
    assert collapsed_predictions(tsv) is None
    html = render_training_report(_meta([0]), None, _doc([0], ["fold 0 seed 0: every test image is predicted 'AD'"]))
    assert "CHECK THE WARNINGS" in html and "every test image is predicted &#39;AD&#39;" in html
    assert 'class="banner fail"' in html


@pytest.mark.torch
def test_a_trained_folder_has_the_full_report_and_predict_writes_a_file(trained, tmp_path):
    from audit.cli import app

    root, _ = trained
    html = (root / "maps" / "report.html").read_text()
    assert 'class="chart epoch-curve"' in html and 'class="ci muted"' in html and "best-loss" in html
    out = tmp_path / "preds.tsv"
    res = CliRunner().invoke(app, ["predict", str(root / "maps"), "--data", str(root / "dataset"), "--split",
                                   str(root / "splits" / "test.tsv"), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and out.read_text().startswith("participant_id\tsession_id\timage\ttrue_label")
    assert json.loads((tmp_path / "preds.metrics.json").read_text())["n_images"] > 0
    again = CliRunner().invoke(app, ["predict", str(root / "maps"), "--data", str(root / "dataset"), "--split",
                                     str(root / "splits" / "test.tsv"), "--output", str(out)])
    assert again.exit_code == 2 and "already holds predictions" in again.output
    csv = tmp_path / "preds.csv"
    assert CliRunner().invoke(app, ["predict", str(root / "maps"), "--data", str(root / "dataset"), "--split",
                                    str(root / "splits" / "test.tsv"), "-o", str(csv)]).exit_code == 0
    assert csv.read_text().startswith("participant_id,session_id,image,true_label")
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
