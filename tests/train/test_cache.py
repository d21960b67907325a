"""The tensor cache and the memory budget: entries verified before use, memory bounded by a setting, the CLI.

The cache tests are torch-free; the training ones are marked ``torch``.
"""

from __future__ import annotations

import hashlib
import json
import resource
from pathlib import Path

import numpy as np
import pytest

from audit.errors import InputError
from tests.train.test_gate import _certify
from tests.train.test_train import FAST, SHAPE, VOXEL


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _nifti(path: Path, data: np.ndarray) -> str:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return _sha(path.read_bytes())


# ------------------------------------------------------------------ the cache itself
def test_an_entry_round_trips_memory_mapped_and_read_only(tmp_path):
    from train.tensorcache import TensorCache

    cache = TensorCache(tmp_path)
    arr = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    key = _sha(b"x")
    cache.save(key, "0123456789abcdef", arr, {"source_shape": [4, 5, 6]})
    got, meta = TensorCache(tmp_path).open(key, "0123456789abcdef")
    assert isinstance(got, np.memmap) and not got.flags.writeable
    assert np.array_equal(got, arr) and meta["extra"]["source_shape"] == [4, 5, 6]
    assert np.array_equal(np.load(cache.path(key, "0123456789abcdef")), arr)  # a plain .npy to numpy
    assert TensorCache(tmp_path).open(key, "fedcba9876543210") is None  # other preprocessing: another entry


@pytest.mark.parametrize("damage", ["flip a payload byte", "truncate", "other content's entry", "trailer garbage"])
def test_a_damaged_or_mismatching_entry_is_refused_and_removed(tmp_path, damage):
    from train.tensorcache import TensorCache

    arr = np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 10, 10)
    key, other = _sha(b"a"), _sha(b"b")
    cache = TensorCache(tmp_path)
    path = cache.save(key, "0" * 16, arr)
    raw = bytearray(path.read_bytes())
    if damage == "flip a payload byte":
        raw[200] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[:-100]))
    elif damage == "other content's entry":  # b's entry copied under a's name
        path.write_bytes(TensorCache(tmp_path / "o").save(other, "0" * 16, arr).read_bytes())
    else:
        path.write_bytes(bytes(raw[:-30]) + b"x" * 30)
    fresh = TensorCache(tmp_path)  # a new run: verified on first open
    assert fresh.open(key, "0" * 16) is None
    assert fresh.rejected == 1 and not path.exists() and str(path) in fresh.problems[0]


def test_an_entry_is_verified_once_per_run(tmp_path, monkeypatch):
    from train import tensorcache

    cache = tensorcache.TensorCache(tmp_path)
    key = _sha(b"v")
    cache.save(key, "1" * 16, np.ones((3, 3, 3), np.float32))
    calls = []
    real = tensorcache._checksum
    monkeypatch.setattr(tensorcache, "_checksum", lambda a: calls.append(1) or real(a))
    run = tensorcache.TensorCache(tmp_path)
    for _ in range(3):
        assert run.open(key, "1" * 16) is not None
    assert len(calls) == 1


@pytest.mark.parametrize("text, size", [("512M", 512 * 2**20), ("2G", 2 * 2**30), ("2GiB", 2 * 2**30),
                                        ("64k", 65536), ("100", 100), ("0", 0)])
def test_sizes(text, size):
    from train.tensorcache import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "two gigs", "-1G", "1X"])
def test_a_bad_size_names_the_option(text):
    from train.tensorcache import parse_size

    with pytest.raises(InputError, match="--max-memory"):
        parse_size(text)


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    from train.tensorcache import default_cache_dir

    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "tensors"
    monkeypatch.delenv("BIDSAUDIT_CACHE_DIR")
    assert default_cache_dir().name == "tensors" and "bidsaudit" in str(default_cache_dir())


# ------------------------------------------------------------------ store, bank, budget
def _items(tmp_path: Path, n: int, shape=(12, 14, 10)) -> list:
    from train.items import Item

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        sha = _nifti(tmp_path / f"i{i}.nii", rng.random(shape).astype(np.float32) + i)
        out.append(Item(f"sub-{i:02d}", None, f"i{i}.nii", sha, "0"))
    return out


def test_a_corrupt_cache_file_is_never_used_and_the_volume_is_made_again(tmp_path):
    from train.bank import VolumeBank
    from train.data import Preprocessing, VolumeStore

    items = _items(tmp_path, 3)
    prep = Preprocessing(shape=(8, 8, 8))
    first = VolumeBank(items, VolumeStore(tmp_path, cache_dir=tmp_path / "c", max_memory=0), prep)
    want = [np.array(first[i]) for i in range(3)]
    entries = sorted((tmp_path / "c").glob("v1/*/*.npy"))
    assert len(entries) == 6 and first.store.decoded == 3  # decoded + preprocessed, per image
    target = first.store.cache.path(items[1].sha256, first.digest)
    raw = bytearray(target.read_bytes())
    raw[300] ^= 0x55  # inside the payload
    target.write_bytes(bytes(raw))
    store = VolumeStore(tmp_path, cache_dir=tmp_path / "c", max_memory=0)
    again = VolumeBank(items, store, prep)
    got = [np.array(again[i]) for i in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(want, got))
    assert store.cache.rejected == 1 and "does not match its checksum" in store.problems()[0]
    assert store.decoded == 0  # made again from the verified decoded entry, not the damaged one
    assert target.is_file()  # and written again


def test_memory_stays_within_the_budget_and_the_rest_is_memory_mapped(tmp_path):
    from train.bank import VolumeBank
    from train.data import Preprocessing, VolumeStore
    from train.samples import SampleSet

    items = _items(tmp_path, 10)
    one = 8 * 8 * 8 * 4
    store = VolumeStore(tmp_path, cache_dir=tmp_path / "c", max_memory=3 * one)
    bank = VolumeBank(items, store, Preprocessing(shape=(8, 8, 8)))
    bank.warm()
    assert store.budget.peak <= 3 * one and len(store.budget) == 3
    assert isinstance(bank[9], np.memmap)  # not held: read from the map
    ss = SampleSet(bank, [0] * 10, mode="slice", slice_discard=0)
    for j in range(len(ss)):
        assert ss[j]["image"].shape == (1, 8, 8) and ss[j]["image"].flags.writeable
    assert store.budget.held <= 3 * one
    # no cache: decoded when needed, least recently used out first
    nocache = VolumeStore(tmp_path, max_memory=2 * one)
    bank = VolumeBank(items, nocache, Preprocessing(shape=(8, 8, 8)))
    for i in [0, 1, 2, 0, 3]:
        bank[i]
    assert nocache.budget.peak <= 2 * one + 2 * 12 * 14 * 10 * 4  # decoded volumes count too
    assert nocache.budget.held <= nocache.budget.max_bytes


def test_float16_entries_halve_the_cache_and_stay_close(tmp_path):
    from train.bank import VolumeBank
    from train.data import Preprocessing, VolumeStore

    items = _items(tmp_path, 2)
    prep = Preprocessing(shape=(8, 8, 8))
    a = VolumeBank(items, VolumeStore(tmp_path, cache_dir=tmp_path / "32", max_memory=0), prep)
    b = VolumeBank(items, VolumeStore(tmp_path, cache_dir=tmp_path / "16", max_memory=0, cache_dtype="float16"),
                   prep)
    assert b[0].dtype == np.float16 and a[0].dtype == np.float32 and a.digest != b.digest
    assert np.allclose(a[0], b[0].astype(np.float32), atol=2e-2)
    with pytest.raises(InputError, match="--cache-dtype"):
        VolumeStore(tmp_path, cache_dtype="int8")


def test_workers_get_the_maps_not_the_volumes(tmp_path):
    import pickle

    from train.bank import VolumeBank
    from train.data import Preprocessing, VolumeStore

    items = _items(tmp_path, 4)
    bank = VolumeBank(items, VolumeStore(tmp_path, cache_dir=tmp_path / "c"), Preprocessing(shape=(8, 8, 8)))
    bank.warm()
    assert len(bank.store.budget) == 4
    blob = pickle.dumps(bank)
    assert len(blob) < 4 * 8 * 8 * 8 * 4  # not the volumes
    copy = pickle.loads(blob)
    assert len(copy.store.budget) == 0 and np.array_equal(copy[2], bank[2]) and copy.store.decoded == 4
    assert isinstance(copy[2], np.memmap)  # read from the shared map, decoded no more


def test_clean_removes_entries_only(tmp_path):
    from train.tensorcache import TensorCache, cache_info, clean_cache

    cache = TensorCache(tmp_path)
    for k in (b"1", b"2"):
        cache.save(_sha(k), "2" * 16, np.zeros((4, 4, 4), np.float32))
    (tmp_path / "notes.txt").write_text("mine")
    info = cache_info(tmp_path)
    assert info["entries"] == 2 and info["bytes"] > 2 * 256
    assert clean_cache(tmp_path)["removed"] == 2
    assert cache_info(tmp_path)["entries"] == 0 and (tmp_path / "notes.txt").read_text() == "mine"


def test_cache_commands(tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app
    from train.tensorcache import TensorCache

    TensorCache(tmp_path).save(_sha(b"1"), "3" * 16, np.zeros((4, 4, 4), np.float32))
    runner = CliRunner()
    got = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert got.exit_code == 0 and "1 entries" in got.output and str(tmp_path) in got.output
    got = runner.invoke(app, ["cache", "clean", "--cache-dir", str(tmp_path)])
    assert got.exit_code == 0 and "removed 1 entries" in got.output


# ------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def _small(tmp_path_factory):
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset

    root = tmp_path_factory.mktemp("cache-base")
    make_dataset(root / "dataset", n_subjects=12, seed=3, shape=SHAPE, voxel_size=VOXEL)
    split_dataset(root / "dataset", SplitPlan(label="diagnosis", seed=0), root / "splits", layout="folder")
    _certify(root / "dataset", root / "splits")
    return root


@pytest.mark.torch
def test_training_beyond_the_memory_budget_completes_within_it_and_a_warm_run_decodes_nothing(_small, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from train.api import train_model

    cache = tmp_path / "cache"
    one = 4 * int(np.prod(SHAPE))
    n = len(list((_small / "dataset").glob("sub-*/**/*_T1w.nii*")))
    budget = 3 * one  # the decoded volumes are n/3 times the budget
    kw = dict(FAST, epochs=2, mode="slice", cache_dir=cache, max_memory=budget, echo=lambda s: None)
    cold = train_model(_small / "dataset", _small / "splits", tmp_path / "m1", **kw)
    meta = json.loads((cold.maps / "maps.json").read_text())["summary"]
    assert 0 < meta["volume_memory_peak_bytes"] <= budget and meta["volumes_decoded"] == n
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"\nin-memory budget {budget} B, decoded images {n * one} B, peak held "
          f"{meta['volume_memory_peak_bytes']} B, process peak RSS {rss / 2**20:.0f} MiB (torch included)")
    # a corrupt entry between runs: refused, made again, the same model
    from train.tensorcache import _read_trailer

    entry = next(p for p in sorted(cache.glob("v1/*/*.npy")) if "source_shape" in _read_trailer(p)["extra"])
    raw = bytearray(entry.read_bytes())
    raw[400] ^= 0xFF
    entry.write_bytes(bytes(raw))
    warm = train_model(_small / "dataset", _small / "splits", tmp_path / "m2", **kw)
    meta2 = json.loads((warm.maps / "maps.json").read_text())["summary"]
    assert meta2["volumes_decoded"] == 0 and len(meta2["cache_entries_refused"]) == 1
    assert warm.summary == cold.summary


@pytest.mark.torch
def test_cache_options_on_the_command_line(_small, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from typer.testing import CliRunner

    from audit.cli import app

    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "home-cache"))
    base = ["train", str(_small / "dataset"), "--splits", str(_small / "splits"), "--epochs", "1", "--width", "2",
            "--device", "cpu"]
    runner = CliRunner()
    got = runner.invoke(app, base + ["--output", str(tmp_path / "a"), "--no-cache"])
    assert got.exit_code == 0, got.output
    assert not list((tmp_path / "home-cache").glob("tensors/v1/*/*.npy"))
    got = runner.invoke(app, base + ["--output", str(tmp_path / "b")])  # on by default, in the user cache folder
    assert got.exit_code == 0, got.output
    n = len(list((_small / "dataset").glob("sub-*/**/*_T1w.nii*")))
    assert len(list((tmp_path / "home-cache").glob("tensors/v1/*/*.npy"))) == 2 * n
    got = runner.invoke(app, base + ["--output", str(tmp_path / "c"), "--cache-dir", str(tmp_path / "mine"),
                                     "--cache-dtype", "float16", "--max-memory", "64K"])
    assert got.exit_code == 0, got.output
    assert len(list((tmp_path / "mine").glob("v1/*/*.npy"))) == 2 * n
    for bad, says in ((["--max-memory", "lots"], "--max-memory"), (["--cache-dtype", "int8"], "--cache-dtype")):
        got = runner.invoke(app, base + ["--output", str(tmp_path / "d")] + bad)
        assert got.exit_code == 2 and says in got.output and "Traceback" not in got.output
        assert not (tmp_path / "d").exists()
