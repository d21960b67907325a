"""Confirmation scores of distinct pairs kept across audits, keyed by the two images' content hashes.

The confirmation stage (:mod:`audit.images.confirmpairs`) scores a few dozen
random pairs of different participants per group (the group's null): the
same pairs of the same images every time a dataset is audited (the draw is
seeded by the group's name). :class:`NullCache` keeps each such score under
``sha256(sorted content hashes, CONFIRM_VERSION)``, so a CI job that audits
an unchanged dataset again pays for none of them; an image whose voxels
change gets a new content hash and is scored again.

The file is ``confirm-null.sqlite`` in the hash cache's folder
(:meth:`audit.hashing.HashCache.default_dir`); when it cannot be used, the
scores are kept in memory for the process.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from audit.hashing import HashCache
from audit.images import confirm, confirmprep

__all__ = ["CONFIRM_VERSION", "NullCache", "pair_key"]

#: Changes with the confirmation's definition (its working resolution, registration levels and band).
#: confirm2: block means taken from the stored values (:mod:`audit.images.confirmprep`): scores as before to
#: about 1e-6, not bit for bit.
CONFIRM_VERSION = (f"confirm2-{confirmprep.WORK_MM:g}-{confirm.LEVELS}-{confirm.LEVEL_STEP}-{confirm.LEVEL_POINTS}-"
                   f"{confirm.LEVEL_ITERS}-{confirm.N_REFINE}-{confirm.BAND}-{confirmprep.CROP_MARGIN_MM:g}")


def pair_key(hash_a: str, hash_b: str) -> str:
    """The cache key of a pair (order-free).

    >>> pair_key("a", "b") == pair_key("b", "a")
    True
    """
    lo, hi = sorted((hash_a, hash_b))
    return hashlib.sha256(f"{lo}|{hi}|{CONFIRM_VERSION}".encode()).hexdigest()


class NullCache:
    """Scores by pair key, in ``directory/confirm-null.sqlite`` (``memory=True``: in memory only).

    >>> c = NullCache(memory=True)
    >>> c.put({pair_key("a", "b"): 0.25})
    >>> c.get([pair_key("b", "a"), pair_key("a", "c")]) == {pair_key("a", "b"): 0.25}
    True
    """

    FILENAME = "confirm-null.sqlite"

    def __init__(self, directory: str | Path | None = None, *, memory: bool = False) -> None:
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if not memory:
            folder = Path(directory) if directory is not None else HashCache.default_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._conn = self._open(str(folder / self.FILENAME))
            except (OSError, sqlite3.Error) as err:
                self.problem = f"{folder / self.FILENAME} cannot be used ({type(err).__name__}: {err}); kept in memory"
        if self._conn is None:
            self._conn = self._open(":memory:")

    @staticmethod
    def _open(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=10.0, check_same_thread=False)
        conn.execute("CREATE TABLE IF NOT EXISTS null_scores (key TEXT PRIMARY KEY, score REAL NOT NULL)")
        conn.commit()
        return conn

    def get(self, keys: Sequence[str]) -> dict[str, float]:
        """The scores known for ``keys``."""
        out: dict[str, float] = {}
        if not keys:
            return out
        assert self._conn is not None
        with self._lock:
            try:
                for s in range(0, len(keys), 500):
                    part = list(keys[s:s + 500])
                    rows = self._conn.execute(
                        f"SELECT key, score FROM null_scores WHERE key IN ({','.join('?' * len(part))})", part)
                    out.update((k, float(v)) for k, v in rows)
            except sqlite3.Error as err:
                self.problem = f"null score cache lookup failed ({err})"
        return out

    def put(self, scores: Mapping[str, float] | Iterable[tuple[str, float]]) -> None:
        """Keep ``scores`` (a failure to write is noted in :attr:`problem`, never raised)."""
        rows = list(scores.items() if isinstance(scores, Mapping) else scores)
        if not rows:
            return
        assert self._conn is not None
        with self._lock:
            try:
                self._conn.executemany("INSERT OR REPLACE INTO null_scores (key, score) VALUES (?, ?)", rows)
                self._conn.commit()
            except sqlite3.Error as err:
                self.problem = f"null score cache write failed ({err})"
