"""Content hashes, the on-disk hash cache and dataset fingerprints.

* :func:`file_sha256` streams a file through SHA-256 in 1 MiB chunks.
* :class:`HashCache` is a SQLite file (``hashes.sqlite`` in
  :meth:`HashCache.default_dir`) that remembers, per absolute path, the
  ``(size, mtime_ns, inode)`` the file had when it was read, its SHA-256 and
  optionally the image summary made from it (:mod:`audit.images.summary`). An entry
  is valid only while all four key values match, so a second run over an
  unchanged dataset reads no file at all, and touching, rewriting or replacing
  a file makes it read again. A cache folder that cannot be created or
  written, or a damaged cache file, never stops an audit: the cache falls back
  to memory and says why in :attr:`HashCache.problem`.
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
import sqlite3
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, NamedTuple

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
_SCHEMA_VERSION = 1
_ANNEX_SIZE = re.compile(r"-s(\d+)--")
_THREADS = min(8, 2 * (os.cpu_count() or 1))  # file hashing waits on I/O; hashlib releases the GIL


class CacheKey(NamedTuple):
    """What identifies one version of a file: absolute path and its stat."""

    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> CacheKey:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino)


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
class HashCache:
    """Hashes (and image summaries) of files, keyed by (absolute path, size, mtime_ns, inode).

    Parameters
    ----------
    directory : path-like, optional
        Folder of the cache file ``hashes.sqlite`` (created if needed).
        ``None``: :meth:`default_dir`.
    memory : bool
        Keep the cache in memory only (nothing written to disk).

    Attributes
    ----------
    path : Path or None
        The SQLite file, ``None`` when the cache lives in memory.
    problem : str or None
        Why the cache is in memory or stopped writing, when it was not asked to.
    hits, misses : int
        Lookups answered / not answered by the cache since it was opened.
    bytes_read : int
        Bytes read from data files on behalf of this cache's users.

    Notes
    -----
    One SQLite transaction per batch (``executemany``), WAL journal, so a
    lookup or a store of 160,000 entries takes a fraction of a second and
    several processes may share one cache file. Safe to share between threads.
    """

    FILENAME = "hashes.sqlite"
    _defaults: dict[str, HashCache] = {}
    _defaults_lock = threading.Lock()

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, memory: bool = False) -> None:
        self.hits = 0
        self.misses = 0
        self.bytes_read = 0
        self.problem: str | None = None
        self.path: Path | None = None
        self._lock = threading.RLock()
        self._writable = True
        self._conn: sqlite3.Connection | None = None
        if not memory:
            folder = Path(directory) if directory is not None else self.default_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._conn = self._open(folder / self.FILENAME)
                self.path = folder / self.FILENAME
            except (OSError, sqlite3.Error) as err:
                self.problem = f"hash cache {folder / self.FILENAME} cannot be used ({_describe(err)}); kept in memory"
                self._conn = None
        if self._conn is None:
            self._conn = self._open(":memory:")

    # -------------------------------------------------------------- opening
    @staticmethod
    def default_dir() -> Path:
        """``$BIDSAUDIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/bidsaudit``, else ``~/.cache/bidsaudit``."""
        env = os.environ.get("BIDSAUDIT_CACHE_DIR")
        if env:
            return Path(env).expanduser()
        xdg = os.environ.get("XDG_CACHE_HOME")
        if xdg:
            return Path(xdg).expanduser() / "bidsaudit"
        return Path.home() / ".cache" / "bidsaudit"

    @classmethod
    def default(cls) -> HashCache:
        """The process-wide cache in :meth:`default_dir` (one instance per folder).

        Sharing one instance means that a cache which fell back to memory is
        still shared by the image pass and the fingerprint of one audit.
        """
        key = str(cls.default_dir())
        with cls._defaults_lock:
            cache = cls._defaults.get(key)
            if cache is None:
                cache = cls._defaults[key] = cls(key)
            return cache

    @staticmethod
    def _open(target: Path | str) -> sqlite3.Connection:
        conn = sqlite3.connect(str(target), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            if target != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                conn.execute("DROP TABLE IF EXISTS entries")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
                " inode INTEGER NOT NULL, sha256 TEXT, summary_version TEXT, summary TEXT) WITHOUT ROWID"
            )
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS q ("
                         " path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER)")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"HashCache({where}, hits={self.hits}, misses={self.misses}, bytes_read={self.bytes_read})"

    # -------------------------------------------------------------- lookups
    def _lookup(self, keys: Sequence[CacheKey], columns: str) -> list[tuple[object, ...]]:
        if not keys or self._conn is None:
            return []
        conn = self._conn
        try:
            conn.execute("BEGIN")
            try:
                conn.execute("DELETE FROM q")
                conn.executemany("INSERT OR REPLACE INTO q VALUES (?, ?, ?, ?)", keys)
                rows = conn.execute(
                    f"SELECT e.path, {columns} FROM q JOIN entries e ON e.path = q.path AND e.size = q.size"
                    " AND e.mtime_ns = q.mtime_ns AND e.inode = q.inode"
                ).fetchall()
                conn.execute("DELETE FROM q")
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._note(err)
            return []
        return rows

    def get_hashes(self, keys: Sequence[CacheKey]) -> dict[str, str]:
        """SHA-256 (hex) of the files whose key matches an entry, by absolute path."""
        with self._lock:
            rows = self._lookup(keys, "e.sha256")
            out = {str(p): str(h) for p, h in rows if h}
            self.hits += len(out)
            self.misses += len(keys) - len(out)
        return out

    def get_summaries(self, keys: Sequence[CacheKey], version: str) -> dict[str, tuple[str | None, str]]:
        """``(sha256, summary JSON)`` of the files whose key matches an entry made by ``version``."""
        with self._lock:
            rows = self._lookup(keys, "e.sha256, e.summary_version, e.summary")
            out = {str(p): (None if h is None else str(h), str(s))
                   for p, h, v, s in rows if v == version and s is not None}
            self.hits += len(out)
            self.misses += len(keys) - len(out)
        return out

    def get_hash(self, key: CacheKey) -> str | None:
        return self.get_hashes([key]).get(key.path)

    # --------------------------------------------------------------- stores
    _SAME = ("entries.size = excluded.size AND entries.mtime_ns = excluded.mtime_ns"
             " AND entries.inode = excluded.inode")

    def put_hashes(self, items: Iterable[tuple[CacheKey, str]]) -> None:
        """Remember SHA-256 digests (one transaction); a stale entry for the path is replaced."""
        rows = [(k.path, k.size, k.mtime_ns, k.inode, h) for k, h in items]
        self._store(
            "INSERT INTO entries (path, size, mtime_ns, inode, sha256) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET "
            f"summary_version = CASE WHEN {self._SAME} THEN entries.summary_version END, "
            f"summary = CASE WHEN {self._SAME} THEN entries.summary END, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256",
            rows,
        )

    def put_summaries(self, items: Iterable[tuple[CacheKey, str | None, str]], version: str) -> None:
        """Remember ``(key, sha256 or None, summary JSON)`` made by ``version`` (one transaction)."""
        rows = [(k.path, k.size, k.mtime_ns, k.inode, h, version, s) for k, h, s in items]
        self._store(
            "INSERT INTO entries (path, size, mtime_ns, inode, sha256, summary_version, summary) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            f"sha256 = COALESCE(excluded.sha256, CASE WHEN {self._SAME} THEN entries.sha256 END), "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, "
            "summary_version = excluded.summary_version, summary = excluded.summary",
            rows,
        )

    def _store(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        with self._lock:
            if not self._writable or self._conn is None:
                return
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, rows)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._note(err)
                self._writable = False

    def _note(self, err: BaseException) -> None:
        if self.problem is None:
            self.problem = f"hash cache {self.path or 'in memory'} failed ({_describe(err)}); results not cached"

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            except sqlite3.Error:
                return 0


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


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
            return label, key, None, 0, None, _describe(err)

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
