"""A command whose optional dependency is missing names the extra to install (exit 2), never an internal error."""

from __future__ import annotations

import sys

import pytest

from audit.errors import EXTRAS, missing_extra
from tests.builders import invoke, make_bids


def _block(monkeypatch, *modules: str) -> None:
    """Make ``import X`` fail for each module (and re-import what imported it)."""
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top in modules or top == "train":
            monkeypatch.delitem(sys.modules, name)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # import raises ModuleNotFoundError(name=m)


def _needs_torch(*args, **kwargs):
    import torch  # noqa: F401 - blocked by the test

    raise AssertionError("torch was importable")


@pytest.mark.parametrize(("command", "target"), [
    pytest.param(["train", "{ds}", "--splits", "{ds}", "--output", "{tmp}/maps"], "train_model", id="train"),
    pytest.param(["predict", "{tmp}/maps", "--data", "{ds}", "--split", "{ds}/participants.tsv"], "predict",
                 id="predict"),
])
def test_without_torch_the_train_extra_is_named(tmp_path, monkeypatch, command, target):
    import train.api

    ds = make_bids(tmp_path / "ds")
    monkeypatch.setattr(train.api, target, _needs_torch)  # the command reaches its first torch import
    monkeypatch.setitem(sys.modules, "torch", None)
    r = invoke(*[a.format(ds=ds, tmp=tmp_path) for a in command])
    assert r.exit_code == 2, r.output
    assert "pip install 'bidsaudit[train]'" in r.output and "internal error" not in r.output, r.output


def test_without_great_expectations_the_expectations_extra_is_named(tmp_path, monkeypatch):
    ds = make_bids(tmp_path / "ds")
    suite = tmp_path / "suite.json"
    suite.write_text('{"name": "s", "expectations": []}')
    _block(monkeypatch, "great_expectations")
    r = invoke("validate", ds, "--no-validator", "--expectations", suite)
    assert r.exit_code == 2, r.output
    assert "bidsaudit[expectations]" in r.output and "internal error" not in r.output, r.output


def test_without_dask_the_scheduler_option_says_so(tmp_path, monkeypatch):
    ds = make_bids(tmp_path / "ds")
    _block(monkeypatch, "dask", "distributed")
    (ds / "splits").mkdir()
    (ds / "splits" / "train.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    (ds / "splits" / "test.tsv").write_text("participant_id\nsub-03\n")
    r = invoke("audit", ds, "--splits", ds / "splits", "--no-validator", "--scheduler", "tcp://127.0.0.1:1")
    assert r.exit_code == 2, r.output
    assert "--scheduler" in r.output and "dask" in r.output and "internal error" not in r.output, r.output


def test_every_extra_named_exists_in_pyproject():
    from pathlib import Path

    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert {e for e in EXTRAS.values() if e is not None} <= set(extras)


def test_an_unknown_missing_module_is_not_mapped():
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert "bidsaudit[service]" in missing_extra(ModuleNotFoundError("x", name="fastapi.routing"))
