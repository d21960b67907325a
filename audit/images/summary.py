"""Image summaries: every present image of a dataset read once into a small, plain, cached record.

:func:`summarise_images` reads each image of the index whose content is here
(NIfTI-1/2, gzipped or not) at most once, in parallel
(:mod:`audit.images.imagepass`), and keeps an :class:`ImageSummary`: header
facts (shape, voxel size, orientation, data type), whether it is ``ok``,
``corrupt`` or ``empty`` and why, the SHA-256 of the file's bytes (from the
one read of the file, so the dataset fingerprint needs no second read), a
hash of the decoded voxel values (:mod:`audit.images.contenthash`), simple
intensity statistics, quality metrics and a small thumbnail
(:mod:`audit.images.measures`), and a fingerprint and a patch sketch for
near-duplicate search (:mod:`audit.images.fingerprint`,
:mod:`audit.images.sketch`). One file's read is
:func:`audit.images.imagefile.summarise_file`. Summaries go into the
:class:`~audit.hashing.HashCache`, so an unchanged image is never read again,
in this audit or the next.

Status
    ``ok``; ``corrupt`` (cannot be decoded, truncated, zero-byte, impossible
    header values: dim[0] outside 1-7, a dimension below 0 or above 2**15, a
    non-finite or singular affine, an unknown data type); ``empty`` (no
    voxels, no finite voxel, or a single value everywhere); ``unreadable``
    (the process may not read it: permissions, I/O error); ``placeholder``
    (zero-byte file under ``ignore_headers``); ``skipped`` (a non-empty file
    under ``ignore_headers``: nothing is read).

Parallelism: ``workers`` readers (default: every core), or a Dask cluster
when ``scheduler`` is given (:mod:`audit.images.imagepass`). Results are the
same either way and come back in path order.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.hashing import EMPTY_SHA256, CacheKey, HashCache
from audit.images.contenthash import HASH_TAG
from audit.images.features import IQM_VERSION
from audit.images.fingerprint import FINGERPRINT_VERSION
from audit.images.fingerprint import decode as decode_fingerprint
from audit.images.imagepass import run_pass
from audit.images.measures import THUMB_SIZE
from audit.images.sketch import SKETCH_VERSION, decode_sketch
from audit.images.spectrum import SPECTRUM_VERSION, decode_spectrum

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex, FileRow

__all__ = [
    "SUMMARY_VERSION",
    "STATUSES",
    "AbsentImage",
    "ImageSummary",
    "ImageSummaries",
    "summarise_images",
    "thumbnail_correlation",
]

#: Changes whenever what a summary holds or how it is computed changes (cache entries of other versions are ignored).
SUMMARY_VERSION = (f"bidsaudit-image-summary-3/{HASH_TAG}/thumb{THUMB_SIZE}/{FINGERPRINT_VERSION}"
                   f"/{SKETCH_VERSION}/{IQM_VERSION}/{SPECTRUM_VERSION}")
STATUSES = ("ok", "corrupt", "empty", "unreadable", "placeholder", "skipped")
_PRESENT = ("file", "symlink")


# ----------------------------------------------------------------- records
@dataclass(frozen=True)
class ImageSummary:
    """What one read of one image told us (plain, JSON-ready data).

    Attributes
    ----------
    path, subject, session, suffix : str
        From the index (``path`` relative, POSIX).
    status : str
        One of :data:`STATUSES`.
    problem : str or None
        What is wrong, in words, when ``status`` is not ``ok``.
    problem_code : str or None
        A stable code for ``problem``: ``zero_byte``, ``truncated``,
        ``bad_gzip``, ``not_nifti``, ``bad_header``, ``impossible_dims``,
        ``unknown_dtype``, ``nonfinite_affine``, ``singular_affine``,
        ``undecodable``, ``unreadable``, ``no_voxels``, ``non_finite``,
        ``constant``, ``not_read``.
    size : int
        File size in bytes.
    sha256 : str or None
        SHA-256 (hex) of the file's bytes.
    format : str or None
        ``nifti1`` or ``nifti2``.
    gzipped : bool or None
    shape : tuple of int or None
        Data shape as stored.
    zooms : tuple of float or None
        Voxel size (mm) along the three voxel axes, from the affine.
    orientation : str or None
        Axis codes of the affine (``"RAS"``, ``"LPS"``...; ``?`` for a
        degenerate axis).
    affine : tuple of 16 float or None
        Row-major, only when finite.
    affine_finite : bool or None
    dtype : str or None
        On-disk data type (``int16``, ``float32``...).
    content_hash : str or None
        ``sha256:<hex>`` of the decoded canonical array (module docstring).
    min, max, mean, std, p01, p50, p99 : float or None
    nonzero_fraction, finite_fraction, foreground_fraction : float or None
    thumbnail : str
        ``THUMB_SIZE**3`` z-scored samples as base64 of little-endian
        float16 (8 KiB; empty when not computed): compact enough to keep
        for every image of a large dataset. :meth:`thumbnail_vector` decodes it.
    fingerprint : str
        The near-duplicate fingerprint (:mod:`audit.images.fingerprint`) as base64 of
        little-endian float16 (16 KB; empty when not computed).
        :meth:`fingerprint_vector` decodes it.
    fingerprint_spread : tuple of 3 float or None
        Standard deviations (mm) of the foreground along its principal axes,
        ascending: the size the fingerprint was normalised by.
    iqm : dict or None
        Image quality metrics of the reference volume (Otsu foreground
        percentiles and volume, SNR, CNR, CJV, histogram):
        :func:`audit.images.features.quality_metrics`.
    patch_sketch : str
        Bottom-k sketch of the image's 2x2x2 voxel patches
        (:func:`audit.images.sketch.patch_sketch`) as base64 of little-endian
        uint64 (2 KiB; empty when not computed).
    patch_count : int or None
        Patches in the sketched set.
    spectrum : str
        The near-duplicate spectrum (:mod:`audit.images.spectrum`) as base64
        of little-endian float16 (empty when not computed).
    """

    path: str
    subject: str | None
    session: str | None
    suffix: str | None
    status: str
    problem: str | None = None
    problem_code: str | None = None
    size: int = 0
    sha256: str | None = None
    format: str | None = None
    gzipped: bool | None = None
    shape: tuple[int, ...] | None = None
    zooms: tuple[float, ...] | None = None
    orientation: str | None = None
    affine: tuple[float, ...] | None = None
    affine_finite: bool | None = None
    dtype: str | None = None
    content_hash: str | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    nonzero_fraction: float | None = None
    finite_fraction: float | None = None
    foreground_fraction: float | None = None
    p01: float | None = None
    p50: float | None = None
    p99: float | None = None
    thumbnail: str = ""
    fingerprint: str = ""
    fingerprint_spread: tuple[float, ...] | None = None
    iqm: dict[str, Any] | None = None
    patch_sketch: str = ""
    patch_count: int | None = None
    spectrum: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def spatial_shape(self) -> tuple[int, ...] | None:
        return None if self.shape is None else tuple(self.shape[:3])

    def thumbnail_vector(self) -> np.ndarray:
        """The thumbnail as a float32 vector (length 0 when there is none)."""
        return np.frombuffer(base64.b64decode(self.thumbnail), dtype="<f2").astype(np.float32)

    def sketch_hashes(self) -> np.ndarray:
        """The patch sketch as uint64 hashes (length 0 when there is none)."""
        return decode_sketch(self.patch_sketch)

    def spectrum_vector(self) -> np.ndarray:
        """The spectrum (:mod:`audit.images.spectrum`) as a float16 vector (length 0 when there is none)."""
        return decode_spectrum(self.spectrum)

    def fingerprint_vector(self) -> np.ndarray:
        """The fingerprint as a float16 vector (length 0 when there is none)."""
        return decode_fingerprint(self.fingerprint)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists)."""
        out = asdict(self)
        for key in ("shape", "zooms", "affine", "fingerprint_spread"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSummary:
        kw = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in ("shape", "zooms", "affine", "fingerprint_spread"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class AbsentImage:
    """An image whose content is not here (dangling link or git-annex pointer)."""

    path: str
    subject: str | None
    session: str | None
    suffix: str | None
    link: str  # "dangling" | "annex-pointer"
    annex_key: str | None


@dataclass(frozen=True)
class ImageSummaries:
    """The image pass over a dataset.

    Attributes
    ----------
    images : tuple of ImageSummary
        One per present image, in path order.
    absent : tuple of AbsentImage
        Images whose content is not here (not read, not summarised).
    ignore_headers : bool
        The pass ran with ``ignore_headers`` (no image content read).
    images_read : int
        Images opened and read this time (not from the cache).
    cache_hits : int
        Summaries taken from the cache.
    bytes_read : int
        Bytes read from image files this time.
    cache_problem : str or None
        Why the hash cache could not be used on disk, if so.
    """

    images: tuple[ImageSummary, ...] = ()
    absent: tuple[AbsentImage, ...] = ()
    ignore_headers: bool = False
    images_read: int = 0
    cache_hits: int = 0
    bytes_read: int = 0
    cache_problem: str | None = None

    def __iter__(self) -> Iterator[ImageSummary]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_absent(self) -> int:
        return len(self.absent)

    def by_path(self) -> dict[str, ImageSummary]:
        return {s.path: s for s in self.images}

    def with_status(self, *statuses: str) -> list[ImageSummary]:
        return [s for s in self.images if s.status in statuses]


def thumbnail_correlation(a: ImageSummary, b: ImageSummary) -> float | None:
    """Pearson correlation of two thumbnails (``None`` when either is missing or flat)."""
    if not a.thumbnail or len(a.thumbnail) != len(b.thumbnail):
        return None
    x = a.thumbnail_vector().astype(np.float64)
    y = b.thumbnail_vector().astype(np.float64)
    x = x - x.mean()
    y = y - y.mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return None if denom == 0 else float((x * y).sum() / denom)


# ------------------------------------------------------------------ driver
def summarise_images(
    index: DatasetIndex,
    *,
    ignore_headers: bool = False,
    workers: int | None = None,
    scheduler: Any = None,
    cache: HashCache | None = None,
) -> ImageSummaries:
    """Summarise every image of ``index`` whose content is present, reading each at most once.

    Parameters
    ----------
    index : DatasetIndex
    ignore_headers : bool
        As the validator's ``--ignoreNiftiHeaders``: read no image content;
        zero-byte images are ``placeholder``, others ``skipped``.
    workers : int, optional
        Readers (default ``os.cpu_count()``): this process and ``workers - 1`` pool processes; 1 = this process alone.
    scheduler : str or dask.distributed.Client, optional
        A Dask scheduler address (``tcp://host:8786``) or client; the images
        are then read by its workers.
    cache : HashCache, optional
        Defaults to :meth:`HashCache.default`.

    Returns
    -------
    ImageSummaries

    Raises
    ------
    InputError
        ``scheduler`` cannot be reached.
    """
    images = index.images()
    present = [r for r in images if r.link in _PRESENT]
    absent = tuple(AbsentImage(r.path, r.subject, r.session, r.suffix, r.link, r.annex_key)
                   for r in images if r.link not in _PRESENT)
    out: dict[str, ImageSummary] = {}
    if ignore_headers:
        for r in present:
            if r.size == 0:
                out[r.path] = _make(r, {"status": "placeholder", "sha256": EMPTY_SHA256,
                                        "problem": "zero-byte placeholder (headers ignored)",
                                        "problem_code": "zero_byte"})
            else:
                out[r.path] = _make(r, {"status": "skipped", "problem": "not read (headers ignored)",
                                        "problem_code": "not_read"})
        return ImageSummaries(images=tuple(out[r.path] for r in present), absent=absent, ignore_headers=True)

    cache = HashCache.default() if cache is None else cache
    keyed: list[tuple[FileRow, CacheKey]] = []
    for r in present:
        if r.size == 0:
            out[r.path] = _make(r, {"status": "corrupt", "sha256": EMPTY_SHA256, "problem": "zero-byte file",
                                    "problem_code": "zero_byte"})
        else:
            keyed.append((r, CacheKey(str(index.root / r.path), r.size, r.mtime_ns, r.inode)))
    known = cache.get_summaries([k for _, k in keyed], SUMMARY_VERSION)
    todo: list[tuple[FileRow, CacheKey]] = []
    hits = 0
    for r, k in keyed:
        hit = known.get(k.path)
        if hit is None:
            todo.append((r, k))
            continue
        try:
            content = json.loads(hit[1])
        except ValueError:
            todo.append((r, k))
            continue
        out[r.path] = _make(r, content)
        hits += 1
    results = run_pass([k.path for _, k in todo], workers=workers, scheduler=scheduler)
    store: list[tuple[CacheKey, str | None, str]] = []
    read = nbytes = 0
    for (r, k), res in zip(todo, results):
        content = res["content"]
        out[r.path] = _make(r, content)
        nbytes += res["bytes_read"]
        read += 1 if res["opened"] else 0
        if res["key"] is not None and content["status"] != "unreadable":
            seen = CacheKey(k.path, *res["key"])
            store.append((seen, content.get("sha256"), json.dumps(content, sort_keys=True)))
    cache.put_summaries(store, SUMMARY_VERSION)
    cache.bytes_read += nbytes
    return ImageSummaries(images=tuple(out[r.path] for r in present), absent=absent, images_read=read,
                          cache_hits=hits, bytes_read=nbytes, cache_problem=cache.problem)


def _make(row: FileRow, content: dict[str, Any]) -> ImageSummary:
    kw = dict(content)
    kw.setdefault("size", row.size)
    return ImageSummary.from_dict({**kw, "path": row.path, "subject": row.subject, "session": row.session,
                                   "suffix": row.suffix})
