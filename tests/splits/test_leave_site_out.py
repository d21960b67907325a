"""``split --leave-site-out``: one fold per held-out site, and the trainer's leave-one-site-out report."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.train.test_train import FAST, SHAPE, VOXEL, _skip_without_torch  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def _sites_dataset(tmp_path_factory):
    from audit.synthetic import make_dataset

    root = tmp_path_factory.mktemp("lso")
    make_dataset(root / "dataset", n_subjects=12, seed=3, shape=SHAPE, voxel_size=VOXEL)
    return root


def test_each_fold_holds_out_one_site(_sites_dataset, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.splits import read_splits

    res = CliRunner().invoke(app, ["split", str(_sites_dataset / "dataset"), "--label", "diagnosis",
                                   "--leave-site-out", "--output", str(tmp_path / "lso")])
    assert res.exit_code == 0, res.output
    params = json.loads((tmp_path / "lso" / "split_params.json").read_text())
    assert params["method"] == "leave-site-out"
    assert sorted(params["held_out_sites"].values()) == ["siteA", "siteB", "siteC"]
    assert not (tmp_path / "lso" / "test.tsv").exists()  # no empty test file
    split_set = read_splits(tmp_path / "lso", label="diagnosis")
    site = {}
    for line in (_sites_dataset / "dataset" / "participants.tsv").read_text().splitlines()[1:]:
        cells = line.split("\t")
        site[cells[0]] = cells[4]
    validation = {t.fold: t.subjects() for t in split_set.tables if t.name == "validation"}
    train = {t.fold: t.subjects() for t in split_set.tables if t.name == "train"}
    assert len(validation) == 3
    for f, members in validation.items():
        assert len({site[p] for p in members}) == 1  # one site per fold
        assert not {site[p] for p in train[f]} & {site[p] for p in members}  # none of it in training
    assert set().union(*validation.values()) == set(site)


def test_one_site_is_refused(tmp_path):
    from audit.splits.plan import SplitError
    from audit.splits.sitefolds import leave_site_out_result

    with pytest.raises(SplitError, match="two sites"):
        leave_site_out_result({"sub-1": "A", "sub-2": "A"}, {"sub-1": "x", "sub-2": "y"}, source="t")


@pytest.mark.torch
def test_trainer_reports_leave_one_site_out_beside_pooled(_sites_dataset, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from audit.splits.sitefolds import split_by_site
    from tests.train.test_gate import _certify
    from train.api import train_model

    monkeypatch.delenv("BIDSAUDIT_SIGNING_KEY", raising=False)
    shutil.copytree(_sites_dataset / "dataset", tmp_path / "dataset")
    split_by_site(tmp_path / "dataset", tmp_path / "lso", label="diagnosis")
    _certify(tmp_path / "dataset", tmp_path / "lso")
    train_model(tmp_path / "dataset", tmp_path / "lso", tmp_path / "maps", epochs=1, echo=lambda _: None, **FAST)
    doc = json.loads((tmp_path / "maps" / "site_results.json").read_text())
    assert len(doc["leave_site_out"]) == 3  # one held-out site (the scanner, from the sidecars) per fold
    html = (tmp_path / "maps" / "report.html").read_text()
    assert "Leave one site out" in html and "pooled" in html


def test_a_group_across_sites_is_refused(_sites_dataset, tmp_path):
    from audit.splits.plan import SplitError
    from audit.splits.sitefolds import split_by_site

    shutil.copytree(_sites_dataset / "dataset", tmp_path / "dataset")
    part = tmp_path / "dataset" / "participants.tsv"
    lines = part.read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    site_of = {r[0]: r[4] for r in rows}
    a = next(p for p, s in site_of.items() if s == "siteA")
    b = next(p for p, s in site_of.items() if s == "siteB")
    fam = {p: ("fam1" if p in (a, b) else p) for p in site_of}
    part.write_text("\n".join([lines[0] + "\tfamily"] + [line + "\t" + fam[line.split("\t")[0]]
                                                          for line in lines[1:]]) + "\n")
    with pytest.raises(SplitError, match="span several sites"):
        split_by_site(tmp_path / "dataset", tmp_path / "lso", label="diagnosis", group="family")
    assert not (tmp_path / "lso").exists()
