"""Read split inputs that name images, not participants: MONAI datalists, nnU-Net's dataset.json, path lists.

MONAI datalist (format ``monai``)
    A JSON object; every key holding a list is a split (``training`` ->
    ``train``, ``validation``/``val``, ``test``/``testing`` -> ``test``, any
    other name kept). Entries are objects with ``image`` (a path, or a list of
    paths: the channels of one case) and optional ``label`` and ``fold``.
    A ``fold`` (a non-negative integer) on the entries of the training list
    makes it k-fold: fold k's validation is the entries with ``fold == k``,
    its training all the others; every other list is a further split shared
    by every fold (``test`` held out from every fold). Keys that hold no
    list (``description``, ``labels``) are noted and not read.
nnU-Net / Decathlon ``dataset.json`` (format ``nnunet``)
    The same shape (``training`` entries ``{"image", "label"}``), and its
    ``test`` list may hold plain paths. nnU-Net v2's dataset.json lists no
    cases: an error that asks for ``splits_final.json``.
Image-path lists (format ``paths``)
    A TSV/CSV with a column of image paths (``image``, ``path``,
    ``filename``, ``file``, or ``--path-column``) and a ``split`` column (and
    optionally ``fold``), or one file per split (a table, or a ``.txt`` list
    of one path a line; blank lines and ``#`` comments skipped).

Each row is one entry (one case); its participant and session come from its
first image path by :func:`audit.splits.ids.ids_from_paths` (one rule for the
whole input, recorded in :attr:`SplitSet.id_rule`). The entry's paths are
kept in ``extra["image"]`` (``\\n``-joined, as written), so two splits can be
compared image by image. Bad input is an :class:`~audit.errors.InputError`
naming the file and the key and index (``training[3]``) or the line.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audit.errors import InputError, did_you_mean
from audit.splits.detect import Part, Plan, path_column_of, split_name_of
from audit.splits.ids import IdRule, ids_from_paths, normalise_path, path_roots
from audit.splits.model import SplitTable, normalise_split_name
from audit.values import is_missing

__all__ = ["read_datalist", "read_path_lists", "IMAGE_KEY", "split_of_key"]

IMAGE_KEY = "image"
_KEY_ALIASES = {"training": "train", "testing": "test"}
_IMAGE_SUFFIX = re.compile(r"\.(nii(\.gz)?|mha|mhd|nrrd|png|tiff?|npz|npy|dcm|h5)$", re.IGNORECASE)
DATALIST_EXPECTED = '{"training": [{"image": "path" or ["paths"], "label": ..., "fold": 0}, ...], "test": [...]}'


def split_of_key(key: str) -> str:
    """The split a datalist key names: ``training`` -> ``train``, ``testing`` -> ``test``, ``val`` -> ``validation``."""
    return _KEY_ALIASES.get(key.strip().lower(), normalise_split_name(key))


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _label_of(value: Any) -> str | None:
    """A class label as text; ``None`` for a missing one or a segmentation path (not a class)."""
    if value is None or isinstance(value, (dict, list)):
        return None if value is None or isinstance(value, dict) else ",".join(map(str, value))
    text = str(value).strip()
    if is_missing(text, unknown=False) or "/" in text or _IMAGE_SUFFIX.search(text):
        return None
    return text


def _columns(ids: IdRule, labels: Sequence[str | None], images: Sequence[str], lines: Sequence[int],
             files: str | Sequence[str], extra: dict[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """Every row's values as arrays, made once and shared by the tables (each takes its rows)."""
    import numpy as np

    return {"participant_id": _objects(ids.participants), "session_id": _objects(ids.sessions),
            "label": _objects(labels), "line": np.asarray(lines, dtype="int64"),
            "file": files if isinstance(files, str) else _objects(files), "image": _objects(images),
            **{k: _objects(v) for k, v in (extra or {}).items()}}


def _table(name: str, fold: int | None, path: str, rows: Sequence[int], cols: dict[str, Any],
           label_column: str | None) -> SplitTable:
    import numpy as np
    import pandas as pd

    idx = np.asarray(rows, dtype="int64")
    n = len(idx)
    file = cols["file"]
    core = pd.DataFrame({
        **{k: pd.Series(cols[k][idx], dtype=object, copy=False) for k in ("participant_id", "session_id", "label")},
        "file": pd.Categorical([file]).take(np.zeros(n, dtype="int64")) if isinstance(file, str)
        else pd.Categorical(file[idx]),
        "line": pd.Series(cols["line"][idx], dtype="int64", copy=False),
    })
    names = [k for k in cols if k not in ("participant_id", "session_id", "label", "line", "file")]
    frame = pd.DataFrame({k: pd.Series(cols[k][idx], dtype=object, copy=False) for k in names}, index=core.index)
    return SplitTable.from_columns(name, fold, path, core, frame, columns=("participant_id", "session_id", *names),
                                   label_column=label_column)


def _objects(values: Sequence[Any]) -> Any:
    import numpy as np

    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


class _Slow(Exception):
    """The fast path met something to look at entry by entry (an error to name)."""


_MISS = object()


def _labels(values: Sequence[Any]) -> list[str | None]:
    cache: dict[Any, str | None] = {}
    out: list[str | None] = []
    for v in values:
        if isinstance(v, (list, dict)):
            out.append(_label_of(v))
            continue
        key = (type(v), v)
        hit = cache.get(key, _MISS)
        if hit is _MISS:
            hit = cache[key] = _label_of(v)
        out.append(hit)  # type: ignore[arg-type]
    return out


def _paths_ok(values: Sequence[Any]) -> bool:
    for v in values:
        if type(v) is str:
            if not v or (v[0].isspace() and not v.strip()):
                return False
        elif type(v) is not list or not v or not all(type(p) is str and p.strip() for p in v):
            return False
    return True


def _folds_ok(folds: Sequence[Any]) -> bool:
    return all(t is type(None) or (t is int and f >= 0) for t, f in {(type(f), f) for f in folds})


def _entry(path: Path, where: str, entry: Any, key_image: str, key_label: str, loose: bool) -> tuple[Any, Any, Any]:
    """One entry checked (the slow path, that names what is wrong): its image value, fold and label."""
    if isinstance(entry, str) and loose:
        return entry, None, None
    if not isinstance(entry, dict):
        raise InputError(path, f"the list holds {_json_type(entry)}", field=where,
                         expected=f'an object with "{key_image}" (a datalist entry)', got=_show(entry))
    if key_image not in entry:
        raise InputError(path, f'no "{key_image}" key' + did_you_mean(key_image, entry), field=where,
                         expected=f'an entry with "{key_image}": a path or a list of paths',
                         got="keys " + ", ".join(map(repr, entry)) if entry else "an empty object")
    value = entry[key_image]
    if not _paths_ok([value]):
        raise InputError(path, field=f'{where}, "{key_image}"', expected="a path or a non-empty list of paths",
                         got=_show(value))
    fold = entry.get("fold")
    if not _folds_ok([fold]):
        raise InputError(path, "fold is not an integer" if not isinstance(fold, int) or isinstance(fold, bool)
                         else "negative fold", field=f'{where}, "fold"', expected="a fold number (0, 1, ...)",
                         got=_show(fold))
    return value, fold, entry.get(key_label)


def _key_lines(text: str, key: str, count: int) -> list[int]:
    """Line of each ``"key":`` in the text, when there are exactly ``count`` of them (else ``[]``)."""
    rx = re.compile(r'"' + re.escape(key) + r'"\s*:')
    out: list[int] = []
    line, last = 1, 0
    for m in rx.finditer(text):
        line += text.count("\n", last, m.start())
        last = m.start()
        out.append(line)
    return out if len(out) == count else []


def read_datalist(plan: Plan, *, label: str | None, id_pattern: str | None,
                  only: Sequence[str] | None = None) -> tuple[list[SplitTable], list[str], IdRule]:
    """A MONAI datalist or an nnU-Net dataset.json (see the module docstring); ``only``: the keys to read."""
    assert plan.source is not None and plan.data is not None
    path = plan.source
    text, data = plan.data
    key_image = plan.path_column or IMAGE_KEY
    key_label = label or "label"
    loose_strings = plan.format == "nnunet"
    lists = [(k, v) for k, v in data.items() if isinstance(v, list) and (only is None or k in only)]
    others = [k for k, v in data.items() if not isinstance(v, list)]
    if not lists:
        if plan.format == "nnunet":
            raise InputError(path, "this dataset.json lists no cases (nnU-Net v2 keeps only numTraining)",
                             expected="nnU-Net's splits_final.json, or a dataset.json with training and test lists")
        raise InputError(path, "no key holds a list of entries", expected=DATALIST_EXPECTED,
                         got="keys " + ", ".join(map(repr, data)) if data else "an empty object")
    values: list[Any] = []
    raw: list[Any] = []
    folds: list[Any] = []
    starts: list[int] = []
    for key, entries in lists:
        starts.append(len(values))
        try:
            if loose_strings and any(type(e) is str for e in entries):
                raise _Slow
            v = [e[key_image] for e in entries]
            f = [e.get("fold") for e in entries]
            r = [e.get(key_label) for e in entries]
            if not _paths_ok(v) or not _folds_ok(f):
                raise _Slow
        except (KeyError, TypeError, AttributeError, _Slow):
            checked = [_entry(path, f"{key}[{j}]", e, key_image, key_label, loose_strings) for j, e in enumerate(entries)]
            v, f, r = [c[0] for c in checked], [c[1] for c in checked], [c[2] for c in checked]
        values += v
        folds += f
        raw += r
    has_label = any(x is not None for x in raw)
    labels = _labels(raw)
    every = [p for v in values for p in ((v,) if type(v) is str else v)]
    path_roots(every, lambda i: f"path {i + 1}", source=str(path))
    firsts = [normalise_path(v if type(v) is str else v[0]) for v in values]
    joined = [v if type(v) is str else "\n".join(v) for v in values]  # normalised when compared

    def where(i: int) -> str:
        k = bisect.bisect_right(starts, i) - 1
        return f"{lists[k][0]}[{i - starts[k]}]"

    ids = ids_from_paths(firsts, pattern=id_pattern, where=where, source=str(path))
    lines = _key_lines(text, key_image, len(firsts)) or [1] * len(firsts)
    cols = _columns(ids, labels, joined, lines, str(path))
    tables: list[SplitTable] = []
    names: dict[str, str] = {}
    start = 0
    label_column = key_label if has_label else None
    for key, entries in lists:
        rows = list(range(start, start + len(entries)))
        start += len(entries)
        name = split_of_key(key)
        if name in names:
            raise InputError(path, f"lists {names[name]!r} and {key!r} are both split {name!r}", field=key,
                             expected="one list per split")
        names[name] = key
        if not rows:
            raise InputError(path, "empty list", field=key, expected="at least one entry")
        with_fold = [i for i in rows if folds[i] is not None]
        if not with_fold:
            tables.append(_table(name, None, str(path), rows, cols, label_column))
            continue
        if len(with_fold) != len(rows):
            i = next(i for i in rows if folds[i] is None)
            raise InputError(path, f"list {key!r} has entries with a fold and entries without", field=f"{key}[{i - rows[0]}]",
                             line=lines[i] if lines[i] > 1 else None, expected="a fold on every entry of the list")
        if name != "train":
            raise InputError(path, f"fold numbers in list {key!r}", field=key,
                             expected="folds on the training list only (validation = the entries of fold k)")
        values = sorted({folds[i] for i in rows})  # type: ignore[type-var]
        if len(values) < 2:
            raise InputError(path, f"every entry of {key!r} is in fold {values[0]}: no training data would be left",
                             field=key, expected="two or more fold numbers")
        for k in values:
            val = [i for i in rows if folds[i] == k]
            train = [i for i in rows if folds[i] != k]
            tables.append(_table("train", k, str(path), train, cols, label_column))
            tables.append(_table("validation", k, str(path), val, cols, label_column))
    if any(t.fold is not None for t in tables) and "validation" in names:
        raise InputError(path, f"a {names['validation']!r} list and fold numbers on {names['train']!r}",
                         field=names["validation"], expected="either folds or a validation list")
    notes = [f"k-fold from the fold field of {names['train']!r}: fold k's validation = entries with fold == k"] \
        if any(t.fold is not None for t in tables) else []
    if others and only is None:
        notes.append("not read (not lists of entries): " + ", ".join(map(repr, others)))
    return tables, notes, ids


def _show(value: Any, limit: int = 60) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def _read_lines(file: Path) -> tuple[list[str], list[int]]:
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise InputError(file, f"cannot read the file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise InputError(file, f"invalid UTF-8 byte at byte offset {err.start}", expected="UTF-8 text") from None
    paths, lines = [], []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            paths.append(line)
            lines.append(n)
    if not paths:
        raise InputError(file, "no paths in the file", line=1, expected="one image path a line")
    return paths, lines


def read_path_lists(plan: Plan, *, label: str | None, id_pattern: str | None,
                    read_table: Callable[..., Any]) -> tuple[list[SplitTable], list[str], list[str], IdRule]:
    """Image-path tables and ``.txt`` lists (one file, or one per split): tables, files read, notes, id rule.

    ``read_table`` is :func:`audit.splits.readers.read_table_file` (passed in: that module imports this one).
    """
    parts = plan.parts or (Part(split_name_of(plan.source), None, plan.source, (plan.source,)),)  # type: ignore[arg-type]
    label_col = label or "diagnosis"
    paths: list[str] = []
    lines: list[int] = []
    files: list[str] = []
    labels: list[str | None] = []
    splits: list[tuple[str, int | None]] = []
    extras: dict[str, list[str | None]] = {}
    has_label = False
    notes: list[str] = []
    for part in parts:
        for f in part.files:
            if f.suffix.lower() == ".txt":
                ps, ls = _read_lines(f)
                paths += ps
                lines += ls
                files += [str(f)] * len(ps)
                labels += [None] * len(ps)
                splits += [(part.name, part.fold)] * len(ps)
                continue
            column = path_column_of(f, plan.path_column)
            assert column is not None
            parsed = read_table(f, id_column=column)
            n = len(parsed)
            for c in parsed.columns:
                if c not in (column, "split", "fold"):
                    extras.setdefault(c, [None] * (len(paths)))
                    extras[c] += [str(v).strip() for v in parsed.data[c]]
            paths += [str(v) for v in parsed.data[column]]
            lines += parsed.lines.tolist()
            files += [str(f)] * n
            if label_col in parsed.columns:
                has_label = True
                labels += [_label_of(v) for v in parsed.data[label_col]]
            else:
                labels += [None] * n
            if plan.parts:
                splits += [(part.name, part.fold)] * n
            elif "split" not in parsed.columns:
                notes.append(f"no split column: the whole file is split {part.name!r}, named after the file")
                splits += [(part.name, None)] * n
            else:
                splits += _split_column(parsed)
            for values in extras.values():
                values += [None] * (len(paths) - len(values))
    for values in extras.values():
        values += [None] * (len(paths) - len(values))
    where: Callable[[int], str] = lambda i: f"{Path(files[i]).name} line {lines[i]}"  # noqa: E731
    path_roots(paths, where, source=str(plan.root))
    normal = [normalise_path(p) for p in paths]
    ids = ids_from_paths(normal, pattern=id_pattern, where=where, source=str(plan.root))
    cols = _columns(ids, labels, normal, lines, files, extras)
    groups: dict[tuple[str, int | None], list[int]] = {}
    for i, key in enumerate(splits):
        groups.setdefault(key, []).append(i)
    for name, fold in groups:
        if fold is None and any(n == name and f is not None for n, f in groups):
            i = groups[(name, fold)][0]
            raise InputError(files[i], f"split {name!r} has rows with a fold and rows without", line=lines[i],
                             field="fold", expected="a fold number on every row of a split that has folds")
    tables = []
    for (name, fold), rows in groups.items():
        part_path = next((str(p.path) for p in parts if p.name == name), files[rows[0]])
        tables.append(_table(name, fold, part_path, rows, cols, label_col if has_label else None))
    return tables, sorted(set(files)), notes, ids


def _split_column(parsed: Any) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    has_fold = "fold" in parsed.columns
    for k, raw in enumerate(parsed.data["split"]):
        name = split_of_key(str(raw))
        line = int(parsed.lines[k])
        if not name:
            raise InputError(parsed.path, "empty split", line=line, column=parsed.position("split"), field="split",
                             expected="a split name (train, validation, test, ...)", got='""')
        fold: int | None = None
        if has_fold:
            cell = str(parsed.data["fold"][k]).strip()
            if not is_missing(cell, unknown=False):
                if not cell.isdigit():
                    raise InputError(parsed.path, "fold is not an integer", line=line,
                                     column=parsed.position("fold"), field="fold",
                                     expected="a fold number (0, 1, ...), or an empty cell", got=_show(cell))
                fold = int(cell)
        out.append((name, fold))
    return out
