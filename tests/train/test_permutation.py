"""The permutation test of the trained pipeline: files, p-value, the verdict on a planted leak and a clean run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.errors import InputError
from tests.train.test_train import FAST, _base, _skip_without_torch, case  # noqa: F401  (fixtures)


# ------------------------------------------------------------ torch-free parts
def test_p_value_is_scikit_learns_definition():
    from train.permutation import permutation_p_value

    assert permutation_p_value(0.9, [0.5] * 19) == pytest.approx(1 / 20)
    assert permutation_p_value(0.5, [0.5] * 19) == pytest.approx(1.0)  # ties count against the model
    assert permutation_p_value(None, [0.5]) is None


def test_null_verdict_needs_mean_above_chance_beyond_its_spread():
    from train.permutation import null_verdict

    assert null_verdict([0.9, 0.95, 1.0, 0.92], 0.5)["leaking"]
    noisy = null_verdict([1.0, 0.0, 1.0, 0.0, 0.5], 0.5)  # wide spread around chance
    assert not noisy["leaking"] and noisy["lower_bound"] < 0.5
    assert not null_verdict([0.52, 0.53, 0.52, 0.53], 0.5)["leaking"]  # consistent but below MIN_EFFECT
    assert not null_verdict([1.0], 0.5)["leaking"]  # one run: no spread to judge


def test_labels_are_permuted_per_participant_across_splits():
    from train.items import Item
    from train.permutation import permuted_items

    items = {"train": [Item(f"sub-{i}", s, f"{i}{s}", "", "AD" if i < 5 else "CN") for i in range(10)
                       for s in ("ses-1", "ses-2")],
             "validation": [Item(f"sub-{i}", None, f"{i}", "", "AD" if i % 2 else "CN") for i in range(10, 14)]}
    out = permuted_items(items, np.random.default_rng(1))
    for its in out.values():
        by_pid: dict[str, set] = {}
        for it in its:
            by_pid.setdefault(it.participant_id, set()).add(it.label)
        assert all(len(v) == 1 for v in by_pid.values())  # sessions of one participant keep one label
    before = sorted(i.label for s in items.values() for i in s if i.session_id != "ses-2")
    after = sorted(i.label for s in out.values() for i in s if i.session_id != "ses-2")
    assert before == after
    assert [i.label for i in out["train"]] != [i.label for i in items["train"]]


def test_permutation_option_is_checked_before_training():
    from train.permutation import check_permutation_option

    with pytest.raises(InputError, match="--permutation-test"):
        check_permutation_option(-1, "classification")
    with pytest.raises(InputError, match="no labels to shuffle"):
        check_permutation_option(3, "segmentation")
    check_permutation_option(0, "segmentation")


# ------------------------------------------------------------ end to end (torch)
def _leaky_train_run(real):
    """A custom loader that copies every validation image, with its label, into the training set (test-only)."""

    def leaky(fd, cfg, run_dir, **kw):
        from train.loop import FoldData

        v, t, m = fd.arrays["train"]
        vv, vt, _ = fd.arrays["validation"]
        copies = 8  # slices of a brain: several samples of each validation image
        out = FoldData(fd.fold, fd.items, fd.prep, dict(fd.arrays))
        out.arrays["train"] = (np.concatenate([v, *[vv] * copies]), list(t) + list(vt) * copies, m)
        return real(fd=out, cfg=cfg, run_dir=run_dir, **kw)

    return leaky


@pytest.mark.torch
def test_clean_run_is_not_flagged_and_writes_the_files(case):
    from train.api import train_model

    s = train_model(case / "dataset", case / "splits", case / "maps", epochs=2, permutation_test=3,
                    echo=lambda _: None, **FAST)
    doc = json.loads((case / "maps" / "permutation_test.json").read_text())
    rows = (case / "maps" / "permutation_test.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["permutation", "fold", "split", "metric", "score", "epochs"]
    assert len(rows) == 1 + 3 * len(doc["splits"])
    assert doc["metric"] == "balanced_accuracy" and doc["chance"] == 0.5 and doc["n_permutations"] == 3
    assert not doc["leaking"] and doc["findings"] == [] and s.findings == []
    assert all(len(d["null"]) == 3 and 0.25 <= d["p_value"] <= 1 for d in doc["splits"].values())
    assert not (case / "maps" / ".permutation-work").exists()
    assert s.permutation is not None and "no leak found" in "\n".join(s.lines())


@pytest.mark.torch
def test_planted_leak_is_caught(case, monkeypatch):
    import train.loop
    from train.api import train_model

    monkeypatch.setattr(train.loop, "train_run", _leaky_train_run(train.loop.train_run))
    s = train_model(case / "dataset", case / "splits", case / "maps", epochs=10, permutation_test=4, augment=False,
                    lr=3e-3, echo=lambda _: None, **{**FAST, "width": 4})
    doc = json.loads((case / "maps" / "permutation_test.json").read_text())
    assert doc["leaking"] and "validation" in doc["leaking_splits"], doc["splits"]
    assert [f["check"] for f in doc["findings"]] == ["leakage.pipeline"] == [f["check"] for f in s.findings]
    assert doc["findings"][0]["severity"] == "error"
    assert doc["splits"]["validation"]["verdict"]["lower_bound"] > 0.5


@pytest.mark.torch
def test_a_leaking_verdict_exits_1_and_is_kept_in_the_model_folder(case, monkeypatch):
    from typer.testing import CliRunner

    import train.permutation
    from audit.cli import app

    real = train.permutation.null_verdict
    monkeypatch.setattr(train.permutation, "null_verdict", lambda null, chance, **kw: {
        **real(null, chance, **kw), "leaking": True, "mean": 0.9, "sd": 0.01, "lower_bound": 0.89})
    res = CliRunner().invoke(app, ["train", str(case / "dataset"), "--splits", str(case / "splits"), "--output",
                                   str(case / "maps"), "--epochs", "1", "--width", "2", "--device", "cpu",
                                   "--permutation-test", "2"])
    assert res.exit_code == 1, res.output
    assert "LEAKING" in res.output
    meta = json.loads((case / "maps" / "maps.json").read_text())
    assert meta["status"] == "complete" and meta["findings"][0]["check"] == "leakage.pipeline"
    assert "leakage.pipeline" in (case / "maps" / "report.html").read_text()


@pytest.mark.torch
def test_regression_permutation_uses_r2_against_zero(case):
    from train.api import train_model

    s = train_model(case / "dataset", case / "splits", case / "maps", task="regression", label="age", epochs=1,
                    permutation_test=2, echo=lambda _: None, **FAST)
    doc = json.loads((case / "maps" / "permutation_test.json").read_text())
    assert doc["metric"] == "r2" and doc["chance"] == 0.0
    assert all(len(d["null"]) == 2 for d in doc["splits"].values())
    assert s.permutation["metric"] == "r2"
