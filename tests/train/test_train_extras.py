"""The trainer's extras: masks under the certificate, ONNX export, transfer learning, learning curves, torchrun.

Tiny volumes and 1-2 epochs; anything that needs torch is marked ``torch``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audit.errors import InputError
from tests.train.test_gate import _certify
from tests.train.test_train import FAST, _base, _skip_without_torch, case, trained  # noqa: F401 (fixtures)
from train.gate import GateClosed, open_gate

runner = CliRunner()


def _masks(case: Path) -> list[Path]:
    return sorted((case / "dataset" / "derivatives").glob("*/sub-*/**/*_dseg.nii.gz"))


# ------------------------------------------------------------------ masks and the certificate
def test_the_certificate_records_every_derivatives_mask(case):
    cert = json.loads((case / "splits" / "bidsaudit-certificate.json").read_text())
    masks = cert["dataset"]["masks"]
    assert len(masks) == len(_masks(case)) > 0
    assert all(k.startswith("derivatives/tissue/sub-") and v.startswith("sha256:") for k, v in masks.items())
    assert open_gate(case / "dataset", case / "splits").masks == masks


def test_editing_a_mask_after_the_audit_closes_the_gate_naming_it(case):
    mask = _masks(case)[0]
    raw = bytearray(mask.read_bytes())
    raw[-1] ^= 0xFF
    mask.write_bytes(bytes(raw))
    rel = mask.relative_to(case / "dataset").as_posix()
    with pytest.raises(GateClosed, match=f"segmentation mask {rel} changed since the audit"):
        open_gate(case / "dataset", case / "splits")


def test_removing_or_adding_a_mask_closes_the_gate(case):
    mask = _masks(case)[0]
    extra = mask.with_name(mask.name.replace("_desc-tissue_dseg", "_desc-other_mask"))
    shutil.copy(mask, extra)
    mask.unlink()
    with pytest.raises(GateClosed) as info:
        open_gate(case / "dataset", case / "splits")
    assert "was removed" in str(info.value) and extra.name in str(info.value)


@pytest.mark.torch
def test_segmentation_with_a_certificate_without_a_mask_record_is_refused(case):
    from train.api import train_model

    path = case / "splits" / "bidsaudit-certificate.json"
    cert = json.loads(path.read_text())
    del cert["dataset"]["masks"]
    path.write_text(json.dumps(cert))
    with pytest.raises(GateClosed, match="does not cover segmentation masks"):
        train_model(case / "dataset", case / "splits", case / "maps", task="segmentation", epochs=1,
                    echo=lambda s: None, **FAST)
    assert not (case / "maps").exists()


@pytest.mark.torch
def test_missing_masks_for_some_subjects_is_exit_2_naming_them(case):
    from audit.cli import app

    gone = [m for m in _masks(case) if "sub-" in m.name][:2]
    subs = sorted({m.name.split("_")[0] for m in gone})
    for m in gone:
        m.unlink()
    _certify(case / "dataset", case / "splits")
    res = runner.invoke(app, ["train", str(case / "dataset"), "--splits", str(case / "splits"), "--output",
                              str(case / "maps"), "--task", "segmentation", "--epochs", "1", "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "no segmentation mask for" in res.output
    assert all(s in res.output for s in subs)
    assert not (case / "maps").exists()


# ------------------------------------------------------------------ ONNX export
@pytest.mark.torch
def test_onnx_export_matches_pytorch(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from audit.cli import app

    root, _ = trained
    out = tmp_path / "model.onnx"
    res = runner.invoke(app, ["export", str(root / "maps"), "--output", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "model.onnx.json").read_text())
    assert rep["check"]["passed"] and rep["check"]["max_abs_diff"] <= 1e-4
    assert rep["output"]["shape"] == ["batch", 2] and len(rep["classes"]) == 2
    meta = json.loads((root / "maps" / "maps.json").read_text())
    assert meta["exports"][-1]["sha256"] == rep["sha256"]
    # the file runs on its own, with another batch size
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.zeros((3, *rep["input"]["shape"][1:]), np.float32)
    assert sess.run(None, {"image": x})[0].shape == (3, 2)
    print(f"ONNX max abs diff {rep['check']['max_abs_diff']:.3g}")


@pytest.mark.torch
def test_onnx_export_bad_input_is_exit_2(trained, tmp_path):
    from audit.cli import app

    root, _ = trained
    for args, says in ((["export", str(tmp_path / "nope"), "-o", str(tmp_path / "m.onnx")], "no such folder"),
                       (["export", str(root / "maps"), "-o", str(tmp_path / "m.txt")], ".onnx"),
                       (["export", str(root / "maps"), "-o", str(tmp_path / "m.onnx"), "--fold", "7"], "no fold 7")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ transfer learning
def _source_split(case: Path) -> Path:
    """A split of the target's training participants only (train and validation), certified."""
    lines = (case / "splits" / "train.tsv").read_text().splitlines()
    head, rows = lines[0], lines[1:]
    src = case / "src-splits"
    src.mkdir()
    (src / "train.tsv").write_text("\n".join([head, *rows[:-2]]) + "\n")
    (src / "validation.tsv").write_text("\n".join([head, *rows[-2:]]) + "\n")
    _certify(case / "dataset", src)
    return src


@pytest.mark.torch
def test_transfer_freezes_the_encoder_and_gives_the_transferred_part_its_own_lr(case):
    import torch

    from train.api import train_model

    src = _source_split(case)
    train_model(case / "dataset", src, case / "source", task="regression", label="age", epochs=1,
                echo=lambda s: None, **FAST)
    train_model(case / "dataset", case / "splits", case / "maps", epochs=2, lr=1e-3, transfer_from=case / "source",
                freeze="encoder", transfer_lr=1e-5, augment=False, echo=lambda s: None, **FAST)
    before = torch.load(case / "source" / "split-0" / "seed-0" / "best-loss" / "model.pt", weights_only=True)["model"]
    ckpt = torch.load(case / "maps" / "split-0" / "seed-0" / "checkpoint.pt", weights_only=True)
    after = ckpt["model"]
    enc = [k for k in after if k.startswith("features.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)  # weights and BatchNorm statistics
    moved = [k for k in after if k.startswith("classifier.") and k in before and before[k].shape == after[k].shape]
    assert moved and any(not torch.equal(before[k], after[k]) for k in moved)
    groups = {g["name"]: g["lr"] for g in ckpt["optimizer"]["param_groups"]}
    assert groups == {"new": 1e-3, "transferred": 1e-5}  # the regression head (1 output) did not fit: new
    meta = json.loads((case / "maps" / "maps.json").read_text())
    assert meta["transfer"]["freeze"] == "encoder" and meta["config"]["transfer_lr"] == 1e-5
    tv = (case / "maps" / "train+validation.tsv").read_text()
    assert "\tpretrain\t" in tv


@pytest.mark.torch
def test_transfer_from_a_model_that_saw_the_evaluation_participants_is_refused(case, trained):
    from audit.cli import app

    root, _ = trained  # trained on the same split: its validation participants are this split's validation
    res = runner.invoke(app, ["train", str(case / "dataset"), "--splits", str(case / "splits"), "--output",
                              str(case / "maps"), "--epochs", "1", "--device", "cpu", "--width", "2",
                              "--transfer-from", str(root / "maps")])
    assert res.exit_code == 1, res.output
    assert "leakage.pretrain_overlap" in res.output and "sub-" in res.output and "Traceback" not in res.output
    assert not (case / "maps").exists()


@pytest.mark.torch
@pytest.mark.parametrize(("args", "says"), [
    (["--freeze", "encoder"], "need --transfer-from"),
    (["--transfer-from", "MAPS", "--freeze", "middle"], "--freeze"),
    (["--transfer-from", "MAPS", "--transfer-lr", "-1"], "--transfer-lr"),
    (["--transfer-from", "NOWHERE"], "no such folder"),
])
def test_bad_transfer_options_are_exit_2(case, trained, args, says):
    from audit.cli import app

    root, _ = trained
    args = [str(root / "maps") if a == "MAPS" else str(case / a) if a == "NOWHERE" else a for a in args]
    res = runner.invoke(app, ["train", str(case / "dataset"), "--splits", str(case / "splits"), "--output",
                              str(case / "maps"), "--epochs", "1", "--device", "cpu", *args])
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, res.output


# ------------------------------------------------------------------ learning curves
def test_learning_curve_subsets_are_nested_stratified_and_seeded():
    from train.curve import nested_subsets
    from train.items import Item

    items = [Item(f"sub-{i:02d}", None, f"sub-{i:02d}/anat/x.nii.gz", "", "AD" if i % 3 == 0 else "CN")
             for i in range(24)]
    items.append(Item("sub-00", "ses-2", "sub-00/ses-2/x.nii.gz", "", "AD"))  # a second image of one participant
    fr = [0.25, 0.5, 0.75, 1.0]
    a = nested_subsets(items, fr, seed=1, stratify=True)
    assert a == nested_subsets(items, fr, seed=1, stratify=True)
    assert a[0.25] != nested_subsets(items, fr, seed=2, stratify=True)[0.25]
    subj = {f: {it.participant_id for it in a[f]} for f in fr}
    assert subj[0.25] <= subj[0.5] <= subj[0.75] <= subj[1.0] and len(subj[1.0]) == 24
    ad = {f: sum(1 for p in subj[f] if int(p[4:]) % 3 == 0) for f in fr}
    assert ad == {0.25: 2, 0.5: 4, 0.75: 6, 1.0: 8} and len(subj[0.25]) == 2 + 4
    for f in fr:  # every image of a chosen participant comes along
        assert ("sub-00" in subj[f]) == (sum(it.participant_id == "sub-00" for it in a[f]) == 2)


@pytest.mark.parametrize(("value", "ok"), [("0.25,0.5,0.75,1.0", True), ("1", True), ("0.5,0.25", False),
                                           ("0,1", False), ("0.5,1.5", False), ("a,b", False), ("0.5,0.5", False),
                                           ("", False)])
def test_learning_curve_option_is_validated(value, ok):
    from train.api import parse_fractions

    if ok:
        assert parse_fractions(value)
    else:
        with pytest.raises(InputError, match="--learning-curve"):
            parse_fractions(value)


@pytest.mark.torch
def test_bad_learning_curve_is_exit_2_before_the_gate_reads_anything(case):
    from audit.cli import app

    res = runner.invoke(app, ["train", str(case / "dataset"), "--splits", str(case / "splits"), "--output",
                              str(case / "maps"), "--learning-curve", "0.75,0.5"])
    assert res.exit_code == 2 and "--learning-curve" in res.output and "Traceback" not in res.output
    assert not (case / "maps").exists()


@pytest.mark.torch
def test_learning_curve_is_written_and_shown(case):
    from train.api import train_model

    train_model(case / "dataset", case / "splits", case / "maps", epochs=1, seeds=2, learning_curve=[0.5, 1.0],
                augment=False, echo=lambda s: None, **FAST)
    maps = case / "maps"
    curve = json.loads((maps / "learning_curve.json").read_text())
    assert curve["metric"] == "balanced_accuracy" and curve["stratified_on"] == "diagnosis"
    rows = curve["rows"]
    assert sorted((r["fraction"], r["seed"]) for r in rows) == [(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]
    n = {r["fraction"]: r["n_train_participants"] for r in rows}
    assert 0 < n[0.5] < n[1.0]
    assert [s["n"] for s in curve["summary"]] == [2, 2] and curve["summary"][0]["sd"] is not None
    tsv = (maps / "learning_curve.tsv").read_text().splitlines()
    assert tsv[0].startswith("fraction\tn_train_participants") and len(tsv) == 5
    assert (maps / "learning-curve" / "fraction-0.5" / "split-0" / "seed-1" / "done.json").is_file()
    html = (maps / "report.html").read_text()
    assert "Learning curve" in html and "<svg" in html and "<script" not in html
    meta = json.loads((maps / "maps.json").read_text())
    assert meta["learning_curve"][1]["fraction"] == 1.0
    print("learning curve:", [(s["fraction"], s["n_train_participants"], s["mean"], s["sd"]) for s in curve["summary"]])


# ------------------------------------------------------------------ bad input: exit 2, never a traceback
@pytest.mark.torch
@pytest.mark.parametrize(("damage", "says"), [
    ("model.pt", "cannot read the checkpoint"),
    ("width", "config/width"),
    ("seeds", "malformed run list"),
    ("preprocessing", "preprocessing.json: malformed"),
])
def test_a_damaged_model_folder_is_exit_2_for_predict_and_export(trained, tmp_path, damage, says):
    from audit.cli import app

    root, _ = trained
    maps = tmp_path / "maps"
    shutil.copytree(root / "maps", maps)
    run = maps / "split-0" / "seed-0"
    meta = json.loads((maps / "maps.json").read_text())
    if damage == "model.pt":
        (run / "best-loss" / "model.pt").write_bytes(b"not a checkpoint")
    elif damage == "width":
        meta["config"]["width"] = "wide"
    elif damage == "seeds":
        meta["seeds"] = "0"
    else:
        (run / "preprocessing.json").write_text("[1, 2]")
    (maps / "maps.json").write_text(json.dumps(meta))
    test = root / "splits" / "test.tsv"
    import importlib.util

    calls = [["predict", str(maps), "--data", str(root / "dataset"), "--split", str(test), "-o", str(tmp_path / "p")]]
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        calls.append(["export", str(maps), "-o", str(tmp_path / "m.onnx")])
    for args in calls:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert says in res.output and "internal error" not in res.output and "Traceback" not in res.output


def test_the_training_report_escapes_untrusted_text():
    from train.report import render_training_report

    meta = {"status": "complete", "config": {"task": "classification", "model": "conv5fc3", "label": "<b>dx</b>"},
            "dataset": {"name": "<script>alert(1)</script>"}, "notes": ["sub-<img src=x onerror=alert(1)>"],
            "summary": {"over_runs": {"test": {"balanced_accuracy": {"mean": 0.75, "sd": 0.1, "n": 2}}}, "n_runs": 2},
            "tool": {"version": "0"}}
    curve = {"metric": "balanced_accuracy", "stratified_on": "<i>dx</i>", "summary": [
        {"fraction": 0.5, "n_train_participants": [4], "mean": 0.6, "sd": 0.05, "min": 0.55, "max": 0.65, "n": 2},
        {"fraction": 1.0, "n_train_participants": [8], "mean": 0.75, "sd": 0.1, "min": 0.7, "max": 0.8, "n": 2}]}
    html = render_training_report(meta, curve)
    assert "<script>" not in html and "<img" not in html and "<i>dx" not in html and "<b>dx" not in html
    assert "&lt;script&gt;" in html and html.count("<circle") == 2 and "0.75" in html


def test_regression_learning_curve_subsets_are_stratified_on_label_quartiles():
    from train.curve import nested_subsets
    from train.items import Item

    items = [Item(f"sub-{i:02d}", None, f"sub-{i:02d}/x.nii.gz", "", str(50 + i)) for i in range(16)]
    a = nested_subsets(items, [0.25, 1.0], seed=3, stratify="quartiles")
    ages = sorted(int(it.label) for it in a[0.25])
    assert [sum(lo <= x < lo + 4 for x in ages) for lo in (50, 54, 58, 62)] == [1, 1, 1, 1]
