"""Who may write, what may be read, what may be uploaded.

- Bearer tokens: compared in constant time; a missing or wrong token is 401.
  Each token has roles (:data:`ROLES`): ``read`` (results and pages of a
  ``--private`` server), ``submit`` (queue audits; implies ``read``) and
  ``admin`` (the retention clean-up on demand; implies both). A valid token
  without the role a request needs is 403.
- Paths: every dataset or split path a request names must resolve (symbolic
  links followed) to a place under one of the configured roots; ``..``,
  URL-encoded traversal, absolute paths elsewhere and links that point out
  are refused with 403, and so is a link inside the named folder that points
  out of the roots (checked before an audit reads anything).
- Uploads: a bounded number of small TSV/CSV/JSON/TXT files with safe
  relative names (a folder upload keeps its relative paths), or one ZIP
  archive, unpacked by :func:`unpack_zip` into a scratch folder: entries
  with ``..``, absolute names or links are refused and nothing is written
  outside that folder; the declared and the real sizes are both bounded. They
  are stored as data, parsed by the split readers, never executed and never
  served back.
- CSRF: form posts carry a token that must equal the one in a SameSite
  cookie (double submit), checked in constant time.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

__all__ = ["PathRefused", "UploadRefused", "confine", "check_links", "token_ok", "token_roles", "new_csrf_token",
           "csrf_ok", "safe_upload_name", "unpack_zip", "CSRF_COOKIE", "UPLOAD_SUFFIXES", "MAX_UPLOAD_DEPTH"]

CSRF_COOKIE = "bidsaudit_csrf"
UPLOAD_SUFFIXES = (".tsv", ".csv", ".json", ".txt")
#: Folders an uploaded file may sit in (ClinicaDL's ADNI/train/train_splits-5/split-0/AD.tsv is 5 deep).
MAX_UPLOAD_DEPTH = 8
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class PathRefused(Exception):
    """A path outside the configured roots (answered with 403)."""


class UploadRefused(Exception):
    """An upload over a limit (413) or of a kind not accepted (422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def token_ok(given: str | None, tokens: Iterable[str]) -> bool:
    """True when ``given`` equals one of ``tokens`` (constant-time per comparison)."""
    if not given:
        return False
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(given.encode(), token.encode())
    return ok


def token_roles(given: str | None, tokens: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """The roles of ``given`` among ``tokens`` (token -> roles), or None for a wrong or missing token.

    Every token is compared, in constant time, whatever matches first.
    """
    if not given:
        return None
    found: frozenset[str] | None = None
    for token, roles in tokens.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            found = roles
    return found


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, form_value: str | None) -> bool:
    return bool(cookie and form_value) and hmac.compare_digest(str(cookie).encode(), str(form_value).encode())


def _within(path: Path, roots: Iterable[Path]) -> Path | None:
    for root in roots:
        if path == root or root in path.parents:
            return root
    return None


def confine(raw: str, roots: tuple[Path, ...], *, field: str) -> Path:
    """The real path that ``raw`` names, which must lie under one of ``roots``.

    A relative path is taken relative to each root in turn (the first that
    has it wins). Raises :class:`PathRefused` for anything that leaves the
    roots, however it is spelled.
    """
    if not roots:
        raise PathRefused(f"{field}: this server reads no paths (it was started without --root); "
                          "upload the split files instead")
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise PathRefused(f"{field}: expected a path under a --root")
    decoded = raw
    for _ in range(3):  # %252e%252e decodes twice
        decoded = unquote(decoded)
    for spelling in (raw, decoded, decoded.replace("\\", "/")):
        if ".." in PurePosixPath(spelling).parts:
            raise PathRefused(f"{field}: '..' is not allowed; name a path under a --root")
    if decoded != raw:
        raise PathRefused(f"{field}: percent-encoded paths are not accepted; name a path under a --root")
    candidates = [Path(raw)] if os.path.isabs(raw) else [root / raw for root in roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if _within(real, roots) is None:
            if os.path.isabs(raw):
                raise PathRefused(f"{field}: outside the server's roots")
            if os.path.lexists(candidate):
                raise PathRefused(f"{field}: a link that leads outside the server's roots")
            continue
        if real.exists():
            return real
    raise FileNotFoundError(f"{field}: no such file or folder under the server's roots: {raw}")


def _special(path: str) -> bool:
    """A FIFO, socket or device: reading it could block forever or read a device (never a data file)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_links(path: Path, roots: tuple[Path, ...], *, limit: int = 1_000_000) -> None:
    """Refuse a folder holding a symbolic link that resolves outside ``roots``, or a FIFO, socket or
    device file (before anything reads it)."""
    if _special(str(path)):
        raise PathRefused(f"{path.name}: not a regular file or folder (a FIFO, socket or device)")
    if path.is_file():
        return
    seen = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in (*dirs, *files):
            seen += 1
            if seen > limit:
                return
            entry = os.path.join(folder, name)
            if os.path.islink(entry) and _within(Path(os.path.realpath(entry)), roots) is None:
                rel = os.path.relpath(entry, path)
                raise PathRefused(f"{rel}: a symbolic link that leads outside the server's roots")
            if _special(entry):
                rel = os.path.relpath(entry, path)
                raise PathRefused(f"{rel}: not a regular file or folder (a FIFO, socket or device)")


def safe_upload_name(name: str | None) -> str:
    """A relative POSIX path made of safe parts (``split-0/train.tsv`` kept), or :class:`UploadRefused`."""
    if not name:
        raise UploadRefused(422, "an uploaded file has no name")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or len(parts) > MAX_UPLOAD_DEPTH or any(not _SAFE_PART.match(p) for p in parts):
        raise UploadRefused(422, f"file name {name!r} not accepted: expected letters, digits, '.', '_', '-' "
                                 "(for example train.tsv or split-0/validation.tsv)")
    if not parts[-1].lower().endswith(UPLOAD_SUFFIXES):
        raise UploadRefused(422, f"{name}: unknown split format; expected .tsv, .csv (split tables), .txt "
                                 "(image-path lists), .json (nnU-Net, MONAI datalist) or one .zip archive")
    return "/".join(parts)


def unpack_zip(data: bytes, *, max_files: int, max_file_bytes: int, max_total_bytes: int) -> dict[str, bytes]:
    """The split files of a ZIP archive by safe relative name (nothing is written here).

    Refused: an entry whose name has ``..``, is absolute or has a drive
    (422), a symbolic link or special file (422), more than ``max_files``
    split files or ten times as many entries in all, or more bytes than
    allowed once unpacked (413; the real sizes are
    counted, not only the declared ones). Folders, hidden files, macOS's
    ``__MACOSX/`` and files that are not split files (README...) are skipped.
    """
    import io
    import stat
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise UploadRefused(422, f"the archive cannot be read: {err}") from None
    if len(infos) > 10 * max_files:  # folders, skipped files: each costs memory and time to list
        raise UploadRefused(413, f"the archive has {len(infos)} entries; at most {10 * max_files} (folders and "
                                 "other files included) are accepted")
    out: dict[str, bytes] = {}
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise UploadRefused(422, f"archive entry {name!r} refused: a path that leaves the archive's folder")
        mode = info.external_attr >> 16
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UploadRefused(422, f"archive entry {name!r} refused: a link or special file")
        if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if not parts[-1].lower().endswith(UPLOAD_SUFFIXES):
            continue
        safe = safe_upload_name(name)
        if len(out) >= max_files:
            raise UploadRefused(413, f"the archive holds more than {max_files} split files")
        if info.file_size > max_file_bytes:
            raise UploadRefused(413, f"{safe}: {info.file_size} bytes unpacked, more than the {max_file_bytes} "
                                     "bytes accepted per file")
        try:
            with archive.open(info) as fh:
                content = fh.read(max_file_bytes + 1)
        except (zipfile.BadZipFile, RuntimeError, OSError, NotImplementedError) as err:
            raise UploadRefused(422, f"archive entry {name!r} cannot be read: {err}") from None
        if len(content) > max_file_bytes:
            raise UploadRefused(413, f"{safe}: more than the {max_file_bytes} bytes accepted per file")
        total += len(content)
        if total > max_total_bytes:
            raise UploadRefused(413, f"the archive unpacks to more than the {max_total_bytes} bytes accepted")
        if safe in out:
            raise UploadRefused(422, f"{safe}: twice in the archive")
        out[safe] = content
    if not out:
        raise UploadRefused(422, "the archive holds no split files (.tsv, .csv, .txt, .json)")
    return out
