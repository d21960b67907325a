"""File access: atomic writes (nothing bidsaudit writes is ever left half-written) and checked text reads."""

from __future__ import annotations

import glob
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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise _naming(err, target) from None
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
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):  # a full disk (ENOSPC), a quota, an I/O error: name the target
            raise _naming(err, target) from None
        raise
    return target


def _naming(err: OSError, target: Path) -> OSError:
    """``err`` as an :class:`OSError` of the same errno naming ``target`` (not the temporary file)."""
    return OSError(err.errno, f"cannot write: {err.strerror or err}", str(target))


def _sweep(target: Path) -> None:
    """Remove temporary files of ``target`` left by writers that were killed (their process is gone).

    A writer killed mid-write (kill -9, a power cut) leaves its temporary
    file, never a partial ``target``; the next write of the same target
    removes it. A temporary file of a live process is left alone.
    """
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*-*.tmp"):
        pid = tmp.name[len(target.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
