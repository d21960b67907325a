"""audit.splits: the four split formats, detection, bad input, id normalisation, real AD-DL lists."""

from __future__ import annotations

import json
import random
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import InputError
from audit.splits import (
    SplitRow,
    SplitSet,
    SplitTable,
    detect_format,
    normalise_case_id,
    normalise_participant,
    normalise_session,
    normalise_split_name,
    read_splits,
)
from tests.builders import SHARED_DATA

AD_DL = SHARED_DATA / "splits" / "AD-DL"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def tsv(*rows: str) -> str:
    return "".join(r.replace("|", "\t") + "\n" for r in rows)


def rows_of(table: SplitTable) -> list[tuple[str, str | None, str | None]]:
    return [(r.participant_id, r.session_id, r.label) for r in table.rows]


def error(path: Path, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        read_splits(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


# --------------------------------------------------------------------------------------------------
# formats


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "splits"
    write(root / "train.tsv", tsv("participant_id|session_id|diagnosis|age",
                                  "sub-01|ses-M00|AD|71", "02|M00|CN|65", "sub-01|ses-M12|AD|72"))
    write(root / "val.tsv", tsv("participant_id|session_id|diagnosis|age", "sub-03||CN|60"))
    write(root / "test.tsv", tsv("participant_id|diagnosis", "04|AD", " sub-05 |n/a"))
    return root


def test_folder_format(folder: Path) -> None:
    s = read_splits(folder)
    assert detect_format(folder) == "folder"
    assert s.format == "folder" and s.root == str(folder)
    assert s.names == ("train", "validation", "test")
    assert s.folds == ()
    assert s.files == tuple(sorted(str(folder / n) for n in ("train.tsv", "val.tsv", "test.tsv")))
    assert s.relative_files == ("test.tsv", "train.tsv", "val.tsv")
    train = s.table("train")
    assert train.path == str(folder / "train.tsv") and train.fold is None
    assert rows_of(train) == [("sub-01", "ses-M00", "AD"), ("sub-02", "ses-M00", "CN"), ("sub-01", "ses-M12", "AD")]
    assert [r.line for r in train.rows] == [2, 3, 4]
    assert train.rows[1].file == str(folder / "train.tsv")
    assert train.rows[1].extra == {"diagnosis": "CN", "age": "65"}
    assert train.columns == ("participant_id", "session_id", "diagnosis", "age")
    assert train.label_column == "diagnosis"
    assert s.subjects("train") == {"sub-01", "sub-02"}
    assert s.sessions("train") == {("sub-01", "ses-M00"), ("sub-02", "ses-M00"), ("sub-01", "ses-M12")}
    # an empty session cell, and a file without session_id: every session of the participant
    assert s.sessions("validation") == {("sub-03", None)}
    assert rows_of(s.table("test")) == [("sub-04", None, "AD"), ("sub-05", None, None)]
    assert s.sizes() == {"train": 2, "validation": 1, "test": 2}
    views = list(s.views())
    assert len(views) == 1
    fold, tables = views[0]
    assert fold is None and list(tables) == ["train", "validation", "test"]


def test_folder_of_csv_and_baseline_lists(tmp_path: Path) -> None:
    root = tmp_path / "s"
    write(root / "train.csv", "participant_id,session_id\nsub-01,ses-M00\nsub-01,ses-M06\n")
    write(root / "train_baseline.csv", "participant_id,session_id\nsub-01,ses-M00\n")
    write(root / "test_baseline.csv", "participant_id,session_id\nsub-02,ses-M00\n")
    s = read_splits(root)
    assert s.format == "folder" and s.names == ("train", "test")
    train = s.table("train")
    assert train.path == str(root)  # merged from two files
    assert {r.file for r in train.rows} == {str(root / "train.csv"), str(root / "train_baseline.csv")}
    assert any("merged" in n for n in s.notes)


def test_table_format_with_folds(tmp_path: Path) -> None:
    path = write(tmp_path / "all.tsv", tsv(
        "participant_id|split|fold|sex",
        "01|train|0|F", "02|val|0|M", "02|train|1|M", "01|validation|1|F", "03|test||F", "04|test||M"))
    assert detect_format(path) == "table"
    s = read_splits(path)
    assert s.format == "table" and s.files == (str(path),)
    assert s.folds == (0, 1)
    assert s.names == ("train", "validation", "test")
    assert s.subjects("train", 0) == {"sub-01"} and s.subjects("validation", 0) == {"sub-02"}
    assert s.subjects("train") == {"sub-01", "sub-02"}  # all folds together
    assert s.table("test", 1) is s.table("test")  # the shared test table belongs to every fold
    views = list(s.views())
    assert [v.fold for v in views] == [0, 1]
    assert all(list(v.tables) == ["train", "validation", "test"] for v in views)
    assert views[1].tables["validation"].rows[0].line == 5
    assert s.table("train", 0).rows[0].extra == {"sex": "F"}
    assert s.table("train", 0).columns == ("participant_id", "sex")
    with pytest.raises(KeyError):
        s.table("train")  # per-fold only
    with pytest.raises(KeyError):
        s.table("holdout")
    frame = s.to_frame()
    assert list(frame.columns) == ["split", "fold", "participant_id", "session_id", "label", "file", "line"]
    assert len(frame) == 6 and frame["fold"].isna().sum() == 2


def test_table_without_split_column_is_one_split(tmp_path: Path) -> None:
    path = write(tmp_path / "train+validation.tsv", tsv("participant_id", "01", "02"))
    s = read_splits(path)
    assert s.format == "table" and s.names == ("train+validation",)
    assert s.subjects("train+validation") == {"sub-01", "sub-02"}
    assert any("no split column" in n for n in s.notes)


def test_table_fold_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "all.tsv", tsv("participant_id|split|fold", "01|train|0", "02|train|", "03|test|"))
    err = error(path)
    assert "all.tsv, line 3, column 3, fold" in str(err) and "rows with a fold and rows without" in str(err)
    path = write(tmp_path / "b.tsv", tsv("participant_id|split|fold", "01|train|one"))
    assert 'b.tsv, line 2, column 3, fold: expected a fold number' in str(error(path))
    path = write(tmp_path / "c.tsv", tsv("participant_id|split", "01|train", "02| "))
    assert "c.tsv, line 3, column 2, split: empty split" in str(error(path))


def clinicadl(root: Path, *, test: str | None = "beside") -> Path:
    for k, (train, val) in enumerate([(("01", "02"), ("03",)), (("01", "03"), ("02",)), (("02", "03"), ("01",))]):
        lines = ["participant_id|session_id|diagnosis"]
        lines += [f"sub-{p}|ses-M{m:02d}|{'AD' if p == '01' else 'CN'}" for p in train for m in (0, 12)]
        write(root / f"split-{k}" / "train.tsv", tsv(*lines))
        write(root / f"split-{k}" / "train_baseline.tsv",
              tsv("participant_id|session_id|diagnosis", *[f"sub-{p}|ses-M00|{'AD' if p == '01' else 'CN'}"
                                                           for p in train]))
        write(root / f"split-{k}" / "validation_baseline.tsv",
              tsv("participant_id|session_id|diagnosis", *[f"sub-{p}|ses-M00|CN" for p in val]))
    write(root / "kfold.json", "{}")  # ClinicaDL's parameters file: not a split
    text = tsv("participant_id|session_id|diagnosis", "sub-09|ses-M00|AD")
    if test == "beside":
        write(root / "test.tsv", text)
    elif test == "parent":
        write(root.parent / "test_baseline.tsv", text)
    return root


def test_clinicadl_kfold(tmp_path: Path) -> None:
    root = clinicadl(tmp_path / "kfold")
    assert detect_format(root) == "clinicadl"
    s = read_splits(root)
    assert s.format == "clinicadl" and s.folds == (0, 1, 2)
    assert s.names == ("train", "validation", "test")
    assert len(s.files) == 10 and str(root / "kfold.json") not in s.files
    assert s.table("train", 0).path == str(root / "split-0")  # train.tsv + train_baseline.tsv
    assert s.table("validation", 2).path == str(root / "split-2" / "validation_baseline.tsv")
    assert s.subjects("train", 1) == {"sub-01", "sub-03"} and s.subjects("validation", 1) == {"sub-02"}
    assert s.table("test").fold is None and s.subjects("test") == {"sub-09"}
    views = list(s.views())
    assert [f for f, _ in views] == [0, 1, 2]
    for fold, tables in views:
        assert set(tables) == {"train", "validation", "test"}
        assert tables["test"] is s.table("test")
        assert tables["train"].fold == fold


def test_clinicadl_test_in_parent_folder(tmp_path: Path) -> None:
    root = clinicadl(tmp_path / "split" / "5_fold", test="parent")
    s = read_splits(root)
    assert s.subjects("test") == {"sub-09"}
    assert str(tmp_path / "split" / "test_baseline.tsv") in s.files
    assert any("parent folder" in n for n in s.notes)
    assert "../test_baseline.tsv" in s.relative_files


def test_clinicadl_without_test(tmp_path: Path) -> None:
    s = read_splits(clinicadl(tmp_path / "kfold", test=None))
    assert s.names == ("train", "validation") and s.folds == (0, 1, 2)


def legacy(root: Path) -> Path:
    """A miniature of AD-DL's layout (ClinicaDL's legacy tsvtool)."""
    head = "participant_id|session_id|diagnosis"
    write(root / "AD.tsv", tsv(head, "sub-01|ses-M00|AD", "sub-09|ses-M00|AD"))  # the pool
    train = root / "train"
    write(train / "AD.tsv", tsv(head, "sub-01|ses-M00|AD", "sub-01|ses-M06|AD", "sub-02|ses-M00|AD"))
    write(train / "CN.tsv", tsv(head, "sub-03|ses-M00|CN", "sub-04|ses-M00|CN"))
    write(train / "train" / "AD.tsv", tsv(head, "sub-01|ses-M00|AD"))  # a hold-out split
    write(train / "validation" / "AD_baseline.tsv", tsv(head, "sub-02|ses-M00|AD"))
    for k, (tr, va) in enumerate([(("01", "03"), ("02", "04")), (("02", "04"), ("01", "03"))]):
        write(train / "train_splits-2" / f"split-{k}" / "AD.tsv",
              tsv(head, *[f"sub-{p}|ses-M00|AD" for p in tr if p in ("01", "02")]))
        write(train / "train_splits-2" / f"split-{k}" / "CN.tsv",
              tsv(head, *[f"sub-{p}|ses-M00|CN" for p in tr if p in ("03", "04")]))
        write(train / "validation_splits-2" / f"split-{k}" / "AD_baseline.tsv",
              tsv(head, *[f"sub-{p}|ses-M00|AD" for p in va if p in ("01", "02")]))
        write(train / "validation_splits-2" / f"split-{k}" / "CN_baseline.tsv", tsv(head))  # header only: allowed
    write(root / "test" / "AD_baseline.tsv", tsv(head, "sub-09|ses-M00|AD"))
    write(root / "test" / "CN_baseline.tsv", tsv(head, "sub-10|ses-M00|CN"))
    return root


def test_clinicadl_legacy_kfold(tmp_path: Path) -> None:
    root = legacy(tmp_path / "ADNI")
    s = read_splits(root / "train")
    assert s.format == "clinicadl" and s.folds == (0, 1)
    assert s.subjects("train", 0) == {"sub-01", "sub-03"} and s.subjects("validation", 0) == {"sub-02"}
    assert s.subjects("test") == {"sub-09", "sub-10"}  # the sibling test/ folder
    assert str(root / "test" / "CN_baseline.tsv") in s.files
    assert str(root / "train" / "AD.tsv") not in s.files  # the pool is not read
    assert str(root / "train" / "train" / "AD.tsv") not in s.files  # nor the hold-out split
    notes = " ".join(s.notes)
    assert "hold-out" in notes and "pool" in notes


def test_clinicadl_legacy_holdout_and_single_split(tmp_path: Path) -> None:
    root = legacy(tmp_path / "ADNI")
    s = read_splits(root)
    assert s.format == "clinicadl" and s.names == ("train", "test") and s.folds == ()
    assert s.subjects("train") == {"sub-01", "sub-02", "sub-03", "sub-04"}
    assert s.table("train").path == str(root / "train")
    assert str(root / "AD.tsv") not in s.files
    assert any("k-fold" in n for n in s.notes)
    t = read_splits(root / "test")
    assert t.format == "clinicadl" and t.names == ("test",) and len(t.files) == 2
    err = error(root / "train" / "train_splits-2")
    assert "its parent folder" in str(err)


def nnunet(path: Path, folds: object) -> Path:
    return write(path, json.dumps(folds, indent=4))


def test_nnunet(tmp_path: Path) -> None:
    path = nnunet(tmp_path / "splits_final.json", [
        {"train": ["sub-01_ses-01", "sub-01_ses-02", "BraTS_001"], "val": ["02", "BraTS_002_0000"]},
        {"train": ["02", "BraTS_002_0000"], "val": ["sub-01_ses-01", "sub-01_ses-02", "BraTS_001"]},
    ])
    assert detect_format(path) == "nnunet" and detect_format(tmp_path) == "nnunet"
    s = read_splits(path)
    assert s.format == "nnunet" and s.folds == (0, 1) and s.names == ("train", "validation")
    assert s.sessions("train", 0) == {("sub-01", "ses-01"), ("sub-01", "ses-02"), ("sub-BraTS_001", None)}
    assert s.subjects("validation", 0) == {"sub-02", "sub-BraTS_002_0000"}
    row = s.table("train", 0).rows[2]
    assert row.extra == {"case_id": "BraTS_001"} and row.file == str(path)
    assert row.line == 6  # json.dumps(indent=4): "[", "{", '"train": [', then one id per line
    assert [r.line for r in s.table("validation", 0).rows] == [9, 10]
    assert read_splits(tmp_path).files == (str(path),)
    write(tmp_path / "dataset.json", "{}")  # nnU-Net's preprocessed folder holds more JSON
    write(tmp_path / "nnUNetPlans.json", "{}")
    assert read_splits(tmp_path).files == (str(path),)
    (tmp_path / "splits_final.json").unlink()
    assert "no splits_final.json" in str(error(tmp_path))


@pytest.mark.parametrize(("folds", "expect"), [
    pytest.param({"train": []}, "expected a list of folds", id="object"),
    pytest.param([], "got an empty list", id="empty-list"),
    pytest.param(["x"], "fold 0: expected an object", id="not-object"),
    pytest.param([{"train": ["a"]}], 'no "val" list', id="no-val"),
    pytest.param([{"train": ["a"], "val": "b"}], 'fold 0, "val": expected a list of case ids', id="val-string"),
    pytest.param([{"train": ["a", 3], "val": ["b"]}], "got a list holding a JSON number", id="number"),
    pytest.param([{"train": ["a"], "val": []}], "empty list", id="empty-val"),
    pytest.param([{"train": ["a b"], "val": ["c"]}], 'line 4, fold 0, "train": the case id contains whitespace',
                 id="space"),
    pytest.param([{"train": ["a"], "val": ["../c"]}], "path separator", id="separator"),
])
def test_nnunet_bad_shapes(tmp_path: Path, folds: object, expect: str) -> None:
    path = nnunet(tmp_path / "splits_final.json", folds)
    assert expect in str(error(path))


def test_nnunet_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path / "splits_final.json", '[{"train": ["a"],\n "val": ["b",]}]')
    err = error(path)
    assert err.line == 2 and "invalid JSON" in str(err) and "splits_final.json, line 2, column" in str(err)


# --------------------------------------------------------------------------------------------------
# detection


def test_detect_ambiguous_and_unrecognised(tmp_path: Path) -> None:
    root = clinicadl(tmp_path / "mixed")
    write(root / "train.tsv", tsv("participant_id", "01"))
    err = error(root)
    assert "split-N folders and loose split files (train.tsv)" in str(err) and "expected" in str(err)
    with pytest.raises(InputError):
        detect_format(root)

    both = tmp_path / "both"
    write(both / "train.tsv", tsv("participant_id", "01"))
    write(both / "train.csv", "participant_id\n01\n")
    assert "name the same split" in str(error(both))

    vals = tmp_path / "vals"
    write(vals / "val.tsv", tsv("participant_id", "01"))
    write(vals / "validation.tsv", tsv("participant_id", "02"))
    assert "name the same split" in str(error(vals))

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no split files found" in str(error(empty))
    write(empty / "README.md", "notes")
    assert "no split files found" in str(error(empty))

    assert "no such file or folder" in str(error(tmp_path / "absent"))
    assert "not a split file" in str(error(write(tmp_path / "splits.xlsx", "x")))
    assert "no rule maps every path" in str(error(write(tmp_path / "splits.txt", "x")))  # a path list

    dataset = tmp_path / "bids"
    write(dataset / "dataset_description.json", "{}")
    write(dataset / "participants.tsv", tsv("participant_id", "sub-01"))
    assert "BIDS dataset" in str(error(dataset))

    mixed = tmp_path / "dirs-and-files"
    write(mixed / "train" / "AD.tsv", tsv("participant_id", "01"))
    write(mixed / "test.tsv", tsv("participant_id", "02"))
    assert "both split folders" in str(error(mixed))


def test_certificate_and_hidden_files_are_ignored(folder: Path) -> None:
    write(folder / "bidsaudit-certificate.json", "{}")
    write(folder / ".~lock.train.tsv#", "x")
    s = read_splits(folder)
    assert s.format == "folder" and len(s.files) == 3


# --------------------------------------------------------------------------------------------------
# bad files: every error names the file and the line (and column where there is one)


@pytest.mark.parametrize(("name", "content", "expect"), [
    pytest.param("train.tsv", b"", "train.tsv, line 1: empty file, expected a header line naming participant_id",
                 id="empty"),
    pytest.param("train.tsv", b"\n\n", "train.tsv, line 1: empty file", id="blank"),
    pytest.param("train.tsv", b"participant_id\tsession_id\n", "train.tsv, line 2: no rows", id="header-only"),
    pytest.param("train.tsv", b"participant_id,session_id\nsub-01,ses-01\n",
                 "train.tsv, line 1: unknown delimiter: the header has no tab but comma", id="tsv-with-commas"),
    pytest.param("train.csv", b"participant_id;session_id\nsub-01;ses-01\n",
                 "train.csv, line 1: unknown delimiter: the header has no comma but semicolon", id="csv-semicolons"),
    pytest.param("train.tsv", b"participant\tage\nsub-01\t3\n",
                 "train.tsv, line 1: no participant_id column (did you mean to name 'participant' participant_id?)",
                 id="missing-column"),
    pytest.param("train.tsv", b"participant_ID\tage\nsub-01\t3\n", "did you mean to name 'participant_ID'",
                 id="missing-column-case"),
    pytest.param("train.tsv", b"participant_id\tage\nsub-01\t3\nsub-\xff2\t4\n",
                 "train.tsv, line 3, column 5: invalid UTF-8 byte 0xff at byte offset 32, expected UTF-8 text",
                 id="invalid-utf8"),
    pytest.param("train.tsv", b"participant_id\tage\nsub-01\t3\nsub 03\t4\n",
                 'train.tsv, line 3, column 1, participant_id: the label contains whitespace, '
                 'expected "sub-<label>" (letters and digits), got "sub 03"', id="inner-space"),
    pytest.param("train.tsv", b"age\tparticipant_id\n3\tsub-01\n4\tsub-a/b\n",
                 'line 3, column 2, participant_id: the label contains a path separator', id="slash"),
    pytest.param("train.tsv", b"participant_id\n..\\x\n", "line 2, column 1, participant_id", id="backslash"),
    pytest.param("train.tsv", b"participant_id\nsub-01_x\n", 'a BIDS label has letters and digits only',
                 id="underscore"),
    pytest.param("train.tsv", b"participant_id\nsub-sub-01\n", 'got "sub-sub-01"', id="double-prefix"),
    pytest.param("train.tsv", b"participant_id\tsession_id\nsub-01\tses 1\n",
                 "line 2, column 2, session_id: the label contains whitespace", id="bad-session"),
    pytest.param("train.tsv", b"participant_id\tage\nsub-01\t3\t4\n",
                 "train.tsv, line 2: more fields than the header, expected 2 fields, got 3", id="too-many-fields"),
    pytest.param("train.tsv", b"participant_id\tage\tage\nsub-01\t3\t4\n",
                 "train.tsv, line 1, column 3, age: duplicate column", id="duplicate-column"),
    pytest.param("train.tsv", b"participant_id\tage\nsub-01\t3\n\t4\n",
                 "train.tsv, line 3, column 1, participant_id: empty participant_id", id="empty-id"),
])
def test_bad_files(tmp_path: Path, name: str, content: bytes, expect: str) -> None:
    path = write(tmp_path / "splits" / name, content)
    for target in (path.parent, path):  # a folder of split files, and the file on its own
        err = error(target)
        assert str(path) in str(err)
        assert expect in str(err), str(err)
        assert err.line is not None


def test_bad_row_in_single_table_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "all.csv", "split,participant_id\ntrain,01\ntest,0 2\n")
    err = error(path)
    assert str(err).startswith(f'{path}, line 3, column 2, participant_id:')
    assert err.got == '"0 2"'


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s" / "train.tsv", tsv("participant_id", "01"))
    path.chmod(0)
    try:
        if path.stat().st_mode and _readable(path):
            pytest.skip("running as a user who can read mode-0 files")
        assert "cannot read the file" in str(error(path.parent))
    finally:
        path.chmod(0o644)


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def test_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "s" / "train.tsv",
                 b"\xef\xbb\xbfparticipant_id\tsession_id\r\nsub-01\tses-1\r\n\r\n02\t2\r\n\t\r\n\r\n\r\n")
    s = read_splits(path.parent)
    t = s.table("train")
    assert rows_of(t) == [("sub-01", "ses-1", None), ("sub-02", "ses-2", None)]
    assert [r.line for r in t.rows] == [2, 4]
    assert t.columns == ("participant_id", "session_id")


def test_trailing_delimiter_is_an_unnamed_empty_column(tmp_path: Path) -> None:
    path = write(tmp_path / "s" / "train.tsv", b"participant_id\tage\t\nsub-01\t3\t\n")
    assert read_splits(path.parent).table("train").columns == ("participant_id", "age")
    write(path, b"participant_id\tage\t\nsub-01\t3\tx\n")
    assert "line 2, column 3: column 3 has values but no name" in str(error(path.parent))


def test_empty_split_made_of_header_only_lists(tmp_path: Path) -> None:
    root = tmp_path / "test"
    write(root / "AD_baseline.tsv", tsv("participant_id"))
    write(root / "CN_baseline.tsv", tsv("participant_id"))
    assert "split 'test' has no rows in any of its files" in str(error(root))


# --------------------------------------------------------------------------------------------------
# ids, names, sessions, labels


LABELS = st.text(alphabet="abcXYZ019", min_size=1, max_size=8)


@given(LABELS, st.sampled_from(["", " ", "  "]), st.booleans())
def test_normalise_participant_is_idempotent(label: str, pad: str, prefixed: bool) -> None:
    raw = pad + ("sub-" if prefixed else "") + label + pad
    once = normalise_participant(raw)
    assert once == "sub-" + label
    assert normalise_participant(once) == once
    assert normalise_participant(label) == normalise_participant("sub-" + label)


@given(LABELS, st.booleans())
def test_normalise_session_is_idempotent(label: str, prefixed: bool) -> None:
    once = normalise_session(("ses-" if prefixed else "") + label)
    assert once == "ses-" + label and normalise_session(once) == once


@given(st.text(max_size=12))
def test_normalise_participant_accepts_only_labels(raw: str) -> None:
    try:
        out = normalise_participant(raw)
    except ValueError:
        body = raw.strip().removeprefix("sub-")
        assert not (body.isascii() and body.isalnum())
    else:
        assert out.startswith("sub-") and out[4:].isascii() and out[4:].isalnum()
        assert normalise_participant(out) == out


@given(st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=12).filter(lambda s: s[0].isalnum()),
       st.booleans())
def test_normalise_case_id_is_idempotent(case: str, prefixed: bool) -> None:
    pid, ses = normalise_case_id(("sub-" if prefixed else "") + case)
    assert normalise_case_id(pid if ses is None else f"{pid}_{ses}") == (pid, ses)


@pytest.mark.parametrize("bad", ["sub 03", "a/b", "a\\b", "", "  ", "sub-", "x\ty", "é"])
def test_normalise_participant_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_participant(bad)


def test_normalise_session_missing_and_split_names() -> None:
    assert normalise_session(None) is None and normalise_session(" n/a ") is None
    assert [normalise_split_name(n) for n in ("val", "valid", "Validation", "TRAIN", "test", "fold-x")] == \
        ["validation", "validation", "validation", "train", "test", "fold-x"]


def test_ids_agree_across_files_with_and_without_prefix(tmp_path: Path) -> None:
    root = tmp_path / "s"
    write(root / "train.tsv", tsv("participant_id|session_id", "03|M00", " sub-04 | ses-M00 "))
    write(root / "test.csv", "participant_id,session_id\nsub-03,ses-M00\n04,M00\n")
    s = read_splits(root)
    assert s.sessions("train") == s.sessions("test") == {("sub-03", "ses-M00"), ("sub-04", "ses-M00")}


def test_label_column(folder: Path) -> None:
    s = read_splits(folder, label="age")
    assert [r.label for r in s.table("train").rows] == ["71", "65", "72"]
    assert s.table("test").label_column is None and s.table("test").rows[0].label is None
    t = read_splits(folder)
    assert t.table("train").label_column == "diagnosis"


def test_result_is_independent_of_row_order(tmp_path: Path) -> None:
    lines = [f"{i:02d}|M{m:02d}|{'AD' if i % 3 else 'CN'}|{'train' if i % 4 else 'test'}"
             for i in range(1, 40) for m in (0, 6)]
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    a = read_splits(write(tmp_path / "a.tsv", tsv("participant_id|session_id|diagnosis|split", *lines)))
    b = read_splits(write(tmp_path / "b.tsv", tsv("participant_id|session_id|diagnosis|split", *shuffled)))
    assert a.names == b.names
    for name in a.names:
        assert a.subjects(name) == b.subjects(name)
        assert a.sessions(name) == b.sessions(name)
        assert sorted(rows_of(a.table(name))) == sorted(rows_of(b.table(name)))
    cols = ["split", "participant_id", "session_id", "label"]
    fa = a.to_frame()[cols].sort_values(cols[1:]).reset_index(drop=True)
    fb = b.to_frame()[cols].sort_values(cols[1:]).reset_index(drop=True)
    assert fa.equals(fb)


# --------------------------------------------------------------------------------------------------
# the model


def test_model_is_immutable_and_buildable_in_memory() -> None:
    rows = (SplitRow("sub-01", "ses-1", "AD", "mem", 2, {"age": "70"}), SplitRow("sub-02"))
    table = SplitTable("train", None, "mem", rows)
    assert table.rows == rows and len(table) == 2
    assert table.subjects() == {"sub-01", "sub-02"}
    assert table.sessions() == {("sub-01", "ses-1"), ("sub-02", None)}
    assert table.columns == ("participant_id", "session_id", "age")
    assert list(table.column_values("age")) == [("sub-01", "70"), ("sub-02", None)]
    assert list(table.column_values("absent")) == []
    assert list(table.labels()) == [("sub-01", "ses-1", "AD", "mem:2"), ("sub-02", None, None, ":0")]
    assert table.rows_for({"sub-02"}) == (rows[1],)
    assert table == SplitTable("train", None, "mem", rows)
    with pytest.raises(FrozenInstanceError):
        table.name = "test"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        rows[0].participant_id = "sub-09"  # type: ignore[misc]
    s = SplitSet("folder", "mem", ("b", "a", "a"), (table, SplitTable("test", None, "mem", (SplitRow("sub-03"),))))
    assert s.files == ("a", "b") and s.names == ("train", "test")
    with pytest.raises(FrozenInstanceError):
        s.root = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        SplitSet("folder", "mem", (), (table, table))
    with pytest.raises(ValueError):
        SplitSet("weird", "mem", (), ())  # type: ignore[arg-type]
    assert len(SplitSet("folder", "mem", (), ()).to_frame()) == 0


def test_rows_for_and_to_frame_keep_file_and_line(folder: Path) -> None:
    s = read_splits(folder)
    rows = s.table("train").rows_for(["sub-01"])
    assert [(r.line, r.session_id) for r in rows] == [(2, "ses-M00"), (4, "ses-M12")]
    frame = s.to_frame(extra=True)
    assert {"age", "diagnosis"} <= set(frame.columns)
    first = frame.iloc[0]
    assert (first["split"], first["participant_id"], first["line"]) == ("train", "sub-01", 2)
    assert frame["session_id"].isna().sum() == 3


# --------------------------------------------------------------------------------------------------
# speed


@pytest.mark.slow
def test_a_million_rows_read_fast(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    n = 1_000_000
    with open(root / "train.tsv", "w") as fh:
        fh.write("participant_id\tsession_id\tdiagnosis\n")
        fh.writelines(f"sub-{i // 4:06d}\tses-M{i % 4:02d}\t{'AD' if i % 2 else 'CN'}\n" for i in range(n - 1000))
    with open(root / "test.tsv", "w") as fh:
        fh.write("participant_id\tsession_id\tdiagnosis\n")
        fh.writelines(f"{900000 + i}\tM00\tAD\n" for i in range(1000))
    t0 = time.perf_counter()
    s = read_splits(root)
    read_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    both = s.subjects("train") & s.subjects("test")
    overlap_s = time.perf_counter() - t1
    assert len(s.to_frame()) == n and not both
    assert read_s < 5 and overlap_s < 2, (read_s, overlap_s)


# --------------------------------------------------------------------------------------------------
# real data: AD-DL's published ADNI and OASIS lists


@pytest.fixture
def ad_dl() -> Path:
    if not AD_DL.is_dir():
        pytest.skip(f"real split lists not found at {AD_DL} (the ../shared folder is absent)")
    return AD_DL


def test_ad_dl_adni_five_folds(ad_dl: Path) -> None:
    s = read_splits(ad_dl / "ADNI" / "train")
    assert s.format == "clinicadl"
    assert s.folds == (0, 1, 2, 3, 4)
    assert s.names == ("train", "validation", "test")
    assert len(s.files) == 5 * 12 + 5 * 6 + 5
    assert [len(s.subjects("train", f)) for f in s.folds] == [905, 907, 907, 908, 909]
    assert [len(s.subjects("validation", f)) for f in s.folds] == [229, 227, 227, 226, 225]
    assert [len(s.table("train", f)) for f in s.folds] == [6128, 6084, 6023, 6164, 6093]
    assert len(s.subjects("test")) == 500 and len(s.table("test")) == 500
    assert s.table("test").path == str(ad_dl / "ADNI" / "test")
    assert s.table("train", 0).label_column == "diagnosis"
    assert {r.label for r in s.table("test").rows} == {"AD", "CN", "MCI", "pMCI", "sMCI"}
    assert "sub-ADNI002S0619" in s.subjects("train", 0)
    # the published folds are leak-free at subject level, and the validation folds partition the pool
    for fold, tables in s.views():
        assert set(tables) == {"train", "validation", "test"}
        assert not tables["train"].subjects() & tables["validation"].subjects()
        assert not (tables["train"].subjects() | tables["validation"].subjects()) & tables["test"].subjects()
    pool = s.subjects("train") | s.subjects("validation")
    assert len(pool) == 1134 == sum(len(s.subjects("validation", f)) for f in s.folds)
    # every session of the pool is a baseline or follow-up visit id
    assert all(ses is not None and ses.startswith("ses-M") for _, ses in s.sessions("train"))


def test_ad_dl_adni_train_test(ad_dl: Path) -> None:
    s = read_splits(ad_dl / "ADNI")
    assert s.format == "clinicadl" and s.names == ("train", "test") and s.folds == ()
    assert len(s.subjects("train")) == 1134 and len(s.subjects("test")) == 500
    assert len(s.table("train")) == 7442 and len(s.files) == 11 + 5
    assert not s.subjects("train") & s.subjects("test")
    assert any("k-fold" in n for n in s.notes)


def test_ad_dl_test_folders_and_oasis(ad_dl: Path) -> None:
    adni = read_splits(ad_dl / "ADNI" / "test")
    assert adni.format == "clinicadl" and adni.names == ("test",) and len(adni.files) == 5
    assert len(adni.subjects("test")) == 500
    oasis = read_splits(ad_dl / "OASIS")
    assert oasis.names == ("test",) and len(oasis.subjects("test")) == 154
    assert oasis.sessions("test") == read_splits(ad_dl / "OASIS" / "test").sessions("test")
    assert all(p.startswith("sub-OASIS") for p in oasis.subjects("test"))
    assert not oasis.subjects("test") & adni.subjects("test")
