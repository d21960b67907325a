"""The trainer end to end on a tiny synthetic dataset: MAPS folder, resume, modes, tasks, predict.

Tests that need torch are marked ``torch`` and skipped without it; the data
and metric helpers are torch-free and always run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from audit.errors import InputError
from tests.train.test_gate import _certify

SHAPE = (16, 20, 16)
VOXEL = (12.0, 12.0, 12.0)
FAST = dict(width=2, batch_size=4, bootstrap=50, device="cpu", threads=1, progress=False)


def _torch():
    return pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _skip_without_torch(request):
    """Tests marked ``torch`` are skipped where torch (or MONAI) is not installed."""
    if request.node.get_closest_marker("torch"):
        pytest.importorskip("torch")
        pytest.importorskip("monai")


def _write_masks(dataset: Path) -> None:
    """derivatives/tissue/sub-*/.../*_desc-tissue_dseg.nii.gz: three classes by intensity."""
    import nibabel as nib

    for img in sorted(dataset.glob("sub-*/**/*_T1w.nii.gz")):
        nii = nib.load(img)
        data = np.asarray(nii.dataobj, dtype=np.float32)
        lo, hi = np.quantile(data, [0.5, 0.8])
        seg = (data > lo).astype(np.int16) + (data > hi).astype(np.int16)
        rel = img.relative_to(dataset)
        out = dataset / "derivatives" / "tissue" / rel.parent / rel.name.replace("_T1w", "_desc-tissue_dseg")
        out.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(seg, nii.affine), out)


@pytest.fixture(scope="session")
def _base(tmp_path_factory):
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset

    root = tmp_path_factory.mktemp("train-base")
    make_dataset(root / "dataset", n_subjects=12, seed=3, shape=SHAPE, voxel_size=VOXEL)
    _write_masks(root / "dataset")
    split_dataset(root / "dataset", SplitPlan(label="diagnosis", seed=0), root / "splits", layout="folder")
    split_dataset(root / "dataset", SplitPlan(label="diagnosis", seed=0, folds=2), root / "kfold", layout="clinicadl")
    return root


@pytest.fixture
def case(_base, tmp_path, monkeypatch):
    monkeypatch.delenv("BIDSAUDIT_SIGNING_KEY", raising=False)
    for name in ("dataset", "splits", "kfold"):
        shutil.copytree(_base / name, tmp_path / name)
    _certify(tmp_path / "dataset", tmp_path / "splits")
    return tmp_path


@pytest.fixture(scope="session")
def trained(_base, tmp_path_factory):
    """One classification model folder, trained once for the tests that only read it."""
    _torch()
    from train.api import train_model

    root = tmp_path_factory.mktemp("trained")
    for name in ("dataset", "splits"):
        shutil.copytree(_base / name, root / name)
    _certify(root / "dataset", root / "splits")
    summary = train_model(root / "dataset", root / "splits", root / "maps", epochs=2, echo=lambda s: None, **FAST)
    return root, summary


def _subjects(tsv: Path) -> set[str]:
    return {line.split("\t")[0] for line in tsv.read_text().splitlines()[1:] if line.strip()}


# ------------------------------------------------------------ torch-free parts
def test_sample_positions_cover_the_volume():
    from train.samples import sample_positions

    assert sample_positions((16, 20, 16), "image") == [()]
    sl = sample_positions((16, 20, 16), "slice", slice_axis=2, slice_discard=0.25)
    assert sl == [(k,) for k in range(4, 12)]
    patches = sample_positions((16, 20, 16), "patch", patch_size=8, patch_stride=8)
    assert (0, 12, 8) in patches and len(patches) == 2 * 3 * 2
    with pytest.raises(InputError, match="--mode"):
        sample_positions((4, 4, 4), "voxel")


def test_crop_pad_keeps_the_centre():
    from train.data import _crop_pad

    v = np.arange(6 * 6 * 6, dtype=np.float32).reshape(6, 6, 6)
    out = _crop_pad(v, (4, 8, 6))
    assert out.shape == (4, 8, 6)
    assert np.array_equal(out[:, 1:7, :], v[1:5])
    assert np.all(out[:, 0] == 0)


def test_decode_rejects_what_the_models_cannot_take(tmp_path):
    import nibabel as nib

    from train.data import decode_volume

    four_d = nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)).to_bytes()
    with pytest.raises(InputError, match="3D"):
        decode_volume(four_d, "x.nii")
    with pytest.raises(InputError, match="cannot decode"):
        decode_volume(b"not an image", "y.nii")
    vol, zooms = decode_volume(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.int16), np.eye(4)).to_bytes(), "z.nii")
    assert vol.shape == (4, 5, 6) and vol.dtype == np.float32 and zooms == (1.0, 1.0, 1.0)


def test_volume_store_decodes_once_and_refuses_bytes_changed_after_the_gate(tmp_path):
    import hashlib

    import nibabel as nib

    from train.data import VolumeStore
    from train.gate import GateClosed

    path = tmp_path / "a.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), path)
    sha = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    store = VolumeStore(tmp_path)
    a = store.get("a.nii", sha)
    assert store.get("a.nii", sha) is a and store.decoded == 1 and store.hits == 1
    store = VolumeStore(tmp_path, cache_dir=tmp_path / "cache")
    a = store.get("a.nii", sha)
    assert np.array_equal(store.get("a.nii", sha), a) and store.decoded == 1 and store.hits == 1
    assert len(list((tmp_path / "cache").glob("v1/*/" + sha.split(":")[1] + "-*.npy"))) == 1
    again = VolumeStore(tmp_path, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.get("a.nii", sha), a) and again.decoded == 0
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), path)
    with pytest.raises(GateClosed, match="changed after the gate opened"):
        VolumeStore(tmp_path).get("a.nii", sha)


def test_masks_are_matched_by_entities(tmp_path):
    from train.items import _entities, _match_mask, find_masks

    for name in ("sub-01/anat/sub-01_desc-brain_mask.nii.gz", "sub-01/anat/sub-01_desc-aseg_dseg.nii.gz",
                 "sub-02/ses-1/anat/sub-02_ses-1_mask.nii.gz", "sub-02/ses-2/anat/sub-02_ses-2_mask.nii.gz"):
        p = tmp_path / "derivatives" / "pipe" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    masks = find_masks(tmp_path)
    assert len(masks) == 4
    assert _match_mask(_entities("sub-01"), masks, "x").name == "sub-01_desc-aseg_dseg.nii.gz"
    assert _match_mask(_entities("sub-02_ses-2"), masks, "x").name == "sub-02_ses-2_mask.nii.gz"
    assert _match_mask(_entities("sub-03"), masks, "x") is None


def test_numpy_metrics_agree_with_scikit_learn():
    from train.metrics import classification_metrics, regression_metrics

    rng = np.random.default_rng(0)
    for k, classes in ((2, ["CN", "AD"]), (3, ["a", "b", "c"])):
        y = rng.integers(0, k, 40)
        p = rng.dirichlet(np.ones(k), 40)
        a = classification_metrics(y, p, classes)
        b = classification_metrics(y, p, classes, engine="numpy")
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], nan_ok=True), key
    t, q = rng.normal(size=30), rng.normal(size=30)
    a, b = regression_metrics(t, q), regression_metrics(t, q, engine="numpy")
    assert all(a[key] == pytest.approx(b[key]) for key in a)


def test_positive_class_is_not_the_control_group():
    from train.metrics import classification_metrics, positive_class

    assert positive_class(["AD", "CN"]) == 0 and positive_class(["CN", "AD"]) == 1
    assert positive_class(["x", "y"]) == 1
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]),
                               ["AD", "CN"])
    assert m["sensitivity"] == 0.5 and m["specificity"] == 1.0 and m["ppv"] == 1.0


def test_bootstrap_resamples_participants_and_is_seeded():
    from train.metrics import bootstrap_ci

    groups = ["a", "a", "b", "c", "d"]
    vals = np.array([1.0, 1.0, 2.0, 3.0, 4.0])
    ci = bootstrap_ci(lambda idx: {"mean": float(vals[idx].mean())}, groups, n_boot=200, seed=1)
    assert ci == bootstrap_ci(lambda idx: {"mean": float(vals[idx].mean())}, groups, n_boot=200, seed=1)
    lo, hi, n = ci["mean"]
    assert 1.0 <= lo < hi <= 4.0 and n == 200


def test_segmentation_metrics():
    from train.metrics import segmentation_counts, segmentation_metrics

    truth = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = segmentation_metrics(segmentation_counts(truth, pred, 3)[None], ["0", "1", "2"])
    assert m["dice_1"] == pytest.approx(0.8) and m["dice_2"] == pytest.approx(2 / 3)
    assert m["iou_2"] == pytest.approx(0.5) and m["dice"] == pytest.approx((0.8 + 2 / 3) / 2)


# ----------------------------------------------------------------- training
@pytest.mark.torch
def test_classification_writes_a_complete_model_folder(trained):
    root, summary = trained
    maps = root / "maps"
    meta = json.loads((maps / "maps.json").read_text())
    assert meta["status"] == "complete"
    assert meta["config"]["epochs"] == 2 and meta["seeds"] == [0] and meta["folds"] == [0]
    assert meta["versions"]["torch"] and meta["device"] == "cpu"
    assert meta["gate"]["certificate_sha256"].startswith("sha256:")
    assert "packages" in json.loads((maps / "environment.json").read_text())
    assert (maps / "bidsaudit-certificate.json").read_bytes() == (root / "splits" / "bidsaudit-certificate.json").read_bytes()
    for name in ("train.tsv", "validation.tsv", "test.tsv"):
        assert (maps / "splits" / name).read_bytes() == (root / "splits" / name).read_bytes()
    assert _subjects(maps / "train+validation.tsv") == (_subjects(root / "splits" / "train.tsv")
                                                        | _subjects(root / "splits" / "validation.tsv"))
    run = maps / "split-0" / "seed-0"
    lines = (run / "metrics.tsv").read_text().splitlines()
    assert len(lines) == 3 and "validation_balanced_accuracy" in lines[0]
    for p in ("best-loss/model.pt", "best-balanced_accuracy/model.pt", "checkpoint.pt", "preprocessing.json",
              "predictions/test_best-loss.tsv", "predictions/validation_best-balanced_accuracy.tsv",
              "metrics/test_best-loss.json", "done.json"):
        assert (run / p).is_file(), p
    test_metrics = json.loads((run / "metrics" / "test_best-loss.json").read_text())["metrics"]
    assert set(test_metrics) >= {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
                                 "roc_auc"}
    assert {"value", "ci_low", "ci_high"} <= set(test_metrics["accuracy"])
    assert set(summary.summary) == {"validation", "test"}
    assert (maps / "summary.tsv").is_file() and summary.lines()[0].startswith("trained 1 run")
    assert not list(maps.rglob("*.tmp"))


@pytest.mark.torch
def test_preprocessing_is_fitted_on_the_training_fold_only(case, monkeypatch):
    import train.data

    from train.api import train_model

    seen = []
    real = train.data.fit_preprocessing

    def spy(items, store, **kw):
        seen.append({it.participant_id for it in items})
        return real(items, store, **kw)

    monkeypatch.setattr(train.data, "fit_preprocessing", spy)
    train_model(case / "dataset", case / "splits", case / "maps", epochs=1, norm="train", augment=False,
                echo=lambda s: None, **FAST)
    assert seen == [_subjects(case / "splits" / "train.tsv")]
    prep = json.loads((case / "maps" / "split-0" / "seed-0" / "preprocessing.json").read_text())
    store = train.data.VolumeStore(case / "dataset", verify=False)
    vals = []
    for p in sorted((case / "dataset").glob("sub-*/**/*_T1w.nii.gz")):
        if p.name.split("_")[0] in seen[0]:
            v = train.data._crop_pad(store.get(str(p), ""), prep["shape"])
            vals.append(train.data._foreground(v))
    assert prep["mean"] == pytest.approx(float(np.concatenate(vals).mean()), rel=1e-6)
    assert prep["classes"] == ["AD", "CN"]


@pytest.mark.torch
def test_a_killed_run_resumes_to_the_same_result(case, trained):
    from train.api import predict, train_model

    ref = trained[0] / "maps" / "split-0" / "seed-0"

    def kill(epoch, batch):
        if epoch == 1 and batch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(case / "dataset", case / "splits", case / "maps", epochs=2, echo=lambda s: None,
                    _on_batch=kill, **FAST)
    maps = case / "maps"
    assert json.loads((maps / "maps.json").read_text())["status"] == "running"
    assert len((maps / "split-0" / "seed-0" / "metrics.tsv").read_text().splitlines()) == 2
    with pytest.raises(InputError, match="incomplete"):
        predict(maps, case / "dataset", case / "splits" / "test.tsv", echo=lambda s: None)
    with pytest.raises(InputError, match="not empty"):
        train_model(case / "dataset", case / "splits", maps, epochs=2, echo=lambda s: None, **FAST)
    with pytest.raises(InputError, match="epochs=3"):
        train_model(case / "dataset", case / "splits", maps, epochs=3, resume=True, echo=lambda s: None, **FAST)
    train_model(case / "dataset", case / "splits", maps, resume=True, echo=lambda s: None, threads=1, progress=False)
    run = maps / "split-0" / "seed-0"
    assert (run / "metrics.tsv").read_text().splitlines()[1:] != []
    strip = lambda t: [r.rsplit("\t", 1)[0] for r in t.splitlines()]  # noqa: E731  (drop the seconds column)
    assert strip((run / "metrics.tsv").read_text()) == strip((ref / "metrics.tsv").read_text())
    assert (run / "predictions" / "test_best-loss.tsv").read_text() == (
        ref / "predictions" / "test_best-loss.tsv").read_text()
    with pytest.raises(InputError, match="already complete"):
        train_model(case / "dataset", case / "splits", maps, resume=True, echo=lambda s: None)


@pytest.mark.torch
def test_predict_refuses_training_participants_and_scores_the_test_set(trained):
    from train.api import predict
    from train.predict import LeakageRefused

    root, _ = trained
    for split in ("train.tsv", "validation.tsv"):
        with pytest.raises(LeakageRefused) as info:
            predict(root / "maps", root / "dataset", root / "splits" / split, echo=lambda s: None)
        assert info.value.exit_code == 1 and "sub-" in str(info.value)
    out = predict(root / "maps", root / "dataset", root / "splits" / "test.tsv", output=root / "pred",
                  bootstrap=50, echo=lambda s: None)
    assert out.metrics["balanced_accuracy"]["value"] is not None
    ref = (root / "maps" / "split-0" / "seed-0" / "predictions" / "test_best-loss.tsv").read_text()
    assert (root / "pred" / "predictions.tsv").read_text() == ref
    assert json.loads((root / "pred" / "metrics.json").read_text())["n_participants"] == len(
        _subjects(root / "splits" / "test.tsv"))
    with pytest.raises(InputError, match="already holds predictions"):
        predict(root / "maps", root / "dataset", root / "splits" / "test.tsv", output=root / "pred")


@pytest.mark.torch
def test_predict_bad_input_is_an_input_error(trained, tmp_path):
    from train.api import predict

    root, _ = trained
    test = (root / "splits" / "test.tsv").read_text().splitlines()
    header = test[0].split("\t")
    col = header.index("diagnosis")
    rows = [r.split("\t") for r in test[1:]]
    rows[0][col] = "MCI"
    bad = tmp_path / "mci.tsv"
    bad.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n")
    with pytest.raises(InputError, match="'MCI' was never seen in training"):
        predict(root / "maps", root / "dataset", bad, output=tmp_path / "o1", echo=lambda s: None)
    with pytest.raises(InputError, match="no maps.json"):
        predict(tmp_path, root / "dataset", root / "splits" / "test.tsv", echo=lambda s: None)
    broken = tmp_path / "broken"
    shutil.copytree(root / "maps", broken)
    (broken / "split-0" / "seed-0" / "best-loss" / "model.pt").unlink()
    with pytest.raises(InputError, match="incomplete or damaged"):
        predict(broken, root / "dataset", root / "splits" / "test.tsv", echo=lambda s: None)
    (broken / "split-0" / "seed-0" / "best-loss" / "model.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        predict(broken, root / "dataset", root / "splits" / "test.tsv", output=tmp_path / "o2", echo=lambda s: None)

    from audit.synthetic import make_dataset

    big = tmp_path / "big"
    make_dataset(big, n_subjects=12, seed=3, shape=(32, 40, 32), voxel_size=(6.0, 6.0, 6.0))
    with pytest.raises(InputError, match="cannot be taken by this model"):
        predict(root / "maps", big, root / "splits" / "test.tsv", output=tmp_path / "o3", echo=lambda s: None)


@pytest.mark.torch
def test_unlabelled_prediction_writes_predictions_only(trained, tmp_path):
    from train.api import predict

    root, _ = trained
    ids = sorted(_subjects(root / "splits" / "test.tsv"))
    plain = tmp_path / "test.tsv"
    plain.write_text("participant_id\n" + "\n".join(ids) + "\n")
    out = predict(root / "maps", root / "dataset", plain, output=tmp_path / "o", label="nolabel", echo=lambda s: None)
    assert out.metrics is None
    head = (tmp_path / "o" / "predictions.tsv").read_text().splitlines()[0]
    assert head.startswith("participant_id\tsession_id\timage\tpredicted_label")


@pytest.mark.torch
def test_an_ensemble_checks_every_member(case, trained):
    from train.api import predict, train_model
    from train.predict import LeakageRefused

    root, _ = trained
    # a second split: the first one's test participants are now in train
    s1 = case / "splits"
    s2 = case / "splits2"
    s2.mkdir()
    tr, va, te = ((s1 / f"{n}.tsv").read_text().splitlines() for n in ("train", "validation", "test"))
    (s2 / "train.tsv").write_text("\n".join([tr[0]] + te[1:] + va[1:]) + "\n")
    ids = sorted({r.split("\t")[0] for r in tr[1:]})
    val_ids = set(ids[: len(ids) // 2])
    (s2 / "validation.tsv").write_text("\n".join([tr[0]] + [r for r in tr[1:] if r.split("\t")[0] in val_ids]) + "\n")
    (s2 / "test.tsv").write_text("\n".join([tr[0]] + [r for r in tr[1:] if r.split("\t")[0] not in val_ids]) + "\n")
    _certify(case / "dataset", s2)
    train_model(case / "dataset", s2, case / "maps2", epochs=1, echo=lambda s: None, **FAST)
    with pytest.raises(LeakageRefused, match="maps2"):
        predict([root / "maps", case / "maps2"], root / "dataset", s1 / "test.tsv", echo=lambda s: None)
    # a clean ensemble: the same model folder twice averages to itself
    out = predict([root / "maps", root / "maps"], root / "dataset", s1 / "test.tsv", output=case / "ens",
                  bootstrap=20, echo=lambda s: None)
    assert len(out.members) == 2 and out.n_images > 0


@pytest.mark.torch
@pytest.mark.parametrize(("task", "mode", "model", "extra"), [
    pytest.param("regression", "slice", "resnet", {"label": "age"}, id="regression-slice-resnet"),
    pytest.param("classification", "patch", "conv5fc3", {"patch_size": 8, "patch_stride": 8}, id="classif-patch"),
    pytest.param("reconstruction", "image", None, {}, id="reconstruction-ae"),
    pytest.param("segmentation", "patch", None, {"patch_size": 8, "patch_stride": 8}, id="segmentation-unet"),
])
def test_tasks_and_input_modes(case, task, mode, model, extra):
    from train.api import predict, train_model

    kw = dict(FAST, **extra)
    summary = train_model(case / "dataset", case / "splits", case / "maps", task=task, mode=mode, model=model,
                          epochs=1, echo=lambda s: None, **kw)
    metric = {"regression": "mae", "classification": "balanced_accuracy", "reconstruction": "mse",
              "segmentation": "dice"}[task]
    assert summary.summary["test"][metric]["mean"] is not None
    meta = json.loads((case / "maps" / "maps.json").read_text())
    assert meta["config"]["mode"] == mode and meta["config"]["task"] == task
    if task == "segmentation":
        assert meta["masks"] and all(v.startswith("sha256:") for v in meta["masks"].values())
        assert "dice_1" in summary.runs[0]["metrics"]["test"]
    out = predict(case / "maps", case / "dataset", case / "splits" / "test.tsv", output=case / "pred",
                  bootstrap=20, echo=lambda s: None)
    assert out.metrics[metric]["value"] is not None


@pytest.mark.torch
def test_kfold_and_seeds_report_mean_and_sd(case):
    from train.api import train_model

    _certify(case / "dataset", case / "kfold")
    summary = train_model(case / "dataset", case / "kfold", case / "maps", epochs=1, seeds=2, augment=False,
                          echo=lambda s: None, **FAST)
    assert sorted((r["fold"], r["seed"]) for r in summary.runs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    bacc = summary.summary["test"]["balanced_accuracy"]
    assert bacc["n"] == 4 and bacc["sd"] is not None
    tv = (case / "maps" / "train+validation.tsv").read_text()
    assert "\t1\t" in tv and "\t0\t" in tv
    with pytest.raises(InputError, match="--folds"):
        train_model(case / "dataset", case / "kfold", case / "maps3", folds=[7], echo=lambda s: None, **FAST)


@pytest.mark.torch
def test_bad_training_arguments_are_input_errors(case):
    from train.api import train_model

    for kw, says in (({"task": "detection"}, "--task"), ({"mode": "voxel"}, "--mode"), ({"model": "vgg"}, "--model"),
                     ({"task": "segmentation", "model": "conv5fc3"}, "does not do segmentation"),
                     ({"epochs": 0}, "--epochs"), ({"label": "nonexistent"}, "no column 'nonexistent'"),
                     ({"device": "tpu"}, "--device")):
        with pytest.raises(InputError, match=says):
            train_model(case / "dataset", case / "splits", case / "maps", echo=lambda s: None, **dict(FAST, **kw))
        shutil.rmtree(case / "maps", ignore_errors=True)


@pytest.mark.torch
def test_augmentation_is_monai_and_seeded():
    from train.samples import make_augmentation

    aug = make_augmentation(segmentation=True, dims=3)
    rng = np.random.default_rng(0)
    sample = {"image": rng.normal(size=(1, 12, 12, 12)).astype(np.float32),
              "mask": (rng.random((1, 12, 12, 12)) > 0.5).astype(np.int64)}
    a, b, c = aug(sample, 7), aug(sample, 7), aug(sample, 8)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])
    assert not np.array_equal(a["image"], c["image"])
    assert set(np.unique(a["mask"]).tolist()) <= {0, 1}


@pytest.mark.torch
def test_cuda_when_available(case):
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from train.api import train_model

    s = train_model(case / "dataset", case / "splits", case / "maps", epochs=1, echo=lambda s: None,
                    **dict(FAST, device="cuda"))
    assert s.device.startswith("cuda")


@pytest.mark.torch
def test_demo_training_trains_and_refuses_the_leaky_split(case):
    from audit.demo import make_leaky_copy
    from train.api import demo_training

    make_leaky_copy(case / "splits", case / "splits-leaky", n=2)
    lines: list[str] = []
    assert demo_training(case, epochs=1, echo=lines.append)
    text = "\n".join(lines)
    assert "trained 1 run(s)" in text
    assert "permutation test (3 shuffled-label runs" in text and "prediction-site test" in text
    assert "refused (exit 1)" in text and "no certificate here" in text  # a missing certificate: a closed gate
    assert "refused (exit 1)" in text and "splits-leaky/train.tsv was not audited" in text
    assert not (case / "maps-leaky").exists()


@pytest.mark.torch
def test_a_failure_before_training_leaves_no_model_folder(case, monkeypatch):
    import train.data

    from train.api import train_model

    def one_class(*a, **k):
        raise InputError(None, "the training split has one class only (CN)")

    monkeypatch.setattr(train.data, "fit_preprocessing", one_class)
    with pytest.raises(InputError, match="one class only"):
        train_model(case / "dataset", case / "splits", case / "maps", epochs=1, echo=lambda s: None, **FAST)
    assert not (case / "maps").exists()
