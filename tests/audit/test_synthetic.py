"""Tests for audit.synthetic, the synthetic multi-site BIDS dataset generator."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats.contingency import association

from audit.synthetic import DEFAULT_SITES, DatasetSummary, SiteSpec, make_dataset


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _images(root: Path) -> dict[str, list[Path]]:
    """Subject label -> its T1w images, in session order."""
    out: dict[str, list[Path]] = {}
    for p in sorted(root.glob("sub-*/**/*_T1w.nii.gz")):
        out.setdefault(p.relative_to(root).parts[0], []).append(p)
    return out


def _normalised(path: Path) -> np.ndarray:
    data = np.asarray(nib.load(path).get_fdata())
    return (data / np.percentile(data, 99)).ravel()


def _cramers_v(root: Path) -> float:
    part = pd.read_csv(root / "participants.tsv", sep="\t")
    return float(association(pd.crosstab(part["site"], part["diagnosis"]).to_numpy(), method="cramer"))


def _ventricle_voxels(path: Path) -> int:
    """Dark (CSF-like) voxels in a deep-brain box centred on the head's centre of mass."""
    img = nib.load(path)
    data = np.asarray(img.get_fdata())
    head = data > 0.3 * np.percentile(data, 99)
    ijk = np.indices(data.shape).reshape(3, -1)
    centre = img.affine[:3, :3] @ ijk[:, head.ravel()].mean(axis=1) + img.affine[:3, 3]
    xyz = (img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]).T - centre
    box = (np.abs(xyz[:, 0]) < 24) & (np.abs(xyz[:, 1]) < 36) & (xyz[:, 2] > -10) & (xyz[:, 2] < 32)
    dark = data.ravel() < 0.4 * np.percentile(data, 99)
    return int((box & dark).sum())


@pytest.fixture(scope="module")
def default_ds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetSummary]:
    root = tmp_path_factory.mktemp("synthetic") / "default"
    return root, make_dataset(root)


@pytest.fixture(scope="module")
def confounded_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "confounded"
    make_dataset(root, confounded=True)
    return root


def test_summary_matches_files(default_ds: tuple[Path, DatasetSummary]) -> None:
    root, summary = default_ds
    images = _images(root)
    assert summary.root == root
    assert summary.n_subjects == 24 == len(images)
    assert summary.n_images == sum(len(v) for v in images.values())
    assert summary.n_sessions == len(list(root.glob("sub-*/ses-*"))) > 0
    assert summary.sites == tuple(s.name for s in DEFAULT_SITES)
    assert summary.seconds > 0
    print(f"\ngenerated {summary.n_images} images in {summary.seconds:.2f} s")


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    a = _files(make_dataset(tmp_path / "a", n_subjects=6, seed=3).root)
    b = _files(make_dataset(tmp_path / "b", n_subjects=6, seed=3).root)
    assert a == b


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    a, b = (make_dataset(tmp_path / str(s), n_subjects=6, seed=s, session_fraction=0).root
            for s in (0, 1))
    for sub, (path,) in _images(a).items():
        other = b / path.relative_to(a)
        assert path.read_bytes() != other.read_bytes()
        assert not np.allclose(nib.load(path).get_fdata(), nib.load(other).get_fdata())


def test_gzip_header_has_no_name_or_mtime(default_ds: tuple[Path, DatasetSummary]) -> None:
    for paths in _images(default_ds[0]).values():
        for path in paths:
            head = path.read_bytes()[:10]
            assert head[:2] == b"\x1f\x8b"
            assert not head[3] & 0x08, "FNAME flag set"
            assert head[4:8] == b"\0\0\0\0", "non-zero mtime"


def test_images_load_with_declared_geometry(default_ds: tuple[Path, DatasetSummary]) -> None:
    for paths in _images(default_ds[0]).values():
        for path in paths:
            img = nib.load(path)
            data = img.get_fdata()
            assert img.shape == (32, 40, 32)
            assert np.isfinite(data).all() and data.min() >= 0 and data.max() > 0
            assert img.header.get_data_dtype() == np.int16
            assert img.dataobj.slope != 1.0 and img.dataobj.inter == 0.0
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 2
            assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
            assert np.allclose(img.header.get_zooms(), (6.0, 6.0, 6.0))
            assert img.header.get_xyzt_units()[0] == "mm"
            assert np.allclose(img.get_qform(), img.get_sform())


def test_custom_shape_and_voxel_size(tmp_path: Path) -> None:
    make_dataset(tmp_path / "ds", n_subjects=2, shape=(24, 28, 24), voxel_size=(8.0, 8.0, 8.0))
    for (path, *_) in _images(tmp_path / "ds").values():
        img = nib.load(path)
        assert img.shape == (24, 28, 24)
        assert np.allclose(img.header.get_zooms(), (8.0, 8.0, 8.0))


def test_subjects_are_distinct_and_sessions_similar(default_ds: tuple[Path, DatasetSummary]) -> None:
    images = _images(default_ds[0])
    repeat = [paths for paths in images.values() if len(paths) == 2]
    assert repeat, "no subject with two sessions"
    firsts = {sub: _normalised(paths[0]) for sub, paths in images.items()}
    subs = sorted(firsts)
    between = [np.corrcoef(firsts[a], firsts[b])[0, 1] for a in subs for b in subs if a < b]
    within = [np.corrcoef(_normalised(p1), _normalised(p2))[0, 1] for p1, p2 in repeat]
    assert min(within) > max(between)
    assert min(within) < 0.999, "sessions should not be identical"


def test_ad_has_larger_ventricles(default_ds: tuple[Path, DatasetSummary]) -> None:
    root = default_ds[0]
    part = pd.read_csv(root / "participants.tsv", sep="\t")
    images = _images(root)
    vent = part["participant_id"].map(lambda sub: _ventricle_voxels(images[sub][0]))
    by_dx = vent.groupby(part["diagnosis"]).mean()
    assert by_dx["AD"] > 1.5 * by_dx["CN"]


def test_default_balances_diagnosis_across_sites(default_ds: tuple[Path, DatasetSummary]) -> None:
    root = default_ds[0]
    part = pd.read_csv(root / "participants.tsv", sep="\t")
    assert _cramers_v(root) < 0.2
    per_site = pd.crosstab(part["site"], part["diagnosis"])
    assert (per_site > 0).all().all()
    assert (per_site["AD"] - per_site["CN"]).abs().max() <= 1
    assert abs((part["sex"] == "M").sum() - (part["sex"] == "F").sum()) <= 1
    assert 60 < part["age"].mean() < 80


def test_confounded_ties_diagnosis_to_site(confounded_ds: Path) -> None:
    assert _cramers_v(confounded_ds) > 0.6
    part = pd.read_csv(confounded_ds / "participants.tsv", sep="\t")
    ad_rate = (part["diagnosis"] == "AD").groupby(part["site"]).mean()
    assert ad_rate["siteA"] >= 0.8 and ad_rate["siteB"] <= 0.2


def test_participants_tsv_and_json_are_consistent(default_ds: tuple[Path, DatasetSummary]) -> None:
    root = default_ds[0]
    text = (root / "participants.tsv").read_text()
    part = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)
    meta = json.loads((root / "participants.json").read_text())
    assert list(part.columns) == ["participant_id", "age", "sex", "diagnosis", "site"]
    assert set(meta) == set(part.columns)
    assert all("Description" in v for v in meta.values())
    assert meta["age"]["Units"] == "year"
    for col in ("sex", "diagnosis", "site"):
        assert set(part[col]) <= set(meta[col]["Levels"])
    assert set(meta["site"]["Levels"]) == {s.name for s in DEFAULT_SITES}
    assert all(re.fullmatch(r"\d+\.\d", a) for a in part["age"])
    assert list(part["participant_id"]) == sorted(p.name for p in root.glob("sub-*"))
    assert all(re.fullmatch(r"sub-\d{3}", s) for s in part["participant_id"])
    assert text.endswith("\n") and "\r" not in text


def test_sessions_tsv_matches_session_folders(default_ds: tuple[Path, DatasetSummary]) -> None:
    root = default_ds[0]
    part = pd.read_csv(root / "participants.tsv", sep="\t").set_index("participant_id")
    for sub_dir in sorted(root.glob("sub-*")):
        sessions = sorted(p.name for p in sub_dir.glob("ses-*"))
        tsv = sub_dir / f"{sub_dir.name}_sessions.tsv"
        if not sessions:
            assert not tsv.exists() and (sub_dir / "anat" / f"{sub_dir.name}_T1w.nii.gz").is_file()
            continue
        table = pd.read_csv(tsv, sep="\t")
        assert sessions == ["ses-01", "ses-02"] == list(table["session_id"])
        assert table["age"].iloc[0] == pytest.approx(part.loc[sub_dir.name, "age"])
        assert 1.0 <= table["age"].iloc[1] - table["age"].iloc[0] <= 2.1


def test_sidecars_describe_the_site(default_ds: tuple[Path, DatasetSummary]) -> None:
    root = default_ds[0]
    sites = {s.name: s for s in DEFAULT_SITES}
    part = pd.read_csv(root / "participants.tsv", sep="\t").set_index("participant_id")
    keys = {"Manufacturer", "ManufacturersModelName", "MagneticFieldStrength", "InstitutionName",
            "RepetitionTime", "EchoTime", "FlipAngle", "InversionTime"}
    for sub, paths in _images(root).items():
        site = sites[part.loc[sub, "site"]]
        for path in paths:
            side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
            assert keys <= set(side)
            assert (side["Manufacturer"], side["ManufacturersModelName"]) == (site.manufacturer, site.model)
            assert side["MagneticFieldStrength"] == site.field_strength


def test_dataset_description_and_readme(default_ds: tuple[Path, DatasetSummary]) -> None:
    root = default_ds[0]
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] == "1.10.0" and desc["DatasetType"] == "raw"
    assert len(desc["Authors"]) == 2 and desc["License"]
    assert len((root / "README").read_text()) > 150


def test_duplicate_of_plants_a_resaved_copy(tmp_path: Path) -> None:
    plain = make_dataset(tmp_path / "plain").root
    dup = make_dataset(tmp_path / "dup", duplicate_of={"sub-020": "sub-003"}).root
    (src,), (copy,) = _images(dup)["sub-003"], _images(dup)["sub-020"]
    assert src.read_bytes() != copy.read_bytes()
    a, b = nib.load(src), nib.load(copy)
    assert a.header.get_data_dtype() == np.int16 and b.header.get_data_dtype() == np.float32
    np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), rtol=1e-6, atol=1e-4)
    part = pd.read_csv(dup / "participants.tsv", sep="\t").set_index("participant_id")
    assert part.loc["sub-020"].equals(part.loc["sub-003"])
    # Nothing else changes: other subjects are byte-identical to the plain dataset.
    before, after = _files(plain), _files(dup)
    others = {k for k in before | after if not k.startswith(("sub-003/", "sub-020/"))}
    assert {k: before.get(k) for k in others - {"participants.tsv"}} == \
        {k: after.get(k) for k in others - {"participants.tsv"}}


@pytest.mark.parametrize("mapping", [{"sub-099": "sub-001"}, {"sub-002": "sub-002"},
                                     {"sub-002": "sub-001", "sub-003": "sub-002"}])
def test_bad_duplicate_is_refused(tmp_path: Path, mapping: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        make_dataset(tmp_path / "ds", n_subjects=4, duplicate_of=mapping)
    assert not (tmp_path / "ds").exists()


def test_refuses_non_empty_root_unless_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_dataset(root, n_subjects=4, seed=1)
    with pytest.raises(ValueError, match="not empty"):
        make_dataset(root, n_subjects=2)
    summary = make_dataset(root, n_subjects=2, overwrite=True)
    assert sorted(p.name for p in root.glob("sub-*")) == ["sub-001", "sub-002"]
    assert summary.n_subjects == 2
    other = tmp_path / "not-bids"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError):
        make_dataset(other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_custom_sites(tmp_path: Path) -> None:
    sites = (SiteSpec("north", "Siemens", "Skyra", 3.0), SiteSpec("south", "GE", "SIGNA", 1.5))
    summary = make_dataset(tmp_path / "ds", n_subjects=6, sites=sites, session_fraction=0)
    assert summary.sites == ("north", "south") and summary.n_sessions == 0 and summary.n_images == 6
    part = pd.read_csv(tmp_path / "ds" / "participants.tsv", sep="\t")
    assert part["site"].value_counts().to_dict() == {"north": 3, "south": 3}
    with pytest.raises(ValueError):
        make_dataset(tmp_path / "ds2", sites=(sites[0], sites[0]))


def _validator() -> str | None:
    local = Path(sys.executable).parent / "bids-validator-deno"
    return str(local) if local.is_file() else shutil.which("bids-validator-deno")


@pytest.mark.skipif(_validator() is None, reason="bids-validator-deno not installed")
def test_official_validator_reports_no_errors(default_ds: tuple[Path, DatasetSummary]) -> None:
    exe = _validator()
    assert exe is not None
    proc = subprocess.run([exe, "--format", "json", str(default_ds[0])],
                          capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"validator gave no JSON report: {proc.stderr[-500:]}")
    issues = report["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert not errors, errors
    assert proc.returncode == 0
    allowed = {"SIDECAR_KEY_RECOMMENDED", "JSON_KEY_RECOMMENDED"}
    assert {i["code"] for i in issues} <= allowed
