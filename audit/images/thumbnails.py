"""Small middle-slice pictures of images, for the report's duplicate findings.

:func:`middle_slice_png` reads one image (NIfTI through nibabel), takes the
middle axial slice of its reference volume in closest-canonical (RAS)
orientation, scales intensities between the 1st and 99th percentile of the
slice's non-zero voxels to 0-255, resizes it (keeping the physical aspect
ratio from the voxel sizes) into a ``size`` x ``size`` square, and returns
it as a base64 grayscale PNG (written with :mod:`zlib`; no imaging library).

Only the few images of flagged duplicate pairs are drawn, after the checks
have run (a check reads no image file): :func:`with_pair_pictures` adds the
pictures to the first evidence pairs of the findings that want them
(:data:`audit.checks.content.PICTURED`; :mod:`audit.api` calls it), so the
cost is a handful of reads per audit, not a second pass over the dataset.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from audit.findings import Finding

__all__ = ["middle_slice", "middle_slice_png", "png_gray", "with_pair_pictures"]

SIZE = 64


def png_gray(pixels: np.ndarray) -> bytes:
    """PNG bytes of a 2D uint8 array (8-bit grayscale, rows top to bottom)."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError("expected a non-empty 2D array")
    h, w = a.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def middle_slice(path: str | Path, size: int = SIZE) -> np.ndarray:
    """The middle axial slice of an image as a ``size`` x ``size`` uint8 picture (anterior up)."""
    import nibabel as nib
    from scipy import ndimage

    img = nib.as_closest_canonical(nib.load(str(path)))
    shape = img.shape
    if len(shape) < 3 or min(shape[:3]) < 1:
        raise ValueError(f"not a 3D image: shape {shape}")
    z = shape[2] // 2
    index = (slice(None), slice(None), z) + (0,) * (len(shape) - 3)
    sl = np.asarray(img.dataobj[index], dtype=np.float64)
    sl = np.where(np.isfinite(sl), sl, 0.0)
    zooms = [float(v) if v > 0 else 1.0 for v in img.header.get_zooms()[:2]]
    fg = sl[sl != 0]
    if fg.size:
        lo, hi = np.percentile(fg, [1, 99])
    else:
        lo, hi = 0.0, 0.0
    if hi <= lo:
        lo, hi = float(sl.min()), float(sl.max())
    scaled = np.zeros_like(sl) if hi <= lo else np.clip((sl - lo) / (hi - lo), 0.0, 1.0)
    # RAS voxel order: x to the right, y to the front; show rows as y (anterior at the top).
    picture = np.flipud(scaled.T)
    extent_y, extent_x = picture.shape[0] * zooms[1], picture.shape[1] * zooms[0]
    factor = size / max(extent_x, extent_y)
    out_h = max(1, min(size, round(extent_y * factor)))
    out_w = max(1, min(size, round(extent_x * factor)))
    resized = ndimage.zoom(picture, (out_h / picture.shape[0], out_w / picture.shape[1]), order=1,
                           grid_mode=True, mode="nearest")[:out_h, :out_w]
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    canvas[top:top + resized.shape[0], left:left + resized.shape[1]] = np.round(
        np.clip(resized, 0.0, 1.0) * 255).astype(np.uint8)
    return canvas


def middle_slice_png(path: str | Path, size: int = SIZE) -> str | None:
    """:func:`middle_slice` as base64 PNG text, or ``None`` when the image cannot be read."""
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    try:
        return base64.b64encode(png_gray(middle_slice(path, size))).decode("ascii")
    except (OSError, ValueError, TypeError, IndexError, MemoryError, EOFError, zlib.error, ImageFileError,
            HeaderDataError):
        return None


def with_pair_pictures(findings: Iterable[Finding], root: str | Path, *, checks: Collection[str],
                       pairs: int) -> list[Finding]:
    """``findings``, those of ``checks`` with middle-slice pictures of their first ``pairs`` evidence pairs.

    Both sides (``a``, ``b``: mappings with the image's ``path`` relative to
    ``root``) of each of the first ``pairs`` entries of ``evidence["pairs"]``
    get ``thumbnail_png`` (:func:`middle_slice_png`; left out when the image
    cannot be read), as the last key. Each image is read at most once per
    call; other findings come back unchanged.
    """
    base = Path(root)
    drawn: dict[str, str | None] = {}

    def pictured(side: Any) -> Any:
        if not isinstance(side, Mapping) or not isinstance(side.get("path"), str):
            return side
        path = side["path"]
        if path not in drawn:
            drawn[path] = middle_slice_png(base / path)
        png = drawn[path]
        return {**side, "thumbnail_png": png} if png else side

    out: list[Finding] = []
    for f in findings:
        shown = f.evidence.get("pairs") if f.check in checks else None
        if not isinstance(shown, (list, tuple)) or not shown or pairs <= 0:
            out.append(f)
            continue
        new = [{k: pictured(v) if k in ("a", "b") else v for k, v in p.items()} if isinstance(p, Mapping) else p
               for p in shown[:pairs]]
        out.append(replace(f, evidence=MappingProxyType({**f.evidence, "pairs": [*new, *shown[pairs:]]})))
    return out
