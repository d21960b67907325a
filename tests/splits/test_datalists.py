"""Issue #12, reviewer mode on published artifacts: MONAI datalists, image-path lists, nnU-Net dataset.json,
participant ids from paths (the rule and its examples), disjointness levels, pretraining manifests, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.api import audit_splits, read_pretrain
from audit.config import AuditOptions
from audit.errors import InputError
from audit.splits import detect_format, read_splits
from tests.builders import SHARED_DATA, invoke, make_bids

IXI = SHARED_DATA / "ixi-t1w-100"
TRT = SHARED_DATA / "bids-examples" / "7t_trt"
AD_DL = SHARED_DATA / "splits" / "AD-DL"
REVIEWER = AuditOptions(run_validator=False, check_images=False)


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set BIDSAUDIT_SHARED_DATA or add ../shared/data)")
    return path


def ixi_images() -> list[str]:
    root = need(IXI)
    return sorted(p.relative_to(root).as_posix() for p in root.glob("sub-*/anat/*_T1w.nii.gz"))


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
    return path


def error(path: Path, **kwargs: object) -> str:
    with pytest.raises(InputError) as info:
        read_splits(path, **kwargs)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture
def ixi_datalist(tmp_path: Path) -> Path:
    """A MONAI 5-fold datalist of the 100 IXI T1w images: 80 in training (fold = i % 5), 20 held out for test."""
    images = ixi_images()
    return write_json(tmp_path / "ixi_folds.json", {
        "description": "IXI T1w, 5 folds",
        "training": [{"image": p, "label": i % 2, "fold": i % 5} for i, p in enumerate(images[:80])],
        "test": [{"image": p} for p in images[80:]],
    })


# --------------------------------------------------------------------------------------------------
# MONAI datalists


def test_monai_kfold_datalist_of_ixi(ixi_datalist: Path) -> None:
    s = read_splits(ixi_datalist)
    assert s.format == "monai" == detect_format(ixi_datalist)
    assert s.folds == (0, 1, 2, 3, 4) and s.names == ("train", "validation", "test")
    assert [len(s.subjects("validation", f)) for f in s.folds] == [16] * 5
    assert [len(s.subjects("train", f)) for f in s.folds] == [64] * 5
    assert len(s.subjects("test")) == 20
    assert s.id_rule is not None and s.id_rule["rule"] == "bids" and len(s.id_rule["examples"]) == 3
    assert s.id_rule["examples"][0]["id"] == "sub-IXI012HH1211"
    assert any("not read" in n and "description" in n for n in s.notes)
    row = s.table("validation", 0).rows[0]
    assert row.label == "0" and row.extra["image"].endswith("_T1w.nii.gz") and row.line > 1
    # the folds partition the training list; test is held out from every fold
    assert set().union(*(s.subjects("validation", f) for f in s.folds)) == s.subjects("train")


def test_reviewer_audit_of_a_datalist_records_rule_and_disjointness(ixi_datalist: Path) -> None:
    result = audit_splits(None, ixi_datalist, REVIEWER).to_dict()
    block = result["splits"]
    assert block["format"] == "monai" and block["id_rule"]["rule"] == "bids"
    pairs = block["disjointness"]
    # 5 folds x (train/validation, train/test, validation/test)
    assert len(pairs) == 15 and {p["level"] for p in pairs} == {"subject"}
    first = pairs[0]
    assert first["splits"] == ["train", "validation"] and first["fold"] == 0
    assert first["shared"] == {"site": None, "group": None, "subject": 0, "session": 0, "image": 0}
    assert "site" in first["not_measured"] and "image" not in first["not_measured"]
    assert result["status"] == "pass"


def test_datalist_with_image_lists_and_a_leak_is_disjoint_at_no_level(tmp_path: Path) -> None:
    images = ixi_images()[:6]
    four = [[p, p.replace("T1w", "T2w"), p.replace("T1w", "PD"), p.replace("T1w", "MRA")] for p in images]
    path = write_json(tmp_path / "dl.json", {"training": [{"image": i} for i in four[:4]],
                                             "validation": [{"image": i} for i in four[4:]],
                                             "test": [{"image": four[0]}]})
    block = audit_splits(None, path, REVIEWER).to_dict()["splits"]
    levels = {tuple(p["splits"]): (p["level"], p["shared"]["image"]) for p in block["disjointness"]}
    assert levels[("train", "validation")] == ("subject", 0)
    assert levels[("train", "test")] == ("none", 4)  # the same four images of one case


def test_session_level_disjointness_from_a_path_table_of_7t_trt(tmp_path: Path) -> None:
    root = need(TRT)
    images = sorted(root.glob("sub-*/ses-*/*/*_run-1_magnitude1.nii*"))  # one field map per session
    table = tmp_path / "paths.csv"
    table.write_text("image,split\n" + "".join(f"{p},{'train' if '/ses-1/' in str(p) else 'test'}\n" for p in images))
    s = read_splits(table)
    assert s.format == "paths" and s.id_rule["rule"] == "bids"
    assert s.table("test").rows[0].session_id == "ses-2"
    block = audit_splits(None, table, REVIEWER).to_dict()["splits"]
    (pair,) = block["disjointness"]
    assert pair["level"] == "session" and pair["shared"]["subject"] == len(s.subjects("test")) > 0
    assert pair["patient_level_or_higher"] is False


def test_folder_of_path_lists_and_site_level_with_a_dataset(tmp_path: Path) -> None:
    ds = make_bids(tmp_path / "ds", ["01", "02", "03", "04"], images=False, participants={
        s: {"site": "AB"[i // 2], "diagnosis": "CN"} for i, s in enumerate(["01", "02", "03", "04"])})
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("# site A\nsub-01/anat/sub-01_T1w.nii.gz\n\nsub-02/anat/sub-02_T1w.nii.gz\n")
    (lists / "test.txt").write_text("sub-03/anat/sub-03_T1w.nii.gz\nsub-04/anat/sub-04_T1w.nii.gz\n")
    s = read_splits(lists)
    assert s.format == "paths" and s.sizes() == {"train": 2, "test": 2}
    assert s.table("train").rows[1].line == 4
    result = audit_splits(ds, lists, AuditOptions(run_validator=False, check_images=False, site="site")).to_dict()
    (pair,) = result["splits"]["disjointness"]
    assert pair["level"] == "site" and pair["shared"]["site"] == 0 and pair["shared"]["image"] == 0


# --------------------------------------------------------------------------------------------------
# non-BIDS layouts: nnU-Net case files and dataset.json, BraTS-style case folders, --id-pattern


def test_nnunet_case_files_dataset_json_and_splits_final(tmp_path: Path) -> None:
    cases = [f"BraTS_{i:03d}" for i in range(1, 7)]
    dataset = write_json(tmp_path / "Task01" / "dataset.json", {
        "name": "BraTS", "numTraining": 4, "modality": {"0": "FLAIR"},
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases[:4]],
        "test": [f"./imagesTs/{c}.nii.gz" for c in cases[4:]]})
    s = read_splits(dataset)
    assert s.format == "nnunet" and s.id_rule["rule"] == "nnunet" and s.sizes() == {"train": 4, "test": 2}
    assert s.table("train").rows[0].label is None  # a segmentation path is not a class label
    channel = write_json(tmp_path / "ch.json", {"training": [{"image": f"imagesTr/{c}_0000.nii.gz"} for c in cases]})
    assert read_splits(channel).id_rule["examples"][0] == {"path": "imagesTr/BraTS_001_0000.nii.gz",
                                                           "id": "sub-BraTS_001"}
    pre = tmp_path / "pre"
    write_json(pre / "splits_final.json", [{"train": cases[:3], "val": [cases[3]]}, {"train": cases[1:4], "val": [cases[0]]}])
    (pre / "dataset.json").write_text(dataset.read_text())
    s = read_splits(pre)
    assert s.format == "nnunet" and s.folds == (0, 1) and s.sizes()["test"] == 2
    assert s.id_rule["rule"] == "case-id" and any("test set shared by every fold" in n for n in s.notes)
    with pytest.raises(InputError, match="lists no cases"):
        read_splits(write_json(tmp_path / "v2" / "dataset.json", {"channel_names": {"0": "T1"}, "numTraining": 3,
                                                                   "file_ending": ".nii.gz"}))


def brats_tree(root: Path, parents: dict[str, list[str]]) -> list[list[str]]:
    out = []
    for parent, cases in parents.items():
        for c in cases:
            out.append([f"{root}/{parent}/{c}/{c}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")])
    return out


def test_brats_case_folders_and_accidental_collisions(tmp_path: Path) -> None:
    entries = brats_tree(tmp_path, {"HGG": ["Brats18_CBICA_AAB_1", "Brats18_CBICA_AAG_1"], "LGG": ["Brats18_TCIA_101_1"]})
    path = write_json(tmp_path / "brats.json", {"training": [{"image": e} for e in entries[:2]],
                                                "validation": [{"image": entries[2]}]})
    s = read_splits(path)
    assert s.id_rule["rule"] == "case-folder" and s.subjects("validation") == {"sub-Brats18_TCIA_101_1"}
    clash = brats_tree(tmp_path, {"HGG": ["Case1"], "LGG": ["Case1"]})
    text = error(write_json(tmp_path / "clash.json", {"training": [{"image": clash[0]}], "test": [{"image": clash[1]}]}))
    assert "maps two different cases to sub-Case1" in text and "--id-pattern" in text
    # the same sub-01 in two BIDS datasets is two people, unless --id-pattern says otherwise
    two = write_json(tmp_path / "two.json", {"training": [{"image": "a/sub-01/anat/sub-01_T1w.nii.gz"}],
                                             "test": [{"image": "b/sub-01/anat/sub-01_T1w.nii.gz"}]})
    assert "different dataset roots" in error(two)
    assert read_splits(two, id_pattern=r"sub-([A-Za-z0-9]+)").subjects("test") == {"sub-01"}


def test_id_pattern_overrides_and_its_errors(tmp_path: Path) -> None:
    path = write_json(tmp_path / "dl.json", {"training": [{"image": f"scans/P{i:03d}_scan{k}.png"} for i in range(4)
                                                          for k in range(2)],
                                             "test": [{"image": "scans/P100_scan0.png"}]})
    assert "no rule maps every path" in error(path) and "training[0]" in error(path)
    s = read_splits(path, id_pattern=r"/(P\d+)_")
    assert s.id_rule == {"rule": "pattern", "description": "--id-pattern", "pattern": r"/(P\d+)_",
                         "examples": [{"path": "scans/P000_scan0.png", "id": "sub-P000"},
                                      {"path": "scans/P001_scan0.png", "id": "sub-P001"},
                                      {"path": "scans/P002_scan0.png", "id": "sub-P002"}]}
    assert len(s.subjects("train")) == 4
    bad = error(path, id_pattern=r"(P\d+")
    assert "--id-pattern" in bad and "at position 0" in bad and "<here>" in bad
    missing = error(path, id_pattern=r"scan(1)")
    assert "matches no usable id in 5 of 9 paths" in missing and "training[0]: scans/P000_scan0.png" in missing


# --------------------------------------------------------------------------------------------------
# bad input: exit 2, file and key (or line) named


@pytest.mark.parametrize(("content", "words"), [
    ({"training": ["a/sub-01/anat/sub-01_T1w.nii.gz"]}, ["training[0]", "holds a string"]),
    ({"training": [{"img": "x.nii.gz"}]}, ["training[0]", 'no "image" key', "did you mean"]),
    ({"training": [{"image": []}]}, ['training[0], "image"', "non-empty list of paths"]),
    ({"training": [{"image": "sub-01/a.nii", "fold": "1"}]}, ['training[0], "fold"', "not an integer"]),
    ({"training": [{"image": "sub-01/a.nii", "fold": 1.5}]}, ["not an integer"]),
    ({"training": [{"image": "sub-01/a.nii", "fold": 0}, {"image": "sub-02/a.nii"}]}, ["a fold and entries without"]),
    ({"training": [{"image": "sub-01/a.nii", "fold": 0}]}, ["no training data would be left"]),
    ({"training": [{"image": "/data/ixi/sub-01/anat/a.nii"}, {"image": "sub-02/anat/a.nii"}]},
     ["absolute paths under /data/ixi/sub-01/anat", "relative paths (path 2: sub-02/anat/a.nii)"]),
    ({"description": "x"}, ["no key holds a list"]),
    ({"training": []}, ["empty list"]),
])
def test_bad_datalists(tmp_path: Path, content: object, words: list[str]) -> None:
    text = error(write_json(tmp_path / "datalist.json", content))
    assert str(tmp_path / "datalist.json") in text
    for w in words:
        assert w in text, text


def test_bad_path_tables(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text("image\tsplit\n/abs/root/sub-01/anat/a.nii\ttrain\nsub-02/anat/a.nii\ttest\n")
    text = error(mixed)
    assert "mixed.tsv line 2" in text and "mixed.tsv line 3" in text and "/abs/root/sub-01/anat" in text
    both = tmp_path / "both.csv"
    both.write_text("image,path,split\na,b,train\n")
    assert "several columns could hold the image paths: image, path" in error(both)
    assert read_splits(both, path_column="path", id_pattern="(b)").subjects("train") == {"sub-b"}
    fold = tmp_path / "fold.csv"
    fold.write_text("file,split,fold\nsub-01/a.nii,train,x\n")
    assert "line 2" in error(fold) and "fold is not an integer" in error(fold)


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write_json(tmp_path / "dl.json", {"training": [{"image": "sub-01/a.nii", "fold": "one"}]})
    r = invoke("audit", "--splits", path, "--json", tmp_path / "r.json", "--html", tmp_path / "r.html")
    assert r.exit_code == 2 and 'training[0], "fold"' in r.output
    r = invoke("audit", "--splits", path, "--id-pattern", "sub-(\\d+", "--json", tmp_path / "r.json")
    assert r.exit_code == 2 and "--id-pattern" in r.output and "position" in r.output


# --------------------------------------------------------------------------------------------------
# pretraining manifests in every format, named per fold


def test_pretrain_manifests_in_every_format(tmp_path: Path, ixi_datalist: Path) -> None:
    images = ixi_images()
    leaked = images[80:83] + images[:2]  # three test participants and two of fold 0 and 1's validation sets
    manifest = write_json(tmp_path / "pretrain.json", {"unlabelled": [{"image": p} for p in leaked[:3]],
                                                       "more": [{"image": p} for p in leaked[3:]]})
    paths = tmp_path / "pretrain.txt"
    paths.write_text("".join(p + "\n" for p in leaked))
    tsv = tmp_path / "pretrain.tsv"
    tsv.write_text("participant_id\n" + "".join(p.split("/")[0] + "\n" for p in leaked))
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "train+validation.tsv").write_text(tsv.read_text())
    expected = {p.split("/")[0] for p in leaked}
    for source in (manifest, paths, tsv, maps):
        assert read_pretrain(source) == expected, source
    result = audit_splits(None, ixi_datalist, AuditOptions(run_validator=False, check_images=False,
                                                           pretrain=str(manifest))).to_dict()
    found = [f for f in result["findings"] if f["check"] == "leakage.pretrain_overlap"]
    test = [f for f in found if f["splits"] == ["test"]]
    assert len(test) == 1 and len(test[0]["subjects"]) == 3 and test[0]["severity"] == "error"
    folds = sorted(f["evidence"]["fold"] for f in found if f["splits"] == ["validation"])
    assert folds == [0, 1] and result["status"] == "fail"


# --------------------------------------------------------------------------------------------------
# the real AD-DL lists: disjointness levels in reviewer mode


def test_ad_dl_disjointness_levels() -> None:
    adni = need(AD_DL) / "ADNI" / "train"
    result = audit_splits(None, adni, REVIEWER).to_dict()
    block = result["splits"]
    assert block["format"] == "clinicadl" and "id_rule" not in block
    pairs = block["disjointness"]
    assert len(pairs) == 15 and {p["level"] for p in pairs} == {"subject"}
    assert {p.get("fold") for p in pairs} == {0, 1, 2, 3, 4}
    assert all(p["shared"]["image"] is None and "image" in p["not_measured"] for p in pairs)
    assert all(p["shared"]["session"] == 0 for p in pairs)
