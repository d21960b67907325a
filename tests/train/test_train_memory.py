"""A whole training run keeps at most its memory budget of volumes: the store's accounting, and nothing outside it.

The store (:class:`train.data.VolumeStore`) accounts for the volumes it keeps
in memory (``budget.held``, ``budget.peak``). These tests check, with
``tracemalloc`` (numpy reports its allocations to it), that between the
stages of a run (after each (fold, seed) is trained and evaluated, and when
the report is written) no other object holds volume-sized arrays: what is
alive in numpy blocks of at least one volume is what the budget holds.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from tests.train.test_gate import _certify
from tests.train.test_train import FAST, SHAPE, VOXEL

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def _data(tmp_path_factory):
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset

    root = tmp_path_factory.mktemp("memory-base")
    make_dataset(root / "dataset", n_subjects=15, seed=4, shape=SHAPE, voxel_size=VOXEL, session_fraction=0.0)
    split_dataset(root / "dataset", SplitPlan(label="diagnosis", seed=0), root / "splits", layout="folder")
    _certify(root / "dataset", root / "splits")
    return root


def _volume_blocks(one: int) -> int:
    """Bytes in live numpy allocations of at least ``one`` byte (volumes, in-memory or copied)."""
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    return sum(t.size for t in snap.traces if t.size >= one)


@pytest.mark.parametrize("no_cache", [False, True], ids=["cache", "no cache"])
def test_the_whole_run_holds_at_most_the_budget_between_stages(_data, tmp_path, monkeypatch, no_cache):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    import train.loop
    import train.run
    from train.api import train_model

    one = 4 * int(np.prod(SHAPE))  # a float32 volume (decoded or preprocessed: the same shape here)
    n = len(list((_data / "dataset").glob("sub-*/**/*_T1w.nii*")))
    budget = 2 * one + one // 2
    assert n * one > 4 * budget  # the images do not fit: the run must work beyond its budget
    seen: list[tuple[str, int, int, int]] = []  # (stage, bytes in volume-sized numpy blocks, held, peak)
    stores = []

    def record(stage: str) -> None:
        store = stores[-1]
        seen.append((stage, _volume_blocks(one), store.budget.held, store.budget.peak))

    real_run, real_report = train.loop.train_run, train.run.write_report

    def train_run(fd, *a, **k):  # type: ignore[no-untyped-def]
        stores.append(fd.arrays["train"][0].store)
        record("fold trained and evaluated (not yet)")
        out = real_run(fd, *a, **k)
        record("fold trained and evaluated")
        return out

    def write_report(maps):  # type: ignore[no-untyped-def]
        record("site analysis and summary written")
        real_report(maps)
        record("report written")

    monkeypatch.setattr(train.loop, "train_run", train_run)
    monkeypatch.setattr(train.run, "write_report", write_report)
    tracemalloc.start()
    try:
        got = train_model(_data / "dataset", _data / "splits", tmp_path / "m", **dict(FAST, epochs=2, mode="image"),
                          cache=not no_cache, cache_dir=tmp_path / "cache", max_memory=budget, echo=lambda s: None)
    finally:
        tracemalloc.stop()
    meta = json.loads((got.maps / "maps.json").read_text())["summary"]
    assert 0 < meta["volume_memory_peak_bytes"] <= budget
    assert [s[0] for s in seen] == ["fold trained and evaluated (not yet)", "fold trained and evaluated",
                                    "site analysis and summary written", "report written"]
    for stage, blocks, held, peak in seen:
        assert held <= peak <= budget, stage
        assert blocks <= held, f"{stage}: {blocks} B of volume-sized arrays alive, the store holds {held} B"
