"""The dataset index: one fast walk of a BIDS tree into plain data.

:func:`index_dataset` walks the tree once with :func:`os.scandir`, takes every
file name apart with the official schema's rules (:mod:`audit.bidsschema`)
and returns a :class:`DatasetIndex`: a table with one row per file (entities,
datatype, suffix, extension, size, link state, whether the name is valid BIDS
and why not), the participants and sessions tables, and a lazy, cached view of
sidecar metadata resolved by the BIDS inheritance principle.

Nothing is dropped silently: a file that is not a valid BIDS name keeps its
row with ``valid=False`` and a ``reason``. Images whose content is absent
(a dangling symbolic link or a git-annex pointer, as a DataLad clone leaves
them) are marked ``absent``; their metadata is indexed, their voxels are not.

Tables (``participants.tsv``, ``sessions.tsv``) are read here too, robustly: a
problem with the table itself is an :class:`IndexProblem`, never an exception.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.bidsschema import rules
from audit.errors import InputError
from audit.fsutil import read_utf8

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DatasetIndex",
    "FileRow",
    "IndexProblem",
    "index_dataset",
    "read_json",
    "entity_pairs",
    "read_bids_tsv",
    "read_participants",
    "IMAGE_EXTENSIONS",
    "ANNEX_KEY",
]

IMAGE_EXTENSIONS = frozenset({".nii", ".nii.gz"})
#: git-annex key inside a symlink target or pointer file: backend, size, hash.
ANNEX_KEY = re.compile(r"annex/objects/(?:[^/]+/)*?(?P<key>(?P<backend>[A-Z0-9]+E?)-s(?P<size>\d+)--(?P<hash>[0-9a-fA-F]+)[^/]*)")
_SKIP_DIRS = frozenset({".git", ".datalad", ".heudiconv", ".duecredit"})
_POINTER_MAX = 1024  # git-annex pointer files are tiny


@dataclass(frozen=True, slots=True)
class IndexProblem:
    """A problem met while indexing: a file the index could not take in."""

    kind: str  # "malformed_json" | "unreadable" | "symlink_loop" | "participants" | ...
    path: str
    message: str
    line: int | None = None
    column: int | None = None
    #: ``"warning"`` for what the official validator accepts but is worth fixing (a byte-order mark); else an error.
    severity: str = "error"


@dataclass(frozen=True, slots=True)
class FileRow:
    """One file of the dataset (a row of :attr:`DatasetIndex.files`)."""

    path: str  # relative, POSIX
    subject: str | None
    session: str | None
    datatype: str | None
    suffix: str | None
    extension: str
    entities: str  # "sub-01_ses-1_task-rest" (short keys, in order)
    size: int
    mtime_ns: int
    inode: int
    link: str  # "file" | "symlink" | "dangling" | "annex-pointer"
    annex_key: str | None
    valid: bool
    reason: str | None
    role: str  # "data" | "sidecar" | "table" | "top" | "inherited" | "other"


@dataclass
class DatasetIndex:
    """Everything the checks know about a dataset, as plain data.

    Attributes
    ----------
    root : Path
        The dataset folder (absolute).
    description : dict
        ``dataset_description.json``.
    rows : tuple of FileRow
        Every file found (sorted by path), valid or not.
    subjects : tuple of str
        ``sub-*`` folders, sorted.
    problems : tuple of IndexProblem
        What the index could not take in (never raised: checks report them).
    """

    root: Path
    description: dict[str, Any]
    rows: tuple[FileRow, ...]
    subjects: tuple[str, ...]
    problems: tuple[IndexProblem, ...] = ()
    _json_cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ tables
    @cached_property
    def files(self) -> pd.DataFrame:
        """One row per file, columns as in :class:`FileRow`."""
        import pandas as pd

        cols = list(FileRow.__slots__)
        return pd.DataFrame([tuple(getattr(r, c) for c in cols) for r in self.rows], columns=cols)

    @property
    def name(self) -> str:
        return str(self.description.get("Name") or self.root.name)

    def images(self, *, present_only: bool = False) -> list[FileRow]:
        """Valid NIfTI data files (optionally only those whose content is here)."""
        out = [r for r in self.rows if r.role == "data" and r.extension in IMAGE_EXTENSIONS]
        if present_only:
            out = [r for r in out if r.link in ("file", "symlink")]
        return out

    @cached_property
    def invalid(self) -> list[FileRow]:
        return [r for r in self.rows if not r.valid]

    @cached_property
    def sessions_by_subject(self) -> dict[str, tuple[str, ...]]:
        """Sessions seen in file entities, per subject (empty tuple: no sessions)."""
        out: dict[str, set[str]] = {s: set() for s in self.subjects}
        for r in self.rows:
            if r.subject and r.session and r.role == "data":
                out.setdefault(r.subject, set()).add(r.session)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    @cached_property
    def participants(self) -> pd.DataFrame | None:
        """``participants.tsv`` as strings (``None`` when absent or unreadable)."""
        table, problems = read_participants(self.root)
        self._late_problems.extend(problems)
        return table

    @cached_property
    def participants_meta(self) -> dict[str, Any]:
        """``participants.json`` (empty when absent; malformed is a problem)."""
        path = self.root / "participants.json"
        if not path.exists():
            return {}
        data = self.read_json("participants.json")
        return data if isinstance(data, dict) else {}

    @cached_property
    def _late_problems(self) -> list[IndexProblem]:
        return []

    def all_problems(self) -> tuple[IndexProblem, ...]:
        """Problems found by the walk and by lazy reads so far."""
        return self.problems + tuple(self._late_problems)

    # ---------------------------------------------------------------- sidecars
    def read_json(self, relpath: str) -> Any:
        """Read a JSON file of the dataset once (malformed → a problem, ``None``)."""
        cache = self._json_cache
        if relpath in cache:
            return cache[relpath]
        try:
            value: Any = read_json(f"{self.root}/{relpath}")
        except InputError as err:
            self._late_problems.append(
                IndexProblem("malformed_json", relpath, err.detail or str(err), err.line, err.column)
            )
            value = None
        cache[relpath] = value
        return value

    @cached_property
    def _sidecars_by_dir(self) -> dict[str, list[FileRow]]:
        out: dict[str, list[FileRow]] = {}
        for r in self.rows:
            if r.extension == ".json" and r.valid and r.role in ("sidecar", "inherited"):
                out.setdefault(posix_dirname(r.path), []).append(r)
        return out

    @cached_property
    def _sidecar_candidates(self) -> dict[tuple[str, str | None], list[tuple[tuple[tuple[str, str], ...], str]]]:
        """(folder, suffix) -> [(entity pairs, path)] of the sidecars there, in path order."""
        out: dict[tuple[str, str | None], list[tuple[tuple[tuple[str, str], ...], str]]] = {}
        for folder, cands in self._sidecars_by_dir.items():
            for cand in cands:
                ents = tuple(dict(entity_pairs(cand.entities)).items())
                out.setdefault((folder, cand.suffix), []).append((ents, cand.path))
        return out

    def sidecar(self, relpath: str) -> dict[str, Any]:
        """Metadata of a data file by the inheritance principle.

        Every ``.json`` with the same suffix whose entities are a subset of
        the file's, in the file's folder or any folder above it, applies;
        the closest wins key by key.
        """
        row = self._row_by_path.get(relpath)
        if row is None or row.suffix is None:
            return {}
        suffix = row.suffix
        target = dict(entity_pairs(row.entities))
        merged: dict[str, Any] = {}
        folder = posix_dirname(relpath)
        chain = []
        while True:
            chain.append(folder)
            if folder == "":
                break
            folder = posix_dirname(folder)
        candidates = self._sidecar_candidates
        for folder in reversed(chain):  # root first, closest last
            for ents, path in candidates.get((folder, suffix), ()):
                if all(target.get(k) == v for k, v in ents):
                    data = self.read_json(path)
                    if isinstance(data, dict):
                        merged.update(data)
        return merged

    @cached_property
    def _row_by_path(self) -> dict[str, FileRow]:
        return {r.path: r for r in self.rows}


def posix_dirname(path: str) -> str:
    cut = path.rfind("/")
    return "" if cut < 0 else path[:cut]


def entity_pairs(entities: str) -> Iterator[tuple[str, str]]:
    """``("sub", "01"), ("ses", "1") ...`` from an entities string such as ``sub-01_ses-1``."""
    if not entities:
        return
    for part in entities.split("_"):
        key, _, value = part.partition("-")
        yield key, value


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a malformed one raises :class:`InputError` with line and column."""
    text = read_utf8(path, bom=True)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"malformed JSON ({err.msg})", line=err.lineno, column=err.colno) from None


# ---------------------------------------------------------------------- walk
def index_dataset(root: str | os.PathLike[str]) -> DatasetIndex:
    """Index the BIDS dataset at ``root``.

    Raises
    ------
    InputError
        ``root`` does not exist, is not a folder, has no readable
        ``dataset_description.json``, or that file is malformed.
    """
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        raise InputError(root, "no such file or folder", expected="a BIDS dataset folder")
    if not root.is_dir():
        raise InputError(root, "is a file", expected="a BIDS dataset folder")
    root = root.resolve()
    desc_path = root / "dataset_description.json"
    if not desc_path.is_file():
        raise InputError(
            root, "no dataset_description.json", expected="a BIDS dataset folder (with dataset_description.json)"
        )
    description = read_json(desc_path)
    if not isinstance(description, dict):
        raise InputError(desc_path, expected="a JSON object", got=type(description).__name__)

    r = rules()
    rows: list[FileRow] = []
    problems: list[IndexProblem] = []
    subjects: list[str] = []
    bidsignore = _read_bidsignore(root)
    seen_dirs: set[tuple[int, int]] = set()
    opaque_dirs = r.opaque_dirs
    judged: dict[tuple[int, str | None, bool, str], _Judged] = {}
    label_ok: dict[tuple[str, str], bool] = {}

    def plain_label(folder: str, entity: str) -> bool:
        """``sub-<label>`` / ``ses-<label>`` whose label is a valid value of the entity (so it parses alike)."""
        ok = label_ok.get((folder, entity))
        if ok is None:
            fmt = r.entity_format.get(entity, "label")
            pattern = r.format_patterns.get(fmt)
            value = folder.partition("-")[2]
            ok = label_ok[(folder, entity)] = pattern is not None and pattern.match(value) is not None
        return ok

    def walk(folder: str, rel: str, depth: int, sub: str | None, ses: str | None, datatype: str | None) -> None:
        try:
            st = os.stat(folder)
        except OSError as err:
            problems.append(IndexProblem("unreadable", rel or ".", f"cannot read folder: {err.strerror or err}"))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            problems.append(IndexProblem("symlink_loop", rel, "symbolic-link loop: folder already visited"))
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=_entry_name)
        except OSError as err:
            problems.append(IndexProblem("unreadable", rel or ".", f"cannot list folder: {err.strerror or err}"))
            return
        # Names in sub-<label>/[ses-<label>/] that start with those labels are judged once per shape
        # (the rest of the name, where it lies): only the labels differ, and they are checked here.
        prefix = None
        if sub is not None and plain_label(sub, "subject"):
            if ses is None:
                prefix = sub + "_"
            elif plain_label(ses, "session"):
                prefix = f"{sub}_{ses}_"
        relpre = rel + "/" if rel else ""
        for entry in entries:
            name = entry.name
            if name[0] == "." or (depth == 0 and name in opaque_dirs) or name in _SKIP_DIRS:
                continue
            relpath = relpre + name
            if bidsignore and _ignored(relpath, bidsignore):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError as err:
                if err.errno == 40:  # ELOOP
                    problems.append(IndexProblem("symlink_loop", relpath, "symbolic-link loop"))
                else:
                    problems.append(IndexProblem("unreadable", relpath, f"cannot stat: {err.strerror or err}"))
                continue
            if is_dir:
                if depth == 0:
                    if name.startswith("sub-"):
                        subjects.append(name)
                        walk(entry.path, relpath, 1, name, None, None)
                    elif name == "phenotype":
                        walk(entry.path, relpath, 9, None, None, None)
                    else:
                        rows.append(_other(entry, relpath, "folder is not part of BIDS raw data"))
                elif depth == 1 and name.startswith("ses-"):
                    walk(entry.path, relpath, 2, sub, name, None)
                elif depth in (1, 2) and datatype is None:
                    walk(entry.path, relpath, 3, sub, ses, name)
                elif depth == 3 and "." in name:  # a data "file" that is a folder (.ds/, .ome.zarr/)
                    rows.append(_file_row(entry, relpath, depth, sub, ses, datatype, problems, prefix, judged))
                else:
                    walk(entry.path, relpath, depth + 1, sub, ses, datatype)
                continue
            rows.append(_file_row(entry, relpath, depth, sub, ses, datatype, problems, prefix, judged))

    walk(str(root), "", 0, None, None, None)
    rows.sort(key=_row_path)
    return DatasetIndex(
        root=root, description=description, rows=tuple(rows), subjects=tuple(sorted(subjects)),
        problems=tuple(problems),
    )


_entry_name = attrgetter("name")
_row_path = attrgetter("path")


def _stat(entry: os.DirEntry[str]) -> tuple[int, int, int, str, str | None]:
    """(size, mtime_ns, inode, link state, annex key) of a file entry."""
    is_link = entry.is_symlink()
    annex_key = None
    if is_link:
        target = os.readlink(entry.path)
        m = ANNEX_KEY.search(target)
        annex_key = m.group("key") if m else None
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError:
            lst = entry.stat(follow_symlinks=False)
            return lst.st_size, lst.st_mtime_ns, lst.st_ino, "dangling", annex_key
        return st.st_size, st.st_mtime_ns, st.st_ino, "symlink", annex_key
    st = entry.stat(follow_symlinks=False)
    return st.st_size, st.st_mtime_ns, st.st_ino, "file", None


#: What the name alone decides: suffix (None when the name does not parse), extension, entities
#: (short keys), why the name is not valid (None: valid) and role.
_Judged = tuple[str | None, str, str, str | None, str]


def _file_row(entry: os.DirEntry[str], relpath: str, depth: int, sub: str | None, ses: str | None,
              datatype: str | None, problems: list[IndexProblem], prefix: str | None = None,
              judged: dict[tuple[int, str | None, bool, str], _Judged] | None = None) -> FileRow:
    name = entry.name
    try:
        size, mtime, inode, link, annex_key = _stat(entry)
    except OSError as err:
        problems.append(IndexProblem("unreadable", relpath, f"cannot stat: {err.strerror or err}"))
        size, mtime, inode, link, annex_key = 0, 0, 0, "dangling", None
    if prefix is not None and judged is not None and name.startswith(prefix):
        # ``prefix`` is "sub-<label>_[ses-<label>_]" of this very folder, with labels that are valid
        # values: those entities parse, pass and match the folders whatever the labels, so the
        # judgement of the rest of the name holds for every file of that shape in that kind of folder.
        key = (depth, datatype, ses is None, name[len(prefix):])
        hit = judged.get(key)
        if hit is None:
            suffix, ext, short, reason, role = _judge_name(name, depth, sub, ses, datatype)
            hit = judged[key] = (suffix, ext, short[len(prefix):], reason, role)
            suffix, ext, rest, reason, role = hit
        else:
            suffix, ext, rest, reason, role = hit
        short = prefix + rest if rest else prefix[:-1]
    else:
        suffix, ext, short, reason, role = _judge_name(name, depth, sub, ses, datatype)
    if link == "file" and ext in IMAGE_EXTENSIONS and 0 < size <= _POINTER_MAX:
        annex_key = _pointer_key(entry.path)
        if annex_key:
            link = "annex-pointer"
    return FileRow(relpath, sub, ses, datatype, suffix, ext, short, size, mtime, inode, link, annex_key,
                   reason is None, reason, role)


def _judge_name(name: str, depth: int, sub: str | None, ses: str | None, datatype: str | None) -> _Judged:
    """Judge a file name where it lies (no file system access)."""
    r = rules()
    parsed = r.parse(name)
    ext = parsed.extension
    short = "_".join(f"{r.long_to_short[k]}-{v}" for k, v in parsed.entities)
    file_sub = parsed.get("subject")
    file_ses = parsed.get("session")
    role = "other"
    reason: str | None
    if depth == 0:
        if name in r.top_level_names:
            role, reason = "top", None
        elif r.is_inheritable_sidecar(parsed):
            role, reason = "inherited", None
        else:
            reason = "not a BIDS top-level file"
    elif depth == 9:  # phenotype/
        role, reason = "table", (None if ext in (".tsv", ".json") else "phenotype files must be .tsv or .json")
    elif datatype is None:  # subject or session level
        if parsed.suffix in ("sessions", "scans"):
            role, reason = "table", r.judge_table(parsed)
        elif r.is_inheritable_sidecar(parsed):
            role, reason = "inherited", None
        else:
            reason = f"not allowed at {'session' if ses else 'subject'} level"
    elif depth > 3:
        reason = "too deep: data files belong directly in sub-*/[ses-*/]<datatype>/"
    else:
        reason = r.judge_data_file(parsed, datatype)
        if reason is None:
            role = "sidecar" if ext == ".json" else "data"
    if reason is None and sub is not None and file_sub is not None and f"sub-{file_sub}" != sub:
        reason = f"subject entity sub-{file_sub} does not match folder {sub}"
    if reason is None and ses is not None and file_ses is not None and f"ses-{file_ses}" != ses:
        reason = f"session entity ses-{file_ses} does not match folder {ses}"
    if reason is None and datatype is not None and ses is None and file_ses is not None:
        reason = f"session entity ses-{file_ses} but no ses-{file_ses}/ folder"
    suffix = parsed.suffix if parsed.error is None else None
    return suffix, ext, short, reason, (role if reason is None else "other")


def _other(entry: os.DirEntry[str], relpath: str, reason: str) -> FileRow:
    return FileRow(relpath, None, None, None, None, "", "", 0, 0, 0, "file", None, False, reason, "other")


def _pointer_key(path: str) -> str | None:
    """The annex key of a git-annex pointer file (an unlocked or copied link)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_POINTER_MAX)
    except OSError:
        return None
    if b"annex/objects/" not in head:
        return None
    m = ANNEX_KEY.search(head.decode("ascii", "replace"))
    return m.group("key") if m else None


def _read_bidsignore(root: Path) -> list[str]:
    path = root / ".bidsignore"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(relpath: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    name = relpath.rsplit("/", 1)[-1]
    for pat in patterns:
        p = pat.lstrip("/").rstrip("/")
        if fnmatch(relpath, p) or fnmatch(name, p) or relpath.startswith(p + "/") or fnmatch(relpath, f"*/{p}"):
            return True
    return False


# --------------------------------------------------------------------------- BIDS tables
# Problems with a table itself (an invalid UTF-8 byte, a BOM, a comma delimiter, a header
# without rows) are returned as IndexProblem records, never raised: they are findings about
# the data, and the audit goes on with what could be read.
def read_bids_tsv(path: Path, relpath: str) -> tuple[pd.DataFrame | None, list[IndexProblem]]:
    """Read a BIDS TSV as strings, returning the table and what was wrong with it."""
    import pandas as pd

    problems: list[IndexProblem] = []
    try:
        raw = path.read_bytes()
    except OSError as err:
        return None, [IndexProblem("unreadable", relpath, f"cannot read: {err.strerror or err}")]
    if raw.startswith(b"\xef\xbb\xbf"):
        problems.append(IndexProblem(
            "table", relpath, "starts with a UTF-8 byte-order mark (BOM): read correctly here and accepted by the "
            "official BIDS validator, but other TSV readers take it into the first column's name; save the file "
            "as UTF-8 without a BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)", 1, 1, severity="warning"))
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        problems.append(IndexProblem("table", relpath, f"invalid UTF-8 byte 0x{raw[err.start]:02x} at offset {err.start}", line, col))
        return None, problems
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        problems.append(IndexProblem("table", relpath, "empty file: expected a header line", 1))
        return None, problems
    header = lines[0]
    if "\t" not in header and ("," in header or ";" in header):
        sep = "," if "," in header else ";"
        problems.append(IndexProblem(
            "table", relpath, f"columns are separated by '{sep}', expected tab-separated values", 1))
        return None, problems
    if len(lines) == 1:
        problems.append(IndexProblem("table", relpath, "header only: the table has no rows", 1))
    width = header.count("\t") + 1
    for n, ln in enumerate(text.splitlines(), 1):  # pandas would make the extra fields a row index (fuzzing, #14)
        if ln.count("\t") + 1 > width:
            problems.append(IndexProblem("table", relpath, f"{ln.count(chr(9)) + 1} fields, the header has {width}",
                                         n))
            return None, problems
    try:
        table = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, na_filter=False,
                            index_col=False)
    except (pd.errors.ParserError, ValueError) as err:
        problems.append(IndexProblem("table", relpath, f"cannot parse as TSV: {str(err).strip()}"))
        return None, problems
    table.columns = [str(c).strip() for c in table.columns]
    for col in table.columns:
        table[col] = table[col].str.strip()
    return table, problems


def read_participants(root: Path) -> tuple[pd.DataFrame | None, list[IndexProblem]]:
    """``participants.tsv`` of the dataset at ``root`` (``None`` when absent or unreadable)."""
    path = root / "participants.tsv"
    if not path.exists():
        return None, []
    table, problems = read_bids_tsv(path, "participants.tsv")
    if table is not None and "participant_id" not in table.columns:
        problems.append(IndexProblem(
            "table", "participants.tsv",
            f"no participant_id column (columns: {', '.join(table.columns) or 'none'})", 1))
        return None, problems
    return table, problems
