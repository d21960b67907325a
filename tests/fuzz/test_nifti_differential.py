"""Differential fuzzing of the NIfTI decoder against nibabel, and the regressions it found (issue #14).

The generator and the oracle are in ``bench/_niftifuzz.py`` (``bench/bench_fuzz.py`` runs the long
campaign and prints the figures).
"""

from __future__ import annotations

import gzip
import io
import random

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.bidsindex import index_dataset
from audit.hashing import HashCache
from audit.images.decode import BadImage, decode_nifti
from audit.images.imagefile import summarise_file
from audit.images.summary import summarise_images
from bench._niftifuzz import Case, compare, make_case
from tests.builders import make_bids

SHORT = settings(max_examples=80, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SHORT
@given(st.randoms(use_true_random=False))
def test_decoder_agrees_with_nibabel(rng):
    case = make_case(rng)
    outcome = compare(case)
    assert outcome.agree, (outcome, case.recipe)


@SHORT
@given(rng=st.randoms(use_true_random=False))
def test_summarise_file_never_raises(tmp_path_factory, rng):
    case = make_case(rng)
    path = tmp_path_factory.mktemp("f") / f"img{case.ext}"
    path.write_bytes(case.raw)
    res = summarise_file(str(path))  # a bad image is a status, never an exception
    assert res["content"]["status"] in ("ok", "corrupt", "empty"), (res, case.recipe)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False))
def test_decoder_agrees_with_nibabel_long(rng):
    case = make_case(rng)
    outcome = compare(case)
    assert outcome.agree, (outcome, case.recipe)


# ---------------------------------------------------------------- every path: same summary, same hash
def _fuzz_tree(tmp_path, n=24, seed=0):
    root = make_bids(tmp_path / "ds", [f"{i:02d}" for i in range(1, n + 1)], images=False)
    rng = random.Random(seed)
    for p in sorted(root.rglob("*_T1w.nii.gz")):
        case = make_case(rng)
        p.unlink()
        p.with_name(p.name.replace(".nii.gz", case.ext)).write_bytes(case.raw)
    return root


def test_pool_and_in_process_give_the_same_summaries(tmp_path):
    root = _fuzz_tree(tmp_path)
    one = summarise_images(index_dataset(root), workers=1, cache=HashCache(memory=True))
    pool = summarise_images(index_dataset(root), workers=2, cache=HashCache(memory=True))
    assert one.images == pool.images
    assert len({s.status for s in one}) > 1  # the tree holds good and bad images


@pytest.mark.slow
def test_dask_gives_the_same_summaries(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    root = _fuzz_tree(tmp_path, n=40, seed=1)
    one = summarise_images(index_dataset(root), workers=1, cache=HashCache(memory=True))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        viadask = summarise_images(index_dataset(root), scheduler=cluster.scheduler_address,
                                   cache=HashCache(memory=True))
    assert viadask.images == one.images


# ---------------------------------------------------------------- regressions found by the campaign
def _nifti1(**fields):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([2.0, 2.0, 2.0, 1.0]))
    raw = bytearray(img.to_bytes())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)), check=False)
    for k, v in fields.items():
        if k.startswith("srow_x"):
            hdr["srow_x"][int(k[-1])] = v
        else:
            hdr[k] = v
    raw[:348] = hdr.binaryblock
    return bytes(raw)


def _agree(raw, ext=".nii"):
    outcome = compare(Case(raw, ext, ["regression"]))
    assert outcome.agree, outcome
    return outcome


def test_vox_offset_inside_the_header_is_refused_not_read():
    # was: the data read from byte 348 (the extension flag as voxels); nibabel refuses
    out = _agree(_nifti1(vox_offset=348))
    assert out.ours == "bad_header"
    with pytest.raises(BadImage, match="vox offset 348 too low"):
        decode_nifti(_nifti1(vox_offset=348), {})


def test_vox_offset_zero_reads_from_352_as_nibabel():
    # was: the data read from byte 0 (the header as voxels); nibabel takes 0 as "right after the header"
    out = _agree(_nifti1(vox_offset=0))
    assert out.ours == "ok"


def test_vox_offset_nan_is_a_bad_header():
    # was: ValueError out of the decoder
    with pytest.raises(BadImage) as err:
        decode_nifti(_nifti1(vox_offset=np.nan), {})
    assert err.value.code == "bad_header"


def test_invalid_sform_code_is_repaired_as_nibabel():
    # was: the affine of an sform with an out-of-range code, where nibabel repairs the code to 0 (qform used)
    _agree(_nifti1(sform_code=9, srow_x0=7.0))


def test_damaged_header_size_field_is_read_as_nibabel():
    raw = bytearray(_nifti1())
    raw[0:4] = b"\x01\x02\x03\x04"
    assert _agree(bytes(raw)).ours == "ok"


def test_nan_intercept_with_a_valid_slope_is_a_bad_header():
    # was: HeaderDataError out of the decoder
    raw = _nifti1(scl_slope=1.0, scl_inter=np.nan)
    with pytest.raises(BadImage) as err:
        decode_nifti(raw, {})
    assert err.value.code == "bad_header"
    _agree(raw)


def test_damaged_extension_size_is_a_bad_header():
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"comment"))
    raw = bytearray(img.to_bytes())
    assert raw[348] == 1  # the extension flag
    raw[352:356] = (10**6).to_bytes(4, "little")  # an extension larger than the file
    with pytest.raises(BadImage) as err:
        decode_nifti(bytes(raw), {})
    assert err.value.code == "bad_header"


def test_zero_width_data_type_is_unknown():
    # was: "itemsize cannot be zero" (ValueError) out of the decoder
    raw = _nifti1(datatype=0, bitpix=0)
    with pytest.raises(BadImage) as err:
        decode_nifti(raw, {})
    assert err.value.code in ("unknown_dtype", "bad_header")


def test_affine_with_an_axis_without_direction_is_singular_not_a_crash(tmp_path):
    # was: OrientationError out of summarise_file (it escaped the decoder's exception list: a crash of the pass)
    # not singular (determinant 3), but voxel axes 0 and 2 both point along x: no closest RAS+ orientation
    raw = _nifti1(sform_code=1, srow_x2=1e30)
    path = tmp_path / "sheared.nii.gz"
    path.write_bytes(gzip.compress(raw))
    res = summarise_file(str(path))["content"]
    assert res["status"] == "corrupt" and res["problem_code"] == "singular_affine", res


def test_real_files_agree_with_nibabel():
    """The real NIfTI files of the shared data (nibabel's and others' test images) decode as nibabel reads them."""
    from tests.builders import SHARED_DATA

    folder = SHARED_DATA / "nifti"
    if not folder.is_dir():
        pytest.skip(f"real NIfTI files not found at {folder} (set BIDSAUDIT_SHARED_DATA)")
    files = sorted(p for p in folder.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    assert files
    bad = []
    for p in files:
        out = compare(Case(p.read_bytes(), ".nii.gz" if p.name.endswith(".gz") else ".nii", [p.name]))
        if not out.agree:
            bad.append((p.name, out))
    assert not bad, bad
