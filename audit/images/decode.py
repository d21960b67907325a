"""NIfTI byte decoding: the header facts and a voxel view of one image file's bytes, or why it is bad.

:func:`decode_nifti` takes the bytes of a NIfTI-1 or NIfTI-2 file (gzipped
or not: a gzip stream is inflated in one call, ISA-L's inflate when ``isal``
is installed, zlib's otherwise, which checks its CRC and length), writes the
header facts into the summary content (format, shape, data type, affine,
voxel size, orientation) and returns the voxels as a view of the inflated
bytes. A bad image raises :class:`BadImage` with its status (``corrupt``,
``empty``), a stable code and a message: dim[0] outside 1-7, a dimension
below 0 or above ``MAX_DIM``, a non-finite or singular affine, an unknown
data type, a truncated file or gzip stream, no voxels.
"""

from __future__ import annotations

import io
import logging
import math
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["MAX_DIM", "BadImage", "Decoded", "decode_nifti", "fmt_shape"]

MAX_DIM = 2**15
#: nibabel's header checks report here, not on stderr (the finding says what was wrong).
_QUIET = logging.getLogger("bidsaudit.nifti_checks")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class BadImage(Exception):
    """A decoded problem: status, code and message."""

    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Decoded(NamedTuple):
    """The voxels of a decoded image (as stored) and what placing and scaling them needs."""

    data: np.ndarray  # a view of the file's (inflated) bytes, Fortran order
    affine: np.ndarray  # (4, 4) float64, voxel to world
    ornt: np.ndarray  # to closest canonical (RAS+)
    slope: float | None
    inter: float | None


try:  # ISA-L's inflate: same results as zlib's, about 1.5-2 times as fast
    from isal import isal_zlib as _inflate_lib

    _INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflate_lib.error)
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate_lib = zlib  # type: ignore[no-redef]
    _INFLATE_ERRORS = (zlib.error,)


def _gunzip(blob: bytes) -> bytes:
    """The inflated content of a gzip file (every member); raises :class:`BadImage` for a damaged one."""
    parts: list[bytes] = []
    rest = blob
    while True:
        d = _inflate_lib.decompressobj(31)
        try:
            parts.append(d.decompress(rest))
        except _INFLATE_ERRORS as err:
            raise BadImage("corrupt", "bad_gzip", f"damaged gzip data ({err})") from None
        if not d.eof:
            raise BadImage("corrupt", "truncated", "truncated: the gzip stream ends early")
        rest = d.unused_data
        if not rest or not rest.strip(b"\0"):  # trailing zero padding is allowed
            break
        if rest[:2] != b"\x1f\x8b":
            raise BadImage("corrupt", "bad_gzip", "damaged gzip data (trailing garbage after the gzip stream)")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _header_class(payload: bytes) -> tuple[Any, str] | None:
    """The header class by the header-size field; NIfTI-1 by its magic when that field is damaged (as nibabel)."""
    import nibabel as nib

    for order in ("<", ">"):
        n = int(np.frombuffer(payload[:4], dtype=f"{order}i4")[0])
        if n == 348:
            return nib.Nifti1Header, "nifti1"
        if n == 540:
            return nib.Nifti2Header, "nifti2"
    if payload[344:348] == b"n+1\0":  # nibabel repairs a NIfTI-1 size field (found by fuzzing, issue #14)
        return nib.Nifti1Header, "nifti1"
    return None


def decode_nifti(blob: bytes, out: dict[str, Any]) -> Decoded:
    """Header facts of a NIfTI file's bytes into ``out``; the voxels; raises :class:`BadImage`."""
    from nibabel.orientations import io_orientation, ornt2axcodes
    from nibabel.spatialimages import HeaderDataError

    gz = blob[:2] == b"\x1f\x8b"
    out["gzipped"] = gz
    payload = _gunzip(blob) if gz else blob
    if len(payload) < 4:
        raise BadImage("corrupt", "truncated", f"truncated: too short to hold a NIfTI header ({len(blob)} bytes)")
    found = _header_class(payload)
    if found is None:
        raise BadImage("corrupt", "not_nifti", "not a NIfTI-1 or NIfTI-2 file (bad header size field)")
    header_class, fmt = found
    out["format"] = fmt
    if len(payload) < header_class.template_dtype.itemsize:
        raise BadImage("corrupt", "truncated", f"truncated: {len(payload)} bytes cannot hold a {fmt} header")
    try:
        hdr = header_class.from_fileobj(io.BytesIO(payload), check=False)
    except HeaderDataError as err:  # a damaged extension block (its size field)
        raise BadImage("corrupt", "bad_header", f"invalid header ({err})") from None
    magic = bytes(hdr["magic"]).rstrip(b"\0")
    if magic not in (b"n+1", b"n+2"):
        detail = "its data are in a separate .img file" if magic in (b"ni1", b"ni2") else f"bad magic {magic!r}"
        raise BadImage("corrupt", "bad_header", f"invalid header ({detail})")
    dim = [int(d) for d in hdr["dim"]]
    if not 1 <= dim[0] <= 7:
        raise BadImage("corrupt", "impossible_dims", f"impossible dim[0] = {dim[0]} (must be 1 to 7)")
    shape = tuple(dim[1:dim[0] + 1])
    if any(d < 0 or d > MAX_DIM for d in shape):
        raise BadImage("corrupt", "impossible_dims",
                   f"impossible dimensions {fmt_shape(shape)} (each must be 0 to {MAX_DIM})")
    out["shape"] = shape
    try:
        dtype = np.dtype(hdr.get_data_dtype())
    except (KeyError, ValueError, TypeError) as err:
        raise BadImage("corrupt", "unknown_dtype", f"unknown data type code {int(hdr['datatype'])}") from err
    if dtype.itemsize == 0:  # a code nibabel knows but that holds no bytes per voxel (fuzzing, issue #14)
        raise BadImage("corrupt", "unknown_dtype", f"unknown data type code {int(hdr['datatype'])}")
    out["dtype"] = dtype.name if dtype.fields is None else str(dtype)
    _repair(hdr)
    affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    finite = bool(np.isfinite(affine).all())
    out["affine_finite"] = finite
    if not finite:
        raise BadImage("corrupt", "nonfinite_affine", "the affine (sform/qform) has non-finite values (NaN or inf)")
    out["affine"] = tuple(float(v) for v in affine.ravel())
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    out["zooms"] = tuple(round(float(z), 6) for z in zooms)
    ornt = io_orientation(affine)  # type: ignore[no-untyped-call]
    if np.isnan(ornt).any():  # found by fuzzing (issue #14): an OrientationError when hashing, a crash of the pass
        raise BadImage("corrupt", "singular_affine", "the affine is degenerate (two voxel axes point the same way: "
                       "no closest RAS+ orientation)")
    out["orientation"] = "".join(c or "?" for c in ornt2axcodes(ornt))  # type: ignore[no-untyped-call]
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
        raise BadImage("corrupt", "singular_affine", "the affine is singular (the voxel axes do not span 3-D space)")
    n_vox = math.prod(shape)
    try:
        offset = int(hdr.get_data_offset())
    except (ValueError, OverflowError):  # NaN or inf (found by fuzzing, issue #14)
        raise BadImage("corrupt", "bad_header", f"invalid header (vox_offset {hdr['vox_offset']} is not a "
                       "byte offset)") from None
    nbytes = n_vox * dtype.itemsize
    if n_vox == 0:
        raise BadImage("empty", "no_voxels", f"no voxels (shape {fmt_shape(shape)})")
    if offset + nbytes > len(payload):
        where = "the gzip stream holds" if gz else "the file holds"
        raise BadImage("corrupt", "truncated", f"truncated: the header declares {nbytes} bytes of data from byte "
                   f"{offset}, {where} {max(0, len(payload) - offset)}")
    try:
        slope, inter = hdr.get_slope_inter()
    except HeaderDataError as err:  # a valid slope with a NaN or infinite intercept: nibabel refuses it too
        raise BadImage("corrupt", "bad_header", f"invalid header ({err})") from None
    data = np.frombuffer(payload, dtype=dtype, count=n_vox, offset=offset).reshape(shape, order="F")
    return Decoded(data, affine, ornt, slope, inter)


def _repair(hdr: Any) -> None:
    """nibabel's own header checks and repairs, as ``nibabel.load`` applies them (quietly).

    Repairs what nibabel repairs (a zero voxel size, qfac, an invalid
    qform/sform code, a zero vox_offset) so that the header facts and the
    voxels are those nibabel reads; raises :class:`BadImage` where nibabel
    refuses (a vox_offset inside the header, a bitpix that contradicts the
    data type...). Found by differential fuzzing against nibabel (issue #14).
    """
    from nibabel.spatialimages import HeaderDataError

    try:
        hdr.check_fix(logger=_QUIET, error_level=40)
    except HeaderDataError as err:
        raise BadImage("corrupt", "bad_header", f"invalid header ({err})") from None


def fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "()"
