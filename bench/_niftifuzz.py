"""NIfTI fuzzing: generated and mutated NIfTI-1/-2 files, and the differential oracle (nibabel).

:func:`make_case` draws one input from a :class:`random.Random` (hypothesis's
``st.randoms()`` in the tests, a seeded one in ``bench/bench_fuzz.py``):
a valid image written by nibabel (every data type nibabel writes, both byte
orders, 1-D to 5-D, dims of 1, scl_slope/scl_inter among 0, NaN, inf and
ordinary values, extension blocks, vox_offset moved past the header), then
possibly damaged (gzip in several members, trailing zeros or garbage,
truncation at every section boundary, header fields set to edge values,
random bytes flipped). :func:`compare` decodes it with
:func:`audit.images.decode.decode_nifti` and with ``nibabel.load`` and says
whether they agree: the same raw array bit for bit, the same scaling and
affine, or a refusal by bidsaudit that its policy allows.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["POLICY_REFUSALS", "Case", "Outcome", "compare", "make_case"]

#: Codes with which bidsaudit refuses images nibabel loads, on purpose (documented in docs/reliability.md).
POLICY_REFUSALS = {
    "nonfinite_affine": "an affine with NaN or inf cannot place the image",
    "singular_affine": "a singular affine does not span 3-D space",
    "no_voxels": "an image with no voxels is empty",
    "impossible_dims": f"dimensions above {2**15} are refused before any allocation",
    "bad_gzip": "bytes after the gzip stream that are not another member",
    "bad_header": "a header with a bad magic (nibabel loads some of them)",
    "not_nifti": "neither the header-size field nor the NIfTI-1 magic identifies the file",
}

DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
          "complex64", "complex128", "RGB", "RGBA"]
EDGE_FLOATS = [0.0, 1.0, -1.0, 2.5, 1e-40, 1e38, -3e38, float("nan"), float("inf"), float("-inf")]


@dataclass
class Case:
    """One fuzz input: the file's bytes, its extension and how it was made."""

    raw: bytes
    ext: str  # ".nii" or ".nii.gz"
    recipe: list[str]


def _data(rng: random.Random, dtype: str, shape: tuple[int, ...], order: str) -> np.ndarray:
    n = int(np.prod(shape))
    if dtype in ("RGB", "RGBA"):
        fields = [(c, "u1") for c in dtype]
        arr = np.frombuffer(bytes(rng.getrandbits(8) for _ in range(n * len(fields))), dtype=fields)
        return arr.reshape(shape)
    dt = np.dtype(dtype).newbyteorder(order)
    raw = bytes(rng.getrandbits(8) for _ in range(n * dt.itemsize))
    arr = np.frombuffer(raw, dtype=dt).copy()
    if dt.kind in "fc" and rng.random() < 0.7:  # mostly ordinary values, sometimes raw bit patterns (NaN, inf)
        arr = (np.arange(n) % 7 - 3).astype(dt) * rng.choice([1, 0.5, 1e30])
    return arr.reshape(shape)


def _valid(rng: random.Random, recipe: list[str]) -> bytes:
    import nibabel as nib

    v2 = rng.random() < 0.3
    order = rng.choice("<>")
    dtype = rng.choice(DTYPES)
    ndim = rng.choice([1, 2, 3, 3, 3, 4, 5])
    shape = tuple(rng.choice([1, 1, 2, 3, 4, 5]) for _ in range(ndim))
    recipe.append(f"nifti{2 if v2 else 1} {dtype}{order} shape={shape}")
    hcls = nib.Nifti2Header if v2 else nib.Nifti1Header
    hdr = hcls(endianness=order)
    if dtype in ("RGB", "RGBA"):
        hdr.set_data_dtype(128 if dtype == "RGB" else 2304)
    else:
        hdr.set_data_dtype(np.dtype(dtype))
    affine = np.diag([rng.choice([1.0, 2.0, -1.5]), rng.choice([1.0, 0.8]), rng.choice([1.0, 3.0]), 1.0])
    if rng.random() < 0.3:  # a rotated affine (another axis order in RAS+)
        affine = affine[list(rng.choice([(1, 0, 2), (2, 1, 0), (0, 2, 1), (1, 2, 0)])) + [3]]
    img = (nib.Nifti2Image if v2 else nib.Nifti1Image)(_data(rng, dtype, shape, order), affine, hdr)
    if rng.random() < 0.4:
        slope, inter = rng.choice(EDGE_FLOATS), rng.choice(EDGE_FLOATS[:6] + [float("nan")])
        img.header["scl_slope"], img.header["scl_inter"] = slope, inter
        recipe.append(f"scl={slope},{inter}")
    if rng.random() < 0.2:
        img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"fuzz comment" * rng.randint(1, 5)))
        recipe.append("extension")
    raw = img.to_bytes()
    # to_bytes applies the header's scaling to nothing (raw data as given); keep the header's slope/inter
    if rng.random() < 0.15:  # vox_offset moved further (padding between header and data)
        hsize = 540 if v2 else 348
        old = int(img.header["vox_offset"])
        pad = rng.choice([16, 1024])
        out = bytearray(raw[:old] + b"\0" * pad + raw[old:])
        h2 = hcls.from_fileobj(io.BytesIO(bytes(out[:hsize])), check=False)
        h2["vox_offset"] = old + pad
        out[:hsize] = h2.binaryblock
        raw = bytes(out)
        recipe.append(f"vox_offset+{pad}")
    return raw


def _header_edit(rng: random.Random, raw: bytes, recipe: list[str]) -> bytes:
    import nibabel as nib

    v2 = raw[:4] in (b"\x1c\x02\0\0", b"\0\0\x02\x1c")
    hcls = nib.Nifti2Header if v2 else nib.Nifti1Header
    hsize = 540 if v2 else 348
    hdr = hcls.from_fileobj(io.BytesIO(raw[:hsize]), check=False)
    what = rng.choice(["dim0", "dim", "datatype", "vox_offset", "scl", "magic", "sform", "pixdim"])
    if what == "dim0":
        hdr["dim"][0] = rng.choice([-1, 0, 8, 100, 7])
    elif what == "dim":
        big = [2**15, 2**15 + 1, 2**31 - 1, 2**40] if v2 else [32767, -32768]
        hdr["dim"][rng.randint(1, 7)] = rng.choice([0, -1, 1, 30000, *big])
    elif what == "datatype":
        hdr["datatype"] = rng.choice([0, 1, 3, 255, 1536, 2048, 9999, -4])
    elif what == "vox_offset":
        choices = [0, 1, 100, 347, 348, 352, 353, 1e9, -5] + ([] if v2 else [float("nan"), 352.5])
        hdr["vox_offset"] = rng.choice(choices)
    elif what == "scl":
        hdr["scl_slope"], hdr["scl_inter"] = rng.choice(EDGE_FLOATS), rng.choice(EDGE_FLOATS)
    elif what == "magic":
        hdr["magic"] = rng.choice([b"ni1", b"n+2", b"abc", b""])
    elif what == "sform":
        hdr["sform_code"] = 1
        hdr["srow_x"][rng.randint(0, 3)] = rng.choice([float("nan"), float("inf"), 0.0, 1e30])
    else:
        hdr["pixdim"][rng.randint(0, 7)] = rng.choice([0.0, -1.0, float("nan"), 1e30])
    recipe.append(f"header {what}")
    return hdr.binaryblock + raw[hsize:]


def make_case(rng: random.Random) -> Case:
    """One fuzz input (module docstring)."""
    recipe: list[str] = []
    raw = _valid(rng, recipe)
    if rng.random() < 0.35:
        raw = _header_edit(rng, raw, recipe)
    if rng.random() < 0.15:
        flips = rng.randint(1, 8)
        b = bytearray(raw)
        for _ in range(flips):
            i = rng.randrange(len(b))
            b[i] = rng.getrandbits(8)
        raw = bytes(b)
        recipe.append(f"{flips} random bytes")
    if rng.random() < 0.15:  # truncation at a section boundary (or just around it)
        v2 = raw[:4] in (b"\x1c\x02\0\0", b"\0\0\x02\x1c")
        hsize = 540 if v2 else 348
        cut = rng.choice([0, 1, 4, hsize - 1, hsize, hsize + 4, len(raw) // 2, len(raw) - 1])
        raw = raw[:max(0, cut)]
        recipe.append(f"truncated at {cut}")
    ext = ".nii"
    if rng.random() < 0.5:
        ext = ".nii.gz"
        how = rng.choice(["one", "one", "members", "trailing_zeros", "trailing_garbage", "cut"])
        if how == "members":
            k = max(1, len(raw) // 3)
            gz = b"".join(gzip.compress(raw[i:i + k], mtime=0) for i in range(0, len(raw), k)) or gzip.compress(b"")
        else:
            gz = gzip.compress(raw, mtime=0)
            if how == "trailing_zeros":
                gz += b"\0" * rng.choice([1, 512])
            elif how == "trailing_garbage":
                gz += bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 2, 30])))
            elif how == "cut":
                gz = gz[:rng.randint(0, len(gz) - 1)]
        raw = gz
        recipe.append(f"gzip {how}")
    return Case(raw, ext, recipe)


@dataclass
class Outcome:
    """What the two decoders made of one input."""

    ours: str  # "ok" or the refusal code
    theirs: str  # "ok" or the exception's type name
    agree: bool
    why: str


def _nibabel(case: Case, folder: str) -> tuple[Any, str]:
    import nibabel as nib

    path = os.path.join(folder, "img" + case.ext)
    with open(path, "wb") as fh:
        fh.write(case.raw)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            img = nib.load(path)
            if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
                return None, type(img).__name__
            raw = np.asanyarray(img.dataobj.get_unscaled())
            return (raw, img.dataobj.slope, img.dataobj.inter, img.affine), "ok"
    except Exception as err:  # noqa: BLE001 - the oracle's refusal, whatever its type
        return None, type(err).__name__
    except MemoryError:  # pragma: no cover
        return None, "MemoryError"


def _same_float(a: float | None, b: float | None) -> bool:
    a = 1.0 if a is None else float(a)
    b = 1.0 if b is None else float(b)
    return a == b or (np.isnan(a) and np.isnan(b))


def compare(case: Case, folder: str | None = None) -> Outcome:
    """Decode ``case`` with bidsaudit and with nibabel; do they agree (module docstring)?"""
    from audit.images.decode import BadImage, decode_nifti

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ours = decode_nifti(case.raw, {})
        ostatus = "ok"
    except BadImage as bad:
        ours, ostatus = None, bad.code
    if ostatus == "impossible_dims":  # nibabel would try to allocate them (gigabytes): not asked
        return Outcome(ostatus, "not run", True, "policy refusal")
    with tempfile.TemporaryDirectory() if folder is None else _Keep(folder) as where:
        theirs, tstatus = _nibabel(case, where)
    if ostatus != "ok" and tstatus != "ok":
        return Outcome(ostatus, tstatus, True, "both refuse")
    if ostatus != "ok":
        ok = ostatus in POLICY_REFUSALS
        return Outcome(ostatus, tstatus, ok, "policy refusal" if ok else "bidsaudit refuses what nibabel reads")
    if tstatus != "ok":
        return Outcome(ostatus, tstatus, False, "bidsaudit reads what nibabel refuses")
    raw, slope, inter, affine = theirs
    a, b = ours.data, raw
    if a.shape != b.shape or a.dtype != b.dtype:
        return Outcome("ok", "ok", False, f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
    if np.ascontiguousarray(a).tobytes() != np.ascontiguousarray(b).tobytes():
        return Outcome("ok", "ok", False, "voxel bytes differ")
    # nibabel maps slope 0, NaN or inf to no scaling: (1, 0); so does the NIfTI standard for slope 0
    ours_slope, ours_inter = ours.slope, ours.inter
    if not (_same_float(ours_slope, slope) and _same_float(0.0 if ours_inter is None else ours_inter, inter)):
        return Outcome("ok", "ok", False, f"scaling {ours_slope},{ours_inter} vs {slope},{inter}")
    if not np.array_equal(ours.affine, affine, equal_nan=True):
        return Outcome("ok", "ok", False, "affine differs")
    return Outcome("ok", "ok", True, "same array, scaling and affine")


class _Keep:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __enter__(self) -> str:
        return self.folder

    def __exit__(self, *exc: object) -> None:
        return None
