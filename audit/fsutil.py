"""File access: atomic writes (nothing bidsaudit writes is ever left half-written) and checked text reads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from audit.errors import InputError

__all__ = ["atomic_write_bytes", "atomic_write_text", "read_utf8"]


def read_utf8(path: str | os.PathLike[str], *, expected: str | None = None, bom: bool = False) -> str:
    """The text of a UTF-8 file; an unreadable file or an invalid byte is an :class:`InputError` naming the line.

    ``bom`` accepts (and drops) a UTF-8 byte-order mark.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})", line=line,
                         expected=expected) from None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The temporary file is flushed, fsynced and renamed over ``path`` with
    :func:`os.replace`, so a reader sees either the old file or the new one,
    never a partial one. On any failure the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (or keep the old file's)
        try:
            mode = os.stat(target).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
