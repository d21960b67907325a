"""``bidsaudit audit`` end to end: exit codes, JSON result, certificate and its tamper checks, real split lists.

Every CLI run passes ``--no-validator`` (and ``--workers 1``) to stay fast,
except one test that runs the official validator once.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from audit.certificate import SIGNING_KEY_ENV, load_certificate, verify_certificate
from audit.checks.registry import all_checks
from schemas import json_schema
from tests.builders import SHARED_DATA, invoke, make_bids, write_image

AD_DL = SHARED_DATA / "splits" / "AD-DL"
SUBJECTS = [f"{i:02d}" for i in range(1, 11)]
FAST = ("--no-validator", "--workers", "1")





def tsv(path: Path, header: str, *rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.replace("|", "\t") + "\n" for line in (header, *rows)))
    return path


def write_splits(root: Path, train: list[str], validation: list[str], test: list[str]) -> Path:
    for name, ids in (("train", train), ("validation", validation), ("test", test)):
        tsv(root / f"{name}.tsv", "participant_id|session_id", *(f"sub-{p}|ses-M00" for p in ids))
    return root


def result_of(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    jsonschema.validate(data, json_schema("result"))
    return data


def checks(data: dict[str, Any], severity: str | None = None) -> list[str]:
    return [f["check"] for f in data["findings"] if severity is None or f["severity"] == severity]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """Ten participants, one session each; families of two (sub-01/02: F1, ..., sub-09/10: F5)."""
    participants = {s: {"diagnosis": "AD" if i % 2 else "CN", "age": str(60 + i), "sex": "MF"[i % 2],
                        "family": f"F{(i + 1) // 2}"} for i, s in enumerate(SUBJECTS, 1)}
    return make_bids(tmp_path / "ds", SUBJECTS, participants=participants,
                     sessions={s: ["M00"] for s in SUBJECTS})


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """Families kept together: train F1-F3, validation F4, test F5."""
    return write_splits(tmp_path / "splits", SUBJECTS[:6], SUBJECTS[6:8], SUBJECTS[8:])


# --------------------------------------------------------------------------------------------------
# exit codes, result and certificate


def test_clean_split_passes_and_writes_a_valid_certificate(tmp_path: Path, ds: Path, clean: Path) -> None:
    cert = tmp_path / "out" / "cert.json"
    res = invoke("audit", ds, "--splits", clean, *FAST, "--group", "family", "--json", tmp_path / "r.json",
                 "--certificate", cert)
    assert res.exit_code == 0, res.output
    assert f"Certificate: {cert}" in res.output
    data = result_of(tmp_path / "r.json")
    assert data["status"] == "pass"
    assert checks(data, "error") == [] and not [c for c in checks(data) if c.startswith("leakage.")]
    assert data["splits"]["format"] == "folder"
    assert data["splits"]["sizes"] == {"train": 6, "validation": 2, "test": 2}
    certificate = json.loads(cert.read_text())
    jsonschema.validate(certificate, json_schema("certificate"))
    assert certificate["status"] == "pass" and certificate["options"]["group"] == "family"
    assert sorted(Path(f).name for f in certificate["splits"]["files"]) == ["test.tsv", "train.tsv", "validation.tsv"]
    assert certificate["dataset"]["fingerprint"] == data["dataset"]["fingerprint"]
    assert not (clean / "bidsaudit-certificate.json").exists()  # --certificate, not beside the splits
    ok = verify_certificate(certificate, where=cert, dataset=ds,
                            split_files=[str(p) for p in sorted(clean.glob("*.tsv"))])
    assert ok.ok, ok.problems


def test_a_split_folder_that_cannot_be_written_keeps_the_verdict(tmp_path: Path, ds: Path, clean: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A reviewer's published, read-only split folder: the default certificate is skipped, saying why."""
    import audit.certificate

    def refuse(cert: Any, path: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audit.certificate, "write_certificate", refuse)
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert "Certificate not written: cannot write beside the split files (Permission denied)" in res.output
    assert "give --certificate PATH" in res.output and result_of(tmp_path / "r.json")["status"] == "pass"
    # asked for by name: not writing it is a failure to run (exit 2, the path named)
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r2.json",
                 "--certificate", tmp_path / "c.json")
    assert res.exit_code == 2 and "cannot write the certificate: Permission denied" in res.output
    assert str(tmp_path / "c.json") in res.output


@pytest.mark.parametrize(("train", "validation", "test", "check", "subjects"), [
    pytest.param(SUBJECTS[:6], SUBJECTS[6:8], ["01", "09", "10"], "leakage.subject_overlap", ["sub-01"],
                 id="subject-in-train-and-test"),
    pytest.param(SUBJECTS[:5], SUBJECTS[6:8], ["06", "09", "10"], "leakage.group_overlap", ["sub-05", "sub-06"],
                 id="family-cut-across-splits"),
])
def test_leaky_split_fails_without_certificate(tmp_path: Path, ds: Path, train: list[str], validation: list[str],
                                               test: list[str], check: str, subjects: list[str]) -> None:
    splits = write_splits(tmp_path / "splits", train, validation, test)
    res = invoke("audit", ds, "--splits", splits, *FAST, "--group", "family", "--json", tmp_path / "r.json")
    assert res.exit_code == 1, res.output
    data = result_of(tmp_path / "r.json")
    assert data["status"] == "fail"
    (f,) = [f for f in data["findings"] if f["check"] == check]
    assert f["severity"] == "error" and f["subjects"] == subjects and f["splits"] == ["train", "test"]
    assert check in res.output
    assert not (splits / "bidsaudit-certificate.json").exists()
    assert "Certificate" not in res.output


@pytest.mark.parametrize("with_dataset", [True, False], ids=["dataset", "split-files-only"])
def test_group_typo_exits_2_with_a_suggestion(tmp_path: Path, ds: Path, with_dataset: bool) -> None:
    splits = tmp_path / "splits"
    for name, ids in (("train", SUBJECTS[:6]), ("test", SUBJECTS[8:])):
        tsv(splits / f"{name}.tsv", "participant_id|family", *(f"sub-{p}|F{p}" for p in ids))
    res = invoke("audit", *([ds] if with_dataset else []), "--splits", splits, *FAST, "--group", "famly",
                 "--json", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "--group" in res.output and "no column 'famly' (did you mean 'family'?)" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists() and not (splits / "bidsaudit-certificate.json").exists()


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp: Path("/nonexistent"), id="nothing-there"),
    pytest.param(lambda tmp: (tmp / "maps").mkdir() or tmp / "maps", id="folder-without-train+validation"),
])
def test_pretrain_pointing_at_nothing_exits_2_naming_it(tmp_path: Path, clean: Path, make: Any) -> None:
    path = make(tmp_path)
    res = invoke("audit", "--splits", clean, *FAST, "--pretrain", path, "--json", tmp_path / "r.json")
    assert res.exit_code == 2
    assert str(path) in res.output and "--pretrain" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("pretrained", "code", "severity", "split"), [
    pytest.param(["01", "09"], 1, "error", "test", id="test-subject-pretrained"),
    pytest.param(["01", "07"], 0, "warning", "validation", id="validation-subject-pretrained"),
    pytest.param(["01", "02"], 0, None, None, id="train-only"),
])
def test_pretrain_from_a_model_folder(tmp_path: Path, clean: Path, pretrained: list[str], code: int,
                                      severity: str | None, split: str | None) -> None:
    tsv(tmp_path / "maps" / "train+validation.tsv", "participant_id|session_id|diagnosis",
        *(f"sub-{p}|ses-M00|AD" for p in pretrained))
    res = invoke("audit", "--splits", clean, *FAST, "--pretrain", tmp_path / "maps", "--json", tmp_path / "r.json",
                 "--no-certificate")
    assert res.exit_code == code, res.output
    found = [(f["severity"], f["splits"], f["subjects"]) for f in result_of(tmp_path / "r.json")["findings"]
             if f["check"] == "leakage.pretrain_overlap"]
    assert found == ([] if severity is None else [(severity, [split], [f"sub-{pretrained[1]}"])])


def test_split_files_only_lists_dataset_checks_as_skipped(tmp_path: Path, clean: Path) -> None:
    res = invoke("audit", "--splits", clean, *FAST, "--json", tmp_path / "r.json", "--certificate",
                 tmp_path / "cert.json")
    assert res.exit_code == 0, res.output
    data = result_of(tmp_path / "r.json")
    assert data["dataset"] is None
    # a limited pass, said so; by default no certificate without image content (issue #13)
    assert data["coverage"]["complete"] is False and data["coverage"]["images"] is None
    assert "PASS (limited: no dataset: split tables only" in res.output
    assert "Certificate not written: the pass is limited" in res.output and not (tmp_path / "cert.json").exists()
    skipped = {s["check"]: s["reason"] for s in data["skipped"]}
    families = ("bids", "quality", "split", "leakage", "confound", "shift", "expectations")
    dataset_needs = {"dataset", "images", "participants", "validator"}
    registrations: dict[str, list[frozenset[str]]] = {}
    for spec in all_checks().values():  # one id may be registered by several functions
        if spec.family in families:
            registrations.setdefault(spec.id, []).append(spec.needs)
    # checks every registration of which needs the dataset (and nothing else a split-only audit lacks)
    need_dataset = {cid for cid, regs in registrations.items()
                    if all(n & dataset_needs and n <= dataset_needs | {"splits"} for n in regs)}
    assert {"split.unknown_subject", "split.unassigned_subject", "quality.participants_table"} <= need_dataset
    for cid in need_dataset:
        assert skipped.get(cid) == "no dataset given", (cid, skipped.get(cid))
    # every split-only leakage check ran
    for cid in ("leakage.subject_overlap", "leakage.session_overlap", "leakage.no_test_split",
                "split.identical_folds", "split.fold_integrity", "quality.label_conflict"):
        assert cid not in skipped
    # one line per reason, not per check (issue #13: 17 "skipped" lines were unreadable)
    assert re.search(r"skipped \d+ checks \(no dataset given\): ", res.output), res.output


def test_real_validator_once(tmp_path: Path, ds: Path, clean: Path) -> None:
    pytest.importorskip("audit.validator", reason="the validator wrapper (audit/validator.py) is not there yet")
    exe = Path(__import__("sys").executable).parent / "bids-validator-deno"
    if not exe.is_file() and shutil.which("bids-validator-deno") is None:
        pytest.skip("bids-validator-deno not installed")
    res = invoke("audit", ds, "--splits", clean, "--workers", "1", "--json", tmp_path / "r.json", "--no-certificate")
    assert res.exit_code in (0, 1), res.output
    data = result_of(tmp_path / "r.json")
    skipped = {s["check"] for s in data["skipped"]}
    assert "bids.invalid" not in skipped and "bids.warning" not in skipped
    assert not [c for c in checks(data) if c.startswith("leakage.")]


# --------------------------------------------------------------------------------------------------
# certificate tampering (verify_certificate, as the trainer's gate calls it)


@pytest.fixture
def certified(tmp_path: Path, ds: Path, clean: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """(certificate path, split files) of a passing, signed audit through the CLI."""
    monkeypatch.setenv(SIGNING_KEY_ENV, "key-1")
    cert = tmp_path / "cert.json"
    res = invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json", "--certificate", cert)
    assert res.exit_code == 0, res.output
    files = [str(p) for p in sorted(clean.glob("*.tsv"))]
    data = load_certificate(cert)
    assert data["signature"]["algorithm"] == "HMAC-SHA256"
    assert verify_certificate(data, where=cert, dataset=ds, split_files=files, require_signature=True).ok
    return cert, files


def _edit_cell(splits: Path, ds: Path) -> str:
    p = splits / "train.tsv"
    p.write_text(p.read_text().replace("sub-02\tses-M00", "sub-09\tses-M00"))
    return f"split file splits/{p.name} changed since the audit"  # named relative to the certificate


def _add_row(splits: Path, ds: Path) -> str:
    p = splits / "test.tsv"
    p.write_text(p.read_text() + "sub-01\tses-M00\n")
    return f"split file splits/{p.name} changed since the audit"  # named relative to the certificate


def _remove_row(splits: Path, ds: Path) -> str:
    p = splits / "validation.tsv"
    p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1]))
    return f"split file splits/{p.name} changed since the audit"  # named relative to the certificate


def _change_image(splits: Path, ds: Path) -> str:
    write_image(ds / "sub-03" / "ses-M00" / "anat" / "sub-03_ses-M00_T1w.nii.gz", seed=99)
    return "dataset file sub-03/ses-M00/anat/sub-03_ses-M00_T1w.nii.gz changed"


def _add_subject(splits: Path, ds: Path) -> str:
    src = ds / "sub-10"
    shutil.copytree(src, ds / "sub-11")
    for f in (ds / "sub-11").rglob("*"):
        if f.is_file():
            f.rename(f.with_name(f.name.replace("sub-10", "sub-11")))
    return "dataset file sub-11/ses-M00/anat/sub-11_ses-M00_T1w.nii.gz was added"


def _remove_image(splits: Path, ds: Path) -> str:
    (ds / "sub-04" / "ses-M00" / "anat" / "sub-04_ses-M00_T1w.nii.gz").unlink()
    return "dataset file sub-04/ses-M00/anat/sub-04_ses-M00_T1w.nii.gz was removed"


@pytest.mark.parametrize("tamper", [
    pytest.param(_edit_cell, id="split-cell-edited"),
    pytest.param(_add_row, id="split-row-added"),
    pytest.param(_remove_row, id="split-row-removed"),
    pytest.param(_change_image, id="image-changed"),
    pytest.param(_add_subject, id="subject-folder-added"),
    pytest.param(_remove_image, id="image-removed"),
])
def test_tampering_breaks_the_certificate(certified: Any, clean: Path, ds: Path, tamper: Any) -> None:
    cert, files = certified
    problem = tamper(clean, ds)
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=files,
                           require_signature=True)
    assert not v.ok
    assert problem in v.problems, v.problems
    assert problem in v.message()


def test_tampering_is_seen_without_the_hash_cache(certified: Any, clean: Path, ds: Path) -> None:
    cert, files = certified
    problem = _change_image(clean, ds)
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=files, full=True)
    assert not v.ok and problem in v.problems


def test_a_split_file_left_out_or_added(certified: Any, clean: Path, ds: Path, tmp_path: Path) -> None:
    cert, files = certified
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=files[:-1])
    assert not v.ok and any("was audited but is not among the files given now" in p for p in v.problems)
    extra = tsv(tmp_path / "more" / "holdout.tsv", "participant_id", "sub-01")
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=[*files, str(extra)])
    assert not v.ok and v.problems == ("split file more/holdout.tsv was not audited",)


@pytest.mark.parametrize(("field", "value"), [
    pytest.param("status", "fail", id="status"),
    pytest.param("options", {"label": None, "site": None, "group": "family", "pretrain": None}, id="options"),
    pytest.param("counts", {"error": 0, "warning": 0, "info": 0, "edited": 1}, id="counts"),
    pytest.param("created", "2000-01-01T00:00:00Z", id="created"),
])
def test_an_edited_certificate_field_breaks_the_signature(certified: Any, ds: Path, field: str, value: Any) -> None:
    cert, files = certified
    data = load_certificate(cert)
    data[field] = value
    v = verify_certificate(data, where=cert, dataset=ds, split_files=files)
    assert not v.ok
    assert "the signature does not match: the certificate was edited or signed with another key" in v.problems


def test_wrong_key(certified: Any, ds: Path) -> None:
    cert, files = certified
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=files, key="key-2")
    assert not v.ok and v.problems == ("the signature does not match: the certificate was edited or signed with "
                                       "another key",)


def test_signed_but_no_key_when_required(certified: Any, ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, files = certified
    monkeypatch.delenv(SIGNING_KEY_ENV)
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=files,
                           require_signature=True)
    assert not v.ok and v.problems == (f"the certificate is signed but no key is set ({SIGNING_KEY_ENV})",)


def test_missing_signature_when_required(tmp_path: Path, ds: Path, clean: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    cert = tmp_path / "cert.json"
    assert invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json",
                  "--certificate", cert).exit_code == 0
    data = load_certificate(cert)
    assert data["signature"] is None
    files = [str(p) for p in sorted(clean.glob("*.tsv"))]
    assert verify_certificate(data, where=cert, dataset=ds, split_files=files).ok
    v = verify_certificate(data, where=cert, dataset=ds, split_files=files, require_signature=True)
    assert not v.ok and v.problems == ("the certificate is not signed and a signature is required",)
    # a signature stripped from a signed certificate reads the same
    monkeypatch.setenv(SIGNING_KEY_ENV, "key-1")
    v = verify_certificate(data, where=cert, dataset=ds, split_files=files, require_signature=True)
    assert v.problems == ("the certificate is not signed and a signature is required",)



@pytest.fixture
def unsigned(tmp_path: Path, ds: Path, clean: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """(loaded certificate, split files) of a passing, unsigned audit through the CLI."""
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    cert = tmp_path / "cert.json"
    assert invoke("audit", ds, "--splits", clean, *FAST, "--json", tmp_path / "r.json",
                  "--certificate", cert).exit_code == 0
    return load_certificate(cert), [str(p) for p in sorted(clean.glob("*.tsv"))]


def test_an_edited_file_list_is_seen_even_when_the_fingerprint_agrees(unsigned: Any, ds: Path,
                                                                       tmp_path: Path) -> None:
    # one verification for the gate and everyone else: every file hash is compared, always
    data, files = unsigned
    first = sorted(data["dataset"]["files"])[0]
    data["dataset"]["files"][first] = "sha256:" + "1" * 64
    v = verify_certificate(data, where=tmp_path / "cert.json", dataset=ds, split_files=files)
    assert not v.ok and f"dataset file {first} changed" in v.problems


def test_the_same_content_elsewhere_is_the_certified_dataset(unsigned: Any, ds: Path, tmp_path: Path) -> None:
    """The certificate binds content, not locations (issue #13): a copy or a re-clone under another name opens."""
    data, files = unsigned
    for moved in (tmp_path / "moved" / ds.name, tmp_path / "re-cloned"):
        shutil.copytree(ds, moved)
        v = verify_certificate(data, where=tmp_path / "cert.json", dataset=moved, split_files=files)
        assert v.ok, v.problems
        assert v.index is not None and v.files == data["dataset"]["files"]
    write_image(moved / "sub-03" / "ses-M00" / "anat" / "sub-03_ses-M00_T1w.nii.gz", seed=99)
    v = verify_certificate(data, where=tmp_path / "cert.json", dataset=moved, split_files=files)
    assert v.problems == ("dataset file sub-03/ses-M00/anat/sub-03_ses-M00_T1w.nii.gz changed",)


def test_a_certificate_for_split_files_alone_vouches_for_no_dataset(tmp_path: Path, ds: Path, clean: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    cert = tmp_path / "cert.json"
    policy = tmp_path / "bidsaudit.toml"  # a limited pass is certified only when the policy allows it
    policy.write_text('[certificate]\nlimited_pass = "allow"\n')
    assert invoke("audit", "--splits", clean, *FAST, "--json", tmp_path / "r.json",
                  "--certificate", cert, "--config", policy).exit_code == 0
    files = [str(p) for p in sorted(clean.glob("*.tsv"))]
    assert verify_certificate(load_certificate(cert), where=cert, dataset=None, split_files=files).ok
    v = verify_certificate(load_certificate(cert), where=cert, dataset=ds, split_files=files)
    assert not v.ok and v.index is None and any("split files alone" in p for p in v.problems)

# --------------------------------------------------------------------------------------------------
# the published AD-DL split lists (a reviewer's input: split files, no images)


def _audit_shared(tmp_path: Path, rel: str) -> tuple[Any, dict[str, Any]]:
    if not AD_DL.is_dir():
        pytest.skip(f"the published AD-DL split lists are not at {AD_DL} (set BIDSAUDIT_SHARED_DATA)")
    out = tmp_path / "r.json"
    res = invoke("audit", "--splits", AD_DL / rel, *FAST, "--json", out, "--no-certificate")
    assert not list((AD_DL / rel).rglob("bidsaudit-*")), "nothing may be written into ../shared"
    return res, result_of(out)


OURS = ("leakage.", "split.", "quality.label_conflict", "quality.missing_label")


def _ours(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The findings of the leakage, split and split-label checks (other families are pinned elsewhere)."""
    return [f for f in data["findings"] if f["check"].startswith(OURS)]


def _hierarchy_note(data: dict[str, Any]) -> dict[str, Any]:
    (f,) = _ours(data)
    assert f["check"] == "quality.label_conflict" and f["severity"] == "info"
    assert f["evidence"]["count"] == 1260  # every sMCI/pMCI session is also in MCI.tsv: 696 + 564
    assert f["evidence"]["label_pairs"] == [["MCI", "pMCI"], ["MCI", "sMCI"]]
    assert f["message"].startswith("1260 participant sessions carry nested labels (a label hierarchy, not a conflict)")
    return f


def _skipped(data: dict[str, Any]) -> dict[str, str]:
    skipped = {s["check"]: s["reason"] for s in data["skipped"]}
    assert skipped["leakage.group_overlap"] == "no --group given"
    assert skipped["leakage.pretrain_overlap"] == "no --pretrain given"
    assert skipped["split.unknown_subject"] == skipped["split.unassigned_subject"] == "no dataset given"
    for cid in ("leakage.subject_overlap", "leakage.session_overlap", "leakage.no_test_split",
                "split.identical_folds", "split.fold_integrity", "quality.label_conflict", "quality.missing_label"):
        assert cid not in skipped
    return skipped


def test_ad_dl_adni_five_folds(tmp_path: Path) -> None:
    res, data = _audit_shared(tmp_path, "ADNI/train")
    assert res.exit_code == 0, res.output  # no error finding (other families may add warnings and notes)
    assert data["status"] == "pass" and data["dataset"] is None
    splits = data["splits"]
    assert splits["format"] == "clinicadl" and splits["folds"] == [0, 1, 2, 3, 4]
    assert splits["sizes"] == {
        "train/fold-0": 905, "train/fold-1": 907, "train/fold-2": 907, "train/fold-3": 908, "train/fold-4": 909,
        "validation/fold-0": 229, "validation/fold-1": 227, "validation/fold-2": 227, "validation/fold-3": 226,
        "validation/fold-4": 225, "test": 500}
    # the validation folds partition the 1134-participant pool; each fold's train + validation is that pool
    assert sum(splits["sizes"][f"validation/fold-{k}"] for k in range(5)) == 1134
    assert all(splits["sizes"][f"train/fold-{k}"] + splits["sizes"][f"validation/fold-{k}"] == 1134 for k in range(5))
    for view in splits["overlap"]:  # no participant on two sides of any fold view
        m = view["matrix"]
        assert all(m[i][j] == 0 for i in range(len(m)) for j in range(len(m)) if i != j), view
    _hierarchy_note(data)
    _skipped(data)
    assert any("train/, validation/" in n and "not read" in n for n in splits["notes"])


def test_ad_dl_adni_train_and_test(tmp_path: Path) -> None:
    res, data = _audit_shared(tmp_path, "ADNI")
    assert res.exit_code == 0, res.output
    assert data["splits"]["format"] == "clinicadl" and data["splits"]["folds"] == []
    assert data["splits"]["sizes"] == {"train": 1134, "test": 500}
    _hierarchy_note(data)
    _skipped(data)
    # The published test set has 100 participants per class; train follows ADNI's prevalence and holds
    # 181 participants labelled "unlabeled". Nested labels count once, as their most specific label.
    (shift,) = [f for f in data["findings"] if f["check"] == "shift.label" and f["severity"] == "warning"]
    described = shift["evidence"]["worst"]["describe"]
    assert described["levels"] == ["AD", "CN", "MCI", "pMCI", "sMCI", "unlabeled"]
    assert described["counts"] == {"train": [236, 230, 94, 195, 198, 181], "test": [100] * 5 + [0]}


def test_ad_dl_oasis_is_a_test_set_only(tmp_path: Path) -> None:
    res, data = _audit_shared(tmp_path, "OASIS")
    assert res.exit_code == 0, res.output
    assert data["splits"]["format"] == "clinicadl" and data["splits"]["sizes"] == {"test": 154}
    # OASIS is the external test cohort of the study: nothing to overlap with, nothing to report
    assert _ours(data) == []
    _skipped(data)
