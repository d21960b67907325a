"""The image pass, content hashes, the hash cache, dataset fingerprints and the image checks."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from audit import hashing
from audit.bidsindex import index_dataset
from audit.context import AuditContext, AuditOptions
from audit.hashing import EMPTY_SHA256, HashCache, dataset_fingerprint, file_sha256
from audit.images.measures import THUMB_SIZE
from audit.images.summary import ImageSummary, summarise_images, thumbnail_correlation
from audit.runner import run_checks
from tests.builders import SHARED_DATA

REAL = SHARED_DATA / "nifti"
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
ANNEX_TARGET = "../../.git/annex/objects/xx/yy/MD5E-s123--0123abcd.nii.gz/MD5E-s123--0123abcd.nii.gz"


# ---------------------------------------------------------------- builders
def phantom(shape=(12, 13, 14), seed=0) -> np.ndarray:
    """A blob on a dark background (integer values, so every dtype holds them exactly)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape[:3]).astype(float)
    centre = np.array(shape[:3]).reshape(3, 1, 1, 1) / 2
    r = np.sqrt(((grid - centre) ** 2).sum(0))
    data = np.where(r < min(shape[:3]) / 3, 100.0, 5.0) + rng.integers(0, 20, size=shape[:3])
    if len(shape) > 3:
        data = np.stack([data + i for i in range(shape[3])], axis=-1)
    return data


def nifti_bytes(data, affine=AFFINE, *, description=None, nifti2=False):
    """NIfTI bytes as nibabel writes them (on-disk type = the array's type, no scaling)."""
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(np.asarray(data), affine)
    if description is not None:
        img.header["descrip"] = description
    return img.to_bytes()


def write(path: Path, raw: bytes, *, level: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=level, mtime=0)
    path.write_bytes(raw)
    return path


def image_path(root: Path, sub: str, suffix: str = "T1w", ext: str = ".nii.gz") -> Path:
    datatype = "func" if suffix == "bold" else "anat"
    name = f"sub-{sub}_task-rest_{suffix}{ext}" if suffix == "bold" else f"sub-{sub}_{suffix}{ext}"
    return root / f"sub-{sub}" / datatype / name


def dataset(root: Path, images: dict[str, bytes | None] | None = None, *, n: int = 3) -> Path:
    """A BIDS folder; ``images`` maps subject label to NIfTI bytes (``None``: no image)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    if images is None:
        images = {f"{i + 1:02d}": nifti_bytes(phantom(seed=i).astype(np.int16)) for i in range(n)}
    for sub, raw in images.items():
        if raw is not None:
            write(image_path(root, sub), raw)
    return root


def summarise(root: Path, **kw):
    kw.setdefault("workers", 1)
    return summarise_images(index_dataset(root), **kw)


def by_sub(result) -> dict[str, ImageSummary]:
    return {s.subject: s for s in result}


def findings(root: Path, check_id: str, **options):
    options.setdefault("workers", 1)
    ctx = AuditContext(options=AuditOptions(run_validator=False, **options), index=index_dataset(root))
    found, _ = run_checks(ctx, [check_id])
    return [f for f in found if f.check == check_id]


# --------------------------------------------------------------- good data
def test_good_images_summarise_ok(tmp_path):
    root = dataset(tmp_path / "ds")
    result = summarise(root)
    assert len(result) == 3 and result.n_absent == 0
    for s in result:
        assert s.status == "ok", s.problem
        assert s.shape == (12, 13, 14) and s.zooms == (2.0, 2.0, 2.0) and s.orientation == "RAS"
        assert s.dtype == "int16" and s.format == "nifti1" and s.gzipped
        assert s.content_hash.startswith("sha256:")
        assert s.sha256 == file_sha256(root / s.path)
        assert s.min >= 5 and s.max < 120 and 0 < s.foreground_fraction < 1
        assert s.p01 <= s.p50 <= s.p99
        assert s.thumbnail_vector().shape == (THUMB_SIZE**3,)
        json.dumps(s.to_dict())  # JSON-serialisable
        assert ImageSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert len({s.content_hash for s in result}) == 3
    assert not findings(root, "quality.corrupt_image") and not findings(root, "quality.empty_image")
    assert not findings(root, "quality.inconsistent_geometry")


def test_4d_image_hashes_whole_array_and_stats_mean_volume(tmp_path):
    data = phantom((10, 11, 12, 3)).astype(np.int16)
    root = dataset(tmp_path / "ds", {"01": None})
    write(image_path(root, "01", "bold"), nifti_bytes(data))
    s = summarise(root).images[0]
    assert s.status == "ok" and s.shape == (10, 11, 12, 3)
    assert s.min == float(data.min()) and s.max == float(data.max())
    assert s.mean == pytest.approx(float(data.mean()), rel=1e-6)  # mean volume's mean
    # one volume changed -> another hash
    other = data.copy()
    other[..., 2] += 1
    write(image_path(root, "02", "bold"), nifti_bytes(other))
    a, b = summarise(root)
    assert a.content_hash != b.content_hash


# ---------------------------------------------------------------- bad data
def test_truncated_gzip_is_corrupt(tmp_path):
    root = dataset(tmp_path / "ds")
    path = image_path(root, "02")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    s = by_sub(summarise(root))["sub-02"]
    assert (s.status, s.problem_code) == ("corrupt", "truncated")
    assert s.sha256 == file_sha256(path)  # the bytes that are there are still hashed
    [f] = findings(root, "quality.corrupt_image")
    assert f.severity == "error" and f.subjects == ("sub-02",)
    assert "sub-02/anat/sub-02_T1w.nii.gz" in f.message and "truncated" in f.message
    assert f.evidence["files"][0]["path"] == "sub-02/anat/sub-02_T1w.nii.gz"


@pytest.mark.parametrize("cut", [pytest.param(4, id="gzip-trailer"), pytest.param(200, id="gzip-data-tail")])
def test_gzip_cut_near_the_end_is_corrupt(tmp_path, cut):
    root = dataset(tmp_path / "ds")
    path = image_path(root, "01")
    path.write_bytes(path.read_bytes()[:-cut])
    s = by_sub(summarise(root))["sub-01"]
    assert s.status == "corrupt" and s.problem_code in ("truncated", "bad_gzip")


@pytest.mark.parametrize("inflate", ["isal", "zlib"])
def test_gzip_members_padding_and_garbage(tmp_path, monkeypatch, inflate):
    import zlib

    from audit.images import decode as imaging

    if inflate == "zlib":  # the fallback when isal is not installed
        monkeypatch.setattr(imaging, "_inflate_lib", zlib)
        monkeypatch.setattr(imaging, "_INFLATE_ERRORS", (zlib.error,))
    raw = nifti_bytes(phantom().astype(np.int16))
    whole = gzip.compress(raw, mtime=0)
    root = dataset(tmp_path / "ds", {"01": None})
    path = image_path(root, "01")
    write(path, raw)
    want = summarise(root).images[0]
    assert want.status == "ok"
    cut = len(raw) // 3  # two gzip members (as pigz or concatenated files make), then zero padding
    path.write_bytes(gzip.compress(raw[:cut], mtime=0) + gzip.compress(raw[cut:], mtime=0) + b"\0" * 512)
    s = summarise(root, cache=HashCache(memory=True)).images[0]
    assert s.status == "ok" and s.content_hash == want.content_hash and s.fingerprint == want.fingerprint
    path.write_bytes(whole + b"not gzip")
    s = summarise(root, cache=HashCache(memory=True)).images[0]
    assert (s.status, s.problem_code) == ("corrupt", "bad_gzip") and "trailing garbage" in s.problem
    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    s = summarise(root, cache=HashCache(memory=True)).images[0]
    assert s.status == "corrupt" and s.problem_code in ("bad_gzip", "truncated")


def test_truncated_uncompressed_nifti_is_corrupt(tmp_path):
    root = dataset(tmp_path / "ds", {"01": None})
    raw = nifti_bytes(phantom().astype(np.int16))
    write(image_path(root, "01", ext=".nii"), raw[: len(raw) - 100])
    s = summarise(root).images[0]
    assert (s.status, s.problem_code) == ("corrupt", "truncated")
    assert "declares" in s.problem


def test_damaged_gzip_crc_is_corrupt(tmp_path):
    root = dataset(tmp_path / "ds")
    path = image_path(root, "01")
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # CRC32 of the trailer
    path.write_bytes(bytes(raw))
    s = by_sub(summarise(root))["sub-01"]
    assert (s.status, s.problem_code) == ("corrupt", "bad_gzip")


def test_zero_byte_image_corrupt_unless_headers_ignored(tmp_path):
    root = dataset(tmp_path / "ds")
    image_path(root, "03").write_bytes(b"")
    s = by_sub(summarise(root))["sub-03"]
    assert (s.status, s.problem_code, s.sha256) == ("corrupt", "zero_byte", EMPTY_SHA256)
    [f] = findings(root, "quality.corrupt_image")
    assert f.subjects == ("sub-03",) and "zero-byte" in f.message

    result = summarise(root, ignore_headers=True)
    assert result.images_read == 0 and result.bytes_read == 0 and result.ignore_headers
    assert by_sub(result)["sub-03"].status == "placeholder"
    assert {s.status for s in result} == {"placeholder", "skipped"}
    for check_id in ("quality.corrupt_image", "quality.empty_image", "quality.inconsistent_geometry"):
        assert findings(root, check_id, ignore_nifti_headers=True) == []


def test_many_zero_byte_images_give_one_grouped_finding(tmp_path):
    root = dataset(tmp_path / "ds", {f"{i:02d}": b"" for i in range(1, 6)})
    for i in range(1, 6):
        image_path(root, f"{i:02d}").write_bytes(b"")
    [f] = findings(root, "quality.corrupt_image")
    assert f.message.startswith("5 images are zero-byte files") and len(f.subjects) == 5
    assert f.evidence["count"] == 5 and len(f.evidence["files"]) == 5


def raw_nifti(data, affine=AFFINE, *, slope=None, inter=0.0, edit=None, nifti2=False) -> bytes:
    """NIfTI bytes written by hand: exactly this on-disk array, scaling and header (``edit(header)``)."""
    data = np.asarray(data)
    endian = ">" if data.dtype.byteorder == ">" else "<"  # NIfTI data share the header's byte order
    hdr = (nib.Nifti2Header if nifti2 else nib.Nifti1Header)(endianness=endian)
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_sform(affine, 1)
    hdr.set_qform(affine, 1)
    if slope is not None:
        hdr.set_slope_inter(slope, inter)
    offset = hdr.single_vox_offset
    hdr.set_data_offset(offset)
    if edit is not None:
        edit(hdr)
    block = hdr.binaryblock
    return block + b"\0" * (offset - len(block)) + data.tobytes(order="F")


def _header_edit(edit, nifti2=False):
    return raw_nifti(phantom().astype(np.int16), edit=edit, nifti2=nifti2)


@pytest.mark.parametrize(
    ("edit", "nifti2", "code"),
    [
        pytest.param(lambda h: h["dim"].__setitem__(2, -3), False, "impossible_dims", id="negative-dim"),
        pytest.param(lambda h: h["dim"].__setitem__(0, 0), False, "impossible_dims", id="dim0-zero"),
        pytest.param(lambda h: h["dim"].__setitem__(1, 40000), True, "impossible_dims", id="dim-over-2^15"),
        pytest.param(lambda h: (h.__setitem__("sform_code", 1), h["srow_x"].__setitem__(0, np.nan),
                                h.__setitem__("qform_code", 0)), False, "nonfinite_affine", id="nan-affine"),
        pytest.param(lambda h: (h.__setitem__("sform_code", 1), h["srow_y"].__setitem__(3, np.inf)),
                     False, "nonfinite_affine", id="inf-affine"),
        pytest.param(lambda h: (h.__setitem__("sform_code", 1), h["srow_z"].__setitem__(2, 0.0),
                                h.__setitem__("qform_code", 0)), False, "singular_affine", id="singular-affine"),
        pytest.param(lambda h: h.__setitem__("datatype", 1234), False, "unknown_dtype", id="unknown-dtype"),
        pytest.param(lambda h: h.__setitem__("magic", b"xyz"), False, "bad_header", id="bad-magic"),
    ],
)
def test_impossible_header_values_are_corrupt(tmp_path, edit, nifti2, code):
    root = dataset(tmp_path / "ds")
    write(image_path(root, "02"), _header_edit(edit, nifti2=nifti2))
    s = by_sub(summarise(root))["sub-02"]
    assert (s.status, s.problem_code) == ("corrupt", code), s.problem
    [f] = findings(root, "quality.corrupt_image")
    assert "sub-02/anat/sub-02_T1w.nii.gz" in f.message and f.subjects == ("sub-02",)


def test_not_a_nifti_and_garbage_are_corrupt(tmp_path):
    root = dataset(tmp_path / "ds")
    write(image_path(root, "01"), b"hello, this is not an image" * 50)
    image_path(root, "02").write_bytes(os.urandom(3000))
    result = by_sub(summarise(root))
    assert result["sub-01"].status == "corrupt" and result["sub-01"].problem_code == "not_nifti"
    assert result["sub-02"].status == "corrupt"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(np.zeros((8, 8, 8), np.int16), "constant", id="all-zero"),
        pytest.param(np.full((8, 8, 8), 7.5, np.float32), "constant", id="all-constant"),
        pytest.param(np.full((8, 8, 8), np.nan, np.float32), "non_finite", id="all-nan"),
        pytest.param(np.zeros((8, 0, 8), np.int16), "no_voxels", id="no-voxels"),
    ],
)
def test_empty_images(tmp_path, data, code):
    root = dataset(tmp_path / "ds")
    write(image_path(root, "02"), nifti_bytes(data))
    s = by_sub(summarise(root))["sub-02"]
    assert (s.status, s.problem_code) == ("empty", code), s.problem
    [f] = findings(root, "quality.empty_image")
    assert f.severity == "error" and f.subjects == ("sub-02",) and "sub-02/anat/sub-02_T1w.nii.gz" in f.message
    assert not findings(root, "quality.corrupt_image")


def test_unreadable_file_is_a_finding_not_a_traceback(tmp_path, monkeypatch):
    root = dataset(tmp_path / "ds")
    victim = str(image_path(root, "02").resolve())
    real_open = hashing.open_raw

    def refuse(path):
        if os.fspath(path) == victim:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path)

    monkeypatch.setattr(hashing, "open_raw", refuse)
    s = by_sub(summarise(root))["sub-02"]
    assert (s.status, s.problem_code) == ("unreadable", "unreadable") and "Permission denied" in s.problem
    [f] = findings(root, "quality.unreadable_file")  # not corrupt: the bytes were never seen (issue #14)
    assert "sub-02/anat/sub-02_T1w.nii.gz" in f.message and "Permission denied" in f.message
    assert not findings(root, "quality.corrupt_image")
    fp = dataset_fingerprint(index_dataset(root), HashCache(memory=True))
    assert fp.files["sub-02/anat/sub-02_T1w.nii.gz"] == "unreadable"
    assert fp.unreadable == (("sub-02/anat/sub-02_T1w.nii.gz", "Permission denied"),)
    # nothing cached for it: once readable again, it is read
    monkeypatch.setattr(hashing, "open_raw", real_open)
    assert by_sub(summarise(root))["sub-02"].status == "ok"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_by_mode(tmp_path):
    root = dataset(tmp_path / "ds")
    path = image_path(root, "01")
    path.chmod(0)
    try:
        assert by_sub(summarise(root))["sub-01"].status == "unreadable"
    finally:
        path.chmod(0o644)


# ---------------------------------------------------------------- geometry
def test_geometry_outlier_is_reported_per_suffix(tmp_path):
    imgs = {f"{i:02d}": nifti_bytes(phantom(seed=i).astype(np.int16)) for i in range(1, 5)}
    imgs["05"] = nifti_bytes(phantom(seed=5).astype(np.int16), np.diag([1.0, 1.0, 1.2, 1.0]))
    imgs["06"] = nifti_bytes(phantom((12, 13, 15), seed=6).astype(np.int16), np.diag([-2.0, 2.0, 2.0, 1.0]))
    root = dataset(tmp_path / "ds", imgs)
    [f] = findings(root, "quality.inconsistent_geometry")
    assert f.severity == "warning" and f.subjects == ("sub-05", "sub-06")
    assert f.message.startswith("T1w: 2 of 6 images differ from the usual geometry")
    ev = f.evidence
    assert ev["norm"] == {"shape": [12, 13, 14], "voxel_size": [2.0, 2.0, 2.0], "orientation": "RAS"}
    files = {e["path"]: e["differs"] for e in ev["files"]}
    assert files["sub-05/anat/sub-05_T1w.nii.gz"] == {"voxel_size": [1.0, 1.0, 1.2]}
    assert files["sub-06/anat/sub-06_T1w.nii.gz"] == {"shape": [12, 13, 15], "orientation": "LAS"}
    assert ev["differs"] == {"voxel_size": 1, "shape": 1, "orientation": 1}


def test_geometry_without_majority_or_too_few_images_is_not_judged(tmp_path):
    imgs = {"01": nifti_bytes(phantom(seed=1).astype(np.int16)),
            "02": nifti_bytes(phantom(seed=2).astype(np.int16), np.diag([1.0, 1.0, 1.0, 1.0]))}
    root = dataset(tmp_path / "ds", imgs)
    assert findings(root, "quality.inconsistent_geometry") == []


# ------------------------------------------------------------ absent images
def test_dangling_link_and_annex_pointer_are_absent_not_read(tmp_path):
    root = dataset(tmp_path / "ds")
    link = image_path(root, "04")
    link.parent.mkdir(parents=True)
    os.symlink(ANNEX_TARGET, link)
    pointer = image_path(root, "05")
    pointer.parent.mkdir(parents=True)
    pointer.write_text(ANNEX_TARGET + "\n")
    plain = image_path(root, "06")
    plain.parent.mkdir(parents=True)
    os.symlink("../../nowhere/sub-06_T1w.nii.gz", plain)
    result = summarise(root)
    assert len(result) == 3 and result.n_absent == 3 and result.images_read == 3
    assert {a.link for a in result.absent} == {"dangling", "annex-pointer"}
    [f] = findings(root, "quality.absent_images")
    assert f.severity == "warning" and f.subjects == ("sub-04", "sub-05", "sub-06")
    assert f.message.startswith("3 images have no content here")
    assert f.evidence["dangling"] == 2 and f.evidence["annex_pointer"] == 1 and f.evidence["annexed"] == 2
    assert not findings(root, "quality.corrupt_image")
    fp = dataset_fingerprint(index_dataset(root), HashCache(memory=True))
    assert fp.files["sub-04/anat/sub-04_T1w.nii.gz"] == "annex:MD5E-s123--0123abcd.nii.gz"
    assert fp.files["sub-05/anat/sub-05_T1w.nii.gz"] == "annex:MD5E-s123--0123abcd.nii.gz"
    assert fp.files["sub-06/anat/sub-06_T1w.nii.gz"] == "link:../../nowhere/sub-06_T1w.nii.gz"
    assert fp.n_absent == 3


def test_present_annexed_image_is_read_and_bound_by_its_key(tmp_path):
    root = dataset(tmp_path / "ds", n=1)
    key = "SHA256E-s999--" + "ab" * 32 + ".nii.gz"
    obj = root / ".git" / "annex" / "objects" / "Xy" / "Zw" / key / key
    obj.parent.mkdir(parents=True)
    obj.write_bytes(nifti_bytes(phantom(seed=7).astype(np.int16)))
    link = image_path(root, "02")
    link.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(obj, link.parent), link)
    result = by_sub(summarise(root))
    assert result["sub-02"].status == "ok" and result["sub-02"].sha256 == file_sha256(obj)
    fp = dataset_fingerprint(index_dataset(root), HashCache(memory=True))
    assert fp.files["sub-02/anat/sub-02_T1w.nii.gz"] == f"annex:{key}"  # same whether fetched or not
    obj.unlink()  # "datalad drop"
    assert dataset_fingerprint(index_dataset(root), HashCache(memory=True)).fingerprint == fp.fingerprint


def test_absent_images_finding_needs_no_image_read(tmp_path):
    root = dataset(tmp_path / "ds")
    assert findings(root, "quality.absent_images", check_images=False) == []
    link = image_path(root, "09")
    link.parent.mkdir(parents=True)
    os.symlink(ANNEX_TARGET, link)
    assert len(findings(root, "quality.absent_images", check_images=False)) == 1


# ---------------------------------------------------------- content hashes
def test_content_hash_survives_dtype_scaling_header_edits_and_recompression(tmp_path):
    values = phantom()  # integers 5..119
    variants = {
        "01": nifti_bytes(values.astype(np.int16)),
        "02": nifti_bytes(values.astype(np.float32)),
        "03": nifti_bytes(values.astype(np.float64)),
        "04": raw_nifti((values * 2).astype(np.int16), slope=0.5),  # raw * 0.5 = values
        "05": raw_nifti((values - 5).astype(np.uint8), slope=1.0, inter=5.0),
        "12": raw_nifti((values * 4).astype(np.float32).byteswap().view(">f4"), slope=0.25),  # big-endian
        "06": nifti_bytes(values.astype(np.int16), description="edited description"),
        "07": nifti_bytes(values[::-1].astype(np.int16), np.diag([-2.0, 2.0, 2.0, 1.0]) @ _shift(-11)),  # flipped x
        "08": nifti_bytes(values.astype(np.int16), nifti2=True),
    }
    root = dataset(tmp_path / "ds", variants)
    write(image_path(root, "09"), variants["01"], level=1)  # re-compressed
    write(image_path(root, "10", ext=".nii"), variants["01"])  # decompressed
    write(image_path(root, "11"), nifti_bytes(values.astype(np.int16) + np.eye(12, 13)[:, :, None].astype(np.int16)))
    result = by_sub(summarise(root))
    base = result["sub-01"].content_hash
    for sub in ("02", "03", "04", "05", "06", "07", "08", "09", "10", "12"):
        assert result[f"sub-{sub}"].status == "ok"
        assert result[f"sub-{sub}"].content_hash == base, sub
    assert result["sub-11"].content_hash != base
    assert len({result[f"sub-{s}"].sha256 for s in ("01", "02", "04", "06", "09", "10")}) == 6
    assert result["sub-07"].orientation == "LAS" and result["sub-01"].orientation == "RAS"


def test_content_hash_form_follows_the_decoded_values_of_4d_images(tmp_path):
    data = phantom((10, 11, 12, 3)).astype(np.int16)
    fractional = data.astype(np.float32)
    fractional[..., 2] += np.float32(0.5)  # the last volume is not integers: every volume is hashed as float32
    big = data.astype(np.int32)
    big[0, 0, 0, 1] = 40000  # out of int16's range: float32 too
    variants = {"01": nifti_bytes(data), "02": nifti_bytes(data.astype(np.float32)),
                "03": raw_nifti(data * 4, slope=0.25), "04": nifti_bytes(fractional),
                "05": raw_nifti((fractional * 2).astype(np.int16), slope=0.5), "06": nifti_bytes(big),
                "07": nifti_bytes(big.astype(np.float32))}
    result = by_sub(summarise(dataset(tmp_path / "ds", variants)))
    assert all(s.status == "ok" for s in result.values())
    assert result["sub-01"].content_hash == result["sub-02"].content_hash == result["sub-03"].content_hash
    assert result["sub-04"].content_hash == result["sub-05"].content_hash != result["sub-01"].content_hash
    assert result["sub-06"].content_hash == result["sub-07"].content_hash
    assert len({result[f"sub-0{i}"].content_hash for i in (1, 4, 6)}) == 3


def test_int16_reference_gives_the_float32_summary(tmp_path):
    """Unscaled int16 images are summarised from the stored integers: every field as from their float32 copy."""
    values = phantom((24, 26, 22)) * 37 - 900  # negative and positive
    values += np.random.default_rng(1).integers(0, 40, values.shape) * (values > 0)  # many values, zero background
    root = dataset(tmp_path / "ds", {"01": nifti_bytes(values.astype(np.int16)),
                                     "02": nifti_bytes(values.astype(np.float32))})
    a, b = (s.to_dict() for s in summarise(root))
    assert a.pop("dtype") == "int16" and b.pop("dtype") == "float32"
    for key in ("path", "subject", "sha256", "size"):
        a.pop(key), b.pop(key)
    assert a == b and a["fingerprint"] and a["patch_sketch"]


def _shift(dx_vox: int) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = dx_vox
    return m


def test_thumbnail_is_invariant_to_rescaling_and_translation(tmp_path):
    values = phantom((16, 16, 16))
    moved = np.diag([2.0, 2.0, 2.0, 1.0])
    moved[:3, 3] = [30.0, -12.0, 7.0]
    root = dataset(tmp_path / "ds", {
        "01": nifti_bytes(values.astype(np.float32)),
        "02": nifti_bytes((values * 3 + 10).astype(np.float32), moved),
        "03": nifti_bytes(phantom((16, 16, 16), seed=9)[:, ::-1].astype(np.float32)),
    })
    r = by_sub(summarise(root))
    assert thumbnail_correlation(r["sub-01"], r["sub-02"]) == pytest.approx(1.0, abs=1e-3)
    assert thumbnail_correlation(r["sub-01"], r["sub-03"]) < thumbnail_correlation(r["sub-01"], r["sub-02"])


# ------------------------------------------------------------------- cache
def test_second_run_reads_no_image_and_touch_rereads(tmp_path):
    root = dataset(tmp_path / "ds", n=4)
    cache = HashCache(tmp_path / "cache")
    first = summarise_images(index_dataset(root), workers=1, cache=cache)
    assert first.images_read == 4 and first.cache_hits == 0 and first.bytes_read > 0
    second = summarise_images(index_dataset(root), workers=1, cache=HashCache(tmp_path / "cache"))
    assert second.images_read == 0 and second.cache_hits == 4 and second.bytes_read == 0
    assert second.images == first.images
    # the quality metrics (audit.images.features) come from the cache too, with no image read
    assert all(s.iqm and s.iqm["snr"] is not None and len(s.iqm["histogram"]) == 32 for s in second)

    path = image_path(root, "02")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = summarise_images(index_dataset(root), workers=1, cache=HashCache(tmp_path / "cache"))
    assert third.images_read == 1 and third.cache_hits == 3
    assert third.images == first.images
    # the fingerprint needs no image read after the image pass
    fp = dataset_fingerprint(index_dataset(root), HashCache(tmp_path / "cache"))
    assert fp.bytes_read == len((root / "dataset_description.json").read_bytes())
    assert fp.files["sub-02/anat/sub-02_T1w.nii.gz"] == f"sha256:{file_sha256(path)}"


def test_rewritten_file_is_reread(tmp_path):
    root = dataset(tmp_path / "ds")
    cache = HashCache(tmp_path / "cache")
    summarise_images(index_dataset(root), workers=1, cache=cache)
    path = image_path(root, "01")
    tmp = path.with_name("x.tmp")
    write(tmp, nifti_bytes(np.zeros((12, 13, 14), np.int16)))
    os.replace(tmp, path)  # new inode
    again = summarise_images(index_dataset(root), workers=1, cache=cache)
    assert again.images_read == 1 and by_sub(again)["sub-01"].status == "empty"


def test_cache_dir_unusable_falls_back_to_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(blocker / "sub"))
    cache = HashCache()
    assert cache.in_memory and "cannot be used" in cache.problem
    root = dataset(tmp_path / "ds")
    assert summarise_images(index_dataset(root), workers=1, cache=cache).images_read == 3
    assert summarise_images(index_dataset(root), workers=1, cache=cache).images_read == 0

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / HashCache.FILENAME).write_bytes(b"this is not a database" * 100)
    cache = HashCache(garbage)  # a damaged cache file is moved aside and rebuilt, with a warning (issue #14)
    assert not cache.in_memory and "rebuilt" in cache.problem
    assert (garbage / (HashCache.FILENAME + ".corrupt")).exists()
    assert summarise_images(index_dataset(root), workers=1, cache=cache).images_read == 3


def test_default_cache_is_shared_and_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "c1"))
    assert HashCache.default() is HashCache.default()
    assert HashCache.default().path == tmp_path / "c1" / HashCache.FILENAME
    monkeypatch.delenv("BIDSAUDIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert HashCache.default_dir() == tmp_path / "xdg" / "bidsaudit"


# ------------------------------------------------------------- fingerprint
def test_dataset_fingerprint(tmp_path):
    root = dataset(tmp_path / "ds")
    (root / "README").write_text("hello")
    (root / "notes.txt").write_text("not BIDS")  # kept by the index as invalid: still bound
    (root / "empty.txt").write_bytes(b"")
    extra = root / "extra_folder"
    extra.mkdir()
    (extra / "a.bin").write_bytes(b"abc")
    cache = HashCache(tmp_path / "cache")
    fp = dataset_fingerprint(index_dataset(root), cache)
    assert fp.fingerprint.startswith("sha256:") and len(fp.fingerprint) == 71
    assert fp.files["notes.txt"] == f"sha256:{file_sha256(root / 'notes.txt')}"
    assert fp.files["empty.txt"] == f"sha256:{EMPTY_SHA256}"
    assert fp.files["extra_folder"].startswith("tree:")
    assert fp.n_files == len(index_dataset(root).rows)
    again = dataset_fingerprint(index_dataset(root), cache)
    assert again.fingerprint == fp.fingerprint and again.bytes_read == 0 and again.n_read == 0
    assert again.cache_hits == fp.n_read
    (extra / "a.bin").write_bytes(b"abd")
    assert dataset_fingerprint(index_dataset(root), cache).fingerprint != fp.fingerprint
    (extra / "a.bin").write_bytes(b"abc")
    assert dataset_fingerprint(index_dataset(root), cache).fingerprint == fp.fingerprint
    (root / "README").write_text("hellO")
    assert dataset_fingerprint(index_dataset(root), cache).fingerprint != fp.fingerprint
    # same content elsewhere, no cache: same fingerprint (relative paths)
    shutil.copytree(root, tmp_path / "copy", symlinks=True)
    (tmp_path / "copy" / "README").write_text("hello")
    assert dataset_fingerprint(index_dataset(tmp_path / "copy"), HashCache(memory=True)).fingerprint == fp.fingerprint


def test_fingerprint_of_many_zero_byte_files_reads_nothing(tmp_path):
    root = dataset(tmp_path / "ds", {})
    for i in range(2000):
        p = image_path(root, f"{i:04d}")
        p.parent.mkdir(parents=True)
        p.write_bytes(b"")
    t = time.perf_counter()
    fp = dataset_fingerprint(index_dataset(root), HashCache(tmp_path / "cache"))
    assert fp.n_files == 2001 and fp.n_read == 1  # dataset_description.json
    assert time.perf_counter() - t < 5


# ------------------------------------------------------------- parallelism
def _mixed_tree(root: Path) -> Path:
    imgs = {f"{i:02d}": nifti_bytes(phantom(seed=i).astype(np.int16)) for i in range(1, 7)}
    root = dataset(root, imgs)
    image_path(root, "03").write_bytes(image_path(root, "03").read_bytes()[:300])
    write(image_path(root, "04"), nifti_bytes(np.zeros((4, 4, 4), np.float32)))
    write(image_path(root, "05"), _header_edit(lambda h: (h.__setitem__("sform_code", 1),
                                                          h["srow_x"].__setitem__(0, np.nan),
                                                          h.__setitem__("qform_code", 0))))
    return root


def test_workers_give_identical_summaries(tmp_path):
    root = _mixed_tree(tmp_path / "ds")
    one = summarise_images(index_dataset(root), workers=1, cache=HashCache(memory=True))
    two = summarise_images(index_dataset(root), workers=2, cache=HashCache(memory=True))
    assert one.images == two.images and two.images_read == 6
    assert [s.path for s in two] == sorted(s.path for s in two)
    assert {s.status for s in two} == {"ok", "corrupt", "empty"}


def test_dask_cluster_gives_identical_summaries(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    root = _mixed_tree(tmp_path / "ds")
    one = summarise_images(index_dataset(root), workers=1, cache=HashCache(memory=True))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        viadask = summarise_images(index_dataset(root), scheduler=cluster.scheduler_address,
                                   cache=HashCache(memory=True))
    assert viadask.images == one.images and viadask.images_read == 6


def test_unreachable_scheduler_is_an_input_error(tmp_path, monkeypatch):
    from audit.errors import InputError
    from audit.images import imagepass as imaging

    monkeypatch.setattr(imaging, "DASK_CONNECT_TIMEOUT", "1s")
    root = dataset(tmp_path / "ds", n=1)
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        summarise_images(index_dataset(root), scheduler="tcp://127.0.0.1:1", cache=HashCache(memory=True))


# --------------------------------------------------------------- real data
@pytest.fixture
def real_images():
    if not REAL.is_dir():
        pytest.skip(f"real NIfTI files not found at {REAL} (set BIDSAUDIT_SHARED_DATA or place ../shared beside the clone)")
    return sorted(p for p in REAL.rglob("*") if p.name.endswith((".nii", ".nii.gz")))


def test_real_images_summarise_ok(tmp_path, real_images):
    root = dataset(tmp_path / "ds", {})
    names = {}
    for i, src in enumerate(real_images, 1):
        ext = ".nii.gz" if src.name.endswith(".gz") else ".nii"
        dst = image_path(root, f"{i:02d}", ext=ext)
        dst.parent.mkdir(parents=True)
        shutil.copyfile(src, dst)
        names[f"sub-{i:02d}"] = src.relative_to(REAL).as_posix()
    result = summarise(root, workers=2)
    assert len(result) == len(real_images)
    for s in result:
        assert s.status == "ok", (names[s.subject], s.problem)
        assert s.sha256 == file_sha256(root / s.path)
    by_name = {names[s.subject]: s for s in result}
    anat, moved = by_name["nibabel/anatomical.nii"], by_name["nibabel/reoriented_anat_moved.nii"]
    r = thumbnail_correlation(anat, moved)
    print(f"\nthumbnail correlation anatomical.nii vs reoriented_anat_moved.nii: {r:.4f}")
    assert r is not None
