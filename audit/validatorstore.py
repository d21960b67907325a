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
from audit.validatorshards import ShardResult

__all__ = ["HASHED_MAX_BYTES", "ShardStore", "subject_digests", "view_key"]

#: Files up to this size are keyed by content (sidecars, tables); larger ones by size and mtime.
HASHED_MAX_BYTES = 1 << 20
_VERSION = 1


class ShardStore:
    """Shard results by key, in SQLite (``directory``/validator-shards.sqlite) or in memory."""

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
            conn.execute("DROP TABLE IF EXISTS shards")
            conn.execute(f"PRAGMA user_version={_VERSION}")
        conn.execute("CREATE TABLE IF NOT EXISTS shards (key TEXT PRIMARY KEY, result BLOB NOT NULL) WITHOUT ROWID")
        return conn

    def get(self, key: str) -> ShardResult | None:
        """The stored result of ``key``, or ``None``."""
        with self._lock:
            try:
                row = self._conn.execute("SELECT result FROM shards WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
        if row is None:
            return None
        try:
            return _decode(json.loads(zlib.decompress(row[0])))
        except (ValueError, KeyError, TypeError, zlib.error):
            return None  # a damaged entry: validated again

    def put(self, key: str, result: ShardResult) -> None:
        """Store a successful result (failed ones are never stored)."""
        if result.failure is not None:
            return
        blob = zlib.compress(json.dumps(_encode(result)).encode("utf-8"), 3)
        with self._lock:
            try:
                self._conn.execute("INSERT OR REPLACE INTO shards VALUES (?, ?)", (key, blob))
            except sqlite3.Error as err:
                self.problem = f"shard store stopped writing ({err})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _encode(r: ShardResult) -> dict[str, Any]:
    out = asdict(r)
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
    return ShardResult(**{**d, "subjects": tuple(d["subjects"]), "codes": codes})


# ---------------------------------------------------------------------------------------------- keys
def _files(folder: Path, base: Path) -> Iterable[tuple[str, os.stat_result | None, str]]:
    """(relative path, stat or None, absolute path) of every file below ``folder`` (links followed)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".datalad"))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st: os.stat_result | None = os.stat(full)
            except OSError:
                st = None
            yield os.path.relpath(full, base), st, full


def _digests(groups: Mapping[str, list[tuple[str, os.stat_result | None, str]]], cache: HashCache
             ) -> dict[str, str]:
    """One digest per group of files; the small files' hashes looked up in one batch, the misses read."""
    pending: list[tuple[str, str, CacheKey]] = []
    lines: dict[str, list[tuple[str, str]]] = {g: [] for g in groups}
    for group, entries in groups.items():
        for rel, st, full in entries:
            if st is None:
                try:
                    lines[group].append((rel, f"link:{os.readlink(full)}"))
                except OSError:
                    lines[group].append((rel, "unreadable"))
            elif st.st_size > HASHED_MAX_BYTES:
                lines[group].append((rel, f"{st.st_size}:{st.st_mtime_ns}"))
            else:
                pending.append((group, rel, CacheKey.from_stat(full, st)))
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


def subject_digests(dataset: Path, subjects: Sequence[str], cache: HashCache
                    ) -> tuple[str, dict[str, str], dict[str, frozenset[str]]]:
    """The digest of the top level (every file outside the ``sub-*`` folders), one per subject, and each
    subject's datatype folders (``anat``, ``fmap``...; sessions looked into), from one walk."""
    dataset = Path(dataset)
    top: list[tuple[str, os.stat_result | None, str]] = []
    with os.scandir(dataset) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("sub-") and entry.is_dir():
            continue
        if entry.name in (".git", ".datalad"):
            continue
        if entry.is_dir():
            top.extend(_files(Path(entry.path), dataset))
        else:
            try:
                top.append((entry.name, os.stat(entry.path), entry.path))
            except OSError:
                top.append((entry.name, None, entry.path))
    groups: dict[str, list[tuple[str, os.stat_result | None, str]]] = {"": top}
    datatypes: dict[str, frozenset[str]] = {}
    for sub in subjects:
        files = list(_files(dataset / sub, dataset))
        groups["/" + sub] = files
        kinds = set()
        for rel, _, _ in files:
            parts = rel.split(os.sep)  # sub-X/[ses-Y/]datatype/file
            depth = 2 if parts[1].startswith("ses-") else 1
            if len(parts) > depth + 1:
                kinds.add(parts[depth])
        datatypes[sub] = frozenset(kinds)
    digests = _digests(groups, cache)
    return digests.pop(""), {s[1:]: d for s, d in digests.items()}, datatypes


def view_key(options: Mapping[str, Any], top_digest: str, subjects: Mapping[str, str] | Sequence[str],
             *, kind: str) -> str:
    """The key of one view: the options, the top level and its subjects (digests, or names for the top view)."""
    body = json.dumps({"kind": kind, "options": options, "top": top_digest, "subjects": subjects}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
