"""Content hashes, the on-disk hash cache and dataset fingerprints.

* :func:`file_sha256` streams a file through SHA-256 in 1 MiB chunks.
* :class:`HashCache` (:mod:`audit.hashcache`, re-exported here) is a SQLite
  file (``hashes.sqlite`` in :meth:`HashCache.default_dir`) that remembers,
  per absolute path, the ``(size, mtime_ns, inode)`` the file had when it was
  read, its SHA-256 and optionally the image summary made from it
  (:mod:`audit.images.summary`). An entry is valid only while all four key
  values match, so a second run over an unchanged dataset reads no file at
  all, and touching, rewriting or replacing a file makes it read again. A
  cache folder that cannot be created or written never stops an audit: the
  cache falls back to memory and says why in :attr:`HashCache.problem`; a
  damaged cache file is rebuilt, with a warning, and a damaged entry is a
  miss, never a wrong hash.
* :func:`dataset_fingerprint` binds a whole dataset: SHA-256 over the sorted
  lines ``relpath<TAB>size<TAB>content-hash`` of every file of the index,
  BIDS or not. Certificates bind to it.

Content hashes, as they appear in :attr:`Fingerprint.files`:

``sha256:<hex>``
    the file's bytes (zero-byte files are not opened);
``annex:<key>``
    a git-annex key (dangling link, pointer file, or a link whose content is
    present): the key already names the content, so nothing is read and the
    fingerprint is the same whether or not ``datalad get`` fetched the file.
    The size on the line is the key's size;
``tree:<hex>``
    a folder that stands as one file (a CTF ``.ds`` recording, or a folder
    the index lists as not BIDS): SHA-256 over the same kind of lines for
    every file below it;
``link:<target>``
    a dangling symbolic link that is not a git-annex link;
``unreadable``
    a file the process could not read (listed in :attr:`Fingerprint.unreadable`;
    such a fingerprint binds names and sizes only for that file).

Known limit (shared with git's "racily clean" problem): a file rewritten with
the same size within the file system's timestamp resolution, on the same
inode, keeps its cached hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING

from audit.hashcache import CacheKey, HashCache, describe_os_error

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex, FileRow

__all__ = [
    "CHUNK",
    "EMPTY_SHA256",
    "CacheKey",
    "Fingerprint",
    "HashCache",
    "dataset_fingerprint",
    "file_sha256",
    "open_raw",
]

CHUNK = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ANNEX_SIZE = re.compile(r"-s(\d+)--")
_THREADS = min(8, 2 * (os.cpu_count() or 1))  # file hashing waits on I/O; hashlib releases the GIL


def open_raw(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a regular file for unbuffered binary reading.

    Opens without blocking (a FIFO named like a data file must not hang the
    audit), then refuses anything that is not a regular file.

    Raises
    ------
    OSError
        The file cannot be opened (``PermissionError``...), or is a folder
        (``IsADirectoryError``) or another non-regular file.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _sha256_stream(fh: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    total = 0
    while True:
        chunk = fh.read(CHUNK)  # no preallocated buffer: most files of a dataset are tiny
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, streamed in 1 MiB chunks.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    with open_raw(path) as fh:
        return _sha256_stream(fh)[0]


def _hash_and_stat(path: str) -> tuple[str, int, CacheKey]:
    """Hash ``path``; return the hex digest, the bytes read and the key of what was read."""
    with open_raw(path) as fh:
        key = CacheKey.from_stat(path, os.fstat(fh.fileno()))
        digest, n = _sha256_stream(fh)
    return digest, n, key


# ------------------------------------------------------------------- cache
# ------------------------------------------------------------- fingerprint
@dataclass(frozen=True)
class Fingerprint:
    """The identity of a dataset's content.

    Attributes
    ----------
    fingerprint : str
        ``"sha256:<hex>"`` over the sorted lines ``relpath\\tsize\\tcontent-hash``.
    files : Mapping[str, str]
        Content hash of every file, by relative path (see the module docstring).
    n_files : int
        Files bound (every row of the index).
    n_read : int
        Files whose bytes were read this time (neither cached, zero-byte nor annexed).
    n_absent : int
        Files bound by their git-annex key or link target, content not read.
    cache_hits : int
        Files whose hash came from the cache.
    bytes_read : int
        Bytes read to hash files.
    unreadable : tuple of (path, message)
        Files that could not be read.
    """

    fingerprint: str
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    n_files: int = 0
    n_read: int = 0
    n_absent: int = 0
    cache_hits: int = 0
    bytes_read: int = 0
    unreadable: tuple[tuple[str, str], ...] = ()


@dataclass
class _Tally:
    read: int = 0
    hits: int = 0
    bytes: int = 0
    absent: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _annex_size(key: str, default: int) -> int:
    m = _ANNEX_SIZE.search(key)
    return int(m.group(1)) if m else default


def dataset_fingerprint(index: DatasetIndex, cache: HashCache | None = None) -> Fingerprint:
    """Fingerprint every file of ``index`` (BIDS or not), reading only what the cache does not know.

    Parameters
    ----------
    index : DatasetIndex
        The dataset; every row of ``index.rows`` is bound.
    cache : HashCache, optional
        Defaults to :meth:`HashCache.default`.

    Returns
    -------
    Fingerprint
        Never raises for a file that cannot be read: its content hash is
        ``unreadable`` and it is listed in ``unreadable``.
    """
    cache = HashCache.default() if cache is None else cache
    root = index.root
    root_str = str(root)
    tally = _Tally()
    sizes: dict[str, int] = {}
    hashes: dict[str, str] = {}
    pending: list[tuple[str, CacheKey]] = []  # (relpath, key)
    for row in index.rows:
        sizes[row.path] = row.size
        content = _without_reading(row, root)
        if content is not None:
            if not content.startswith("sha256:"):
                tally.absent += 1
                if row.annex_key:
                    sizes[row.path] = _annex_size(row.annex_key, row.size)
            hashes[row.path] = content
        else:
            pending.append((row.path, CacheKey(os.path.join(root_str, row.path), row.size, row.mtime_ns, row.inode)))
    hashes.update(_hash_keys(pending, cache, tally, root))
    lines = [f"{p}\t{sizes[p]}\t{hashes[p]}\n" for p in sorted(hashes)]
    digest = hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
    return Fingerprint(
        fingerprint=f"sha256:{digest}", files=MappingProxyType(dict(sorted(hashes.items()))),
        n_files=len(hashes), n_read=tally.read, n_absent=tally.absent, cache_hits=tally.hits,
        bytes_read=tally.bytes, unreadable=tuple(tally.unreadable),
    )


def _without_reading(row: FileRow, root: Path) -> str | None:
    """The content hash of a row when it needs no read, else ``None``."""
    if row.annex_key:
        return f"annex:{row.annex_key}"
    if row.link == "dangling":
        try:
            return f"link:{os.readlink(root / row.path)}"
        except OSError:
            return "absent"
    if row.size == 0 and not (row.inode == 0 and row.mtime_ns == 0):  # (0, 0): a folder row of the index
        return f"sha256:{EMPTY_SHA256}"
    return None


def _hash_keys(pending: Sequence[tuple[str, CacheKey]], cache: HashCache, tally: _Tally,
               root: Path) -> dict[str, str]:
    """Content hashes of ``(label, key)`` pairs: from the cache, else read (in threads)."""
    known = cache.get_hashes([k for _, k in pending])
    out: dict[str, str] = {}
    misses: list[tuple[str, CacheKey]] = []
    for label, key in pending:
        h = known.get(key.path)
        if h is not None:
            out[label] = f"sha256:{h}"
            tally.hits += 1
        else:
            misses.append((label, key))
    if not misses:
        return out

    def work(item: tuple[str, CacheKey]) -> tuple[str, CacheKey, str | None, int, CacheKey | None, str | None]:
        label, key = item
        try:
            digest, n, seen = _hash_and_stat(key.path)
            return label, key, digest, n, seen, None
        except IsADirectoryError:
            return label, key, None, 0, None, "tree"
        except OSError as err:
            return label, key, None, 0, None, describe_os_error(err)

    def batch(items: Sequence[tuple[str, CacheKey]]) -> list[tuple[str, CacheKey, str | None, int,
                                                                   CacheKey | None, str | None]]:
        return [work(item) for item in items]

    threads = min(_THREADS, len(misses))
    if threads > 1:  # batches, not one future per file: 160,000 tiny sidecars are common
        size = max(1, min(256, len(misses) // (threads * 4)))
        chunks = [misses[i:i + size] for i in range(0, len(misses), size)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = [r for part in pool.map(batch, chunks) for r in part]
    else:
        results = batch(misses)
    store: list[tuple[CacheKey, str]] = []
    for label, key, digest, n, seen, why in results:
        if digest is not None and seen is not None:
            out[label] = f"sha256:{digest}"
            store.append((seen, digest))
            tally.read += 1
            tally.bytes += n
        elif why == "tree":
            out[label] = _tree_hash(Path(key.path), cache, tally, root)
        else:
            out[label] = "unreadable"
            tally.unreadable.append((label, why or "cannot read"))
    cache.bytes_read += sum(r[3] for r in results)
    cache.put_hashes(store)
    return out


def _tree_hash(folder: Path, cache: HashCache, tally: _Tally, root: Path) -> str:
    """``tree:<hex>``: SHA-256 over ``relpath\\tsize\\tcontent-hash`` lines of every file below ``folder``."""
    pending: list[tuple[str, CacheKey]] = []
    fixed: dict[str, tuple[int, str]] = {}
    sizes: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(folder, onerror=None):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            try:
                st = os.stat(full)
            except OSError:
                try:
                    fixed[rel] = (0, f"link:{os.readlink(full)}")
                except OSError:
                    fixed[rel] = (0, "unreadable")
                continue
            sizes[rel] = st.st_size
            if st.st_size == 0:
                fixed[rel] = (0, f"sha256:{EMPTY_SHA256}")
            else:
                pending.append((rel, CacheKey.from_stat(full, st)))
    inner = _Tally()
    found = _hash_keys(pending, cache, inner, root)
    tally.read += inner.read
    tally.hits += inner.hits
    tally.bytes += inner.bytes
    base = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else str(folder)
    tally.unreadable.extend((f"{base}/{p}", why) for p, why in inner.unreadable)
    entries = {**{p: (sizes[p], h) for p, h in found.items()}, **fixed}
    lines = [f"{p}\t{size}\t{h}\n" for p, (size, h) in sorted(entries.items())]
    return "tree:" + hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
