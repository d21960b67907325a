"""The dataset index: schema-driven names, inheritance, absent content, bad input."""

from __future__ import annotations

import json
import os

import pytest

from audit.bidsindex import index_dataset
from audit.errors import InputError
from tests.builders import make_bids


def test_entities_and_roles(tmp_path):
    root = make_bids(tmp_path / "ds", ["01", "02"], sessions={"02": ["a", "b"]})
    idx = index_dataset(root)
    assert idx.subjects == ("sub-01", "sub-02")
    rows = {r.path: r for r in idx.rows}
    r = rows["sub-02/ses-b/anat/sub-02_ses-b_T1w.nii.gz"]
    assert (r.subject, r.session, r.datatype, r.suffix, r.extension, r.entities, r.role, r.valid) == (
        "sub-02", "ses-b", "anat", "T1w", ".nii.gz", "sub-02_ses-b", "data", True)
    assert rows["sub-01/anat/sub-01_T1w.json"].role == "sidecar"
    assert idx.sessions_by_subject == {"sub-01": (), "sub-02": ("ses-a", "ses-b")}
    assert len(idx.images()) == 3


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("sub-01_T1x.nii.gz", "unknown suffix 'T1x'", id="unknown-suffix"),
        pytest.param("sub-01_foo-1_T1w.nii.gz", "unknown entity 'foo'", id="unknown-entity"),
        pytest.param("sub-01_run-1_acq-x_T1w.nii.gz", "entities out of order", id="order"),
        pytest.param("sub-01_bold.nii.gz", "suffix 'bold' is not allowed in datatype 'anat'", id="wrong-datatype"),
        pytest.param("sub-01_T1w.txt", "extension '.txt' is not allowed", id="extension"),
        pytest.param("sub-02_T1w.nii.gz", "does not match folder sub-01", id="subject-mismatch"),
        pytest.param("sub-01_run-x_T1w.nii.gz", "not a index", id="index-format"),
    ],
)
def test_invalid_names_are_kept_with_reason(tmp_path, name, reason):
    root = make_bids(tmp_path / "ds", ["01"], images=False)
    (root / "sub-01" / "anat" / name).write_bytes(b"")
    row = {r.path: r for r in index_dataset(root).rows}[f"sub-01/anat/{name}"]
    assert not row.valid
    assert reason in row.reason
    assert row.role == "other"


def test_inheritance_closest_wins_key_by_key(tmp_path):
    root = make_bids(tmp_path / "ds", ["01", "02"], sidecar={"RepetitionTime": 2.0})
    (root / "T1w.json").write_text(json.dumps({"Manufacturer": "GE", "RepetitionTime": 9.9, "EchoTime": 0.003}))
    idx = index_dataset(root)
    meta = idx.sidecar("sub-01/anat/sub-01_T1w.nii.gz")
    assert meta == {"Manufacturer": "GE", "RepetitionTime": 2.0, "EchoTime": 0.003}
    # a sidecar with an entity the file lacks does not apply
    (root / "acq-other_T1w.json").write_text(json.dumps({"Manufacturer": "Philips"}))
    assert index_dataset(root).sidecar("sub-01/anat/sub-01_T1w.nii.gz")["Manufacturer"] == "GE"


def test_sidecars_are_read_lazily(tmp_path):
    root = make_bids(tmp_path / "ds", ["01"])
    (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text("{not json")
    idx = index_dataset(root)  # does not raise: nothing read yet
    assert idx.all_problems() == ()
    assert idx.sidecar("sub-01/anat/sub-01_T1w.nii.gz") == {}
    (problem,) = idx.all_problems()
    assert problem.kind == "malformed_json" and problem.path == "sub-01/anat/sub-01_T1w.json"
    assert problem.line == 1 and problem.column == 2


def test_absent_content_is_recognised(tmp_path):
    root = make_bids(tmp_path / "ds", ["01", "02", "03"])
    anat2 = root / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    anat2.unlink()
    anat2.symlink_to("../../.git/annex/objects/Xx/Yy/MD5E-s99--0123456789abcdef.nii.gz/MD5E-s99--0123456789abcdef.nii.gz")
    anat3 = root / "sub-03" / "anat" / "sub-03_T1w.nii.gz"
    anat3.write_text("/annex/objects/SHA256E-s12--" + "ab" * 32 + ".nii.gz\n")
    rows = {r.subject: r for r in index_dataset(root).images()}
    assert rows["sub-01"].link == "file"
    assert (rows["sub-02"].link, rows["sub-02"].annex_key) == ("dangling", "MD5E-s99--0123456789abcdef.nii.gz")
    assert rows["sub-03"].link == "annex-pointer" and rows["sub-03"].annex_key.startswith("SHA256E-s12--")
    assert len(index_dataset(root).images(present_only=True)) == 1


def test_symlink_loop_is_a_problem_not_a_crash(tmp_path):
    root = make_bids(tmp_path / "ds", ["01"])
    os.symlink(root / "sub-01", root / "sub-01" / "anat" / "loop")
    os.symlink("self", root / "sub-01" / "anat" / "self")
    idx = index_dataset(root)
    kinds = {p.kind for p in idx.all_problems()}
    assert "symlink_loop" in kinds


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda p: p, "no such file or folder", id="missing"),
        pytest.param(lambda p: (p.write_text("x"), p)[1], "is a file", id="file"),
        pytest.param(lambda p: (p.mkdir(), p)[1], "no dataset_description.json", id="no-description"),
    ],
)
def test_bad_dataset_paths(tmp_path, setup, message):
    path = setup(tmp_path / "ds")
    with pytest.raises(InputError, match=message) as err:
        index_dataset(path)
    assert str(tmp_path / "ds") in str(err.value)


def test_malformed_dataset_description_names_line_and_column(tmp_path):
    root = make_bids(tmp_path / "ds", ["01"])
    (root / "dataset_description.json").write_text('{\n  "Name": "x",\n  "BIDSVersion": 1.10\n  "Oops": 1}')
    with pytest.raises(InputError) as err:
        index_dataset(root)
    assert "dataset_description.json, line 4, column 3: malformed JSON" in str(err.value)


def test_bids_examples_index_without_unexplained_invalid_names(shared_data):
    root = shared_data / "bids-examples"
    for ds in sorted(p for p in root.iterdir() if p.is_dir()):
        idx = index_dataset(ds)
        assert idx.subjects, ds.name
        assert [r.path for r in idx.invalid] == [], ds.name


def test_datalad_clone_metadata_indexed_images_absent(shared_data):
    idx = index_dataset(shared_data / "openneuro" / "ds000117")
    images = idx.images()
    assert len(idx.subjects) == 17  # sub-01..16 and sub-emptyroom
    assert images and all(r.link in ("annex-pointer", "dangling") for r in images)
    assert idx.images(present_only=True) == []
    meta = idx.sidecar("sub-01/ses-mri/anat/sub-01_ses-mri_acq-mprage_T1w.nii.gz")
    assert meta["Manufacturer"] == "Siemens"
