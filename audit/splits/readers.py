"""Read split files of the six formats into a :class:`~audit.splits.model.SplitSet`.

Every table file goes through one strict reader (:func:`read_table_file`):

* bytes must be UTF-8 (a leading byte-order mark is dropped; an invalid byte
  is an error naming its line and byte offset); CRLF line ends and blank
  lines (anywhere, trailing included) are accepted;
* a ``.tsv`` must be tab-separated and a ``.csv`` comma-separated: a header
  line without that delimiter but with another one is an error, not a guess;
* the header is line 1 and must name ``participant_id`` (the error lists the
  columns found and suggests the nearest one); duplicate or unnamed columns,
  and rows with more fields than the header, are errors with their line;
* a file with a header and no rows is an error (except for one of several
  per-diagnosis files that together make one split).

Ids are normalised column-wise (:func:`normalise_ids`), so a million-row file
reads in under a second. Errors are :class:`~audit.errors.InputError` with the
file, line, 1-based column and the bad value.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.errors import InputError, did_you_mean, nearest
from audit.splits import datalists
from audit.splits.detect import Part, plan_splits, split_name_of
from audit.splits.ids import compile_pattern, ids_from_paths
from audit.splits.model import (
    SplitSet,
    SplitTable,
    normalise_case_id,
    normalise_split_name,
)
from audit.values import (
    PARTICIPANT_RE,
    SESSION_RE,
    is_missing,
    normalise_participant,
    normalise_session,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["DEFAULT_LABEL", "ParsedTable", "normalise_ids", "read_splits", "read_table_file"]

DEFAULT_LABEL = "diagnosis"
BOM = b"\xef\xbb\xbf"
_DELIMS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
_ID_ALIASES = ("subject", "subject_id", "subjectid", "subject id", "participant", "participantid",
               "participant id", "participants_id", "sub", "sub_id", "id", "ptid", "rid", "case", "case_id")
_TOO_MANY = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
# a full match is already normal (audit.values): the fast path of a clean id column
_PID_FAST = PARTICIPANT_RE
_SES_FAST = SESSION_RE
NNUNET_EXPECTED = 'a list of folds, each {"train": [case ids], "val": [case ids]}'


# ---------------------------------------------------------------------------------------------------------
# one file


@dataclass(frozen=True)
class ParsedTable:
    """A table file as read: its columns (header order) and rows as strings, with 1-based line numbers."""

    path: Path
    columns: tuple[str, ...]
    data: Mapping[str, np.ndarray]  # column name -> object array of str (raw cells), blank lines dropped
    lines: np.ndarray  # int64, 1-based line of each row in the file
    positions: tuple[int, ...]  # 1-based position of each column in the header line
    clean: frozenset[str] = frozenset()  # id columns already checked to be in normal form

    def __len__(self) -> int:
        return len(self.lines)

    def position(self, column: str) -> int:
        """1-based column index of ``column`` in the header line."""
        return self.positions[self.columns.index(column)]


def _load_text(path: Path) -> tuple[bytes, int]:
    """File bytes without a BOM, checked to be UTF-8; the BOM's length is returned for byte offsets."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(path, f"cannot read the file: {err.strerror or err}") from None
    skip = len(BOM) if raw.startswith(BOM) else 0
    raw = raw[skip:]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(path, f"invalid UTF-8 byte 0x{raw[err.start]:02x} at byte offset {err.start + skip}",
                         line=line, column=column, expected="UTF-8 text") from None
    return raw, skip


def _first_nonblank(values: np.ndarray) -> int:
    import numpy as np

    filled = np.fromiter((bool(v.strip()) for v in values), dtype=bool, count=len(values))
    return int(filled.argmax()) if filled.any() else -1


def read_table_file(path: Path, *, allow_empty: bool = False, id_column: str = "participant_id") -> ParsedTable:
    """Read one TSV/CSV split file strictly (see the module docstring); ``id_column`` must be in the header.

    Raises
    ------
    InputError
        Unreadable, not UTF-8, empty, wrong delimiter, malformed rows, no
        ``participant_id`` column, or no rows (unless ``allow_empty``).
    """
    import numpy as np
    import pandas as pd

    raw, _ = _load_text(path)
    if not raw.strip():
        raise InputError(path, "empty file", line=1, expected=f"a header line naming {id_column}")
    first = raw.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")
    if not first.strip():
        raise InputError(path, "line 1 is blank", line=1, expected=f"a header line naming {id_column}")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    if sep not in first and first.strip() != id_column:
        others = [d for d in _DELIMS if d != sep and d in first]
        if others:
            raise InputError(path, f"unknown delimiter: the header has no {_DELIMS[sep]} but "
                             f"{' and '.join(_DELIMS[d] for d in others)}", line=1,
                             expected=f"{_DELIMS[sep]}-separated columns in a {path.suffix.lower()} file",
                             got=_show(first, 80))
    try:
        frame = pd.read_csv(io.BytesIO(raw), sep=sep, header=None, dtype=object, keep_default_na=False,
                            na_filter=False, skip_blank_lines=False, encoding="utf-8",
                            quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL)
    except pd.errors.ParserError as err:
        m = _TOO_MANY.search(str(err))
        if m:
            raise InputError(path, "more fields than the header", line=int(m.group(2)),
                             expected=f"{m.group(1)} fields", got=f"{m.group(3)}") from None
        raise InputError(path, f"cannot parse: {' '.join(str(err).split())}") from None
    except (ValueError, UnicodeDecodeError) as err:  # pragma: no cover - guarded by the checks above
        raise InputError(path, f"cannot parse: {' '.join(str(err).split())}") from None
    cells = [frame.iloc[:, i].to_numpy(dtype=object) for i in range(frame.shape[1])]
    header = [str(c[0]).strip() for c in cells]
    cells = [c[1:] for c in cells]
    keep = []
    for i, name in enumerate(header):
        if name == "":
            bad = _first_nonblank(cells[i])
            if bad >= 0:
                raise InputError(path, f"column {i + 1} has values but no name in the header", line=bad + 2,
                                 column=i + 1, expected="a column name on line 1")
            continue  # a trailing delimiter: an unnamed, empty column
        keep.append(i)
    names = [header[i] for i in keep]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        second = [i for i, h in enumerate(header) if h == dupes[0]][1]
        raise InputError(path, "duplicate column", line=1, column=second + 1, field=dupes[0],
                         expected="each column name once")
    if id_column not in names:
        raise InputError(path, f"no {id_column} column" + (_suggest(names) if id_column == "participant_id" else
                                                            did_you_mean(id_column, names)), line=1,
                         expected=f"a header naming {id_column}", got=", ".join(names) or "no columns")
    positions = tuple(i + 1 for i in keep)
    data = {name: cells[i] for name, i in zip(names, keep)}
    n = len(data[id_column])
    lines = np.arange(2, n + 2, dtype="int64")
    pid = data[id_column]
    clean = id_column == "participant_id" and all(map(_PID_FAST.fullmatch, pid))
    if not clean:
        blank = np.fromiter((not v.strip() for v in pid), dtype=bool, count=n)
        if blank.any():
            # a blank line (dropped), or a row with values but no participant_id (an error)
            idx = np.flatnonzero(blank)
            for name in names:
                bad = _first_nonblank(data[name][idx])
                if bad >= 0:
                    raise InputError(path, f"empty {id_column}", line=int(lines[idx[bad]]),
                                     column=positions[names.index(id_column)], field=id_column,
                                     expected='"sub-<label>"' if id_column == "participant_id" else "a value",
                                     got='""')
            data = {k: v[~blank] for k, v in data.items()}
            lines = lines[~blank]
    if len(lines) == 0 and not allow_empty:
        raise InputError(path, "no rows: the file has a header only", line=2,
                         expected="at least one row after the header")
    return ParsedTable(path, tuple(names), data, lines, positions,
                       frozenset({"participant_id"}) if clean else frozenset())


def _show(value: str, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def _suggest(names: Sequence[str]) -> str:
    lowered = {n.lower(): n for n in names}
    for alias in _ID_ALIASES:
        if alias in lowered:
            return f" (did you mean to name {lowered[alias]!r} participant_id?)"
    near = nearest("participant_id", lowered)
    if near:
        return f" (did you mean to name {lowered[near]!r} participant_id?)"
    return ""


# ---------------------------------------------------------------------------------------------------------
# column-wise work on unique values (pandas' .str methods loop in Python with more overhead than this)


def _by_unique(values: np.ndarray, func: Callable[[str], Any]) -> np.ndarray:
    """``func`` applied to each distinct value once, spread back over the rows (object array)."""
    import numpy as np
    import pandas as pd

    if len(values) == 0:
        return np.empty(0, dtype=object)
    codes, uniques = pd.factorize(values)
    mapped = np.empty(len(uniques), dtype=object)
    mapped[:] = [func(u) for u in uniques]
    return mapped[codes]  # type: ignore[no-any-return]


class _BadId(Exception):
    def __init__(self, value: str, why: str) -> None:
        super().__init__(why)
        self.value, self.why = value, why


def normalise_ids(values: np.ndarray, prefix: str, *, missing_ok: bool,
                  clean: bool = False) -> tuple[np.ndarray, int | None, str]:
    """Normalise a column of ids: strip, add ``prefix`` when missing, check the label is alphanumeric.

    Returns the normalised object array (``None`` for a missing session
    when ``missing_ok``), the row of the first bad value (``None`` when all
    are valid) and why it is bad.
    """

    fast = _PID_FAST if prefix == "sub-" else _SES_FAST
    if clean or all(map(fast.fullmatch, values)):
        return values, None, ""

    normalise = normalise_participant if prefix == "sub-" else normalise_session

    def one(value: str) -> str | None:
        if missing_ok and is_missing(value, only_bids=True):
            return None
        try:
            return normalise(value)
        except ValueError as err:
            raise _BadId(value, str(err)) from None

    try:
        return _by_unique(values, one), None, ""
    except _BadId as err:
        # a Python comparison: numpy's would drop trailing NULs from err.value and find no row (fuzzing, #14)
        bad = next(i for i, v in enumerate(values) if v == err.value)
        return values, bad, err.why


def _ids(parsed: ParsedTable, column: str, prefix: str, *, missing_ok: bool) -> np.ndarray:
    out, bad, why = normalise_ids(parsed.data[column], prefix, missing_ok=missing_ok,
                                  clean=column in parsed.clean)
    if bad is not None:
        raise InputError(parsed.path, why, line=int(parsed.lines[bad]), column=parsed.position(column),
                         field=column, expected=f'"{prefix}<label>" (letters and digits)',
                         got=_show(str(parsed.data[column][bad])))
    return out


def _value(value: str) -> str | None:
    """A label cell: missing as :func:`audit.values.is_missing` (``unknown`` is a literal class)."""
    return None if is_missing(value, unknown=False) else value.strip()


def _frames(parsed: ParsedTable, label: str | None, *, skip: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The core and extra frames of a parsed file (ids normalised)."""
    import numpy as np
    import pandas as pd

    n = len(parsed)
    nothing = np.full(n, None, dtype=object)
    pid = _ids(parsed, "participant_id", "sub-", missing_ok=False)
    ses = _ids(parsed, "session_id", "ses-", missing_ok=True) if "session_id" in parsed.columns else nothing
    lab = _by_unique(parsed.data[label], _value) if label and label in parsed.columns else nothing
    # object columns throughout: pandas would otherwise infer its str dtype and turn None into NaN
    core = pd.DataFrame({
        "participant_id": pd.Series(pid, dtype=object, copy=False),
        "session_id": pd.Series(ses, dtype=object, copy=False),
        "label": pd.Series(lab, dtype=object, copy=False),
        "file": pd.Categorical.from_codes(np.zeros(n, dtype="int8"), categories=[str(parsed.path)]),
        "line": pd.Series(parsed.lines, dtype="int64", copy=False),
    })
    others = [c for c in parsed.columns if c not in ("participant_id", "session_id", *skip)]
    extra = pd.DataFrame({c: pd.Series(_by_unique(parsed.data[c], str.strip), dtype=object, copy=False)
                          for c in others}, index=core.index)
    return core, extra


def _concat(cores: list[pd.DataFrame], extras: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    if len(cores) == 1:
        return cores[0], extras[0]
    core = pd.concat(cores, ignore_index=True)
    core["file"] = core["file"].astype("category")
    extra = pd.concat(extras, ignore_index=True).astype(object)
    extra = extra.where(extra.notna(), None)
    return core, extra


def _union(column_lists: Sequence[Sequence[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for cols in column_lists:
        out.extend(c for c in cols if c not in out)
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# formats


def read_splits(path: str | Path, *, label: str | None = None, id_pattern: str | None = None,
                path_column: str | None = None) -> SplitSet:
    """Read a split input of any of the six formats (contract, "Split inputs").

    Parameters
    ----------
    path : path-like
        A folder of split files, one TSV/CSV with a ``split`` column, a
        ClinicaDL split folder (``split-N/``, or the legacy
        ``train_splits-K/split-N/``), nnU-Net's ``splits_final.json`` or
        ``dataset.json``, a MONAI datalist, or image-path lists
        (:mod:`audit.splits.datalists`).
        :func:`~audit.splits.detect.plan_splits` documents how the format is
        decided.
    label : str, optional
        The column read into :attr:`SplitRow.label` (default: ``diagnosis``
        where a file has it; in a datalist, the entry key, default ``label``).
    id_pattern : str, optional
        ``--id-pattern``: how image paths and case ids name participants
        (:mod:`audit.splits.ids`; default: the documented rules).
    path_column : str, optional
        ``--path-column``: the column (or datalist key) of image paths.

    Raises
    ------
    InputError
        The input cannot be read or does not have the expected shape; the
        message names the file, the line (and column) and what was expected.
    """
    if id_pattern is not None:
        compile_pattern(id_pattern)  # a bad expression is an error whatever the format
    plan = plan_splits(path, path_column=path_column)
    label_col = label or DEFAULT_LABEL
    notes = list(plan.notes)
    id_rule = None
    if plan.format in ("monai", "paths") or (plan.format == "nnunet" and plan.source is not None
                                             and plan.source.name != "splits_final.json" and isinstance(plan.data[1], dict)):
        if plan.format == "paths":
            tables, files, more, rule = datalists.read_path_lists(plan, label=label, id_pattern=id_pattern,
                                                                  read_table=read_table_file)
        else:
            tables, more, rule = datalists.read_datalist(plan, label=label, id_pattern=id_pattern)
            files = [str(plan.source)]
        notes += more
        id_rule = rule.record()
        notes.append(f"participant ids from image paths by rule {rule.name!r} ({id_rule['description']}): "
                     + "; ".join(f"{p} -> {i}" for p, i in rule.examples))
    elif plan.format == "nnunet":
        assert plan.source is not None
        tables, files, id_rule = _read_nnunet(plan.source, id_pattern)
        if plan.parts:  # the test cases of dataset.json beside splits_final.json
            test = plan.parts[0].path
            sub = plan_splits(test)
            more_tables, _, rule = datalists.read_datalist(sub, label=label, id_pattern=id_pattern, only=("test",))
            tables += more_tables
            files.append(str(test))
    elif plan.format == "table":
        assert plan.source is not None
        tables, files = _read_single_table(plan.source, label_col, notes)
    else:
        tables, files = [], []
        for part in plan.parts:
            tables.append(_read_part(part, label_col))
            files.extend(str(f) for f in part.files)
    return SplitSet(plan.format, str(plan.root), tuple(files), tuple(tables), notes=tuple(notes), id_rule=id_rule)


def _read_part(part: Part, label: str) -> SplitTable:
    parsed = [read_table_file(f, allow_empty=part.grouped) for f in part.files]
    if not any(len(p) for p in parsed):
        raise InputError(part.path, f"split {part.name!r} has no rows in any of its files",
                         expected="at least one row")
    frames = [_frames(p, label) for p in parsed]
    core, extra = _concat([c for c, _ in frames], [e for _, e in frames])
    has_label = any(label in p.columns for p in parsed)
    return SplitTable.from_columns(part.name, part.fold, str(part.path), core, extra,
                                   columns=_union([p.columns for p in parsed]),
                                   label_column=label if has_label else None)


def _read_single_table(path: Path, label: str, notes: list[str]) -> tuple[list[SplitTable], list[str]]:
    parsed = read_table_file(path)
    if "split" not in parsed.columns:
        name = split_name_of(path)
        notes.append(f"no split column: the whole file is split {name!r}, named after the file")
        core, extra = _frames(parsed, label)
        return [SplitTable.from_columns(name, None, str(path), core, extra, columns=parsed.columns,
                                        label_column=label if label in parsed.columns else None)], [str(path)]
    import numpy as np

    core, extra = _frames(parsed, label, skip=("split", "fold"))
    split = _by_unique(parsed.data["split"], lambda v: normalise_split_name(v))
    empty = np.flatnonzero(split == "")
    if len(empty):
        raise InputError(path, "empty split", line=int(parsed.lines[empty[0]]), column=parsed.position("split"),
                         field="split", expected="a split name (train, validation, test, ...)", got='""')
    fold = _folds(parsed) if "fold" in parsed.columns else np.full(len(parsed), -1, dtype="int64")
    groups: dict[tuple[str, int | None], np.ndarray] = {}
    for name in sorted(set(split.tolist())):
        in_split = split == name
        for f in sorted(set(fold[in_split].tolist())):
            groups[(name, None if f < 0 else f)] = np.flatnonzero(in_split & (fold == f))
    for (name, f), idx in groups.items():
        if f is None and any(n == name and g is not None for n, g in groups):
            raise InputError(path, f"split {name!r} has rows with a fold and rows without",
                             line=int(parsed.lines[idx[0]]), column=parsed.position("fold"), field="fold",
                             expected="a fold number on every row of a split that has folds", got='""')
    columns = tuple(c for c in parsed.columns if c not in ("split", "fold"))
    tables = []
    for (name, f), idx in groups.items():
        tables.append(SplitTable.from_columns(
            name, f, str(path), core.iloc[idx], extra.iloc[idx], columns=columns,
            label_column=label if label in parsed.columns else None))
    return tables, [str(path)]


class _BadFold(Exception):
    pass


def _fold_value(value: str) -> int:
    s = value.strip()
    if is_missing(s, unknown=False):
        return -1  # shared by every fold
    if re.fullmatch(r"\d+", s):
        return int(s)
    raise _BadFold(value)


def _folds(parsed: ParsedTable) -> np.ndarray:
    import numpy as np

    try:
        return _by_unique(parsed.data["fold"], _fold_value).astype("int64")
    except _BadFold as err:
        value = str(err.args[0])
        bad = int(np.flatnonzero(parsed.data["fold"] == value)[0])
        raise InputError(parsed.path, line=int(parsed.lines[bad]), column=parsed.position("fold"), field="fold",
                         expected="a fold number (0, 1, ...), or an empty cell for a split shared by every fold",
                         got=_show(value)) from None


def _read_nnunet(path: Path, id_pattern: str | None = None) -> tuple[list[SplitTable], list[str], dict[str, Any]]:
    """nnU-Net's ``splits_final.json``: fold ``i`` is the ``i``-th entry of the list.

    ``val`` is split ``validation``; any other key whose value is a list of
    case ids (``test``, say) is a split of that name in that fold. Case ids
    map to participants (and sessions) by
    :func:`~audit.splits.model.normalise_case_id`; the id as written is kept
    in ``extra["case_id"]``, and each row's line is the line of its id.
    """
    import pandas as pd

    raw, _ = _load_text(path)
    text = raw.decode("utf-8")
    if not text.strip():
        raise InputError(path, "empty file", line=1, expected=NNUNET_EXPECTED)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"invalid JSON: {err.msg}", line=err.lineno, column=err.colno,
                         expected=NNUNET_EXPECTED) from None
    if not isinstance(data, list) or not data:
        raise InputError(path, "not nnU-Net splits", expected=NNUNET_EXPECTED,
                         got="an empty list" if data == [] else f"a JSON {_json_type(data)}")
    for i, fold in enumerate(data):
        if not isinstance(fold, dict):
            raise InputError(path, field=f"fold {i}", expected='an object {"train": [...], "val": [...]}',
                             got=f"a JSON {_json_type(fold)}")
        for key in ("train", "val"):
            if key not in fold:
                raise InputError(path, f'no "{key}" list', field=f"fold {i}", expected=NNUNET_EXPECTED,
                                 got="keys " + ", ".join(json.dumps(k) for k in fold) if fold else "an empty object")
        for key, ids in fold.items():
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                what = f"a JSON {_json_type(ids)}" if not isinstance(ids, list) else \
                    f"a list holding a JSON {_json_type(next(x for x in ids if not isinstance(x, str)))}"
                raise InputError(path, field=f'fold {i}, "{key}"', expected="a list of case ids (strings)", got=what)
            if not ids:
                raise InputError(path, "empty list", field=f'fold {i}, "{key}"', expected="at least one case id")
    lines = _string_lines(text, data)
    by_pattern: dict[str, tuple[str, str | None]] = {}
    if id_pattern is not None:
        unique = list(dict.fromkeys(x for fold in data for ids in fold.values() for x in ids))
        rule = ids_from_paths(unique, pattern=id_pattern, source=str(path), where=lambda i: f"case {unique[i]!r}")
        by_pattern = {u: (p, s) for u, p, s in zip(unique, rule.participants, rule.sessions)}
        id_rule = rule.record()
    else:
        id_rule = {"rule": "case-id", "description": "the case ids as written (BIDS entities, or the whole id)",
                   "examples": []}
    tables = []
    k = 0
    for i, fold in enumerate(data):
        for key, ids in fold.items():
            k += 1  # the key's own string token
            pids, sess, where = [], [], []
            for x in ids:
                line = lines[k] if lines else 1
                k += 1
                try:
                    pid, ses = by_pattern[x] if by_pattern else normalise_case_id(x)
                except ValueError as err:
                    raise InputError(path, str(err), line=line, field=f'fold {i}, "{key}"',
                                     expected="a case id (letters, digits, '_', '.', '-')", got=_show(x)) from None
                pids.append(pid)
                sess.append(ses)
                where.append(line)
            n = len(ids)
            core = pd.DataFrame({
                "participant_id": pd.Series(pids, dtype=object), "session_id": pd.Series(sess, dtype=object),
                "label": pd.Series([None] * n, dtype=object), "file": pd.Categorical([str(path)] * n),
                "line": pd.Series(where, dtype="int64")})
            extra = pd.DataFrame({"case_id": pd.Series(list(ids), dtype=object)})
            tables.append(SplitTable.from_columns(normalise_split_name(key), i, str(path), core, extra,
                                                  columns=("participant_id", "session_id", "case_id"),
                                                  label_column=None))
    if not id_rule["examples"]:
        first = tables[0]
        id_rule["examples"] = [{"path": c, "id": p} for c, p in
                               list(dict.fromkeys(zip(first._extra["case_id"], first._core["participant_id"])))[:3]]
    names = [(t.name, t.fold) for t in tables]
    for split_fold in names:
        if names.count(split_fold) > 1:
            raise InputError(path, f"two lists for split {split_fold[0]!r}", field=f"fold {split_fold[1]}",
                             expected="one list per split (val and validation are the same split)")
    return tables, [str(path)], id_rule


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _string_lines(text: str, data: list[dict[str, list[str]]]) -> list[int]:
    """Line of every string token in document order, if they match the parsed keys and ids exactly."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    tokens = [(m.group(0), bisect.bisect_right(newlines, m.start()) + 1) for m in _JSON_STRING.finditer(text)]
    expected = [s for fold in data for key, ids in fold.items() for s in (key, *ids)]
    if len(tokens) != len(expected):
        return []
    for (tok, _), want in zip(tokens, expected):
        if json.loads(tok) != want:
            return []
    return [line for _, line in tokens]
