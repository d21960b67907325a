"""Stored shard results of the official validator, keyed by the content of the files each shard saw.

A shard's key (:func:`view_keys`) is a SHA-256 over the validator's version
and options, the top level's files and the files of the shard's subjects
(and its witness subjects): per file its path, its size and its content hash
from the hash cache (:class:`~audit.hashing.HashCache`: a file unchanged since
it was last hashed is not read again) for files up to :data:`HASHED_MAX_BYTES`;
larger files (images, whose headers the validator reads) by size and
modification time, which is what the cache would key them by anyway. Editing
a file inside ``sub-07/`` changes the key of the one shard holding ``sub-07``;
editing a top-level file (``participants.tsv``, a top-level sidecar that
every subject inherits) changes every key, since every shard sees the top
level. The results live in ``validator-shards.sqlite`` beside the hash cache;
a store that cannot be opened falls back to memory and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audit.hashing import CacheKey, HashCache
from audit.validatoroutput import CodeSummary
from audit.validatorshards import ShardResult, pack_parts, unpack_parts

__all__ = ["HASHED_MAX_BYTES", "ShardStore", "subject_digests", "view_ident", "view_key"]

#: Files up to this size are keyed by content (sidecars, tables); larger ones by size and mtime.
HASHED_MAX_BYTES = 1 << 20
_VERSION = 2  # 2: per-subject counts, shard identities, folder stat digests


class ShardStore:
    """Shard results by key, in SQLite (``directory``/validator-shards.sqlite) or in memory.

    Besides each result (the aggregated issues: what a re-run with nothing
    changed loads) a row keeps, read only when a shard is patched, the
    per-subject issue counts and the digests of the subjects it saw; a shard's
    *identity* (:func:`view_ident`) points to its latest stored key; and per
    dataset the stat digest and content digest of every subject folder, so a
    re-run reads no hash for a folder whose files' (size, mtime, inode) did not
    change.
    """

    FILENAME = "validator-shards.sqlite"

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, memory: bool = False) -> None:
        self.problem: str | None = None
        self.path: Path | None = None
        self._lock = threading.Lock()
        conn = None
        if not memory:
            folder = Path(directory) if directory is not None else HashCache.default_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                conn = self._open(str(folder / self.FILENAME))
                self.path = folder / self.FILENAME
            except (OSError, sqlite3.Error) as err:
                self.problem = f"shard store {folder / self.FILENAME} cannot be used ({err}); kept in memory"
        self._conn = conn or self._open(":memory:")

    @staticmethod
    def _open(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False)
        if target != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
            for table in ("shards", "latest", "folders"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"PRAGMA user_version={_VERSION}")
        conn.execute("CREATE TABLE IF NOT EXISTS shards (key TEXT PRIMARY KEY, result BLOB NOT NULL, parts BLOB, "
                     "digests BLOB) WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS latest (ident TEXT PRIMARY KEY, key TEXT NOT NULL) WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS folders (root TEXT PRIMARY KEY, digests BLOB NOT NULL) WITHOUT ROWID")
        return conn

    def _one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            try:
                row: tuple[Any, ...] | None = self._conn.execute(sql, args).fetchone()
                return row
            except sqlite3.Error:
                return None

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._conn.execute(sql, args)
            except sqlite3.Error as err:
                self.problem = f"shard store stopped writing ({err})"

    def get(self, key: str) -> ShardResult | None:
        """The stored result of ``key`` (without its per-subject counts: :meth:`parts`), or ``None``."""
        row = self._one("SELECT result FROM shards WHERE key = ?", (key,))
        if row is None:
            return None
        try:
            return _decode(_unpack(row[0]))
        except (ValueError, KeyError, TypeError, zlib.error):
            return None  # a damaged entry: validated again

    def parts(self, key: str) -> tuple[dict[tuple[str, str, str, str | None], int], dict[str, str]] | None:
        """The per-subject issue counts stored with ``key`` and the digests of the subjects it saw."""
        row = self._one("SELECT parts, digests FROM shards WHERE key = ?", (key,))
        if row is None or row[0] is None or row[1] is None:
            return None
        try:
            return unpack_parts(row[0]), dict(_unpack(row[1]))
        except (ValueError, KeyError, TypeError, IndexError, zlib.error):
            return None

    def put(self, key: str, result: ShardResult, *, ident: str | None = None,
            digests: Mapping[str, str] | None = None) -> None:
        """Store a successful result (failed ones are never stored); ``ident`` then points to it."""
        if result.failure is not None:
            return
        parts = result.packed or pack_parts(result.parts)
        self._write("INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?)",
                    (key, _pack(_encode(result)), parts, _pack(dict(digests or {}))))
        if ident is not None:
            self._write("INSERT OR REPLACE INTO latest VALUES (?, ?)", (ident, key))

    def latest(self, ident: str) -> str | None:
        """The key last stored for a shard of this identity."""
        row = self._one("SELECT key FROM latest WHERE ident = ?", (ident,))
        return None if row is None else str(row[0])

    def folders(self, root: str) -> dict[str, list[str]]:
        """Per folder of the dataset at ``root``: [stat digest, content digest] as last stored."""
        row = self._one("SELECT digests FROM folders WHERE root = ?", (root,))
        if row is None:
            return {}
        try:
            return dict(_unpack(row[0]))
        except (ValueError, TypeError, zlib.error):
            return {}

    def put_folders(self, root: str, digests: Mapping[str, Sequence[str]]) -> None:
        self._write("INSERT OR REPLACE INTO folders VALUES (?, ?)", (root, _pack(dict(digests))))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode("utf-8"), 3)


def _unpack(blob: bytes) -> Any:
    return json.loads(zlib.decompress(blob))


def _encode(r: ShardResult) -> dict[str, Any]:
    out = {k: v for k, v in asdict(r).items() if k not in ("parts", "packed", "issues")}
    out["codes"] = {c: {**{k: v for k, v in asdict(s).items() if k != "_shown"}, "subjects": sorted(s.subjects)}
                    for c, s in r.codes.items()}
    return out


def _decode(d: Mapping[str, Any]) -> ShardResult:
    codes = {}
    for c, s in d["codes"].items():
        summary = CodeSummary(**{**s, "subjects": set(s["subjects"])})
        for ex in summary.examples:
            sev = ex.get("severity", summary.severity)
            summary._shown[sev] = summary._shown.get(sev, 0) + 1
        codes[c] = summary
    return ShardResult(**{**d, "subjects": tuple(d["subjects"]), "witnesses": tuple(d.get("witnesses") or ()),
                          "codes": codes})


# ---------------------------------------------------------------------------------------------- keys
#: (relative path, size, mtime_ns, inode) of one file; size -1: it could not be stat'ed (a dangling link).
_Entry = tuple[str, int, int, int]
#: Files whose digests are computed together (one batched hash-cache lookup), bounding memory at any size.
_BATCH = 50_000


def _files(folder: str, rel: str, out: list[_Entry]) -> None:
    """Append an entry for every file below ``folder`` (links followed), paths relative to the dataset."""
    stack = [(folder, rel)]
    while stack:
        here, prefix = stack.pop()
        try:
            it = os.scandir(here)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if e.name not in (".git", ".datalad"):
                        stack.append((e.path, prefix + os.sep + e.name))
                    continue
                try:
                    st = e.stat()
                    out.append((prefix + os.sep + e.name, st.st_size, st.st_mtime_ns, st.st_ino))
                except OSError:
                    out.append((prefix + os.sep + e.name, -1, 0, 0))


def _stat_digest(entries: Sequence[_Entry]) -> str:
    """A digest of the files' names and (size, mtime_ns, inode): equal means nothing needs reading."""
    lines = sorted(f"{r}\t{size}\t{mtime}\t{ino}\n" for r, size, mtime, ino in entries)
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _digests(root: str, groups: Mapping[str, Sequence[_Entry]], cache: HashCache) -> dict[str, str]:
    """One content digest per group of files; the small files' hashes looked up in one batch, the misses read."""
    pending: list[tuple[str, str, CacheKey]] = []
    lines: dict[str, list[tuple[str, str]]] = {g: [] for g in groups}
    for group, entries in groups.items():
        for rel, size, mtime, ino in entries:
            full = os.path.join(root, rel)
            if size < 0:
                try:
                    lines[group].append((rel, f"link:{os.readlink(full)}"))
                except OSError:
                    lines[group].append((rel, "unreadable"))
            elif size > HASHED_MAX_BYTES:
                lines[group].append((rel, f"{size}:{mtime}"))
            else:
                pending.append((group, rel, CacheKey(full, size, mtime, ino)))
    known = cache.get_hashes([k for _, _, k in pending])
    store = []
    for group, rel, key in pending:
        h = known.get(key.path)
        if h is None:
            try:
                with open(key.path, "rb") as fh:
                    h = hashlib.sha256(fh.read()).hexdigest()
                store.append((key, h))
            except OSError:
                h = "unreadable"
        lines[group].append((rel, f"{key.size}:{h}"))
    cache.put_hashes(store)
    return {g: hashlib.sha256("".join(f"{r}\t{v}\n" for r, v in sorted(ls)).encode("utf-8", "surrogateescape")
                              ).hexdigest() for g, ls in lines.items()}


def subject_digests(dataset: Path, subjects: Sequence[str], cache: HashCache, store: ShardStore | None = None
                    ) -> tuple[str, dict[str, str], dict[str, frozenset[str]]]:
    """The digest of the top level (every file outside the ``sub-*`` folders), one per subject, and each
    subject's datatype folders (``anat``, ``fmap``...; sessions looked into), from one walk.

    With ``store``, a folder whose files' names and stat are those stored keeps its stored digest (no
    hash looked up or read); the others are hashed through ``cache``, in batches (memory stays bounded).
    """
    dataset = Path(dataset)
    root = str(dataset)
    where = str(dataset.resolve())  # the same dataset by any path
    known = store.folders(where) if store is not None else {}
    stats: dict[str, str] = {}
    digests: dict[str, str] = {}
    pending: dict[str, list[_Entry]] = {}
    waiting = 0

    def take(group: str, files: list[_Entry]) -> None:
        nonlocal waiting
        stats[group] = st = _stat_digest(files)
        old = known.get(group)
        if old is not None and old[0] == st:
            digests[group] = old[1]
            return
        pending[group] = files
        waiting += len(files)
        if waiting >= _BATCH:
            digests.update(_digests(root, pending, cache))
            pending.clear()
            waiting = 0

    top: list[_Entry] = []
    with os.scandir(dataset) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("sub-") and entry.is_dir():
            continue
        if entry.name in (".git", ".datalad"):
            continue
        if entry.is_dir():
            _files(entry.path, entry.name, top)
        else:
            try:
                st = os.stat(entry.path)
                top.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                top.append((entry.name, -1, 0, 0))
    take("", top)
    datatypes: dict[str, frozenset[str]] = {}
    for sub in subjects:
        files: list[_Entry] = []
        _files(os.path.join(root, sub), sub, files)
        kinds = set()
        for rel, *_ in files:
            parts = rel.split(os.sep)  # sub-X/[ses-Y/]datatype/file
            depth = 2 if parts[1].startswith("ses-") else 1
            if len(parts) > depth + 1:
                kinds.add(parts[depth])
        datatypes[sub] = frozenset(kinds)
        take("/" + sub, files)
    digests.update(_digests(root, pending, cache))
    if store is not None and (len(known) != len(stats)
                              or any(known.get(g, ("",))[0] != st for g, st in stats.items())):
        store.put_folders(where, {g: [st, digests[g]] for g, st in stats.items()})
    top_digest = digests.pop("")
    return top_digest, {s[1:]: d for s, d in digests.items()}, datatypes


def view_key(options: Mapping[str, Any], top_digest: str, subjects: Mapping[str, str] | Sequence[str],
             *, kind: str) -> str:
    """The key of one view: the options, the top level and its subjects (digests, or names for the top view)."""
    body = json.dumps({"kind": kind, "options": options, "top": top_digest, "subjects": subjects}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def view_ident(options: Mapping[str, Any], top_digest: str, subjects: Sequence[str], witnesses: Sequence[str],
               datatypes: Iterable[str]) -> str:
    """A shard's identity across edits of its subjects' files: the options, the top level, its subjects' and
    witnesses' names and the dataset's datatypes (a stored result of the same identity may be patched:
    :mod:`audit.validatorpatch`)."""
    body = json.dumps({"options": options, "top": top_digest, "subjects": list(subjects),
                       "witnesses": list(witnesses), "datatypes": sorted(datatypes)}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
