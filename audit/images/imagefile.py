"""One image file read once into the content of its summary: bytes hashed, decoded, measured.

:func:`summarise_file` reads the file whole in one go, hashes its bytes
(SHA-256, so the dataset fingerprint needs no second read), decodes it from
memory (:mod:`audit.images.decode`), hashes the decoded values
(:mod:`audit.images.contenthash`) and measures the reference volume
(:mod:`audit.images.measures`). A bad or unreadable file is a status, never
an exception:

Status
    ``ok``; ``corrupt`` (cannot be decoded, truncated, zero-byte, impossible
    header values); ``empty`` (no voxels, no finite voxel, or a single value
    everywhere); ``unreadable`` (the process may not read it: permissions,
    I/O error, not enough memory).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import numpy as np

from audit import hashing
from audit.images.contenthash import hash_content
from audit.images.decode import BadImage, decode_nifti
from audit.images.measures import measure_reference

__all__ = ["summarise_file"]


def _read_all(raw: Any, size: int) -> bytes:
    """Every byte of an open file, in as few reads as it takes (the file may have grown since its stat)."""
    first = raw.read(size) if size > 0 else b""
    rest = raw.read()
    return first + rest if rest else first


def summarise_file(path: str) -> dict[str, Any]:
    """Read one image file; return ``{"content", "bytes_read", "opened", "key"}``.

    ``content`` holds the :class:`~audit.images.summary.ImageSummary` fields that depend on the
    file alone (JSON-ready),
    ``key`` the ``(size, mtime_ns, inode)`` of what was read. Never raises
    for a bad or unreadable file: that is a status.

    The file is read whole in one go and hashed (SHA-256 of its bytes), then
    decoded from memory: a gzip stream is inflated in one call (ISA-L's
    inflate when ``isal`` is installed, zlib's otherwise), which checks its
    CRC and length, and the voxels are a view of the inflated bytes.
    """
    content: dict[str, Any] = {"status": "ok"}
    try:
        raw = hashing.open_raw(path)
    except OSError as err:
        content.update(status="unreadable", problem_code="unreadable", problem=f"cannot open: {_why(err)}")
        return {"content": content, "bytes_read": 0, "opened": False, "key": None}
    key = None
    nread = 0
    try:
        with raw:
            st = os.fstat(raw.fileno())
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
            content["size"] = st.st_size
            blob = _read_all(raw, st.st_size)
        nread = len(blob)
        content["sha256"] = hashlib.sha256(blob).hexdigest()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                _decode(blob, content)
            except BadImage as bad:
                content.update(status=bad.status, problem_code=bad.code, problem=bad.message)
    except OSError as err:  # the file system failed us (EIO...) while reading
        content = {"status": "unreadable", "problem_code": "unreadable", "problem": f"cannot read: {_why(err)}",
                   **{k: content[k] for k in ("size",) if k in content}}
        key = None
    except MemoryError:
        content = {"status": "unreadable", "problem_code": "unreadable",
                   "problem": "not enough memory to read it", "size": key[0] if key else 0}
        key = None
    return {"content": content, "bytes_read": nread, "opened": True, "key": key}


def _why(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _decode(blob: bytes, out: dict[str, Any]) -> None:
    """Fill ``out`` from the image file's bytes; raise :class:`BadImage` for a bad image (any decoding failure)."""
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError
    from nibabel.wrapstruct import WrapStructError

    try:
        ref = hash_content(decode_nifti(blob, out), out)
        if ref is not None:
            measure_reference(ref.volume, ref.affine, out, known_finite=ref.known_finite)
    except BadImage:
        raise
    except (WrapStructError, HeaderDataError, ImageFileError) as err:
        raise BadImage("corrupt", "bad_header", f"invalid header ({err})") from None
    except MemoryError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError, EOFError, OSError,
            np.linalg.LinAlgError) as err:
        # nibabel and numpy fail in many ways on garbage headers; report, never crash
        raise BadImage("corrupt", "undecodable", f"cannot decode ({type(err).__name__}: {err})") from None
