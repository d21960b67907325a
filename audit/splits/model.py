"""The normalised, immutable model of a split set, whatever format it came from.

* :class:`SplitRow` is one row of a split file: a participant (``sub-``
  prefixed), a session (``ses-`` prefixed, or ``None`` for "every session of
  that participant"), the label value, and where the row came from (file and
  1-based line).
* :class:`SplitTable` is one split (``train``, ``validation``, ``test`` or any
  other name) of one fold (``None`` outside k-fold layouts, and for a test set
  shared by every fold). It keeps its rows as columns and builds
  :class:`SplitRow` objects only when asked (:attr:`SplitTable.rows`), so a
  million-row table costs one pandas frame, not a million objects.
* :class:`SplitSet` is everything read from one ``--splits`` input: its
  format, every file read (what a certificate hashes) and its tables, with the
  fold views that leakage checks audit one by one (:meth:`SplitSet.views`).

Identifiers are normalised by :func:`audit.values.normalise_participant` and
:func:`audit.values.normalise_session` (surrounding spaces stripped, the ``sub-``/``ses-``
prefix added when missing; idempotent; re-exported here), split names by
:func:`normalise_split_name` (``val``/``valid`` -> ``validation``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from audit.values import bids_label_problem, normalise_participant, normalise_session

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "KNOWN_SPLITS",
    "SPLIT_FORMATS",
    "FoldView",
    "SplitFormat",
    "SplitRow",
    "SplitSet",
    "SplitTable",
    "normalise_case_id",
    "normalise_participant",
    "normalise_session",
    "normalise_split_name",
]

SplitFormat = Literal["folder", "table", "clinicadl", "nnunet", "monai", "paths"]
SPLIT_FORMATS: tuple[SplitFormat, ...] = ("folder", "table", "clinicadl", "nnunet", "monai", "paths")
KNOWN_SPLITS: tuple[str, ...] = ("train", "validation", "test")

# nnU-Net case ids are not BIDS labels: letters, digits, '_', '.', '-' (no spaces, no path separators)
CASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# a case id made of BIDS entities: sub-<label>[_ses-<label>]
CASE_ENTITIES_RE = re.compile(r"(?:sub-)?([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?")
_SPLIT_ALIASES = {"train": "train", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test"}
_CORE = ("participant_id", "session_id", "label", "file", "line")


def normalise_case_id(value: str) -> tuple[str, str | None]:
    """Participant and session of an nnU-Net case id.

    A case id made of BIDS entities (``sub-01``, ``01``, ``sub-01_ses-02``)
    gives that participant (and session). Any other case id (``BraTS_001``,
    ``case_00012_0000``) is taken whole as the participant label:
    ``sub-BraTS_001``; a channel suffix such as ``_0000`` is left as it is.
    Such ids are not BIDS labels, so they can only match a dataset whose
    participants carry the same ids.

    Raises
    ------
    ValueError
        When the id is empty or has whitespace, path separators or other
        characters outside letters, digits, ``_``, ``.`` and ``-``.

    Examples
    --------
    >>> normalise_case_id("sub-01_ses-02"), normalise_case_id("BraTS_001")
    (('sub-01', 'ses-02'), ('sub-BraTS_001', None))
    """
    s = str(value).strip()
    m = CASE_ENTITIES_RE.fullmatch(s)
    if m:
        return "sub-" + m.group(1), (None if m.group(2) is None else "ses-" + m.group(2))
    body = s.removeprefix("sub-")
    if not CASE_RE.fullmatch(body):
        raise ValueError(bids_label_problem(body, "case id"))
    return "sub-" + body, None


def normalise_split_name(name: str) -> str:
    """The canonical name of a split: ``val``/``valid`` -> ``validation``.

    ``train``, ``validation`` and ``test`` (and the aliases) are matched
    without regard to case; any other name is kept as written (stripped).

    >>> normalise_split_name("val"), normalise_split_name(" Train "), normalise_split_name("holdout")
    ('validation', 'train', 'holdout')
    """
    s = str(name).strip()
    return _SPLIT_ALIASES.get(s.lower(), s)


@dataclass(frozen=True, slots=True)
class SplitRow:
    """One row of a split file.

    Attributes
    ----------
    participant_id : str
        ``sub-`` prefixed.
    session_id : str or None
        ``ses-`` prefixed; ``None`` means every session of the participant.
    label : str or None
        The value of the label column (``None`` when absent, empty or ``n/a``).
    file : str
        The file the row was read from (as in :attr:`SplitSet.files`).
    line : int
        1-based line of the row in ``file`` (the header is line 1).
    extra : Mapping[str, str]
        The row's other columns by their names in the file (``age``,
        ``sex``, and the label column too), stripped; ``participant_id``,
        ``session_id`` and, in a single table, ``split`` and ``fold`` are not
        repeated here.
    """

    participant_id: str
    session_id: str | None = None
    label: str | None = None
    file: str = ""
    line: int = 0
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def where(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"


class SplitTable:
    """One split (of one fold): immutable; rows kept as columns.

    Parameters
    ----------
    name : str
        Split name (``train``, ``validation``, ``test``, or any other).
    fold : int or None
        Fold number in a k-fold layout; ``None`` otherwise, and for a table
        shared by every fold (a k-fold layout's test set).
    path : str
        Where the table came from: a file, or the folder whose files were
        merged into it (ClinicaDL's per-diagnosis files).
    rows : iterable of SplitRow
        For building a table in memory (tests, other readers); readers in
        this package build tables from columns instead.
    columns : sequence of str, optional
        The source columns (default: ``participant_id``, ``session_id`` and
        the keys found in the rows' ``extra``).
    label_column : str, optional
        The column read into :attr:`SplitRow.label`.

    Notes
    -----
    Attribute assignment raises :class:`dataclasses.FrozenInstanceError`.
    :attr:`rows` builds (once) a tuple of :class:`SplitRow`; the set-valued
    methods and :meth:`to_frame` work on the columns and are fast at a million
    rows.
    """

    __slots__ = ("_cache", "_core", "_extra", "columns", "fold", "label_column", "name", "path")

    name: str
    fold: int | None
    path: str
    columns: tuple[str, ...]
    label_column: str | None
    _core: pd.DataFrame
    _extra: pd.DataFrame
    _cache: dict[str, Any]

    def __init__(self, name: str, fold: int | None = None, path: str = "", rows: Iterable[SplitRow] = (), *,
                 columns: Iterable[str] | None = None, label_column: str | None = None) -> None:
        import pandas as pd

        rows = tuple(rows)
        core = pd.DataFrame({
            "participant_id": pd.Series([r.participant_id for r in rows], dtype=object),
            "session_id": pd.Series([r.session_id for r in rows], dtype=object),
            "label": pd.Series([r.label for r in rows], dtype=object),
            "file": pd.Series([r.file for r in rows], dtype=object),
            "line": pd.Series([r.line for r in rows], dtype="int64"),
        })
        keys: list[str] = []
        for r in rows:
            keys.extend(k for k in r.extra if k not in keys)
        extra = pd.DataFrame({k: pd.Series([r.extra.get(k) for r in rows], dtype=object) for k in keys},
                             index=core.index)
        if columns is None:
            has_ses = any(r.session_id is not None for r in rows)
            columns = ["participant_id", *(["session_id"] if has_ses else []), *keys]
        self._init(name, fold, path, core, extra, tuple(columns), label_column)
        object.__setattr__(self, "_cache", {"rows": rows})

    @classmethod
    def from_columns(cls, name: str, fold: int | None, path: str, core: pd.DataFrame, extra: pd.DataFrame,
                     *, columns: Iterable[str], label_column: str | None) -> SplitTable:
        """Build a table from column frames (what the readers do).

        ``core`` has the columns ``participant_id``, ``session_id``,
        ``label``, ``file``, ``line`` (already normalised; ``None`` for a
        missing session or label); ``extra`` holds the other source columns,
        aligned with ``core`` row by row. The frames are owned by the table
        afterwards and must not be changed.
        """
        self = cls.__new__(cls)
        self._init(name, fold, path, core.reset_index(drop=True), extra.reset_index(drop=True),
                   tuple(columns), label_column)
        return self

    def _init(self, name: str, fold: int | None, path: str, core: pd.DataFrame, extra: pd.DataFrame,
              columns: tuple[str, ...], label_column: str | None) -> None:
        if list(core.columns) != list(_CORE):
            raise ValueError(f"core columns must be {_CORE}, got {tuple(core.columns)}")
        if len(extra) != len(core):
            raise ValueError("extra columns must have one row per core row")
        for k, v in (("name", name), ("fold", fold), ("path", str(path)), ("columns", columns),
                     ("label_column", label_column), ("_core", core), ("_extra", extra), ("_cache", {})):
            object.__setattr__(self, k, v)

    def __setattr__(self, key: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {key!r}")

    def __delattr__(self, key: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {key!r}")

    def __repr__(self) -> str:
        return f"SplitTable(name={self.name!r}, fold={self.fold!r}, path={self.path!r}, rows={len(self)})"

    def __len__(self) -> int:
        return len(self._core)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SplitTable):
            return NotImplemented
        return ((self.name, self.fold, self.path, self.columns, self.label_column)
                == (other.name, other.fold, other.path, other.columns, other.label_column)
                and self._core.equals(other._core) and self._extra.equals(other._extra))

    def __hash__(self) -> int:
        return hash((self.name, self.fold, self.path, len(self)))

    def _cached(self, key: str, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def rows(self) -> tuple[SplitRow, ...]:
        """Every row as a :class:`SplitRow`, in file order (built once, on first use)."""
        return self._cached("rows", lambda: self._make_rows(self._core, self._extra))  # type: ignore[no-any-return]

    @staticmethod
    def _make_rows(core: pd.DataFrame, extra: pd.DataFrame) -> tuple[SplitRow, ...]:
        keys = list(extra.columns)
        cols = [extra[k].tolist() for k in keys]
        out = []
        for i, (pid, ses, lab, file, line) in enumerate(zip(*(core[c].tolist() for c in _CORE))):
            ex = {k: col[i] for k, col in zip(keys, cols) if col[i] is not None}
            out.append(SplitRow(pid, ses, lab, file, int(line), MappingProxyType(ex)))
        return tuple(out)

    def subjects(self) -> frozenset[str]:
        """Participant ids (``sub-`` prefixed) of the table."""
        return self._cached("subjects", lambda: frozenset(self._core["participant_id"].unique().tolist()))  # type: ignore[no-any-return]

    def sessions(self) -> frozenset[tuple[str, str | None]]:
        """``(participant_id, session_id)`` pairs; ``session_id`` ``None`` means every session."""
        def make() -> frozenset[tuple[str, str | None]]:
            pairs = self._core[["participant_id", "session_id"]].drop_duplicates()
            return frozenset(zip(pairs["participant_id"].tolist(), pairs["session_id"].tolist()))
        return self._cached("sessions", make)  # type: ignore[no-any-return]

    def rows_for(self, subjects: Iterable[str]) -> tuple[SplitRow, ...]:
        """The rows (file order) whose participant is one of ``subjects``."""
        wanted = set(subjects)
        mask = self._core["participant_id"].isin(wanted)
        return self._make_rows(self._core[mask], self._extra[mask])

    def column_values(self, column: str) -> Iterator[tuple[str, str | None]]:
        """``(participant_id, value)`` for every row; nothing when the table lacks ``column``.

        ``column`` is a source column name (``participant_id``, ``session_id``,
        ``age``, the label column, ...); a cell missing from a row (a merged
        file without that column) gives ``None``.
        """
        pids = self._core["participant_id"].tolist()
        if column in ("participant_id", "session_id"):
            values = self._core[column].tolist()
        elif column in self._extra.columns:
            values = self._extra[column].tolist()
        else:
            return iter(())
        return zip(pids, values)

    def labels(self) -> Iterator[tuple[str, str | None, str | None, str]]:
        """``(participant_id, session_id, label, "file:line")`` for every row, in file order."""
        c = self._core
        where = (c["file"].astype(str) + ":" + c["line"].astype(str)).tolist()
        return zip(c["participant_id"].tolist(), c["session_id"].tolist(), c["label"].tolist(), where)

    def to_frame(self, *, extra: bool = False) -> pd.DataFrame:
        """Columns ``split, fold, participant_id, session_id, label, file, line`` (a copy).

        ``fold`` is a nullable integer column; ``session_id`` and ``label``
        hold ``None`` where missing. ``extra=True`` appends the other source
        columns (under their own names, unless they clash with these).
        """
        import pandas as pd

        n = len(self._core)
        frame = pd.DataFrame({
            "split": pd.Categorical([self.name] * n) if n else pd.Categorical([]),
            "fold": pd.array([self.fold] * n, dtype="Int64"),
        })
        frame = pd.concat([frame, self._core], axis=1)
        if extra:
            keep = [c for c in self._extra.columns if c not in frame.columns]
            frame = pd.concat([frame, self._extra[keep]], axis=1)
        return frame


class FoldView(NamedTuple):
    """One fold of a split set as the leakage checks see it.

    ``fold`` is ``None`` for a layout without folds; ``tables`` maps each
    split name to its table, the shared (fold-less) tables included.
    Unpacks as ``fold, tables``.
    """

    fold: int | None
    tables: Mapping[str, SplitTable]


def _name_key(name: str) -> tuple[int, str]:
    return (KNOWN_SPLITS.index(name), "") if name in KNOWN_SPLITS else (len(KNOWN_SPLITS), name)


@dataclass(frozen=True)
class SplitSet:
    """Every split read from one ``--splits`` input.

    Attributes
    ----------
    format : {"folder", "table", "clinicadl", "nnunet", "monai", "paths"}
        The detected input format (contract, "Split inputs").
    root : str
        The path given (a folder or a file).
    files : tuple of str
        Every file read, sorted: what a certificate hashes.
    tables : tuple of SplitTable
        One per (split name, fold), ordered train, validation, test, others
        by name, then by fold (shared tables first).
    folds : tuple of int
        The fold numbers of a k-fold layout (empty otherwise).
    notes : tuple of str
        How the input was interpreted: tables merged from several files,
        a test set taken from beside the folds, and every file or folder that
        was deliberately *not* read, with the reason.
    id_rule : Mapping or None
        For inputs that name images or case ids: which rule made participant
        ids of them (``{"rule", "description", "examples": [{"path", "id"}]}``,
        see :mod:`audit.splits.ids`); ``None`` for participant tables.
    """

    format: SplitFormat
    root: str
    files: tuple[str, ...]
    tables: tuple[SplitTable, ...]
    folds: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    id_rule: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.format not in SPLIT_FORMATS:
            raise ValueError(f"format must be one of {SPLIT_FORMATS}, got {self.format!r}")
        seen: dict[tuple[str, int | None], SplitTable] = {}
        for t in self.tables:
            if (t.name, t.fold) in seen:
                raise ValueError(f"two tables for split {t.name!r}, fold {t.fold!r}")
            seen[(t.name, t.fold)] = t
        for name, fold in seen:
            if fold is None and any(n == name and f is not None for n, f in seen):
                raise ValueError(f"split {name!r} has both a shared table and per-fold tables")
        tables = tuple(sorted(self.tables, key=lambda t: (_name_key(t.name), t.fold is not None, t.fold or 0)))
        folds = tuple(sorted({t.fold for t in tables if t.fold is not None}))
        if self.folds and tuple(self.folds) != folds:
            raise ValueError(f"folds {self.folds} do not match the tables' folds {folds}")
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "folds", folds)
        object.__setattr__(self, "files", tuple(sorted(set(self.files))))

    @property
    def names(self) -> tuple[str, ...]:
        """Split names: train, validation, test first (those present), then the others sorted."""
        return tuple(sorted({t.name for t in self.tables}, key=_name_key))

    @property
    def relative_files(self) -> tuple[str, ...]:
        """:attr:`files` relative to :attr:`root` (to its folder for a file root), ``/``-separated.

        Independent of where the split folder lies, so a fingerprint made
        from these names survives moving the folder. A test set read from
        beside the root appears as ``../test/...``.
        """
        base = self.root if os.path.isdir(self.root) else os.path.dirname(self.root) or "."
        return tuple(os.path.relpath(f, base).replace(os.sep, "/") for f in self.files)

    def table(self, name: str, fold: int | None = None) -> SplitTable:
        """The table of split ``name`` in ``fold`` (the shared table when the split has no folds).

        Raises
        ------
        KeyError
            No such split, or ``fold`` is ``None`` for a split that exists
            only per fold.
        """
        name = normalise_split_name(name)
        shared = None
        for t in self.tables:
            if t.name == name and t.fold == fold:
                return t
            if t.name == name and t.fold is None:
                shared = t
        if shared is not None:
            return shared
        have = [t.fold for t in self.tables if t.name == name]
        if not have:
            raise KeyError(f"no split {name!r} (splits: {', '.join(self.names)})")
        raise KeyError(f"split {name!r} has folds {sorted(f for f in have if f is not None)}; got fold={fold!r}")

    def _named(self, name: str, fold: int | None) -> list[SplitTable]:
        name = normalise_split_name(name)
        if fold is None:
            return [t for t in self.tables if t.name == name]
        try:
            return [self.table(name, fold)]
        except KeyError:
            return []

    def subjects(self, name: str, fold: int | None = None) -> frozenset[str]:
        """Participants of split ``name``: of one fold, or (``fold=None``) of all its folds together.

        An unknown split name gives an empty set.
        """
        out: frozenset[str] = frozenset()
        for t in self._named(name, fold):
            out |= t.subjects()
        return out

    def sessions(self, name: str, fold: int | None = None) -> frozenset[tuple[str, str | None]]:
        """``(participant_id, session_id)`` pairs of split ``name``, as :meth:`subjects` chooses tables."""
        out: frozenset[tuple[str, str | None]] = frozenset()
        for t in self._named(name, fold):
            out |= t.sessions()
        return out

    def views(self) -> Iterator[FoldView]:
        """The fold views leakage checks audit, one by one.

        For a k-fold layout: one view per fold, mapping each split name to
        that fold's table, plus the shared tables (the test set). Otherwise a
        single view of every table, with ``fold`` ``None``.
        """
        shared = {t.name: t for t in self.tables if t.fold is None}
        if not self.folds:
            yield FoldView(None, MappingProxyType(dict(shared)))
            return
        for f in self.folds:
            tables = {t.name: t for t in self.tables if t.fold == f}
            for name, t in shared.items():
                tables.setdefault(name, t)
            yield FoldView(f, MappingProxyType(dict(sorted(tables.items(), key=lambda kv: _name_key(kv[0])))))

    def to_frame(self, *, extra: bool = False) -> pd.DataFrame:
        """One frame of every table: ``split, fold, participant_id, session_id, label, file, line``.

        Shared tables appear once (``fold`` missing), not once per fold.
        ``split`` is categorical, ``fold`` nullable ``Int64``.
        """
        import pandas as pd

        if not self.tables:
            return pd.DataFrame({"split": pd.Categorical([]), "fold": pd.array([], dtype="Int64"),
                                 **{c: pd.Series([], dtype=object) for c in _CORE[:-1]},
                                 "line": pd.Series([], dtype="int64")})
        frame = pd.concat([t.to_frame(extra=extra) for t in self.tables], ignore_index=True)
        frame["split"] = pd.Categorical(frame["split"].astype(object), categories=list(self.names))
        frame["file"] = frame["file"].astype("category")
        return frame

    def sizes(self) -> dict[str, int]:
        """Number of participants per split name (all folds together)."""
        return {name: len(self.subjects(name)) for name in self.names}
