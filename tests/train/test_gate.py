"""The training gate: every tamper closes it, with a message naming what changed (no torch needed)."""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
from pathlib import Path

import pytest

from audit.certificate import CERTIFICATE_NAME, SIGNING_KEY_ENV, build_certificate, write_certificate
from audit.errors import InputError
from train.gate import GateClosed, GatePass, certificate_path, open_gate

KEY = "test-signing-key"


def _certify(dataset: Path, splits: Path, *, key: str | None = None, label: str = "diagnosis") -> Path:
    """What ``certify`` writes for a passing audit of (dataset, splits), without running the checks."""
    from audit.api import splits_block
    from audit.bidsindex import index_dataset
    from audit.hashing import HashCache, dataset_fingerprint
    from audit.splits import read_splits

    index = index_dataset(dataset)
    fp = dataset_fingerprint(index, HashCache(memory=True))
    split_set = read_splits(splits, label=label)
    block = splits_block(split_set)
    result = {"status": "pass", "counts": {"error": 0, "warning": 0, "info": 0},
              "dataset": {"path": str(index.root), "name": index.name, "fingerprint": fp.fingerprint},
              "splits": {"format": block["format"], "fingerprint": block["fingerprint"]}}
    cert = build_certificate(result, dataset_files=dict(fp.files), split_files=list(split_set.files),
                             options={"label": label}, config={}, where=splits / CERTIFICATE_NAME, key=key)
    return write_certificate(cert, splits / CERTIFICATE_NAME)


@pytest.fixture(scope="session")
def _base(tmp_path_factory):
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset

    root = tmp_path_factory.mktemp("gate-base")
    make_dataset(root / "dataset", n_subjects=12, seed=1)
    split_dataset(root / "dataset", SplitPlan(label="diagnosis", seed=0), root / "splits", layout="folder")
    return root


@pytest.fixture
def case(_base, tmp_path, monkeypatch):
    """A fresh copy of the dataset and split, certified (unsigned)."""
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    shutil.copytree(_base / "dataset", tmp_path / "dataset")
    shutil.copytree(_base / "splits", tmp_path / "splits")
    _certify(tmp_path / "dataset", tmp_path / "splits")
    return tmp_path


def _gate(case: Path, **kw) -> GatePass:
    return open_gate(case / "dataset", case / "splits", **kw)


def _closed(case: Path, **kw) -> str:
    with pytest.raises(GateClosed) as info:
        _gate(case, **kw)
    assert info.value.exit_code == 1
    return str(info.value)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _first_image(case: Path) -> Path:
    return sorted((case / "dataset").glob("sub-*/**/*_T1w.nii.gz"))[0]


# ------------------------------------------------------------------ passes
def test_clean_certificate_opens_the_gate(case):
    g = _gate(case)
    assert g.splits.names == ("train", "validation", "test")
    assert g.dataset == (case / "dataset").resolve()
    assert any(p.endswith("_T1w.nii.gz") for p in g.files)
    assert g.record()["certificate_sha256"].startswith("sha256:")
    assert _gate(case, verify="full").verify == "full"


def test_certificate_is_looked_for_beside_the_split_files(case):
    assert certificate_path(case / "splits") == case / "splits" / CERTIFICATE_NAME
    assert certificate_path(case / "splits" / "train.tsv") == case / "splits" / CERTIFICATE_NAME
    moved = case / "elsewhere.json"
    shutil.move(case / "splits" / CERTIFICATE_NAME, moved)
    with pytest.raises(GateClosed, match="no certificate here"):  # the contract: a closed gate, exit 1
        _gate(case)
    assert _gate(case, certificate=moved).certificate_path == moved.resolve()



def test_cli_train_without_a_certificate_is_a_closed_gate_exit_1(case):
    # contract: "A missing certificate is a closed gate (exit 1); an unreadable or malformed one is exit 2."
    from tests.builders import invoke

    (case / "splits" / CERTIFICATE_NAME).unlink()
    res = invoke("train", str(case / "dataset"), "--splits", str(case / "splits"), "--output", str(case / "maps"))
    assert res.exit_code == 1, res.output
    assert "no certificate here" in res.output and "Traceback" not in res.output
    (case / "splits" / CERTIFICATE_NAME).write_text("{not json")
    res = invoke("train", str(case / "dataset"), "--splits", str(case / "splits"), "--output", str(case / "maps"))
    assert res.exit_code == 2, res.output
    assert not (case / "maps").exists()

# ------------------------------------------------------------ split tampers
def test_editing_a_split_cell_closes_the_gate(case):
    train = case / "splits" / "train.tsv"
    lines = _lines(train)
    cells = lines[1].split("\t")
    cells[3] = str(float(cells[3]) + 1)  # age
    lines[1] = "\t".join(cells)
    train.write_text("\n".join(lines) + "\n")
    msg = _closed(case)
    assert "split file train.tsv changed since the audit" in msg  # named relative to the certificate


def test_adding_a_row_closes_the_gate(case):
    train, test = case / "splits" / "train.tsv", case / "splits" / "test.tsv"
    train.write_text(train.read_text() + _lines(test)[1] + "\n")
    assert "train.tsv changed since the audit" in _closed(case)


def test_removing_a_row_closes_the_gate(case):
    val = case / "splits" / "validation.tsv"
    val.write_text("\n".join(_lines(val)[:-1]) + "\n")
    assert "validation.tsv changed since the audit" in _closed(case)


def test_adding_a_split_file_closes_the_gate(case):
    shutil.copyfile(case / "splits" / "test.tsv", case / "splits" / "holdout.tsv")
    assert "holdout.tsv was not audited" in _closed(case)


def test_a_split_file_made_unreadable_closes_the_gate_not_an_input_error(case):
    (case / "splits" / "train.tsv").write_bytes(b"\x00\x01garbage")
    assert "train.tsv changed since the audit" in _closed(case)


def test_a_malformed_split_input_as_certified_is_an_input_error(case, tmp_path):
    (case / "splits" / "train.tsv").write_text("participant_id\tdiagnosis\nsub 1\tCN\n")
    _certify_raw = case / "splits" / CERTIFICATE_NAME
    cert = json.loads(_certify_raw.read_text())
    from audit.certificate import split_file_hashes
    cert["splits"]["files"] = {str(Path(f).resolve()): h for f, h in split_file_hashes(
        [str(p) for p in sorted((case / "splits").glob("*.tsv"))]).items()}
    _certify_raw.write_text(json.dumps(cert))
    with pytest.raises(InputError):
        _gate(case)


# ------------------------------------------------------------ image tampers
def test_editing_an_image_closes_the_gate(case):
    img = _first_image(case)
    raw = bytearray(img.read_bytes())
    raw[-20] ^= 0xFF
    img.write_bytes(bytes(raw))
    rel = img.relative_to(case / "dataset").as_posix()
    assert f"dataset file {rel} changed" in _closed(case)


def test_swapping_two_images_closes_the_gate(case):
    a, b = sorted((case / "dataset").glob("sub-*/anat/*_T1w.nii.gz"))[:2]
    ra, rb = a.read_bytes(), b.read_bytes()
    a.write_bytes(rb)
    b.write_bytes(ra)
    msg = _closed(case)
    for p in (a, b):
        assert f"dataset file {p.relative_to(case / 'dataset').as_posix()} changed" in msg


def test_full_verification_catches_an_edit_the_hash_cache_cannot_see(case):
    img = _first_image(case)
    _gate(case)  # fills the hash cache
    st = img.stat()
    raw = bytearray(img.read_bytes())
    raw[-20] ^= 0xFF
    with open(img, "r+b") as fh:  # same inode, same size
        fh.write(bytes(raw))
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: a "racily clean" edit
    assert "changed" in _closed(case, verify="full")  # whatever the cache remembers


def test_removing_an_image_closes_the_gate(case):
    img = _first_image(case)
    img.unlink()
    assert f"dataset file {img.relative_to(case / 'dataset').as_posix()} was removed" in _closed(case)


def test_adding_a_subject_folder_closes_the_gate(case):
    src = _first_image(case)
    dst = case / "dataset" / "sub-099" / "anat" / "sub-099_T1w.nii.gz"
    dst.parent.mkdir(parents=True)
    shutil.copyfile(src, dst)
    msg = _closed(case)
    assert "1 subject folder(s) added: sub-099" in msg
    assert "dataset file sub-099/anat/sub-099_T1w.nii.gz was added" in msg


def test_editing_participants_tsv_closes_the_gate(case):
    p = case / "dataset" / "participants.tsv"
    p.write_text(p.read_text().replace("\tAD\t", "\tCN\t", 1))
    assert "dataset file participants.tsv changed" in _closed(case)


# ------------------------------------------------------ certificate tampers
def _edit(case: Path, change) -> None:
    path = case / "splits" / CERTIFICATE_NAME
    cert = json.loads(path.read_text())
    change(cert)
    path.write_text(json.dumps(cert, indent=2))


def _first_key(d: dict) -> str:
    return sorted(d)[0]


UNSIGNED_EDITS = [
    pytest.param(lambda c: c.update(status="fail"), "status 'fail'", id="status"),
    pytest.param(lambda c: c["counts"].update(error=2), "records error findings", id="counts"),
    pytest.param(lambda c: c["dataset"].update(fingerprint="sha256:" + "0" * 64),
                 "dataset fingerprint recorded in the certificate", id="dataset.fingerprint"),
    pytest.param(lambda c: c["dataset"]["files"].update({_first_key(c["dataset"]["files"]): "sha256:" + "1" * 64}),
                 "changed", id="dataset.files-hash"),
    pytest.param(lambda c: c["dataset"]["files"].pop(_first_key(c["dataset"]["files"])),
                 "was added", id="dataset.files-removed-entry"),
    pytest.param(lambda c: c["dataset"].update(name="another dataset"), "written for dataset 'another dataset'",
                 id="dataset.name"),
    pytest.param(lambda c: c["splits"].update(fingerprint="sha256:" + "2" * 64), "split fingerprint",
                 id="splits.fingerprint"),
    pytest.param(lambda c: c["splits"].update(format="nnunet"), "split format 'nnunet'", id="splits.format"),
    pytest.param(lambda c: c["splits"]["files"].update({_first_key(c["splits"]["files"]): "sha256:" + "3" * 64}),
                 "changed since the audit", id="splits.files-hash"),
    pytest.param(lambda c: c["splits"]["files"].pop(_first_key(c["splits"]["files"])), "was not audited",
                 id="splits.files-removed-entry"),
    pytest.param(lambda c: c.update(dataset=None), "split files alone", id="dataset-null"),
]


@pytest.mark.parametrize(("change", "says"), UNSIGNED_EDITS)
def test_editing_a_checkable_certificate_field_closes_the_gate(case, change, says):
    _edit(case, change)
    assert says in _closed(case)


SIGNED_EDITS = [
    pytest.param(lambda c: c.update(created="2000-01-01T00:00:00Z"), id="created"),
    pytest.param(lambda c: c["tool"].update(version="0.0.0"), id="tool.version"),
    pytest.param(lambda c: c.update(config_hash="sha256:" + "4" * 64), id="config_hash"),
    pytest.param(lambda c: c["options"].update(label="age"), id="options.label"),
    pytest.param(lambda c: c["options"].update(pretrain="/tmp/x.tsv"), id="options.pretrain"),
    pytest.param(lambda c: c["counts"].update(warning=0, info=99), id="counts"),
    pytest.param(lambda c: c["signature"].update(value="0" * 64), id="signature.value"),
]


@pytest.mark.parametrize("change", SIGNED_EDITS)
def test_editing_any_field_of_a_signed_certificate_closes_the_gate(case, monkeypatch, change):
    _certify(case / "dataset", case / "splits", key=KEY)
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    assert _gate(case, require_signature=True).certificate["signature"]
    _edit(case, change)
    assert "the signature does not match" in _closed(case)
    assert "the signature does not match" in _closed(case, require_signature=True)


def test_a_wrong_key_closes_the_gate(case):
    _certify(case / "dataset", case / "splits", key=KEY)
    assert "the signature does not match" in _closed(case, require_signature=True, key="another key")


def test_a_missing_key_closes_the_gate_when_a_signature_is_required(case):
    _certify(case / "dataset", case / "splits", key=KEY)
    _gate(case)  # signature not required, no key: nothing to check it with
    assert "no key is set" in _closed(case, require_signature=True)


def test_an_unsigned_certificate_closes_the_gate_when_a_signature_is_required(case):
    assert "not signed and a signature is required" in _closed(case, require_signature=True, key=KEY)


# -------------------------------------------------------------- bad input
def test_a_certificate_with_an_absolute_dataset_path_is_malformed(case):
    """Version 2 binds content, not locations: a ``dataset.path`` written into it is refused (exit 2), briefly."""
    _edit(case, lambda c: c["dataset"].update(path="/somewhere/else"))
    with pytest.raises(InputError, match="records no absolute path") as info:
        _gate(case)
    assert len(str(info.value)) < 400


def test_a_malformed_certificate_is_an_input_error(case):
    path = case / "splits" / CERTIFICATE_NAME
    path.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        _gate(case)
    path.write_text(json.dumps({"status": "pass"}))
    with pytest.raises(InputError, match="bidsaudit certificate"):
        _gate(case)


def test_a_certificate_for_another_dataset_closes_the_gate(case, tmp_path):
    from audit.synthetic import make_dataset

    other = tmp_path / "other"
    make_dataset(other, n_subjects=12, seed=5)
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "other", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    with pytest.raises(GateClosed, match="written for dataset 'bidsaudit synthetic"):
        open_gate(other, case / "splits")


def test_unknown_verify_mode_and_missing_paths_are_input_errors(case):
    with pytest.raises(InputError, match="--verify"):
        _gate(case, verify="none")
    with pytest.raises(InputError, match="--splits"):
        open_gate(case / "dataset", case / "nope")
    with pytest.raises(InputError):
        open_gate(case / "nope", case / "splits")


def test_an_audited_label_other_than_the_training_label_is_noted(case):
    g = _gate(case, label="age")
    assert any("did not check" in n for n in g.notes)


# -------------------------------------------------- the trainer's entry point
def test_the_gate_runs_before_any_image_is_loaded(case, monkeypatch):
    import nibabel

    import train.api
    import train.data

    def boom(*a, **k):
        raise AssertionError("an image was loaded before the gate closed")

    monkeypatch.setattr(nibabel, "load", boom)
    monkeypatch.setattr(nibabel.Nifti1Image, "from_bytes", boom)
    monkeypatch.setattr(train.data, "decode_volume", boom)
    train_tsv = case / "splits" / "train.tsv"
    train_tsv.write_text(train_tsv.read_text() + "sub-099\tn/a\tCN\t70\tF\tsiteA\n")
    with pytest.raises(GateClosed, match="train.tsv changed"):
        train.api.train_model(case / "dataset", case / "splits", case / "maps", epochs=1)
    assert not (case / "maps").exists()


def test_there_is_no_flag_that_bypasses_the_gate():
    import train.api

    for fn in (train.api.train_model,):
        params = set(inspect.signature(fn).parameters)
        forbidden = {"force", "skip_gate", "no_gate", "no_verify", "unsafe", "skip_certificate", "ignore_certificate",
                     "bypass"}
        assert not params & forbidden
    with pytest.raises(InputError, match="--verify"):
        train.api.train_model("x", "y", "z", verify="skip")


def test_train_refuses_without_a_certificate_before_anything_else(case):
    import train.api

    (case / "splits" / CERTIFICATE_NAME).unlink()
    with pytest.raises(GateClosed, match="no certificate here") as info:  # a closed gate, exit 1
        train.api.train_model(case / "dataset", case / "splits", case / "maps", epochs=1)
    assert info.value.exit_code == 1
    assert not (case / "maps").exists()


def test_resume_runs_the_gate_again(case):
    import train.api

    (case / "maps").mkdir()
    (case / "maps" / "maps.json").write_text("{}")
    img = _first_image(case)
    img.write_bytes(img.read_bytes()[:-4])
    with pytest.raises(GateClosed, match="changed"):
        train.api.train_model(case / "dataset", case / "splits", case / "maps", resume=True)


def test_refusal_keeps_every_problem(case):
    for img in sorted((case / "dataset").glob("sub-*/**/*_T1w.nii.gz"))[:3]:
        img.write_bytes(img.read_bytes() + b"\0")
    with pytest.raises(GateClosed) as info:
        _gate(case)
    assert len([p for p in info.value.problems if p.startswith("dataset file")]) == 3
    assert copy.copy(info.value.problems) == info.value.problems


# ------------------------------------------------------ portable certificates
def test_the_certificate_records_no_absolute_path(case):
    text = (case / "splits" / CERTIFICATE_NAME).read_text()
    cert = json.loads(text)
    assert cert["certificate_version"] == "2" and "path" not in cert["dataset"]
    assert sorted(cert["splits"]["files"]) == ["test.tsv", "train.tsv", "validation.tsv"]
    assert cert["splits"]["root"] == "."
    assert str(case) not in text


def test_the_same_content_elsewhere_opens_the_gate(case, tmp_path_factory):
    """CI audits in one checkout, training runs in another: split folder copied with its certificate,
    dataset re-cloned under another folder name."""
    elsewhere = tmp_path_factory.mktemp("cluster")
    shutil.copytree(case / "splits", elsewhere / "published-splits")
    shutil.copytree(case / "dataset", elsewhere / "clone-of-dataset")
    g = open_gate(elsewhere / "clone-of-dataset", elsewhere / "published-splits")
    assert g.dataset == (elsewhere / "clone-of-dataset").resolve()
    # moved, not copied: the originals are gone
    shutil.rmtree(case / "dataset")
    shutil.move(elsewhere / "published-splits", elsewhere / "moved" / "splits")
    g = open_gate(elsewhere / "clone-of-dataset", elsewhere / "moved" / "splits")
    assert g.certificate_path == (elsewhere / "moved" / "splits" / CERTIFICATE_NAME).resolve()


def test_a_copy_refuses_any_content_change_naming_it(case, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("copy")
    shutil.copytree(case / "splits", elsewhere / "splits")
    shutil.copytree(case / "dataset", elsewhere / "dataset")
    img = min((elsewhere / "dataset").glob("sub-*/**/*_T1w.nii.gz"))
    img.write_bytes(img.read_bytes()[:-1] + bytes([img.read_bytes()[-1] ^ 1]))
    val = elsewhere / "splits" / "validation.tsv"
    val.write_text("\n".join(_lines(val)[:-1]) + "\n")
    with pytest.raises(GateClosed) as info:
        open_gate(elsewhere / "dataset", elsewhere / "splits", verify="full")
    msg = str(info.value)
    assert f"dataset file {img.relative_to(elsewhere / 'dataset').as_posix()} changed" in msg
    assert "split file validation.tsv changed since the audit" in msg


def test_a_certificate_kept_apart_from_the_split_files_still_finds_them(case, tmp_path_factory):
    """Written with --certificate elsewhere (or moved after the audit): the split files are found by their names
    under the split folder; their content is still compared byte for byte."""
    apart = tmp_path_factory.mktemp("artifacts") / "ci" / "cert.json"
    apart.parent.mkdir(parents=True)
    shutil.move(case / "splits" / CERTIFICATE_NAME, apart)
    assert _gate(case, certificate=apart).certificate_path == apart.resolve()
    (case / "splits" / "test.tsv").write_text((case / "splits" / "test.tsv").read_text() + "sub-999\n")
    assert "split file" in _closed(case, certificate=apart)


def test_a_split_file_under_another_name_is_said_so(case):
    shutil.move(case / "splits" / "test.tsv", case / "splits" / "holdout.tsv")
    msg = _closed(case)
    assert "holdout.tsv has the content certified as test.tsv" in msg


def test_a_version_1_certificate_closes_the_gate_saying_to_audit_again(case):
    def to_v1(c):
        c["certificate_version"] = "1"
        c["dataset"]["path"] = str(case / "dataset")
        c["splits"]["files"] = {str((case / "splits" / k).resolve()): v for k, v in c["splits"]["files"].items()}
    _edit(case, to_v1)
    msg = _closed(case)
    assert "version 1" in msg and "audit again" in msg
