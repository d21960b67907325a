"""The trainer's content-addressed tensor cache on disk, and the byte budget of the volumes it keeps in memory.

Importing this module does not import torch.

An entry is one array, keyed by the certified content hash of the image it
came from and a digest of what produced it (decoding, or a fitted
preprocessing and the stored dtype). It is a standard ``.npy`` file, so it is
read with ``np.load(path, mmap_mode="r")``, followed by a trailer::

    <npy header><payload><JSON meta><8-byte little-endian JSON length><MAGIC>

The meta holds the content hash, the digest, the shape, the dtype and a
BLAKE2b checksum of the payload. An entry is written in one piece to a
temporary file and renamed (:func:`audit.fsutil.atomic_write_bytes`), and is
checked on its first open in a run (meta and checksum); an entry that fails
(truncated, corrupt, written for other content or other preprocessing) is
removed and never used: the caller computes it again. So the gate's
guarantee (the bytes trained on are the bytes the audit saw) extends to the
cache.

>>> parse_size("512M"), parse_size("2G"), parse_size("1.5k")
(536870912, 2147483648, 1536)
>>> b = MemoryBudget(200)
>>> b.put("a", np.zeros(20, np.float32)), b.put("b", np.zeros(20, np.float32)), b.held
(True, True, 160)
>>> b.put("c", np.zeros(20, np.float32)), "a" in b, b.held   # the least recently used goes
(True, False, 160)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import InputError
from audit.fsutil import atomic_write_bytes

__all__ = [
    "CACHE_DTYPES",
    "DEFAULT_MAX_MEMORY",
    "MemoryBudget",
    "TensorCache",
    "cache_info",
    "clean_cache",
    "default_cache_dir",
    "digest",
    "parse_size",
]

MAGIC = b"BIDSAUDIT-TNSR-1"
CACHE_DTYPES = ("float32", "float16")
DEFAULT_MAX_MEMORY = "1G"
_LAYOUT = "v1"  # folder of this entry format under the cache root
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_NAME_RE = re.compile(r"^[0-9a-f]{64}-[0-9a-f]{16}\.npy$")


def parse_size(text: str | int, *, field: str = "--max-memory") -> int:
    """Bytes of a size such as ``512M``, ``2G``, ``2GiB`` or ``1048576`` (binary units).

    Raises
    ------
    InputError
        Not a size.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InputError(None, field=field, expected="a size of 0 or more", got=str(text))
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise InputError(None, field=field, expected="a size such as 512M, 2G or a number of bytes", got=repr(text))
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def default_cache_dir() -> Path:
    """Where the tensor cache lives unless ``--cache-dir`` says otherwise.

    ``$BIDSAUDIT_CACHE_DIR/tensors``; else the user cache folder of
    ``platformdirs`` (when installed) ``/tensors``; else
    ``$XDG_CACHE_HOME/bidsaudit/tensors`` or ``~/.cache/bidsaudit/tensors``.
    """
    env = os.environ.get("BIDSAUDIT_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "tensors"
    try:
        import platformdirs
    except ImportError:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        return base / "bidsaudit" / "tensors"
    return Path(platformdirs.user_cache_dir("bidsaudit", appauthor=False)) / "tensors"


def digest(spec: Mapping[str, Any]) -> str:
    """16 hex digits naming what produced an entry (a JSON-able description, keys sorted)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checksum(arr: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    flat = arr.reshape(-1)
    step = max(1, (8 << 20) // max(arr.itemsize, 1))  # 8 MB at a time: a memory map is paged in piecewise
    for a in range(0, flat.size, step):
        h.update(np.ascontiguousarray(flat[a:a + step]).data)
    return h.hexdigest()


class TensorCache:
    """Entries under ``root/v1/<2 hex>/<sha256>-<digest>.npy``, each verified on its first open in this process.

    Attributes
    ----------
    written, opened, rejected : int
        Entries written, opened (memory-mapped) and refused (and removed) by this instance.
    problems : list of str
        Why each refused entry was refused (first 20).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._verified: set[str] = set()
        self.written = self.opened = self.rejected = 0
        self.problems: list[str] = []

    def path(self, key: str, dig: str) -> Path:
        sha = key.split(":")[-1].lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"not a sha256 content hash: {key!r}")
        return self.root / _LAYOUT / sha[:2] / f"{sha}-{dig}.npy"

    def save(self, key: str, dig: str, arr: np.ndarray, extra: Mapping[str, Any] | None = None) -> Path | None:
        """Write an entry atomically; ``None`` when the folder cannot be written (the run goes on without it)."""
        arr = np.ascontiguousarray(arr)
        meta = {"key": key, "digest": dig, "shape": list(arr.shape), "dtype": arr.dtype.str,
                "checksum": _checksum(arr), "extra": dict(extra or {})}
        head = _npy_header(arr)
        js = json.dumps(meta, sort_keys=True).encode()
        path = self.path(key, dig)
        try:
            atomic_write_bytes(path, b"".join((head, arr.data, js, len(js).to_bytes(8, "little"), MAGIC)))
        except OSError:
            return None
        self.written += 1
        self._verified.add(str(path))  # written from memory just now
        return path

    def meta(self, key: str, dig: str) -> dict[str, Any] | None:
        """The entry's meta (shape, dtype, extra) without reading its payload; ``None`` if absent or unreadable."""
        path = self.path(key, dig)
        try:
            meta = _read_trailer(path)
        except (OSError, ValueError):
            return None
        return meta if meta.get("key") == key and meta.get("digest") == dig else None

    def open(self, key: str, dig: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The entry as a read-only memory map with its meta, or ``None`` (absent, or refused and removed)."""
        path = self.path(key, dig)
        if not path.is_file():
            return None
        try:
            meta = _read_trailer(path)
            arr = np.load(path, mmap_mode="r")
            why = None
            if meta.get("key") != key or meta.get("digest") != dig:
                why = "written for other content or other preprocessing"
            elif list(arr.shape) != list(meta.get("shape", [])) or arr.dtype.str != meta.get("dtype"):
                why = "shape or dtype differ from its record"
            elif str(path) not in self._verified:
                if _checksum(arr) != meta.get("checksum"):
                    why = "its payload does not match its checksum"
        except (OSError, ValueError, TypeError) as err:
            why, arr = f"unreadable ({err})", None
        if why is not None:
            del arr
            self._refuse(path, why)
            return None
        self._verified.add(str(path))
        self.opened += 1
        return arr, meta

    def _refuse(self, path: Path, why: str) -> None:
        self.rejected += 1
        if len(self.problems) < 20:
            self.problems.append(f"tensor cache entry {path} not used: {why}")
        try:
            path.unlink()
        except OSError:
            pass


def _npy_header(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


def _read_trailer(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        tail = len(MAGIC) + 8
        if size < tail:
            raise ValueError("too short")
        fh.seek(size - tail)
        end = fh.read(tail)
        if end[8:] != MAGIC:
            raise ValueError("no trailer")
        n = int.from_bytes(end[:8], "little")
        if n > size - tail:
            raise ValueError("bad trailer length")
        fh.seek(size - tail - n)
        meta = json.loads(fh.read(n))
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        if fortran or fh.tell() + int(np.prod(shape)) * dtype.itemsize != size - tail - n:
            raise ValueError("payload size differs from its header")
    if not isinstance(meta, dict):
        raise ValueError("meta is not an object")
    return meta


class MemoryBudget:
    """Volumes kept in memory, least recently used first out, never more than ``max_bytes`` in all.

    ``held`` is the bytes held now, ``peak`` the most ever held (the store's own
    accounting; the process's resident size adds the model, the batches and
    whatever the memory maps have paged in).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[Any, np.ndarray] = OrderedDict()
        self.held = self.peak = 0

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any) -> np.ndarray | None:
        arr = self._data.get(key)
        if arr is not None:
            self._data.move_to_end(key)
        return arr

    def room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` fit without evicting anything."""
        return self.held + nbytes <= self.max_bytes

    def put(self, key: Any, arr: np.ndarray, *, evict: bool = True) -> bool:
        """Keep ``arr`` (evicting the least recently used if ``evict``); ``False`` when it is not kept."""
        n = int(arr.nbytes)
        if key in self._data or n > self.max_bytes or (not evict and not self.room(n)):
            return key in self._data
        while self._data and self.held + n > self.max_bytes:
            _, old = self._data.popitem(last=False)
            self.held -= int(old.nbytes)
        self._data[key] = arr
        self.held += n
        self.peak = max(self.peak, self.held)
        return True

    def clear(self) -> None:
        self._data.clear()
        self.held = 0


def _entries(root: Path) -> list[Path]:
    base = root / _LAYOUT
    if not base.is_dir():
        return []
    out = []
    for sub in sorted(base.iterdir()):
        if sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name):
            out += [p for p in sorted(sub.iterdir()) if p.is_file() and (_NAME_RE.match(p.name)
                                                                          or p.name.endswith(".tmp"))]
    return out


def cache_info(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"path", "entries", "bytes", "partial"}`` of the tensor cache at ``root`` (default :func:`default_cache_dir`)."""
    base = Path(root) if root is not None else default_cache_dir()
    files = _entries(base)
    done = [p for p in files if not p.name.endswith(".tmp")]
    return {"path": str(base), "entries": len(done), "bytes": sum(p.stat().st_size for p in done),
            "partial": len(files) - len(done)}


def clean_cache(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Remove every tensor cache entry (and left-over partial writes) under ``root``; other files are left alone.

    Returns ``{"path", "removed", "bytes"}``.
    """
    base = Path(root) if root is not None else default_cache_dir()
    removed = freed = 0
    for p in _entries(base):
        try:
            size = p.stat().st_size
            p.unlink()
        except OSError:
            continue
        removed += 1
        freed += size
    layout = base / _LAYOUT
    if layout.is_dir():
        for sub in layout.iterdir():
            if sub.is_dir() and not any(sub.iterdir()):
                shutil.rmtree(sub, ignore_errors=True)
    return {"path": str(base), "removed": removed, "bytes": freed}
