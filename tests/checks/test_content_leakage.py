"""leakage.duplicate_image and leakage.near_duplicate_image: fingerprints, search, checks, end to end."""

from __future__ import annotations

import gzip
import math
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from audit.images import candidates, sketch, voxels
from audit.images import fingerprint as fp
from audit.bidsindex import index_dataset
from audit.checks.content import THRESHOLDS, near_duplicates
from audit.context import AuditContext, AuditOptions
from audit.images.imagefile import summarise_file
from audit.images.summary import ImageSummary, summarise_images
from audit.runner import run_checks
from audit.splits import read_splits
from bench.bench_neardup import transforms

SHARED_DATA = Path(os.environ.get("BIDSAUDIT_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
REAL = SHARED_DATA / "nifti"
TH = THRESHOLDS["leakage.near_duplicate_image"]
DUP, NEAR = "leakage.duplicate_image", "leakage.near_duplicate_image"


# ---------------------------------------------------------------- helpers
def save(path: Path, data: np.ndarray, affine: np.ndarray, *, dtype=None, slope: float | None = None,
         description: str | None = None, level: int = 6) -> Path:
    """Write a NIfTI file (gzipped when the name says so) with the given on-disk type and scaling."""
    img = nib.Nifti1Image(np.asarray(data if dtype is None else np.rint(data / (slope or 1)).astype(dtype)), affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    if description is not None:
        img.header["descrip"] = description
    raw = img.to_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=level, mtime=0) if path.name.endswith(".gz") else raw)
    return path


def t1w(root: Path, sub: str, ses: str | None = None) -> Path:
    folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
    return folder / (f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + "_T1w.nii.gz")


def blob(seed: int, shape=(24, 26, 22)) -> np.ndarray:
    """A smooth random head-like ellipsoid (distinct axes): different seeds are different 'people'."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    g = np.indices(shape).astype(float)
    size = np.array(shape, dtype=float).reshape(3, 1, 1, 1)
    semi = size * np.array([0.26, 0.34, 0.42]).reshape(3, 1, 1, 1)
    r = np.sqrt((((g - size / 2) / semi) ** 2).sum(0))
    tex = gaussian_filter(rng.normal(size=shape), 2.0)
    return np.where(r < 1, 500 + 800 * tex / tex.std(), 0).clip(0) + rng.uniform(0, 5, shape)


def dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.10.0"}')
    return root


def splits(root: Path, **members: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in members.items():
        ses = any("/" in r for r in rows)
        lines = ["participant_id\tsession_id" if ses else "participant_id"]
        lines += ["\t".join(r.split("/", 1)) if "/" in r else (f"{r}\tn/a" if ses else r) for r in rows]
        (root / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return root


def run(ds: Path, sp: Path, check_id: str, **options):
    options.setdefault("workers", 1)
    ctx = AuditContext(options=AuditOptions(run_validator=False, **options), index=index_dataset(ds),
                       splits=read_splits(sp))
    found, skipped = run_checks(ctx, [check_id])
    return [f for f in found if f.check == check_id]


def summary_of(path: Path, subject: str, session: str | None = None) -> ImageSummary:
    content = summarise_file(str(path))["content"]
    return ImageSummary.from_dict({**content, "path": str(path), "subject": subject, "session": session,
                                   "suffix": "T1w"})


# ---------------------------------------------------------- exact duplicates
def test_duplicate_survives_recompression_header_edit_dtype_and_scaling(tmp_path):
    ds = dataset(tmp_path / "ds")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    slope = 0.25
    data = np.rint(blob(0) / slope) * slope  # exactly representable as int16 * 0.25
    save(t1w(ds, "01"), data.astype(np.float32), affine)
    save(t1w(ds, "02"), data, affine, dtype=np.int16, slope=slope)                   # dtype + scaling
    save(t1w(ds, "03"), data.astype(np.float32), affine, description="edited", level=1)  # header + gzip level
    moved = affine.copy()
    moved[:3, 3] = [10, -4, 7]
    save(t1w(ds, "04"), data.astype(np.float32), moved)                              # another origin
    save(t1w(ds, "05"), blob(5), affine)                                             # someone else
    hashes = {s.subject: s.content_hash for s in summarise_images(index_dataset(ds), workers=1)}
    assert len({hashes[f"sub-0{i}"] for i in range(1, 5)}) == 1 and hashes["sub-05"] != hashes["sub-01"]
    sp = splits(tmp_path / "sp", train=["sub-01", "sub-05"], test=["sub-02", "sub-03", "sub-04"])
    (f,) = run(ds, sp, DUP)
    assert f.severity == "error" and f.splits == ("train", "test")
    assert f.subjects == ("sub-01", "sub-02", "sub-03", "sub-04")
    assert f.evidence["count"] == 3
    pair = f.evidence["pairs"][0]
    assert pair["a"]["path"] == "sub-01/anat/sub-01_T1w.nii.gz" and pair["a"]["split"] == "train"
    assert pair["b"]["split"] == "test" and pair["content_hash"] == hashes["sub-01"]
    assert "sub-01 = sub-02" in f.message and f.message.startswith("3 image pairs in train and test hold")
    # the same pairs inside one split are not leakage
    assert run(ds, splits(tmp_path / "sp2", train=["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"]), DUP) == []


def test_sessions_of_one_subject_in_one_split_are_not_reported(tmp_path):
    ds = dataset(tmp_path / "ds")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for ses in ("01", "02"):
        save(t1w(ds, "01", ses), blob(1), affine)  # the same scan filed twice
    save(t1w(ds, "02"), blob(2), affine)
    save(t1w(ds, "03"), blob(3), affine)
    assert run(ds, splits(tmp_path / "a", train=["sub-01", "sub-02"], test=["sub-03"]), DUP) == []
    assert run(ds, splits(tmp_path / "b", train=["sub-01/ses-01", "sub-01/ses-02", "sub-02/n/a"],
                          test=["sub-03/n/a"]), DUP) == []
    # split apart, the identical "sessions" are reported (beside leakage.subject_overlap)
    (f,) = run(ds, splits(tmp_path / "c", train=["sub-01/ses-01", "sub-02"],
                          test=["sub-01/ses-02", "sub-03"]), DUP)
    assert f.subjects == ("sub-01",) and "sub-01/ses-01 = sub-01/ses-02" in f.message
    # two sessions of one person are never near-duplicates to report
    assert run(ds, splits(tmp_path / "d", train=["sub-01/ses-01", "sub-02"],
                          test=["sub-01/ses-02", "sub-03"]), NEAR) == []


# ------------------------------------------------------------ fingerprints
def test_fingerprint_cancels_moves_reorientation_and_intensity_maps():
    data = blob(7, shape=(30, 34, 28)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    base = fp.fingerprint(data, affine)
    assert base is not None and base.vector.shape == (fp.FP_SIZE**3,)
    assert math.isclose(float(np.linalg.norm(base.vector)), 1.0, rel_tol=1e-5)
    rot = np.eye(4)
    c, s = math.cos(0.3), math.sin(0.3)
    rot[:2, :2] = [[c, -s], [s, c]]
    rot[:3, 3] = [5, -3, 8]
    for other in (fp.fingerprint(data, rot @ affine),             # rigid move of the affine
                  fp.fingerprint(3.5 * data + 0.0, affine),        # scaling
                  fp.fingerprint(data.max() * (data / data.max()) ** 1.25, affine)):  # gamma
        assert other is not None and float(base.vector @ other.vector) > 0.995
    assert fp.fingerprint(np.zeros((20, 20, 20)), affine) is None  # no data
    assert fp.fingerprint(np.ones((20, 20, 3)), affine) is None    # a slab: no 3-D shape
    text = fp.encode(base.vector)
    assert np.allclose(fp.decode(text), base.vector, atol=1e-3)


def test_near_pairs_exact_and_inverted_file_agree():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(40, 600)).astype(np.float32)  # low-dimensional, like real fingerprints
    x = rng.normal(size=(3000, 40)).astype(np.float32) @ low
    x += rng.normal(size=x.shape).astype(np.float32) * 0.3
    planted = [(5, 2999), (17, 1200), (640, 2048)]
    for a, b in planted:
        x[b] = x[a] + rng.normal(size=600).astype(np.float32) * 0.2 * np.linalg.norm(x[a]) / math.sqrt(600)
    vec = x.astype(np.float16)
    i1, j1, s1, info1 = candidates.near_pairs(vec, 0.9)
    i2, j2, s2, info2 = candidates.near_pairs(vec, 0.9, exact_max=0)
    assert info1["exact"] == 1.0 and info2["exact"] == 0.0
    assert set(zip(i1.tolist(), j1.tolist())) == set(planted)
    assert set(zip(i2.tolist(), j2.tolist())) == set(planted)
    assert np.allclose(s1, s2) and (s1 >= 0.9).all()
    res = candidates.residuals(vec)
    assert np.allclose(res.cosine(i1, j1), s1)
    empty = candidates.near_pairs(vec[:2], 0.9)
    assert len(empty[0]) == 0  # two images: no group mean to compare against


def test_small_integer_volumes_give_the_float32_sketch_and_fingerprint():
    """int16/uint8 volumes are read through a table of their float32 bits: the same results as their float copy."""
    ints = np.rint(blob(5, shape=(30, 34, 28)) * 7 - 300).astype(np.int16)
    affine = np.diag([1.5, 1.2, 1.0, 1.0])
    for data in (ints, np.asfortranarray(ints), (ints // 16 + 40).clip(0, 255).astype(np.uint8)):
        a, b = sketch.patch_sketch(data), sketch.patch_sketch(data.astype(np.float32))
        if data.dtype == np.uint8:  # fewer than 256 values: no sketch either way
            assert a is None and b is None
        else:
            assert a is not None and b is not None
            assert np.array_equal(a.hashes, b.hashes) and a.count == b.count
        fa, fb = fp.fingerprint(data, affine), fp.fingerprint(data.astype(np.float32), affine)
        assert fa is not None and fb is not None
        assert np.array_equal(fa.vector, fb.vector) and fa.spread == fb.spread


def test_block_sums_and_sorted_unique():
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 50, (11, 9, 7)).astype(np.float32)  # integers: exact in any order
    got = voxels.block_sum(vol, (3, 2, 4))
    want = np.zeros((4, 5, 2), np.float32)
    for i, j, k in np.ndindex(vol.shape):
        want[i // 3, j // 2, k // 4] += vol[i, j, k]
    assert np.array_equal(got, want)
    assert np.array_equal(voxels.block_sum(vol != 0, (3, 2, 4), dtype=np.float32),
                          voxels.block_sum((vol != 0).astype(np.float32), (3, 2, 4)))
    h = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    h[::7] = h[0]
    assert np.array_equal(voxels.unique_sorted(h), np.unique(h))
    assert voxels.unique_sorted(np.zeros(0)).size == 0 and voxels.unique_sorted(np.ones(1)).size == 1


def test_patch_sketch_keeps_crops_pads_and_reorientations_and_tells_scans_apart():
    data = blob(3, shape=(30, 34, 28)).astype(np.float32)
    base = sketch.patch_sketch(data)
    assert base is not None and len(base.hashes) == min(base.count, sketch.SKETCH_K)
    assert np.all(np.diff(base.hashes.astype(np.float64)) > 0)

    def share(other: np.ndarray) -> float:
        sk = sketch.patch_sketch(np.ascontiguousarray(other, dtype=np.float32))
        assert sk is not None
        return sketch.sketch_containment(base.hashes, base.count, sk.hashes, sk.count)

    assert share(data[4:, 2:-3, 3:]) > 0.9                          # a crop into the object
    assert share(np.pad(data, 3)) > 0.9                             # zero padding
    assert share(data * 1.0001) < 0.05                              # every value changed: not these patches
    assert share(blob(4, shape=(30, 34, 28))) < 0.05                # someone else
    labels = np.rint(data / data.max() * 3)                         # a label map: patterns repeat across people
    assert sketch.patch_sketch(labels) is None
    text = sketch.encode_sketch(base)
    assert np.array_equal(sketch.decode_sketch(text), base.hashes)
    # the inverted file finds exactly the pair that shares patches
    sketches = [sketch.patch_sketch(blob(k, shape=(20, 22, 18)).astype(np.float32)) for k in range(6)]
    sketches.append(sketch.patch_sketch(np.ascontiguousarray(blob(2, shape=(20, 22, 18))[2:, :, 1:],
                                                              dtype=np.float32)))
    i, j, s = candidates.sketch_pairs([x.hashes for x in sketches], [x.count for x in sketches], 0.5)
    assert list(zip(i.tolist(), j.tolist())) == [(2, 6)] and s[0] > 0.9


# --------------------------------------------------- planted near-duplicates
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A synthetic 16-subject dataset and its image summaries."""
    from audit.synthetic import make_dataset

    root = tmp_path_factory.mktemp("demo") / "ds"
    make_dataset(root, n_subjects=16, seed=4, session_fraction=0.0)
    from audit.hashing import HashCache

    return root, summarise_images(index_dataset(root), workers=1, cache=HashCache(memory=True))


CAUGHT = ("noise 2%", "noise 5%", "gamma 0.8", "gamma 1.25", "pad 3", "resample 1.5x voxels",
          "rotate 7 deg (resampled)", "rotate 10 deg (resampled)", "crop 3 (one side)", "crop 2 (both sides)")
BY_PATCHES = ("pad 3", "crop 3 (one side)", "crop 2 (both sides)")


@pytest.mark.parametrize("name", CAUGHT)
def test_planted_copy_of_a_demo_subject_is_a_near_duplicate(demo, tmp_path, name):
    root, summaries = demo
    src = t1w(root, "003")
    img = nib.load(src)
    data, affine = transforms(np.asarray(img.dataobj, dtype=np.float32), img.affine,
                              np.random.default_rng(1))[name]
    copy = summary_of(save(tmp_path / "copy.nii.gz", data, affine), "sub-099")
    pairs, _ = near_duplicates([*summaries, copy], **TH)
    assert [{p.a.subject, p.b.subject} for p in pairs] == [{"sub-003", "sub-099"}]
    (p,) = pairs
    if name in BY_PATCHES:  # the voxel values are kept: the patch sketch finds them
        assert "voxel patches" in p.matched_by and p.patch_overlap >= TH["patch_overlap"]
    if "fingerprint" in p.matched_by:
        assert p.similarity >= TH["similarity"] and p.size_difference <= TH["size_tolerance"]
    if not name.startswith("crop"):  # a crop that cuts into the head moves the fingerprint's frame
        assert p.matched_by[0] == "fingerprint"


# int16+scaling of an image stored as int16 with the same slope decodes to the same values
@pytest.mark.parametrize("name", ["int16+scaling", "reorient (flip, swap axes)", "moved affine (rigid, same voxels)"])
def test_reoriented_moved_or_requantised_copy_is_an_exact_duplicate(demo, tmp_path, name):
    root, summaries = demo
    img = nib.load(t1w(root, "003"))
    data, affine = transforms(np.asarray(img.dataobj, dtype=np.float32), img.affine,
                              np.random.default_rng(1))[name]
    copy = summary_of(save(tmp_path / "copy.nii.gz", data, affine), "sub-099")
    original = next(s for s in summaries if s.subject == "sub-003")
    assert copy.content_hash == original.content_hash  # leakage.duplicate_image's case
    if name.startswith("reorient"):  # the canonical orientation undoes it: the very same fingerprint
        assert copy.fingerprint == original.fingerprint


def test_distinct_subjects_of_the_demo_are_not_near_duplicates(tmp_path):
    from audit.synthetic import make_dataset

    root = tmp_path / "ds"
    make_dataset(root, n_subjects=60, seed=0)
    summaries = summarise_images(index_dataset(root), workers=2)
    assert sum(1 for s in summaries if s.fingerprint) == len(summaries) > 60
    assert all(s.patch_sketch and s.patch_count for s in summaries)
    fixed, stats = near_duplicates(summaries, **{**TH, "similarity_floor": None, "spectrum_z": None})
    assert fixed == [] and stats["groups"] == {"T1w": len(summaries)}
    # searched at the floor, the alike phantoms link a few pairs (within the budget: confirmation rejects them)
    pairs, stats = near_duplicates(summaries, **{**TH, "spectrum_z": None})
    where = stats["thresholds"]["T1w"]
    assert len(pairs) == where["pairs_kept"] <= where["budget"] and where["over_budget"] == 0
    assert all(p.similarity >= TH["similarity_floor"] for p in pairs)
    # the spectra add at most their own budget of pairs, each named as theirs
    both, stats = near_duplicates(summaries, **{**TH, "mutual_budget_per_image": 0})
    extra = [p for p in both if p.matched_by == ("spectrum",)]
    sp = stats["spectrum"]["T1w"]
    assert len(both) == len(pairs) + len(extra) and len(extra) == sp["pairs_added"] <= sp["budget"]
    assert all(p.spectrum_z >= TH["spectrum_z"] for p in extra)
    # the mutual nearest neighbours add at most their own budget too (every image has a nearest one)
    every, stats = near_duplicates(summaries, **{**TH, "mutual_budget_per_image": 0.05})
    mutual = [p for p in every if p.matched_by == ("mutual nearest neighbours",)]
    mu = stats["mutual"]["T1w"]
    assert len(every) == len(both) + len(mutual) and 0 < len(mutual) == mu["pairs_added"] <= mu["budget"]
    assert all(p.mutual_score is not None for p in mutual)


def test_a_group_over_its_candidate_budget_raises_its_threshold_and_says_so(tmp_path):
    from audit.synthetic import make_dataset

    root = tmp_path / "ds"
    make_dataset(root, n_subjects=60, seed=0)
    summaries = summarise_images(index_dataset(root), workers=2)
    everything, stats = near_duplicates(summaries, **{**TH, "spectrum_z": None})  # the fingerprints' budget
    n = stats["thresholds"]["T1w"]["pairs_at_floor"]
    assert n >= 3, n
    tight = {**TH, "candidate_budget": 2, "candidate_budget_per_image": 0.0, "spectrum_z": None}
    pairs, stats = near_duplicates(summaries, **tight)
    where = stats["thresholds"]["T1w"]
    assert where["budget"] == 2 and len(pairs) == where["pairs_kept"] <= 2
    assert where["over_budget"] == n - len(pairs) > 0 and "over the budget" in where["rule"]
    assert where["threshold"] > TH["similarity_floor"]
    top = sorted((p.similarity for p in everything), reverse=True)
    assert sorted((p.similarity for p in pairs), reverse=True) == top[: len(pairs)]


# ---------------------------------------------------------------- real data
@pytest.fixture
def real():
    if not REAL.is_dir():
        pytest.skip(f"real NIfTI files not found at {REAL} (the ../shared folder is absent)")
    return REAL


def test_real_images(real, tmp_path):
    files = sorted(p for p in real.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    summaries = [summary_of(p, f"sub-{k:02d}") for k, p in enumerate(files)]
    by_name = {p.relative_to(real).as_posix(): s for p, s in zip(files, summaries)}
    pairs, _ = near_duplicates(summaries, **TH)
    found = {frozenset((p.a.path, p.b.path)): p for p in pairs}
    anat, moved = by_name["nibabel/anatomical.nii"], by_name["nibabel/reoriented_anat_moved.nii"]
    aniso, denoised = by_name["dipy/aniso_vox.nii.gz"], by_name["dipy/ascm_out_test.nii.gz"]
    ex4d, crop = by_name["nibabel/example4d.nii.gz"], by_name["nibabel/example_nifti2.nii.gz"]
    # the real reoriented (rotated, 2 mm -> 4 mm) copy and the denoised copy by fingerprint, the real
    # 32x20x12 crop of example4d by its voxel patches; and nothing else
    assert set(found) == {frozenset((anat.path, moved.path)), frozenset((aniso.path, denoised.path)),
                          frozenset((ex4d.path, crop.path))}
    assert found[frozenset((aniso.path, denoised.path))].matched_by == ("fingerprint",)
    assert found[frozenset((ex4d.path, crop.path))].matched_by == ("voxel patches",)
    # measured, not claimed: the 3-slice resampled copy has no fingerprint (a slab) and no shared voxels
    assert by_name["nibabel/resampled_anat_moved.nii"].fingerprint == ""
    # planted copies of a real scan
    img = nib.load(real / "nibabel/anatomical.nii")
    rng = np.random.default_rng(2)
    # (resampling this tight crop to 3 mm shrinks its smallest axis by 4.2 %: past the size test, missed)
    for name in ("int16+scaling", "noise 2%", "noise 5%", "gamma 0.8", "gamma 1.25", "pad 3",
                 "crop 3 (one side)", "crop 2 (both sides)"):
        data, affine = transforms(np.asarray(img.dataobj, dtype=np.float32), img.affine, rng)[name]
        copy = summary_of(save(tmp_path / f"{name}.nii", data, affine), "sub-99")
        pairs, _ = near_duplicates([*summaries, copy], **TH)
        assert frozenset((anat.path, copy.path)) in {frozenset((p.a.path, p.b.path)) for p in pairs}, name


# -------------------------------------------------------------- end to end
def test_audit_splits_names_the_planted_duplicate(tmp_path):
    from audit.api import audit_splits
    from audit.synthetic import make_dataset

    ds = tmp_path / "ds"
    make_dataset(ds, n_subjects=14, seed=3, duplicate_of={"sub-012": "sub-005"}, session_fraction=0.0)
    subjects = [f"sub-{i:03d}" for i in range(1, 15)]
    sp = splits(tmp_path / "splits", train=[s for s in subjects if s != "sub-012"], test=["sub-012"])
    result = audit_splits(ds, sp, AuditOptions(run_validator=False, workers=1)).to_dict()
    dups = [f for f in result["findings"] if f["check"] == DUP]
    assert len(dups) == 1 and dups[0]["subjects"] == ["sub-005", "sub-012"]
    assert dups[0]["splits"] == ["train", "test"] and result["status"] == "fail"
    assert not [f for f in result["findings"] if f["check"] == NEAR]  # the exact copy is not reported twice
    assert not [s for s in result["skipped"] if s["check"] in (DUP, NEAR)]


def plant_copy(ds: Path, source: str, target: str, variant: str) -> None:
    """Write participant ``source``'s T1w, changed by the named planted transform, as ``target``'s T1w."""
    img = nib.load(t1w(ds, source))
    data, affine = transforms(np.asarray(img.dataobj, dtype=np.float32), img.affine,
                              np.random.default_rng(0))[variant]
    save(t1w(ds, target), data, affine)


def test_near_duplicate_finding_carries_threshold_and_separation(tmp_path):
    from audit.synthetic import make_dataset

    ds = tmp_path / "ds"
    make_dataset(ds, n_subjects=12, seed=6, session_fraction=0.0)
    plant_copy(ds, "004", "013", "gamma 0.8")
    shutil.copy(t1w(ds, "004").with_name("sub-004_T1w.json"), t1w(ds, "013").with_name("sub-013_T1w.json"))
    subjects = [f"sub-{i:03d}" for i in range(1, 14)]
    sp = splits(tmp_path / "sp", train=subjects[:10], validation=["sub-011", "sub-012"], test=["sub-013"])
    (f,) = run(ds, sp, NEAR)
    assert f.splits == ("train", "test") and f.subjects == ("sub-004", "sub-013")
    ev = f.evidence
    assert ev["threshold"] == TH["similarity"] and ev["size_tolerance"] == TH["size_tolerance"]
    assert ev["patch_overlap_threshold"] == TH["patch_overlap"] and ev["pairs"][0]["matched_by"] == ["fingerprint"]
    # confirmed by the second stage: a gamma copy keeps every fine detail; the phantoms' threshold is raised
    conf = ev["pairs"][0]["confirmation"]
    assert conf["verdict"] == "copy" and conf["score"] >= conf["threshold"] > TH["confirm_floor"]
    assert f.severity == "error" and ev["confirmation"]["groups"]["T1w"]["threshold"] == conf["threshold"]
    sep_ = ev["separation"]
    assert sep_["copies_lowest_patch_overlap"] > TH["patch_overlap"] > sep_["distinct_highest_patch_overlap"]
    assert ev["pairs"][0]["similarity"] >= TH["similarity"] and ev["pairs"][0]["compared_with"] == 13
    sep = ev["separation"]
    assert sep["copies_lowest_similarity"] > TH["similarity"] > sep["distinct_highest_similarity_same_size"]
    assert run(ds, sp, DUP) == []  # gamma changes the voxels: not an exact duplicate
    # configurable: a stricter threshold (ceiling and floor) than the copy's similarity silences it
    strict = {"thresholds": {NEAR: {"similarity": 0.9999, "similarity_floor": 0.9999}}}
    assert run(ds, sp, NEAR, config=strict) == []


def test_cropped_copy_is_reported_by_its_voxel_patches(tmp_path):
    from audit.synthetic import make_dataset

    ds = tmp_path / "ds"
    make_dataset(ds, n_subjects=8, seed=2, session_fraction=0.0)
    plant_copy(ds, "003", "009", "crop 3 (one side)")
    subjects = [f"sub-{i:03d}" for i in range(1, 10)]
    sp = splits(tmp_path / "sp", train=subjects[:8], test=["sub-009"])
    (f,) = run(ds, sp, NEAR)
    assert f.splits == ("train", "test") and f.subjects == ("sub-003", "sub-009")
    (pair,) = f.evidence["pairs"]
    assert pair["matched_by"] == ["voxel patches"] and pair["patch_overlap"] >= TH["patch_overlap"]
    assert run(ds, sp, DUP) == []  # a crop is not the same array
    # inside one split it is not leakage
    assert run(ds, splits(tmp_path / "one", train=subjects), NEAR) == []


def test_image_pass_on_a_dask_cluster_gives_the_same_fingerprints(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from audit.hashing import HashCache

    ds = dataset(tmp_path / "ds")
    for k in range(3):
        save(t1w(ds, f"0{k}"), blob(k), np.diag([2.0, 2.0, 2.0, 1.0]))
    local = summarise_images(index_dataset(ds), workers=2, cache=HashCache(memory=True))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        remote = summarise_images(index_dataset(ds), scheduler=cluster.scheduler_address,
                                  cache=HashCache(memory=True))
    assert [s.fingerprint for s in remote] == [s.fingerprint for s in local]
    assert all(s.fingerprint and s.fingerprint_spread for s in local)
