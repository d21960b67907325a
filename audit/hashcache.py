"""The on-disk hash cache: SQLite, keyed by a file's path and stat, every value checked by a CRC-32.

:class:`HashCache` is a SQLite file (``hashes.sqlite`` in
:meth:`HashCache.default_dir`) that remembers, per absolute path, the
``(size, mtime_ns, inode)`` the file had when it was read (its
:class:`CacheKey`), its SHA-256 and optionally the image summary made from
it. A cache folder that cannot be created or written never stops an audit:
the cache falls back to memory and says why in :attr:`HashCache.problem`.
A damaged cache file is moved aside (``hashes.sqlite.corrupt``) and rebuilt
empty, with a warning; a damaged entry (its CRC-32 does not match) is a
miss, never a wrong hash. :mod:`audit.hashing` re-exports both names.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["CacheKey", "HashCache", "describe_os_error"]

_LOG = logging.getLogger("bidsaudit.cache")
_SCHEMA_VERSION = 2  # 2: a CRC-32 per cached value (a damaged entry is a miss, never a wrong hash)


class CacheKey(NamedTuple):
    """What identifies one version of a file: absolute path and its stat."""

    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> CacheKey:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino)


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
        self.damaged = 0  # entries whose CRC-32 did not match (ignored)
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
                self._conn = self._open_or_rebuild(folder / self.FILENAME)
                self.path = folder / self.FILENAME
            except (OSError, sqlite3.Error) as err:
                self.problem = f"hash cache {folder / self.FILENAME} cannot be used ({describe_os_error(err)}); kept in memory"
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

    def _open_or_rebuild(self, target: Path) -> sqlite3.Connection:
        """Open the cache file; a damaged one is moved aside (``.corrupt``) and rebuilt empty, with a warning."""
        try:
            conn = self._open(target)
            if conn.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok":
                return conn
            conn.close()
            why = "it failed SQLite's quick_check"
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError):  # locked, read-only, cannot open: not damage
                raise
            why = describe_os_error(err)
        aside = target.with_name(target.name + ".corrupt")
        os.replace(target, aside)
        for extra in ("-wal", "-shm"):
            try:
                os.unlink(f"{target}{extra}")
            except FileNotFoundError:
                pass
        self._warn(f"hash cache {target} was damaged ({why}); rebuilt empty (the damaged file is kept as {aside})")
        return self._open(target)

    def _warn(self, message: str) -> None:
        self.problem = self.problem or message
        _LOG.warning("bidsaudit: warning: %s", message)

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
                " inode INTEGER NOT NULL, sha256 TEXT, summary_version TEXT, summary TEXT,"
                " sha_chk INTEGER, sum_chk INTEGER) WITHOUT ROWID"
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

    def _checked(self, rows: list[tuple[object, ...]], value: int, chk: int) -> list[tuple[object, ...]]:
        """The rows whose value columns (``value`` on) match their CRC-32 (column ``chk``); warns of the rest."""
        good = [r for r in rows if r[chk] == _crc(r[1:4] + r[value:chk])]
        if len(good) < len(rows):
            self.damaged += len(rows) - len(good)
            self._warn(f"hash cache {self.path or 'in memory'}: {len(rows) - len(good)} damaged entries ignored "
                       "(their files are read again)")
        return good

    def get_hashes(self, keys: Sequence[CacheKey]) -> dict[str, str]:
        """SHA-256 (hex) of the files whose key matches an entry, by absolute path."""
        with self._lock:
            rows = self._checked(self._lookup(keys, "e.size, e.mtime_ns, e.inode, e.sha256, e.sha_chk"), 4, 5)
            out = {str(r[0]): str(r[4]) for r in rows if r[4]}
            self.hits += len(out)
            self.misses += len(keys) - len(out)
        return out

    def get_summaries(self, keys: Sequence[CacheKey], version: str) -> dict[str, tuple[str | None, str]]:
        """``(sha256, summary JSON)`` of the files whose key matches an entry made by ``version``."""
        with self._lock:
            rows = self._lookup(keys, "e.size, e.mtime_ns, e.inode, e.sha256, e.sha_chk, e.summary_version, "
                                "e.summary, e.sum_chk")
            rows = [r for r in rows if r[6] == version and r[7] is not None]
            rows = self._checked(rows, 6, 8)
            rows = [r if r[4] is None or r[5] == _crc(r[1:5]) else (*r[:4], None, *r[5:]) for r in rows]
            out = {str(r[0]): (None if r[4] is None else str(r[4]), str(r[7])) for r in rows}
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
        rows = [(k.path, k.size, k.mtime_ns, k.inode, h, _crc((k.size, k.mtime_ns, k.inode, h))) for k, h in items]
        self._store(
            "INSERT INTO entries (path, size, mtime_ns, inode, sha256, sha_chk) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET "
            f"summary_version = CASE WHEN {self._SAME} THEN entries.summary_version END, "
            f"summary = CASE WHEN {self._SAME} THEN entries.summary END, "
            f"sum_chk = CASE WHEN {self._SAME} THEN entries.sum_chk END, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256, "
            "sha_chk = excluded.sha_chk",
            rows,
        )

    def put_summaries(self, items: Iterable[tuple[CacheKey, str | None, str]], version: str) -> None:
        """Remember ``(key, sha256 or None, summary JSON)`` made by ``version`` (one transaction)."""
        rows = [(k.path, k.size, k.mtime_ns, k.inode, h,
                 None if h is None else _crc((k.size, k.mtime_ns, k.inode, h)),
                 version, s, _crc((k.size, k.mtime_ns, k.inode, version, s))) for k, h, s in items]
        self._store(
            "INSERT INTO entries (path, size, mtime_ns, inode, sha256, sha_chk, summary_version, summary, sum_chk) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            f"sha256 = COALESCE(excluded.sha256, CASE WHEN {self._SAME} THEN entries.sha256 END), "
            "sha_chk = CASE WHEN excluded.sha256 IS NOT NULL THEN excluded.sha_chk "
            f"WHEN {self._SAME} THEN entries.sha_chk END, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, "
            "summary_version = excluded.summary_version, summary = excluded.summary, sum_chk = excluded.sum_chk",
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
            self.problem = f"hash cache {self.path or 'in memory'} failed ({describe_os_error(err)}); results not cached"

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            except sqlite3.Error:
                return 0


def _crc(values: Sequence[object]) -> int:
    """CRC-32 of a cache entry's key and value (``\x1f``-separated), to tell a damaged entry from a good one."""
    return zlib.crc32("\x1f".join("" if v is None else str(v) for v in values).encode())


def describe_os_error(err: BaseException) -> str:
    """The reason of an error in a few words (an OSError's strerror)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
