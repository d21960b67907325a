"""TrainConfig: one frozen record of a run's hyperparameters, its defaults and the resume rule (no torch needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audit.errors import InputError
from train.config import TrainConfig, check_choices, gate_label, given_settings, resolve_config


def test_defaults_are_the_trainers_and_follow_the_task():
    cfg = TrainConfig()
    assert (cfg.task, cfg.label, cfg.model, cfg.epochs, cfg.batch_size, cfg.lr) == (
        "classification", "diagnosis", "conv5fc3", 20, 4, 1e-3)  # issue #13: 1e-4 did not learn on the demo
    assert TrainConfig(task="regression").label == "age"
    assert (TrainConfig(task="segmentation", label="diagnosis").label, TrainConfig(task="segmentation").model) == (
        None, "unet")
    assert TrainConfig(task="reconstruction").model == "autoencoder"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_it_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


def test_given_settings_take_the_config_then_the_keywords_that_are_set(tmp_path):
    given = given_settings(TrainConfig(epochs=3), {"width": 2, "lr": None, "folds": [2, 1],
                                                    "transfer_from": tmp_path})
    assert given["epochs"] == 3 and given["width"] == 2 and given["lr"] == 1e-3
    assert given["folds"] == [1, 2] and given["transfer_from"] == str(Path(tmp_path).resolve())
    assert given_settings(None, {"epochs": 3, "lr": None}) == {"epochs": 3}
    with pytest.raises(TypeError, match="skip_gate"):
        given_settings(None, {"skip_gate": True})


def test_a_new_run_takes_what_was_given_over_the_defaults():
    assert resolve_config({"epochs": 3, "task": "regression"}, None, where="m") == TrainConfig(epochs=3,
                                                                                          task="regression")


def test_resuming_refuses_a_value_that_differs_from_the_stored_one():
    stored = TrainConfig(epochs=5, width=2)
    assert resolve_config({}, stored, where="m") is stored
    assert resolve_config({"epochs": 5}, stored, where="m") is stored
    with pytest.raises(InputError, match=r"epochs=3 \(the folder has 5\)"):
        resolve_config({"epochs": 3}, stored, where="m")


def test_checks_name_the_option():
    with pytest.raises(InputError, match="--task"):
        check_choices({"task": "detection"})
    with pytest.raises(InputError, match="--mode"):
        check_choices({"mode": "voxel"})
    with pytest.raises(InputError, match="--epochs"):
        TrainConfig(epochs=0).check()
    with pytest.raises(InputError, match="need --transfer-from"):
        TrainConfig(freeze="encoder").check()
    TrainConfig().check()


def test_the_gate_reads_the_split_with_the_tasks_label():
    assert gate_label({}, resume=False) == "diagnosis"
    assert gate_label({"task": "regression"}, resume=False) == "age"
    assert gate_label({"task": "segmentation"}, resume=False) is None
    assert gate_label({}, resume=True) is None  # the resumed folder's label is read after the gate


def test_train_model_takes_a_config_and_still_runs_the_gate_first(tmp_path):
    from train.api import train_model

    with pytest.raises(InputError, match="--splits"):
        train_model(tmp_path / "dataset", tmp_path / "nope", tmp_path / "maps", TrainConfig(epochs=1))
    with pytest.raises(InputError, match="--verify"):
        train_model("x", "y", "z", config=TrainConfig(), verify="skip")
    assert not (tmp_path / "maps").exists()
