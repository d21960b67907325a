"""bidsaudit split: splits that cannot leak (audit/splits/: plan, folds, search, balance, making, write)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.errors import InputError
from audit.splits import (
    PARAMS_FILE,
    SplitError,
    SplitPlan,
    SplitResult,
    make_splits,
    split_dataset,
    summary,
    write_splits,
)
from audit.splits.folds import sgkf as _sgkf
from audit.splits.folds import sgkf_batch as _sgkf_batch
from tests.builders import make_bids

FAST = 8  # tries per stage in tests that do not look at balance


def table(n: int = 60, *, seed: int = 0, classes: tuple[str, ...] = ("AD", "CN"), sites: int = 3,
          groups: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dx = [classes[i % len(classes)] for i in range(n)]
    data = {
        "participant_id": [f"sub-{i:03d}" for i in range(n)],
        "diagnosis": dx,
        "age": [str(int(a)) for a in rng.normal(70, 8, n).round()],
        "sex": list(rng.choice(["M", "F"], n)),
        "site": list(rng.choice([f"site{chr(65 + s)}" for s in range(sites)], n)),
    }
    if groups:
        data["family"] = [f"fam{int(g)}" for g in rng.integers(0, groups, n)]
    return pd.DataFrame(data)


def check_partition(result: SplitResult, labelled: set[str]) -> None:
    """Disjoint, covering, test held out; k-fold: validation folds disjoint and covering the pool."""
    sets = result.splits()
    assert set(result.assignments) == labelled
    assert result.test == sets["test"] and result.test
    if not result.kfold:
        tr, va, te = sets["train"], sets["validation"], sets["test"]
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == labelled
        assert tr and va
    else:
        pool = labelled - result.test
        vals = [sets[f"split-{i}/validation"] for i in range(len(result.folds))]
        for i, fold in enumerate(result.folds):
            assert set(fold) == pool
            assert sets[f"split-{i}/train"] | vals[i] == pool
            assert not sets[f"split-{i}/train"] & vals[i]
        assert sum(len(v) for v in vals) == len(pool) and set().union(*vals) == pool


def groups_together(result: SplitResult, df: pd.DataFrame, column: str) -> None:
    fam = dict(zip(df["participant_id"], df[column]))
    views = [result.assignments] + [dict(f) for f in result.folds]
    for view in views:
        where: dict[str, set[str]] = {}
        for pid, split in view.items():
            where.setdefault(fam[pid], set()).add(split)
        assert all(len(v) == 1 for v in where.values()), where


def classes_everywhere(result: SplitResult, df: pd.DataFrame) -> None:
    dx = dict(zip(df["participant_id"], df["diagnosis"]))
    every = set(dx.values())
    for name, members in result.splits().items():
        assert {dx[p] for p in members} == every, name


# --------------------------------------------------------------------------- the splitter itself
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", range(4))
def test_fold_assignment_is_sklearns_stratified_group_kfold(seed):
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(seed)
    for trial in range(12):
        n = int(rng.integers(12, 150))
        k = int(rng.integers(2, 11))
        y = rng.integers(0, int(rng.integers(2, 4)), n)
        g = rng.integers(0, int(rng.integers(k, n + 1)), n) if trial % 2 else np.arange(n)
        if len(np.unique(g)) < k or np.all(np.bincount(y) < k):
            continue
        states = [int(v) for v in rng.integers(0, 2**32 - 1, 3)]
        batch = _sgkf_batch(y, g, k, states)
        for t, state in enumerate(states):
            ref = np.empty(n, dtype=int)
            for f, (_, test) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=state).split(
                    np.zeros(n), y, g)):
                ref[test] = f
            assert (ref == batch[t]).all()
            if t == 0:
                assert (ref == _sgkf(y, g, k, state)).all()


# --------------------------------------------------------------------------- pure: make_splits
def test_train_validation_test_are_disjoint_stratified_and_sized():
    df = table(100)
    r = make_splits(df, SplitPlan(label="diagnosis", tries=FAST))
    check_partition(r, set(df["participant_id"]))
    classes_everywhere(r, df)
    sizes = {k: len(v) for k, v in r.splits().items()}
    assert sizes == {"train": 60, "validation": 20, "test": 20}
    for name in ("train", "validation", "test"):
        counts = r.balance["splits"][name]["label"]["counts"]
        assert abs(counts["AD"] - counts["CN"]) <= 1


def test_same_seed_same_split_other_seed_other_split():
    df = table(60)
    a = make_splits(df, SplitPlan(label="diagnosis", seed=7, tries=20))
    b = make_splits(df, SplitPlan(label="diagnosis", seed=7, tries=20))
    c = make_splits(df, SplitPlan(label="diagnosis", seed=8, tries=20))
    assert a.assignments == b.assignments and a.balance == b.balance and a.params == b.params
    assert a.assignments != c.assignments
    k1 = make_splits(df, SplitPlan(label="diagnosis", folds=3, seed=1, tries=FAST))
    k2 = make_splits(df, SplitPlan(label="diagnosis", folds=3, seed=1, tries=FAST))
    k3 = make_splits(df, SplitPlan(label="diagnosis", folds=3, seed=2, tries=FAST))
    assert k1.folds == k2.folds and k1.test == k2.test
    assert (k1.folds, k1.test) != (k3.folds, k3.test)


def test_row_order_and_sub_prefix_do_not_change_the_split():
    df = table(40)
    r1 = make_splits(df, SplitPlan(label="diagnosis", tries=FAST))
    shuffled = df.sample(frac=1, random_state=3).reset_index(drop=True)
    shuffled["participant_id"] = shuffled["participant_id"].str.removeprefix("sub-")
    r2 = make_splits(shuffled, SplitPlan(label="diagnosis", tries=FAST))
    assert r1.assignments == r2.assignments


def test_search_improves_balance_over_a_single_draw():
    df = table(120, seed=4)
    r = make_splits(df, SplitPlan(label="diagnosis", tries=100))
    for stage in r.params["method"]["search"].values():
        assert stage["score"] <= stage["median_score"]
        assert not stage["repaired"]
    one = make_splits(df, SplitPlan(label="diagnosis", tries=1))
    assert r.balance["max_abs_smd"] <= one.balance["max_abs_smd"]


def test_realistic_example_is_well_balanced():
    """200 participants, 3 unequal sites, diagnosis linked to site and age: max |SMD| stays small."""
    rng = np.random.default_rng(1)
    n = 200
    site = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    dx = np.where(rng.random(n) < np.where(site == "A", 0.6, 0.4), "AD", "CN")
    df = pd.DataFrame({
        "participant_id": [f"sub-{i:03d}" for i in range(n)], "diagnosis": dx, "site": site,
        "age": (rng.normal(70, 8, n) + np.where(dx == "AD", 3, 0)).round().astype(int).astype(str),
        "sex": rng.choice(["M", "F"], n)})
    r = make_splits(df, SplitPlan(label="diagnosis", seed=0))
    assert r.balance["max_abs_smd"] < 0.1
    assert r.balance["max_label_deviation"] < 0.03
    k = make_splits(df, SplitPlan(label="diagnosis", folds=5, seed=0))
    assert k.balance["max_abs_smd"] < 0.25


def test_groups_stay_together():
    df = table(80, groups=25)
    for folds in (0, 3):
        r = make_splits(df, SplitPlan(label="diagnosis", group="family", folds=folds, tries=FAST))
        check_partition(r, set(df["participant_id"]))
        groups_together(r, df, "family")
        assert r.params["groups"] == df["family"].nunique()


def test_kfold_folds_are_disjoint_and_cover_the_pool():
    df = table(70, classes=("AD", "CN", "MCI"))
    r = make_splits(df, SplitPlan(label="diagnosis", folds=5, tries=FAST))
    check_partition(r, set(df["participant_id"]))
    classes_everywhere(r, df)
    assert len(r.folds) == 5
    assert set(r.assignments.values()) == {"train+validation", "test"}
    assert r.balance["pairs"].keys() >= {"train+validation|test", "split-4/train|split-4/validation"}


def test_unlabelled_participants_are_excluded_with_the_reason():
    df = table(30)
    df.loc[[0, 5], "diagnosis"] = ["n/a", ""]
    r = make_splits(df, SplitPlan(label="diagnosis", tries=FAST), excluded={"sub-009": "no folder"})
    assert r.excluded == {"sub-000": "no value for the label 'diagnosis'",
                          "sub-005": "no value for the label 'diagnosis'", "sub-009": "no folder"}
    assert not set(r.excluded) & set(r.assignments)
    assert {e["participant_id"] for e in r.params["excluded"]} == {"sub-000", "sub-005", "sub-009"}
    check_partition(r, set(df["participant_id"]) - set(r.excluded))


def test_covariates_missing_values_and_top_coded_ages():
    df = table(30)
    df["age"] = ["n/a", "", "89+"] + [str(60 + i) for i in range(27)]
    df["sex"] = ["M", "n/a"] + ["F", "M"] * 14
    r = make_splits(df, SplitPlan(label="diagnosis", tries=FAST))
    assert r.params["covariates"] == {"age": "numeric", "sex": "categorical", "site": "categorical"}
    stats = [r.balance["splits"][s]["covariates"]["age"] for s in ("train", "validation", "test")]
    assert sum(s["n"] for s in stats) == 28 and sum(s["missing"] for s in stats) == 2
    total = sum(s["mean"] * s["n"] for s in stats)
    assert total == pytest.approx(89 + sum(60 + i for i in range(27)), abs=0.01)
    assert sum(r.balance["splits"][s]["covariates"]["sex"]["missing"] for s in ("train", "validation", "test")) == 1
    by_pid = r.values["sub-000"]
    assert by_pid["age"] == "n/a" and r.values["sub-002"]["age"] == "89+"


def test_numeric_site_codes_are_categories_and_numeric_labels_are_binned():
    df = table(60)
    df["site"] = [str(i % 3 + 1) for i in range(60)]
    df["mmse"] = [str(15 + i % 16) for i in range(60)]
    r = make_splits(df, SplitPlan(label="mmse", tries=FAST))
    assert r.params["covariates"]["site"] == "categorical"
    assert r.params["method"]["stratified_on"].startswith("quantile bins")
    assert len(r.params["method"]["strata"]) >= 3
    assert r.balance["splits"]["test"]["label"]["mean"] is not None
    check_partition(r, set(df["participant_id"]))


def test_default_balance_columns_may_be_absent_named_ones_may_not():
    df = table(30).drop(columns=["site"])
    r = make_splits(df, SplitPlan(label="diagnosis", tries=FAST))
    assert r.params["balance_skipped"] == ["site"] and r.params["balance_columns"] == ["age", "sex"]
    with pytest.raises(SplitError, match="'bmi'"):
        make_splits(df, SplitPlan(label="diagnosis", balance=("age", "bmi"), tries=FAST))


@pytest.mark.parametrize(("change", "plan", "match"), [
    (None, SplitPlan(label="diagnsis"), r"no column 'diagnsis'.*did you mean 'diagnosis'"),
    ("empty_label", SplitPlan(label="diagnosis"), "no value for any participant"),
    ("rare_class", SplitPlan(label="diagnosis"), "class 'FTD' .* has 2 participants.*at least 3"),
    (None, SplitPlan(label="diagnosis", folds=10), "class 'AD' .* has 10 participants.*at least 11"),
    ("tiny", SplitPlan(label="diagnosis"), "only 5 participants"),
    (None, SplitPlan(label="diagnosis", test_size=0.6), "test_size: expected a fraction in"),
    (None, SplitPlan(label="diagnosis", test_size=0), "test_size: expected a fraction in"),
    (None, SplitPlan(label="diagnosis", val_size=0.0), "val_size: expected a fraction in"),
    (None, SplitPlan(label="diagnosis", test_size=0.5, val_size=0.5), "too little for training"),
    (None, SplitPlan(label="diagnosis", folds=1), "folds: expected 0"),
    (None, SplitPlan(label="diagnosis", seed=-1), "seed"),
    (None, SplitPlan(label="diagnosis", tries=0), "tries"),
    ("group_gap", SplitPlan(label="diagnosis", group="family"), "'family' is empty for 1 participant"),
    (None, SplitPlan(label="diagnosis", group="famly"), "did you mean 'family'"),
    ("duplicate", SplitPlan(label="diagnosis"), r"sub-003 is listed twice \(lines 5 and 22\)"),
])
def test_refusals_say_why(change, plan, match):
    df = table(20, groups=8)
    if change == "empty_label":
        df["diagnosis"] = "n/a"
    elif change == "rare_class":
        df.loc[[0, 2], "diagnosis"] = "FTD"
    elif change == "tiny":
        df = df.head(5)
    elif change == "group_gap":
        df.loc[4, "family"] = ""
    elif change == "duplicate":
        df.loc[20] = df.loc[3]
    with pytest.raises(SplitError, match=match) as err:
        make_splits(df, plan, source="ds/participants.tsv")
    assert isinstance(err.value, InputError)
    if "duplicate" == change or plan.label == "diagnsis":
        assert str(err.value).startswith("ds/participants.tsv")


def test_summary_lines():
    r = make_splits(table(30), SplitPlan(label="diagnosis", tries=FAST))
    lines = summary(r)
    assert lines[0].startswith("train: 18 participants (9 AD / 9 CN)")
    assert any(line.startswith("max |SMD|") for line in lines)


# --------------------------------------------------------------------------- properties
@st.composite
def tables(draw, *, mixed_groups: bool):
    n_classes = draw(st.integers(2, 3))
    n = draw(st.integers(12, 80))
    sizes = [3] * n_classes
    for _ in range(n - 3 * n_classes):
        sizes[draw(st.integers(0, n_classes - 1))] += 1
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    dx = [f"c{c}" for c, k in enumerate(sizes) for _ in range(k)]
    if mixed_groups:
        family = [f"f{int(v)}" for v in rng.integers(0, draw(st.integers(3, n)), n)]
    else:  # families within a class, at least 3 per class
        family = []
        for c, k in enumerate(sizes):
            m = draw(st.integers(3, k))
            family += [f"c{c}f{j}" for j in range(3)] + [f"c{c}f{int(v)}" for v in rng.integers(0, m, k - 3)]
    ages = rng.normal(70, 8, n).round().astype(int).astype(str)
    ages[rng.random(n) < 0.1] = "n/a"
    return pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(n)], "diagnosis": dx, "family": family,
        "age": ages, "sex": rng.choice(["M", "F", "n/a"], n, p=[0.45, 0.45, 0.1]),
        "site": rng.choice(["s1", "s2", "s3"], n)})


PROPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(df=tables(mixed_groups=False), folds=st.sampled_from([0, 0, 2]), grouped=st.booleans(),
       seed=st.integers(0, 1000))
def test_property_splits_partition_and_keep_every_class_everywhere(df, folds, grouped, seed):
    plan = SplitPlan(label="diagnosis", group="family" if grouped else None, folds=folds, seed=seed, tries=4)
    r = make_splits(df, plan)
    check_partition(r, set(df["participant_id"]))
    groups_together(r, df, "family" if grouped else "participant_id")
    classes_everywhere(r, df)
    assert not [w for w in r.params["warnings"] if "has no participant" in w]
    assert r.balance["max_abs_smd"] is not None


@PROPS
@given(df=tables(mixed_groups=True), folds=st.sampled_from([0, 2]), seed=st.integers(0, 1000))
def test_property_mixed_groups_refuse_or_partition(df, folds, seed):
    need = folds + 1 if folds else 3
    per_class = df.groupby("diagnosis")["family"].nunique()
    plan = SplitPlan(label="diagnosis", group="family", folds=folds, seed=seed, tries=4)
    if (per_class < need).any():
        with pytest.raises(SplitError, match="needs at least"):
            make_splits(df, plan)
        return
    r = make_splits(df, plan)
    check_partition(r, set(df["participant_id"]))
    groups_together(r, df, "family")


# --------------------------------------------------------------------------- on disk
def bids(tmp_path: Path, n: int = 12, *, sessions: dict | None = None, site: bool = True, **kw) -> Path:
    subjects = [f"{i:02d}" for i in range(1, n + 1)]
    rows = {s: {"age": str(60 + i), "sex": "MF"[i % 2], "diagnosis": ["CN", "AD"][i % 2],
                **({"site": "AB"[i % 3 == 0]} if site else {})} for i, s in enumerate(subjects)}
    return make_bids(tmp_path / "ds", subjects, participants=kw.pop("participants", rows),
                     sessions=sessions, images=False, **kw)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_split_dataset_writes_folder_and_clinicadl_layouts_with_sessions_following_subjects(tmp_path):
    root = bids(tmp_path, sessions={"01": ["1", "2"], "04": ["1", "2", "3"]})
    out = tmp_path / "splits"
    result, paths = split_dataset(root, SplitPlan(label="diagnosis", tries=FAST), out)
    names = sorted(p.relative_to(out).as_posix() for p in paths)
    assert names == ["clinicadl/split-0/train.tsv", "clinicadl/split-0/validation.tsv", "clinicadl/test.tsv",
                     PARAMS_FILE, "test.tsv", "train.tsv", "validation.tsv"]
    frames = {s: read(out / f"{s}.tsv") for s in ("train", "validation", "test")}
    assert list(frames["train"].columns) == ["participant_id", "session_id", "diagnosis", "age", "sex", "site"]
    for s, f in frames.items():
        assert set(f["participant_id"]) == result.splits()[s]
        assert read(out / ("clinicadl/test.tsv" if s == "test" else f"clinicadl/split-0/{s}.tsv")).equals(f)
    all_rows = pd.concat(frames.values())
    assert len(all_rows) == 12 + 1 + 2  # sub-01 has 2 sessions, sub-04 3
    for sub, sessions in (("sub-01", {"ses-1", "ses-2"}), ("sub-04", {"ses-1", "ses-2", "ses-3"})):
        holders = [s for s, f in frames.items() if sub in set(f["participant_id"])]
        assert len(holders) == 1
        assert set(frames[holders[0]].query("participant_id == @sub")["session_id"]) == sessions
    assert set(all_rows.query("participant_id == 'sub-02'")["session_id"]) == {"n/a"}
    params = json.loads((out / PARAMS_FILE).read_text())
    assert params["plan"]["label"] == "diagnosis" and params["dataset"]["path"] == str(root.resolve())
    bal = params["balance"]
    assert set(bal["splits"]) == {"train", "validation", "test"}
    assert {"counts", "proportions"} <= set(bal["splits"]["test"]["label"])
    assert {"mean", "sd", "n", "missing"} <= set(bal["splits"]["train"]["covariates"]["age"])
    assert set(bal["pairs"]["train|test"]) >= {"age", "sex", "site", "label", "max_abs_smd"}
    assert isinstance(bal["max_abs_smd"], float)
    assert params["files"]["train.tsv"]["participants"] == len(result.splits()["train"])


def test_kfold_layout_on_disk(tmp_path):
    root = bids(tmp_path, 16)
    out = tmp_path / "kf"
    result, _ = split_dataset(root, SplitPlan(label="diagnosis", folds=3, tries=FAST), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([PARAMS_FILE, "split-0", "split-1", "split-2", "test.tsv"])
    test = set(read(out / "test.tsv")["participant_id"])
    pool = {f"sub-{i:02d}" for i in range(1, 17)} - test
    vals = []
    for i in range(3):
        tr = set(read(out / f"split-{i}/train.tsv")["participant_id"])
        va = set(read(out / f"split-{i}/validation.tsv")["participant_id"])
        assert not tr & va and tr | va == pool and not va & test
        vals.append(va)
    assert sum(map(len, vals)) == len(pool) and set().union(*vals) == pool
    assert "session_id" not in read(out / "test.tsv").columns  # no sessions in this dataset
    assert json.loads((out / PARAMS_FILE).read_text())["layout"] == "clinicadl"
    with pytest.raises(SplitError, match="folder format holds one"):
        write_splits(result, None, tmp_path / "other", layout="folder")


def test_rewriting_a_split_folder_removes_stale_files_and_refuses_foreign_folders(tmp_path):
    root = bids(tmp_path, 20)
    out = tmp_path / "out"
    split_dataset(root, SplitPlan(label="diagnosis", folds=4, tries=FAST), out, layout="clinicadl")
    assert (out / "split-3").is_dir()
    split_dataset(root, SplitPlan(label="diagnosis", folds=2, tries=FAST), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([PARAMS_FILE, "split-0", "split-1", "test.tsv"])
    split_dataset(root, SplitPlan(label="diagnosis", tries=FAST), out, layout="folder")
    assert sorted(p.name for p in out.iterdir()) == [PARAMS_FILE, "test.tsv", "train.tsv", "validation.tsv"]
    (out / PARAMS_FILE).unlink()  # as if interrupted before the last file: split files alone may be replaced
    split_dataset(root, SplitPlan(label="diagnosis", folds=2, tries=FAST), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([PARAMS_FILE, "split-0", "split-1", "test.tsv"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SplitError, match="not empty"):
        split_dataset(root, SplitPlan(label="diagnosis", tries=FAST), foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(SplitError, match="is a file"):
        split_dataset(root, SplitPlan(label="diagnosis", tries=FAST), foreign / "notes.txt")


def test_same_seed_gives_byte_identical_files(tmp_path):
    root = bids(tmp_path, 14, sessions={"03": ["a", "b"]})
    _, p1 = split_dataset(root, SplitPlan(label="diagnosis", seed=3, tries=FAST), tmp_path / "a")
    _, p2 = split_dataset(root, SplitPlan(label="diagnosis", seed=3, tries=FAST), tmp_path / "b")
    assert [p.read_bytes() for p in p1] == [p.read_bytes() for p in p2]


def test_split_dataset_names_participants_tsv_and_the_nearest_column(tmp_path):
    root = bids(tmp_path)
    with pytest.raises(InputError) as err:
        split_dataset(root, SplitPlan(label="diagnostic"), tmp_path / "o")
    msg = str(err.value)
    assert "participants.tsv" in msg and "did you mean 'diagnosis'" in msg
    assert not (tmp_path / "o").exists()
    (root / "participants.tsv").unlink()
    with pytest.raises(SplitError, match="participants.tsv"):
        split_dataset(root, SplitPlan(label="diagnosis"), tmp_path / "o")
    with pytest.raises(InputError, match="dataset_description.json"):
        split_dataset(tmp_path, SplitPlan(label="diagnosis"), tmp_path / "o")


def test_subjects_without_folder_or_row_are_excluded(tmp_path):
    rows = {f"{i:02d}": {"diagnosis": "AD" if i % 2 else "CN", "age": str(60 + i)} for i in range(1, 13)}
    root = make_bids(tmp_path / "ds", [f"{i:02d}" for i in range(2, 14)], participants=rows, images=False)
    result, _ = split_dataset(root, SplitPlan(label="diagnosis", tries=FAST), tmp_path / "o")
    assert result.excluded == {
        "sub-01": "listed in participants.tsv but has no folder in the dataset",
        "sub-13": "has a folder but is not listed in participants.tsv (no label)"}
    assert set(result.assignments) == {f"sub-{i:02d}" for i in range(2, 13)}
    assert result.params["balance_skipped"] == ["sex"]  # site: the (single) scanner of the sidecars
    assert "derived_columns" in result.params


def test_site_comes_from_sidecars_when_participants_tsv_has_none(tmp_path):
    root = bids(tmp_path, 18, site=False)
    for i in range(1, 19, 3):  # every third subject on another scanner
        side = root / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.json"
        side.write_text(json.dumps({"Manufacturer": "GE", "ManufacturersModelName": "MR750",
                                    "MagneticFieldStrength": 3}))
    result, _ = split_dataset(root, SplitPlan(label="diagnosis", tries=FAST), tmp_path / "o")
    assert result.params["covariates"]["site"] == "categorical"
    assert result.params["derived_columns"][0].startswith("site: each subject's scanner")
    sites = set(read(tmp_path / "o" / "train.tsv")["site"])
    assert sites <= {"GE MR750 3T", "Siemens Prisma 3T"}
    assert set(result.balance["splits"]["test"]["covariates"]["site"]["proportions"]) == {
        "GE MR750 3T", "Siemens Prisma 3T"}


def test_write_splits_with_a_sessions_mapping_and_bad_layout(tmp_path):
    r = make_splits(table(20), SplitPlan(label="diagnosis", tries=FAST))
    paths = write_splits(r, {"000": ["ses-01", "ses-02"]}, tmp_path / "m", layout="clinicadl")
    assert sorted(p.relative_to(tmp_path / "m").as_posix() for p in paths) == sorted([
        "split-0/train.tsv", "split-0/validation.tsv", PARAMS_FILE, "test.tsv"])
    rows = pd.concat(read(p) for p in paths if p.suffix == ".tsv")
    assert sorted(rows.query("participant_id == 'sub-000'")["session_id"]) == ["ses-01", "ses-02"]
    assert len(rows) == 21
    with pytest.raises(SplitError, match="layout"):
        write_splits(r, None, tmp_path / "x", layout="nnunet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        json.loads((tmp_path / "m" / PARAMS_FILE).read_text())


def test_unwritable_output_is_an_input_error(tmp_path):
    r = make_splits(table(20), SplitPlan(label="diagnosis", tries=FAST))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SplitError, match="cannot write|is a file"):
        write_splits(r, None, blocker / "sub", layout="folder")
