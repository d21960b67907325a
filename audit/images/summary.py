"""The image pass: every present image read once into a small, plain summary.

:func:`summarise_images` reads each image of the index whose content is here
(NIfTI-1/2, gzipped or not) exactly once, in parallel, and keeps an
:class:`ImageSummary`: header facts (shape, voxel size, orientation, data
type), whether it is ``ok``, ``corrupt`` or ``empty`` and why, the SHA-256 of
the file's bytes (from the one read of the file, so the dataset fingerprint
needs no second read), a hash of the decoded voxel values, simple intensity
statistics, a small thumbnail, and a fingerprint and a patch sketch for
near-duplicate search. Summaries go into
the :class:`~audit.hashing.HashCache`, so an unchanged image is never read
again, in this audit or the next.

Decoded-content hash (``content_hash``)
    ``sha256:`` over ``"bidsaudit-image-v2 <x>x<y>x<z>x<t> <form>\\n"``
    followed by every volume of the data in closest-canonical (RAS+) voxel
    order, with x varying fastest (Fortran order, as NIfTI stores voxels),
    volume after volume. The decoded values are scaled in float64 (``raw *
    scl_slope + scl_inter``) and then rounded once to float32; ``-0.0``
    becomes ``0.0`` and every NaN the same NaN. ``<form>`` is ``int16`` when
    every decoded value is an integer from -32768 to 32767 (most raw scans:
    the values are then hashed as little-endian int16, half the bytes and no
    float copy), ``float32`` otherwise (little-endian float32). The form
    depends on the decoded values alone, so a copy re-saved with another on-disk type or scaling that
    decodes to the same values (to float32 precision), re-compressed, with
    an edited header (description, intent, qform/sform, origin), or stored
    in another axis order with a matching affine, has the same hash. The
    affine itself is not hashed: identical voxels under another position in
    space are the same image for leakage.

Thumbnail (``thumbnail``)
    The reference volume (the image, or the mean over time of a 4D image)
    sampled (trilinear) at the centres of a 16x16x16 grid spanning the
    world-space bounding box of its foreground, then z-scored and rounded
    to float16. It survives reorientation, translation, resampling,
    intensity rescaling and mild noise (a quick look at the content).

Patch sketch (``patch_sketch``, ``patch_count``)
    :func:`audit.images.neardup.patch_sketch` of the reference volume in canonical
    orientation: the 256 smallest hashes of its 2x2x2 blocks of exact voxel
    values, for ``leakage.near_duplicate_image`` (crops and pads keep them).

Near-duplicate fingerprint (``fingerprint``, ``fingerprint_spread``)
    :func:`audit.images.neardup.fingerprint` of the reference volume in canonical
    orientation: ``FP_SIZE**3`` log intensities sampled in a frame
    the image defines (foreground centroid, principal axes, spread), as
    base64 float16, and the foreground's spreads (mm) along its principal
    axes, for ``leakage.near_duplicate_image``. Empty for images smaller
    than ``FP_MIN_EDGE`` voxels along an axis.

Statistics
    ``min``/``max`` over every finite voxel of the whole array; ``mean``,
    ``std`` over the finite voxels of the reference volume; ``p01``, ``p50``,
    ``p99`` inside a crude foreground mask (reference voxels above the
    reference mean; all finite voxels when that is empty). Past
    :data:`STATS_VOXELS` voxels (about 50**3) these come from a regular
    subsample (every 2nd, 3rd... voxel along each axis): deterministic
    estimates, for QC and shift checks, at a fraction of the cost.
    ``iqm``: MRIQC-style quality metrics (Otsu foreground percentiles and
    volume, SNR, CNR, CJV, a 32-bin histogram) of the same subsample,
    :mod:`audit.images.features`.

Status
    ``ok``; ``corrupt`` (cannot be decoded, truncated, zero-byte, impossible
    header values: dim[0] outside 1-7, a dimension below 0 or above 2**15, a
    non-finite or singular affine, an unknown data type); ``empty`` (no
    voxels, no finite voxel, or a single value everywhere); ``unreadable``
    (the process may not read it: permissions, I/O error); ``placeholder``
    (zero-byte file under ``ignore_headers``); ``skipped`` (a non-empty file
    under ``ignore_headers``: nothing is read).

Parallelism: ``workers`` readers (default: every core): this process and a
pool of ``workers - 1`` processes (1 runs in this process alone), or a Dask
cluster when ``scheduler`` is given (its workers must see the dataset at the
same absolute path). Results are the same either way and come back in path
order.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from audit import hashing
from audit.images import features as imagefeatures
from audit.images import neardup
from audit.errors import InputError
from audit.hashing import EMPTY_SHA256, CacheKey, HashCache

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex, FileRow

__all__ = [
    "SUMMARY_VERSION",
    "STATUSES",
    "THUMB_SIZE",
    "AbsentImage",
    "ImageSummary",
    "ImageSummaries",
    "summarise_images",
    "summarise_file",
    "thumbnail_correlation",
]

THUMB_SIZE = 16
MAX_DIM = 2**15
#: Statistics and thumbnail placement use a regular subsample of at most about this many voxels.
STATS_VOXELS = 2**17
#: What the decoded-content hash starts with (module docstring).
HASH_TAG = "bidsaudit-image-v2"
_INT16 = (-32768, 32767)
#: Voxels per slab when scaling (float64 temporaries of about a megabyte).
_SLAB_VOXELS = 2**17
#: Changes whenever what a summary holds or how it is computed changes (cache entries of other versions are ignored).
SUMMARY_VERSION = (f"bidsaudit-image-summary-3/{HASH_TAG}/thumb{THUMB_SIZE}/{neardup.FINGERPRINT_VERSION}"
                   f"/{neardup.SKETCH_VERSION}/{imagefeatures.IQM_VERSION}")
STATUSES = ("ok", "corrupt", "empty", "unreadable", "placeholder", "skipped")
_PRESENT = ("file", "symlink")
#: How long to wait for a Dask scheduler given by address.
DASK_CONNECT_TIMEOUT = "20s"


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
        The near-duplicate fingerprint (:mod:`audit.images.neardup`) as base64 of
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
        (:func:`audit.images.neardup.patch_sketch`) as base64 of little-endian
        uint64 (2 KiB; empty when not computed).
    patch_count : int or None
        Patches in the sketched set.
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
        return neardup.decode_sketch(self.patch_sketch)

    def fingerprint_vector(self) -> np.ndarray:
        """The fingerprint as a float16 vector (length 0 when there is none)."""
        return neardup.decode(self.fingerprint)

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
    results = _run([k.path for _, k in todo], workers=workers, scheduler=scheduler)
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


def _run(paths: Sequence[str], *, workers: int | None, scheduler: Any) -> list[dict[str, Any]]:
    if not paths:
        return []
    if scheduler is not None:
        return _run_dask(paths, scheduler)
    import multiprocessing as mp

    n = workers if workers is not None else (os.cpu_count() or 1)
    n = max(1, min(n, len(paths)))
    with _heap_for_images():
        if n == 1 or mp.current_process().daemon:  # a pool worker may not start processes of its own
            return [summarise_file(p) for p in paths]
        return _run_pool(paths, n)


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: After the pass: where glibc's own sliding limits end up once large buffers have been freed (any mallopt
#: call turns the sliding off for good): buffers to 32 MB reused, free memory above 64 MB given back.
_GLIBC_AFTER = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20), (_M_TOP_PAD, 128 << 10))


def _mallopt(settings: Sequence[tuple[int, int]]) -> bool:
    """Set glibc malloc parameters; ``False`` where there is no glibc (nothing changes)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    for param, value in settings:
        mallopt(param, value)
    return True


def _tune_heap() -> None:
    """Keep freed image-sized buffers in the heap for the next image.

    glibc gives every buffer over 32 MB its own fresh mapping and returns it
    on free, so each image paid page faults and the kernel's zeroing for
    its 20-100 MB of buffers (sys time 14 of about 145 ms per image at
    1 mm; 6 with this). Pool workers keep it; this process only during the pass.
    """
    _mallopt(((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))


class _heap_for_images:
    """:func:`_tune_heap` for the image pass in this process, then ordinary limits and the memory given back."""

    def __enter__(self) -> None:
        _tune_heap()

    def __exit__(self, *exc: object) -> None:
        if _mallopt(_GLIBC_AFTER):
            import ctypes

            try:
                ctypes.CDLL(None).malloc_trim(0)
            except (OSError, AttributeError, TypeError):  # pragma: no cover - glibc has it
                pass


def _run_pool(paths: Sequence[str], n: int) -> list[dict[str, Any]]:
    """``n`` readers: this process and a pool of ``n - 1`` worker processes.

    This process reads batches from the front while the pool starts (a
    fresh forkserver imports numpy, nibabel and scipy: about half a second)
    and then alongside it; the workers get batches from the back, two queued
    per worker so that none waits for this process to hand out more. A
    worker that dies (out of memory?) costs the images of its batches
    (``unreadable``), never the run.
    """
    batches = _batches(paths, n)
    done: list[list[dict[str, Any]] | None] = [None] * len(batches)
    todo = deque(range(len(batches)))
    inflight: dict[Any, int] = {}
    broken = False
    with ProcessPoolExecutor(max_workers=n - 1, mp_context=_mp_context(), initializer=_tune_heap) as pool:

        def collect(futures: Any) -> None:
            for fut in futures:
                b = inflight.pop(fut)
                try:
                    done[b] = fut.result()
                except BrokenProcessPool:
                    done[b] = [_failed(p, "the worker process reading it died (out of memory?)") for p in batches[b]]

        while todo or inflight:
            collect([f for f in inflight if f.done()])
            while not broken and todo and len(inflight) < 2 * (n - 1):
                b = todo.pop()
                try:
                    inflight[pool.submit(_summarise_batch, batches[b])] = b
                except BrokenProcessPool:  # the pool is gone: this process reads the rest
                    todo.append(b)
                    broken = True
            if todo:
                b = todo.popleft()
                done[b] = _summarise_batch(batches[b])
            elif inflight:
                collect(wait(list(inflight), return_when=FIRST_COMPLETED).done)
    return [r for batch in done for r in batch or ()]


def _batches(paths: Sequence[str], n: int) -> list[list[str]]:
    size = max(1, min(16, len(paths) // (n * 8)))  # small enough that the last batches end together
    return [list(paths[i:i + size]) for i in range(0, len(paths), size)]


def _mp_context() -> Any:
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # the modules every image needs, imported once in the server rather than once per worker
        ctx.set_forkserver_preload(["audit.images.summary", "nibabel", "nibabel.orientations", "scipy.ndimage",
                                    "scipy.spatial.transform"])
        return ctx
    return mp.get_context("spawn")


def _run_dask(paths: Sequence[str], scheduler: Any) -> list[dict[str, Any]]:
    try:
        from dask.distributed import Client
    except ImportError as err:  # pragma: no cover - dask is a dependency
        raise InputError(None, f"--scheduler needs dask.distributed ({err})", field="--scheduler") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT) if own else scheduler  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise InputError(None, f"cannot reach the Dask scheduler at {scheduler!r} ({err})",
                         field="--scheduler", expected="a reachable address such as tcp://host:8786") from None
    try:
        nthreads = sum(client.nthreads().values()) or 1
        batches = _batches(paths, nthreads)
        futures = client.map(_summarise_batch, batches, pure=False)
        out: list[dict[str, Any]] = []
        for fut, batch in zip(futures, batches):
            try:
                out.extend(fut.result())
            except Exception as err:  # a remote failure (killed worker...): those images were not read
                out.extend(_failed(p, f"the Dask worker reading it failed ({type(err).__name__})") for p in batch)
        return out
    finally:
        if own:
            client.close()


def _failed(path: str, message: str) -> dict[str, Any]:
    return {"content": {"status": "unreadable", "problem": message, "problem_code": "unreadable"},
            "bytes_read": 0, "opened": False, "key": None}


def _summarise_batch(paths: Sequence[str]) -> list[dict[str, Any]]:
    return [summarise_file(p) for p in paths]


# ------------------------------------------------------------- one image
class _Bad(Exception):
    """A decoded problem: status, code and message."""

    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _read_all(raw: Any, size: int) -> bytes:
    """Every byte of an open file, in as few reads as it takes (the file may have grown since its stat)."""
    first = raw.read(size) if size > 0 else b""
    rest = raw.read()
    return first + rest if rest else first


def summarise_file(path: str) -> dict[str, Any]:
    """Read one image file; return ``{"content", "bytes_read", "opened", "key"}``.

    ``content`` holds the :class:`ImageSummary` fields that depend on the
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
            except _Bad as bad:
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


try:  # ISA-L's inflate: same results as zlib's, about 1.5-2 times as fast
    from isal import isal_zlib as _inflate_lib

    _INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflate_lib.error)
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate_lib = zlib  # type: ignore[no-redef]
    _INFLATE_ERRORS = (zlib.error,)


def _gunzip(blob: bytes) -> bytes:
    """The inflated content of a gzip file (every member); raises :class:`_Bad` for a damaged one."""
    parts: list[bytes] = []
    rest = blob
    while True:
        d = _inflate_lib.decompressobj(31)
        try:
            parts.append(d.decompress(rest))
        except _INFLATE_ERRORS as err:
            raise _Bad("corrupt", "bad_gzip", f"damaged gzip data ({err})") from None
        if not d.eof:
            raise _Bad("corrupt", "truncated", "truncated: the gzip stream ends early")
        rest = d.unused_data
        if not rest or not rest.strip(b"\0"):  # trailing zero padding is allowed
            break
        if rest[:2] != b"\x1f\x8b":
            raise _Bad("corrupt", "bad_gzip", "damaged gzip data (trailing garbage after the gzip stream)")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _decode(blob: bytes, out: dict[str, Any]) -> None:
    """Fill ``out`` from the image file's bytes; raise :class:`_Bad` for a bad image."""
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError
    from nibabel.wrapstruct import WrapStructError

    try:
        _decode_unchecked(blob, out)
    except _Bad:
        raise
    except (WrapStructError, HeaderDataError, ImageFileError) as err:
        raise _Bad("corrupt", "bad_header", f"invalid header ({err})") from None
    except MemoryError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError, EOFError, OSError,
            np.linalg.LinAlgError) as err:
        # nibabel and numpy fail in many ways on garbage headers; report, never crash
        raise _Bad("corrupt", "undecodable", f"cannot decode ({type(err).__name__}: {err})") from None


def _header_class(first4: bytes) -> tuple[Any, str] | None:
    import nibabel as nib

    for order in ("<", ">"):
        n = int(np.frombuffer(first4, dtype=f"{order}i4")[0])
        if n == 348:
            return nib.Nifti1Header, "nifti1"
        if n == 540:
            return nib.Nifti2Header, "nifti2"
    return None


def _decode_unchecked(blob: bytes, out: dict[str, Any]) -> None:
    from nibabel.orientations import io_orientation, ornt2axcodes

    gz = blob[:2] == b"\x1f\x8b"
    out["gzipped"] = gz
    payload = _gunzip(blob) if gz else blob
    if len(payload) < 4:
        raise _Bad("corrupt", "truncated", f"truncated: too short to hold a NIfTI header ({len(blob)} bytes)")
    found = _header_class(payload[:4])
    if found is None:
        raise _Bad("corrupt", "not_nifti", "not a NIfTI-1 or NIfTI-2 file (bad header size field)")
    header_class, fmt = found
    out["format"] = fmt
    if len(payload) < header_class.template_dtype.itemsize:
        raise _Bad("corrupt", "truncated", f"truncated: {len(payload)} bytes cannot hold a {fmt} header")
    hdr = header_class.from_fileobj(io.BytesIO(payload), check=False)
    magic = bytes(hdr["magic"]).rstrip(b"\0")
    if magic not in (b"n+1", b"n+2"):
        detail = "its data are in a separate .img file" if magic in (b"ni1", b"ni2") else f"bad magic {magic!r}"
        raise _Bad("corrupt", "bad_header", f"invalid header ({detail})")
    dim = [int(d) for d in hdr["dim"]]
    if not 1 <= dim[0] <= 7:
        raise _Bad("corrupt", "impossible_dims", f"impossible dim[0] = {dim[0]} (must be 1 to 7)")
    shape = tuple(dim[1:dim[0] + 1])
    if any(d < 0 or d > MAX_DIM for d in shape):
        raise _Bad("corrupt", "impossible_dims",
                   f"impossible dimensions {_fmt_shape(shape)} (each must be 0 to {MAX_DIM})")
    out["shape"] = shape
    try:
        dtype = np.dtype(hdr.get_data_dtype())
    except (KeyError, ValueError, TypeError) as err:
        raise _Bad("corrupt", "unknown_dtype", f"unknown data type code {int(hdr['datatype'])}") from err
    out["dtype"] = dtype.name if dtype.fields is None else str(dtype)
    affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    finite = bool(np.isfinite(affine).all())
    out["affine_finite"] = finite
    if not finite:
        raise _Bad("corrupt", "nonfinite_affine", "the affine (sform/qform) has non-finite values (NaN or inf)")
    out["affine"] = tuple(float(v) for v in affine.ravel())
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    out["zooms"] = tuple(round(float(z), 6) for z in zooms)
    ornt = io_orientation(affine)  # type: ignore[no-untyped-call]
    out["orientation"] = "".join(c or "?" for c in ornt2axcodes(ornt))  # type: ignore[no-untyped-call]
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
        raise _Bad("corrupt", "singular_affine", "the affine is singular (the voxel axes do not span 3-D space)")
    n_vox = math.prod(shape)
    offset = int(hdr.get_data_offset())
    nbytes = n_vox * dtype.itemsize
    if n_vox == 0:
        raise _Bad("empty", "no_voxels", f"no voxels (shape {_fmt_shape(shape)})")
    if offset + nbytes > len(payload):
        where = "the gzip stream holds" if gz else "the file holds"
        raise _Bad("corrupt", "truncated", f"truncated: the header declares {nbytes} bytes of data from byte "
                   f"{offset}, {where} {max(0, len(payload) - offset)}")
    slope, inter = hdr.get_slope_inter()
    data = np.frombuffer(payload, dtype=dtype, count=n_vox, offset=offset).reshape(shape, order="F")
    _content(data, affine, ornt, slope, inter, out)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "()"


def _content(data: np.ndarray, affine: np.ndarray, ornt: np.ndarray, slope: float | None, inter: float | None,
             out: dict[str, Any]) -> None:
    """Content hash, statistics and thumbnail of decoded data (``ornt``: to closest canonical)."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff

    shape = data.shape
    spatial = tuple(shape[:3]) + (1,) * (3 - min(3, len(shape)))
    t = math.prod(shape[3:]) if len(shape) > 3 else 1
    arr = data.reshape(spatial + (t,), order="F")
    canon = apply_orientation(arr, ornt)  # type: ignore[no-untyped-call]
    canon_affine = affine @ inv_ornt_aff(ornt, spatial)  # type: ignore[no-untyped-call]
    head = f"{HASH_TAG} {_fmt_shape(canon.shape)}"
    if arr.dtype.kind not in "biuf":  # complex or RGB: hash the stored values, no statistics
        digest = hashlib.sha256(f"{head} raw {arr.dtype.str}\n".encode())
        for i in range(t):
            digest.update(np.ascontiguousarray(canon[..., i].T).tobytes())
        out["content_hash"] = f"sha256:{digest.hexdigest()}"
        return
    scaled = slope is not None and (slope != 1 or (inter or 0) != 0)
    n_vox = arr.size
    if arr.dtype.kind in "biu" and not scaled:
        ref, n_finite, vmin, vmax, n_nonzero, digest = _integers(canon, t, head)
    else:
        ref, n_finite, vmin, vmax, n_nonzero, digest = _decoded_values(
            canon, t, head, (float(slope), float(inter or 0.0)) if scaled else None)  # type: ignore[arg-type]
    out["content_hash"] = f"sha256:{digest.hexdigest()}"
    out["finite_fraction"] = n_finite / n_vox
    out["nonzero_fraction"] = n_nonzero / n_vox
    if n_finite == 0:
        raise _Bad("empty", "non_finite", f"all {n_vox} voxels are NaN or infinite")
    out["min"], out["max"] = vmin, vmax
    if vmin == vmax:
        extra = f" ({n_vox - n_finite} others are NaN or infinite)" if n_finite < n_vox else ""
        raise _Bad("empty", "constant", f"all {n_finite} voxels have the value {_num(vmin)}{extra}")
    _stats(ref, canon_affine, out, known_finite=n_finite == n_vox)


def _fits_int16(lo: float, hi: float) -> bool:
    return _INT16[0] <= lo and hi <= _INT16[1] and float(lo).is_integer() and float(hi).is_integer()


def _integers(canon: np.ndarray, t: int, head: str) -> tuple[np.ndarray, int, float, float, int, Any]:
    """Unscaled integer data: hashed as int16 when every value fits (no float copy), as float32 otherwise.

    Returns the reference volume (the data itself for one volume; the mean
    over time otherwise), the finite count, min, max, the non-zero count and
    the digest.
    """
    vmin, vmax = float(canon.min()), float(canon.max())  # plain integers: no NaN, no -0.0
    small = _fits_int16(vmin, vmax)
    digest = hashlib.sha256(f"{head} {'int16' if small else 'float32'}\n".encode())
    n_nonzero = 0
    total: np.ndarray | None = None
    ref: np.ndarray | None = None
    for i in range(t):
        vol = canon[..., i]
        v = np.asarray(vol, dtype="<i2" if small else "<f4", order="F")  # no copy for RAS-stored int16
        digest.update(v.T.data)  # the transpose of a Fortran-ordered array is C-contiguous
        n_nonzero += int(np.count_nonzero(vol))
        if t == 1:
            ref = v
        else:
            if total is None:
                total = np.zeros(v.shape, dtype=np.float64)
            total += v
    if ref is None:
        assert total is not None
        ref = (total / t).astype(np.float32)
    return ref, canon.size, vmin, vmax, n_nonzero, digest


def _decode_volume(vol: np.ndarray, scale: tuple[float, float] | None) -> np.ndarray:
    """One volume as float32 in Fortran order: ``raw * slope + inter`` in float64 rounded once; no ``-0.0``.

    Scaled in slabs of about a megabyte (cache-sized temporaries).
    """
    if scale is None:
        v32 = np.array(vol, dtype="<f4", order="F")  # x fastest: a plain cast for RAS-stored data
    else:
        slope, inter = scale
        v32 = np.empty(vol.shape, dtype="<f4", order="F")
        per = max(1, _SLAB_VOXELS // max(1, vol.shape[0] * vol.shape[1]))
        for z in range(0, vol.shape[2], per):
            v = vol[:, :, z:z + per].astype(np.float64)  # memory order kept (np.asarray would transpose)
            v *= slope
            v += inter
            slab = v32[:, :, z:z + per]
            slab[...] = v
            slab += np.float32(0.0)  # -0.0 (a tiny negative value rounds to it) -> 0.0
        return v32
    v32 += np.float32(0.0)  # -0.0 -> 0.0
    return v32


def _scaled_extremes(vol: np.ndarray, scale: tuple[float, float]) -> tuple[float, float] | None:
    """Min and max of the decoded values of scaled integers, from the stored extremes; ``None`` if not finite.

    ``raw * slope + inter`` rounded to float32 is monotone in ``raw``: the
    decoded extremes are those of the stored ones, and when both are finite
    so is every value between them.
    """
    slope, inter = scale
    ends = np.array([vol.min(), vol.max()], dtype=np.float64) * slope
    ends += inter
    e32 = ends.astype(np.float32) + np.float32(0.0)
    if not np.isfinite(e32).all():
        return None
    return float(e32.min()), float(e32.max())


def _decoded_values(canon: np.ndarray, t: int, head: str, scale: tuple[float, float] | None,
                    ) -> tuple[np.ndarray, int, float, float, int, Any]:
    """Scaled or floating-point data: decoded to float32, hashed as int16 when every value is one."""
    n_finite = n_nonzero = 0
    vmin, vmax = math.inf, -math.inf
    small = True  # every value so far is an integer that int16 holds
    as_int = hashlib.sha256(f"{head} int16\n".encode())
    as_float = hashlib.sha256(f"{head} float32\n".encode())
    total: np.ndarray | None = None
    count: np.ndarray | None = None
    ref: np.ndarray | None = None
    ints = scale is not None and canon.dtype.kind in "biu"
    # scaled integers: zero only where the stored value is (no offset, and |slope| does not round to 0)
    zero_is_zero = ints and scale[1] == 0 and np.float32(abs(scale[0])) != 0  # type: ignore[index]
    for i in range(t):
        vol = canon[..., i]
        v32 = _decode_volume(vol, scale)
        ends = _scaled_extremes(vol, scale) if ints else None  # type: ignore[arg-type]
        if ends is not None:  # every value finite, the extremes known: no pass over the floats
            finite = np.True_
            all_finite = True
            vals = v32
            lo, hi = ends
        else:
            finite = np.isfinite(v32)
            all_finite = bool(finite.all())
            if not all_finite:
                v32[np.isnan(v32)] = np.float32(np.nan)  # one NaN bit pattern
                small = False
            vals = v32 if all_finite else v32[finite]
            if vals.size:
                lo, hi = float(vals.min()), float(vals.max())
        n_finite += vals.size
        if vals.size:
            vmin, vmax = min(vmin, lo), max(vmax, hi)
            n_nonzero += int(np.count_nonzero(vol if zero_is_zero and ends is not None else vals))
            if small and _fits_int16(lo, hi):
                w = v32.astype("<i2", order="F")
                small = bool(np.array_equal(w, v32))
            else:
                small = False
        if small:
            as_int.update(w.T.data)
        if t > 1 or not small:
            as_float.update(v32.T.data)  # for one volume only when it is not int16
        if t == 1:
            ref = v32
        else:
            if total is None:
                total = np.zeros(v32.shape, dtype=np.float64)
                count = np.zeros(v32.shape, dtype=np.int64)
            total += np.where(finite, v32, 0.0)
            count += finite
    if ref is None:
        assert total is not None and count is not None
        ref = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    return ref, n_finite, vmin, vmax, n_nonzero, as_int if small else as_float


def _moments(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centroid (3,) and covariance (3, 3) of voxel indices (three passes: the plane sums)."""
    return neardup.moments(weights)


def _num(v: float) -> str:
    return f"{v:g}"


def _stats(ref: np.ndarray, affine: np.ndarray, out: dict[str, Any], *, known_finite: bool = False) -> None:
    """Statistics and thumbnail of the reference volume (``affine``: its canonical affine).

    ``ref`` is float32, or int16 for unscaled integer images (their values
    exactly: every result is the same as for the float32 copy).

    ``known_finite``: every voxel of ``ref`` is known to be finite (no check needed).
    """
    from scipy.ndimage import map_coordinates

    step = max(1, math.ceil((ref.size / STATS_VOXELS) ** (1 / 3)))
    if step > 1:
        sub = np.ascontiguousarray(ref[::step, ::step, ::step], dtype=np.float32)
    else:
        sub = ref if ref.dtype == np.float32 else ref.astype(np.float32)
    finite = None if known_finite else np.isfinite(sub)
    all_finite = known_finite or bool(finite.all())  # type: ignore[union-attr]
    vals = sub if all_finite else sub[finite]
    mean = float(vals.mean(dtype=np.float64))
    out["mean"] = mean
    out["std"] = float(vals.std(dtype=np.float64))
    fg = sub > mean  # False where NaN
    if not fg.any():
        fg = finite if finite is not None else np.ones(sub.shape, dtype=bool)
    out["foreground_fraction"] = float(np.count_nonzero(fg)) / sub.size
    p01, p50, p99 = np.percentile(sub[fg], [1, 50, 99])
    out["p01"], out["p50"], out["p99"] = float(p01), float(p50), float(p99)
    out["iqm"] = imagefeatures.quality_metrics(sub, voxel_volume_mm3=abs(float(np.linalg.det(affine[:3, :3]))),
                                               total_voxels=ref.size)
    # thumbnail: a cube centred on the foreground's intensity-weighted centroid, 2 * 2.2 of its largest
    # world-space standard deviation wide (moments from marginal sums: no per-voxel coordinate arrays)
    weights = np.where(fg, sub - np.float32(mean), np.float32(0.0))
    if not weights.sum(dtype=np.float64) > 0:
        weights = fg.astype(np.float32)
    centre, cov = _moments(weights)
    sub_affine = affine @ np.diag([step, step, step, 1.0])
    centre_w = sub_affine[:3, :3] @ centre + sub_affine[:3, 3]
    cov_w = sub_affine[:3, :3] @ cov @ sub_affine[:3, :3].T
    half = 2.2 * math.sqrt(max(float(np.max(np.diag(cov_w))), 0.0))
    if not half > 0:
        half = float(np.max(np.sqrt((affine[:3, :3] ** 2).sum(axis=0))))
    wmin, wmax = centre_w - half, centre_w + half
    all_finite = known_finite or (bool(np.isfinite(ref).all()) if step > 1 else all_finite)
    g = THUMB_SIZE
    steps = (np.arange(g) + 0.5) / g
    axes = [wmin[i] + steps * (wmax[i] - wmin[i]) for i in range(3)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    points = np.stack([gx.ravel(), gy.ravel(), gz.ravel(), np.ones(gx.size)])
    vox = (np.linalg.inv(affine) @ points)[:3]
    filled = ref if all_finite else np.where(np.isfinite(ref), ref, np.float32(0.0))
    samples = map_coordinates(filled, vox, order=1, mode="constant", cval=0.0, prefilter=False,
                              output=np.float32)  # as for float32 data when ref holds int16
    sd = float(samples.std())
    thumb = (samples - samples.mean()) / sd if sd > 0 else np.zeros_like(samples)
    out["thumbnail"] = base64.b64encode(thumb.astype("<f2").tobytes()).decode("ascii")
    try:
        fp = neardup.fingerprint(ref, affine, all_finite=all_finite)
    except (ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError):  # never a reason to fail an image
        fp = None
    if fp is not None:
        out["fingerprint"] = neardup.encode(fp.vector)
        out["fingerprint_spread"] = fp.spread
    try:
        sk = neardup.patch_sketch(ref)
    except (ValueError, ArithmeticError, IndexError, MemoryError):
        sk = None
    if sk is not None:
        out["patch_sketch"] = neardup.encode_sketch(sk)
        out["patch_count"] = sk.count
