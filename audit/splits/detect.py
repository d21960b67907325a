"""Which split format a path holds, decided from names only, never guessed.

:func:`plan_splits` looks at a path (without reading any table) and returns a
:class:`Plan`: the format, the tables to build and the files each is made of,
and notes on what was deliberately left out. Anything that fits no rule, or
fits two, is an :class:`~audit.errors.InputError` that says what was expected.

Rules, first match wins:

a file
    ``*.json`` is told apart by its top-level value: a list -> ``nnunet``
    (nnU-Net ``splits_final.json``); an object with nnU-Net/Decathlon keys
    (``numTraining``, ``channel_names``, ``file_ending``, ``modality``) ->
    ``nnunet`` (its ``dataset.json``: ``training`` and ``test`` case lists);
    any other object -> ``monai`` (a MONAI datalist: every key holding a list
    is a split);
    ``*.tsv``/``*.csv`` -> ``table`` (one file with a ``split`` column and
    optionally a ``fold`` column; without a ``split`` column the whole file is
    one split named after the file, as in a folder of split files), unless
    its header has no ``participant_id`` but an image-path column
    (``image``, ``path``, ``filename``, ``file``, or ``--path-column``,
    which always means paths) -> ``paths``;
    ``*.txt`` -> ``paths`` (one image path a line: one split, named after the file).
a folder with ``split-N`` folders (ClinicaDL 1.x ``kfold``)
    ``clinicadl``: in each ``split-N``, every TSV/CSV is a part of the split
    it is named after (``train.tsv`` and ``train_baseline.tsv`` -> ``train``
    of fold N). A test set shared by every fold: ``test.tsv`` /
    ``test_baseline.tsv`` (or a ``test/`` folder) beside the ``split-N``
    folders, else in the parent folder. Other loose split files are an
    error (ambiguous).
a folder with ``<name>_splits-K/split-N`` folders (ClinicaDL's legacy tsvtool, as in AD-DL)
    ``clinicadl``: split ``<name>`` (``train``, ``validation``) of fold N is
    every TSV in ``<name>_splits-K/split-N`` (one file per diagnosis:
    ``AD.tsv``, ``AD_baseline.tsv``, ``CN.tsv``, ...). Test as above
    (AD-DL keeps it in the sibling folder ``../test``). The folder's loose
    files (the pool the folds were drawn from) and its ``train/`` and
    ``validation/`` folders (a separate hold-out split) are not read; the
    notes say so.
a folder with split-named folders (``train/``, ``validation/``, ``val/``, ``test/``) of TSV/CSV files
    ``clinicadl`` (legacy hold-out): each such folder is one split, made of
    all its files (per-diagnosis lists). Loose files not named after a split
    are a pool and are not read; a loose file named after a split is an
    error (ambiguous).
a folder itself named after a split, whose files are not named after splits
    ``clinicadl`` (legacy): one split, named after the folder, made of all
    its files (e.g. AD-DL's ``test/AD_baseline.tsv`` + ``test/CN_baseline.tsv``).
a folder of TSV/CSV files of image paths (as above), or of ``*.txt`` path lists
    ``paths``: one split per file, named after the file.
a folder of TSV/CSV files
    ``folder``: one split per file, named after the file
    (``val``/``valid`` -> ``validation``; a ``_baseline`` suffix, ClinicaDL's
    baseline-session list, names the same split: ``train.tsv`` and
    ``train_baseline.tsv`` are both ``train``). The same split in a ``.tsv``
    and a ``.csv`` is an error (ambiguous).
a folder with ``splits_final.json`` and no TSV/CSV
    ``nnunet`` (nnU-Net's preprocessed folder: a ``dataset.json`` beside it
    that lists ``test`` cases gives the test set shared by every fold; other
    JSON files are not read).
a folder with exactly one ``*.json`` and no TSV/CSV
    that file, as above.

Hidden files, bidsaudit's own ``bidsaudit-certificate.json`` and ``split_params.json``, and files that are neither
TSV/CSV nor JSON are ignored everywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import InputError
from audit.splits.model import KNOWN_SPLITS, SplitFormat, normalise_split_name

__all__ = ["Part", "Plan", "detect_format", "plan_splits", "split_name_of"]

TABLE_SUFFIXES = (".tsv", ".csv")
CERTIFICATE = "bidsaudit-certificate.json"
#: What ``bidsaudit split`` writes beside the split files (parameters and balance statistics).
SPLIT_PARAMS = "split_params.json"
#: bidsaudit's own files, never split files.
OWN_FILES = frozenset({CERTIFICATE, SPLIT_PARAMS})
NNUNET_FILE = "splits_final.json"
EXPECTED = ("a folder of split files (train.tsv, validation.tsv, test.tsv), one TSV/CSV with a split column, "
            "ClinicaDL's split-N folders, nnU-Net's splits_final.json or dataset.json, a MONAI datalist, or "
            "lists of image paths (a TSV/CSV with an image column, or .txt files)")
#: Columns that hold image paths, in the order they are looked for (``--path-column`` names another).
PATH_COLUMNS = ("image", "path", "filename", "file")
#: Keys of nnU-Net's (and the Medical Segmentation Decathlon's) dataset.json.
NNUNET_DATASET_KEYS = ("numTraining", "channel_names", "file_ending", "modality", "tensorImageSize")
_NOT_LISTS = ("readme", "license", "licence", "changes", "requirements", "notes")
_FOLD_DIR = re.compile(r"split-(\d+)")
_LEGACY_KFOLD = re.compile(r"(.+)_splits-(\d+)")


@dataclass(frozen=True)
class Part:
    """One table to build: split ``name`` of ``fold`` from ``files`` (a ``path``: file or folder)."""

    name: str
    fold: int | None
    path: Path
    files: tuple[Path, ...]
    grouped: bool = False  # files are parts of one split (per-diagnosis lists): header-only files allowed


@dataclass(frozen=True)
class Plan:
    """What :func:`~audit.splits.read_splits` will read.

    ``parts`` is empty for the ``table`` and ``nnunet`` formats, whose one
    file (``source``) holds every split.
    """

    format: SplitFormat
    root: Path
    source: Path | None
    parts: tuple[Part, ...]
    notes: tuple[str, ...]
    data: Any = None  # a JSON source: (text, parsed value), read once
    path_column: str | None = None  # a paths source: the column (or datalist key) of image paths


def detect_format(path: str | Path, *, path_column: str | None = None) -> SplitFormat:
    """The split format at ``path``: ``folder``, ``table``, ``clinicadl``, ``nnunet``, ``monai`` or ``paths``.

    Raises
    ------
    InputError
        The path does not exist, or holds no recognisable split files, or
        could be read two ways (ambiguous).
    """
    return plan_splits(path, path_column=path_column).format


def split_name_of(file: Path) -> str:
    """The split a file names: its stem without ``_baseline``, ``val``/``valid`` -> ``validation``."""
    stem = file.name[: -len(file.suffix)] if file.suffix else file.name
    if stem.lower().endswith("_baseline") and len(stem) > len("_baseline"):
        stem = stem[: -len("_baseline")]
    return normalise_split_name(stem)


def _is_table(p: Path) -> bool:
    return p.suffix.lower() in TABLE_SUFFIXES


def _visible(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        raise InputError(folder, f"cannot list the folder: {err.strerror or err}") from None
    return [p for p in entries if not p.name.startswith(".") and p.name not in OWN_FILES]


def _tables_in(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_file() and _is_table(p)]


def _fold_dirs(folder: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for p in _visible(folder):
        m = _FOLD_DIR.fullmatch(p.name)
        if m and p.is_dir():
            n = int(m.group(1))
            if n in out:
                raise InputError(folder, f"two folders for fold {n}: {out[n].name} and {p.name}",
                                 expected="one split-N folder per fold")
            out[n] = p
    return out


def _check_unique(files: list[Path], where: Path) -> None:
    """Two files naming the same split in one folder must differ by ``_baseline`` only, not by extension."""
    seen: dict[tuple[str, bool], Path] = {}
    for f in files:
        key = (split_name_of(f), f.stem.lower().endswith("_baseline"))
        if key in seen:
            raise InputError(where, f"{seen[key].name} and {f.name} name the same split",
                             expected="one file per split (either .tsv or .csv)",
                             got=f"{seen[key].name}, {f.name}")
        seen[key] = f


def _check_group_files(files: list[Path], where: Path) -> None:
    seen: dict[str, Path] = {}
    for f in files:
        key = f.stem.lower()
        if key in seen:
            raise InputError(where, f"{seen[key].name} and {f.name} are the same list in two formats",
                             expected="one file per list (either .tsv or .csv)")
        seen[key] = f


def _named_splits(files: list[Path]) -> list[Path]:
    return [f for f in files if split_name_of(f) in KNOWN_SPLITS]


def _split_dirs(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in _visible(folder):
        if p.is_dir() and normalise_split_name(p.name) in KNOWN_SPLITS and _tables_in(p):
            name = normalise_split_name(p.name)
            if name in out:
                raise InputError(folder, f"folders {out[name].name}/ and {p.name}/ are both split {name!r}",
                                 expected="one folder per split")
            out[name] = p
    return out


def _test_parts(folder: Path, notes: list[str], *, look_up: bool) -> list[Part]:
    """A test set shared by every fold: beside the folds, else (``look_up``) in the parent folder."""
    for where in ([folder, folder.parent] if look_up else [folder]):
        files = [f for f in _tables_in(where) if split_name_of(f) == "test"]
        test_dir = next((p for n, p in _split_dirs(where).items() if n == "test"), None)
        if files and test_dir is not None:
            raise InputError(where, f"both test files ({', '.join(f.name for f in files)}) and a {test_dir.name}/ folder",
                             expected="one test set: test.tsv (or test_baseline.tsv) or a test/ folder")
        if files:
            _check_unique(files, where)
            if where != folder:
                notes.append("test set shared by every fold read from the parent folder: "
                             + ", ".join(str(f) for f in files))
            elif len(files) > 1:
                notes.append(f"test set merged from {', '.join(f.name for f in files)}")
            return [Part("test", None, files[0] if len(files) == 1 else where, tuple(files))]
        if test_dir is not None:
            group = _tables_in(test_dir)
            _check_group_files(group, test_dir)
            notes.append(f"test set shared by every fold: every file of {test_dir} "
                         f"({', '.join(f.name for f in group)})")
            return [Part("test", None, test_dir, tuple(group), grouped=True)]
    return []


def read_json(path: Path, expected: str) -> tuple[str, Any]:
    """The text and value of a JSON file (UTF-8, a BOM dropped), or an :class:`InputError` with line and column."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(path, f"cannot read the file: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(path, f"invalid UTF-8 byte at byte offset {err.start}", expected="UTF-8 text") from None
    if not text.strip():
        raise InputError(path, "empty file", line=1, expected=expected)
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"invalid JSON: {err.msg}", line=err.lineno, column=err.colno,
                         expected=expected) from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply", expected=expected) from None


def _plan_json(root: Path, file: Path, notes: list[str], path_column: str | None) -> Plan:
    text, data = read_json(file, 'nnU-Net\'s splits_final.json (a list of folds) or a MONAI datalist '
                           '({"training": [{"image": ...}], ...})')
    if isinstance(data, list) or file.name == NNUNET_FILE:  # the reader names what a splits_final.json lacks
        return Plan("nnunet", root, file, (), tuple(notes), data=(text, data))
    if not isinstance(data, dict):
        raise InputError(file, "not a split file", expected="a JSON list (nnU-Net splits_final.json) or object "
                         "(a MONAI datalist)", got=f"a JSON {type(data).__name__}")
    fmt: SplitFormat = "nnunet" if any(k in data for k in NNUNET_DATASET_KEYS) else "monai"
    return Plan(fmt, root, file, (), tuple(notes), data=(text, data), path_column=path_column)


def header_of(file: Path) -> list[str]:
    """Column names on line 1 of a TSV/CSV (split by the suffix's delimiter; ``[]`` when unreadable)."""
    try:
        with open(file, "rb") as fh:
            first = fh.readline(65536)
    except OSError:
        return []
    line = first.decode("utf-8-sig", "replace").rstrip("\r\n")
    sep = "\t" if file.suffix.lower() == ".tsv" else ","
    return [c.strip().strip('"') for c in line.split(sep)]


def path_column_of(file: Path, path_column: str | None) -> str | None:
    """The image-path column of a table without ``participant_id`` (``None``: a participant table).

    Raises :class:`InputError` when several columns could hold the paths.
    """
    if path_column is not None:
        return path_column
    header = header_of(file)
    if "participant_id" in header:
        return None
    lowered = {h.lower(): h for h in header}
    found = [lowered[c] for c in PATH_COLUMNS if c in lowered]
    if len(found) > 1:
        raise InputError(file, f"several columns could hold the image paths: {', '.join(found)}", line=1,
                         field="--path-column", expected="one of them named with --path-column")
    return found[0] if found else None


def _is_path_list(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".txt" and p.stem.lower() not in _NOT_LISTS


def plan_splits(path: str | Path, *, path_column: str | None = None) -> Plan:
    """Decide how to read ``path`` (see the module docstring for the rules)."""
    root = Path(path)
    if not root.exists():
        raise InputError(root, "no such file or folder", expected=EXPECTED)
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".json":
            return _plan_json(root, root, [], path_column)
        if suffix in TABLE_SUFFIXES:
            column = path_column_of(root, path_column)
            if column is not None:
                return Plan("paths", root, root, (), (), path_column=column)
            return Plan("table", root, root, (), ())
        if suffix == ".txt":
            return Plan("paths", root, root, (), ())
        raise InputError(root, "not a split file", expected="a .tsv, .csv, .txt or .json file, or a folder",
                         got=f'"{root.suffix or root.name}"')
    if not root.is_dir():
        raise InputError(root, "neither a file nor a folder", expected=EXPECTED)
    half = _LEGACY_KFOLD.fullmatch(root.name)
    if half and _fold_dirs(root):
        raise InputError(root, f"this folder holds only split {normalise_split_name(half.group(1))!r} of a legacy "
                         "ClinicaDL k-fold layout", expected=f"its parent folder ({root.parent}), which holds "
                         f"train_splits-{half.group(2)}/ and validation_splits-{half.group(2)}/")
    if (root / "dataset_description.json").is_file():
        raise InputError(root, "this is a BIDS dataset, not a split folder", expected=EXPECTED)
    entries = _visible(root)
    tables = [p for p in entries if p.is_file() and _is_table(p)]
    jsons = [p for p in entries if p.is_file() and p.suffix.lower() == ".json"]
    folds = _fold_dirs(root)
    legacy: dict[str, tuple[int, Path]] = {}
    for p in entries:
        m = _LEGACY_KFOLD.fullmatch(p.name)
        if m and p.is_dir() and _fold_dirs(p):
            name = normalise_split_name(m.group(1))
            if name in legacy:
                raise InputError(root, f"two k-fold folders for split {name!r}: {legacy[name][1].name}, {p.name}",
                                 expected="one <split>_splits-K folder per split")
            legacy[name] = (int(m.group(2)), p)
    notes: list[str] = []
    if folds and legacy:
        raise InputError(root, "both split-N folders and <split>_splits-K folders",
                         expected="one k-fold layout: split-N/train.tsv (ClinicaDL) or "
                         "train_splits-K/split-N/ (ClinicaDL legacy)")
    if folds:
        return _plan_kfold(root, folds, tables, jsons, notes)
    if legacy:
        return _plan_legacy_kfold(root, legacy, tables, notes)
    split_dirs = _split_dirs(root)
    if split_dirs:
        named = _named_splits(tables)
        if named:
            raise InputError(root, f"both split folders ({', '.join(p.name + '/' for p in split_dirs.values())}) "
                             f"and split files ({', '.join(f.name for f in named)})",
                             expected="either one file per split or one folder per split")
        parts = []
        for name, d in split_dirs.items():
            group = _tables_in(d)
            _check_group_files(group, d)
            parts.append(Part(name, None, d, tuple(group), grouped=True))
            notes.append(f"split {name!r}: every file of {d} ({', '.join(f.name for f in group)})")
        if tables:
            notes.append("not read (not named after a split; a pool the splits were drawn from?): "
                         + ", ".join(f.name for f in tables))
        for p in entries:
            if p.is_dir() and p not in split_dirs.values():
                notes.append(f"not read: folder {p.name}/")
        for d in split_dirs.values():
            _note_nested(d, notes)
        return Plan("clinicadl", root, None, tuple(parts), tuple(notes))
    own = normalise_split_name(root.name)
    if tables and own in KNOWN_SPLITS and not _named_splits(tables):
        _check_group_files(tables, root)
        notes.append(f"the folder is named after split {own!r} and its files are not: they are parts of that "
                     f"one split ({', '.join(f.name for f in tables)})")
        _note_nested(root, notes)
        return Plan("clinicadl", root, None, (Part(own, None, root, tuple(tables), grouped=True),), tuple(notes))
    lists = [p for p in entries if _is_path_list(p)]
    columns = {f: path_column_of(f, path_column) for f in tables}
    if lists or (tables and any(c is not None for c in columns.values())):
        return _plan_path_lists(root, [*tables, *lists], columns, jsons, path_column)
    if tables:
        if jsons:
            raise InputError(root, f"both split tables and JSON ({', '.join(f.name for f in jsons)})",
                             expected="either TSV/CSV split files or one splits_final.json")
        _check_unique(tables, root)
        by_name: dict[str, list[Path]] = {}
        for f in tables:
            by_name.setdefault(split_name_of(f), []).append(f)
        parts = []
        for name, files in by_name.items():
            parts.append(Part(name, None, files[0] if len(files) == 1 else root, tuple(files)))
            if len(files) > 1:
                notes.append(f"split {name!r} merged from {', '.join(f.name for f in files)}")
        for p in entries:
            if p.is_dir():
                notes.append(f"not read: folder {p.name}/")
        return Plan("folder", root, None, tuple(parts), tuple(notes))
    final = [f for f in jsons if f.name == NNUNET_FILE]
    if final or len(jsons) == 1:
        chosen = (final or jsons)[0]
        plan = _plan_json(root, chosen, notes, path_column)
        rest = [f for f in jsons if f != chosen]
        parts: tuple[Part, ...] = ()
        described = next((f for f in rest if f.name == "dataset.json"), None)
        if plan.format == "nnunet" and final and described is not None:
            _, value = read_json(described, "nnU-Net's dataset.json")
            if isinstance(value, dict) and isinstance(value.get("test"), list) and value["test"]:
                parts = (Part("test", None, described, (described,)),)
                notes.append(f"test set shared by every fold: the test cases of {described.name}")
                rest.remove(described)
        if rest:  # nnU-Net's preprocessed folder also holds dataset.json, plans and a fingerprint
            notes.append(f"read {chosen.name}; not read: {', '.join(f.name for f in rest)}")
        return Plan(plan.format, root, chosen, parts, tuple(notes), data=plan.data, path_column=path_column)
    if jsons:
        raise InputError(root, f"{len(jsons)} JSON files and no {NNUNET_FILE} ({', '.join(f.name for f in jsons)})",
                         expected=f"nnU-Net's {NNUNET_FILE}")
    raise InputError(root, "no split files found", expected=EXPECTED)


def _note_nested(folder: Path, notes: list[str]) -> None:
    """Say what lies below a folder that was read flat (its subfolders are never read)."""
    subdirs = [p for p in _visible(folder) if p.is_dir()]
    if not subdirs:
        return
    kfold = [p for p in subdirs if _LEGACY_KFOLD.fullmatch(p.name) and _fold_dirs(p)]
    if kfold:
        notes.append(f"not read: {folder} also holds a k-fold split ({', '.join(p.name + '/' for p in kfold)}); "
                     f"pass {folder} as --splits to audit its folds")
    rest = [p for p in subdirs if p not in kfold]
    if rest:
        notes.append(f"not read: subfolders of {folder}: {', '.join(p.name + '/' for p in rest)}")


def _plan_kfold(root: Path, folds: dict[int, Path], tables: list[Path], jsons: list[Path],
                notes: list[str]) -> Plan:
    loose = [f for f in tables if split_name_of(f) != "test"]
    if loose:
        raise InputError(root, f"split-N folders and loose split files ({', '.join(f.name for f in loose)})",
                         expected="split-N/ folders, with at most a test.tsv (or test_baseline.tsv) beside them")
    other = [n for n in _split_dirs(root) if n != "test"]
    if other:
        raise InputError(root, f"split-N folders and split folders ({', '.join(n + '/' for n in other)})",
                         expected="split-N/ folders, with at most a test set beside them")
    parts = _test_parts(root, notes, look_up=True)
    for n, d in sorted(folds.items()):
        files = _tables_in(d)
        if not files:
            raise InputError(d, "no split files in this fold folder",
                             expected="train.tsv and validation.tsv (or *_baseline.tsv)")
        _check_unique(files, d)
        by_name: dict[str, list[Path]] = {}
        for f in files:
            by_name.setdefault(split_name_of(f), []).append(f)
        if "test" in by_name and parts:
            raise InputError(d, "a test file in a fold folder and a shared test set beside the folds",
                             expected="one test set")
        for name, fs in by_name.items():
            parts.append(Part(name, n, fs[0] if len(fs) == 1 else d, tuple(fs)))
            if len(fs) > 1:
                notes.append(f"fold {n}: split {name!r} merged from {', '.join(f.name for f in fs)}")
    if jsons:
        notes.append("not read: " + ", ".join(f.name for f in jsons))
    return Plan("clinicadl", root, None, tuple(parts), tuple(notes))


def _plan_legacy_kfold(root: Path, legacy: dict[str, tuple[int, Path]], tables: list[Path],
                       notes: list[str]) -> Plan:
    ks = {k for k, _ in legacy.values()}
    if len(ks) > 1:
        raise InputError(root, "k-fold folders with different numbers of folds: "
                         + ", ".join(p.name for _, p in legacy.values()),
                         expected="train_splits-K and validation_splits-K with the same K")
    named = [f for f in _named_splits(tables) if split_name_of(f) != "test"]
    if named:
        raise InputError(root, f"<split>_splits-K folders and loose split files ({', '.join(f.name for f in named)})",
                         expected="train_splits-K/ and validation_splits-K/ folders, with at most a test set")
    parts = _test_parts(root, notes, look_up=True)
    for name, (k, folder) in sorted(legacy.items()):
        if name == "test" and parts:
            raise InputError(root, f"{folder.name}/ and a shared test set", expected="one test set")
        for n, d in sorted(_fold_dirs(folder).items()):
            group = _tables_in(d)
            if not group:
                raise InputError(d, "no split files in this fold folder", expected="TSV files (one per diagnosis)")
            _check_group_files(group, d)
            parts.append(Part(name, n, d, tuple(group), grouped=True))
        notes.append(f"split {name!r} of each fold: every file of {folder.name}/split-N/")
    held = [d for n, d in _split_dirs(root).items() if n != "test"]
    if held:
        notes.append("not read: " + ", ".join(f"{d.name}/" for d in held)
                     + f" (a separate hold-out split; the {ks.pop()}-fold split was read)")
    if tables:
        notes.append("not read (the pool the folds were drawn from): " + ", ".join(f.name for f in tables))
    return Plan("clinicadl", root, None, tuple(parts), tuple(notes))


def _plan_path_lists(root: Path, files: list[Path], columns: dict[Path, str | None], jsons: list[Path],
                     path_column: str | None) -> Plan:
    """A folder of image-path lists: one split per file (a table with a path column, or a .txt list)."""
    people = [f.name for f in files if f in columns and columns[f] is None]
    if people:
        raise InputError(root, f"both participant tables ({', '.join(people)}) and image-path lists "
                         f"({', '.join(f.name for f in files if f.name not in people)})",
                         expected="one kind of split file: participant_id tables or image-path lists")
    if jsons:
        raise InputError(root, f"both image-path lists and JSON ({', '.join(f.name for f in jsons)})",
                         expected="either path lists or one JSON datalist")
    _check_unique(files, root)
    parts = []
    notes: list[str] = []
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(split_name_of(f), []).append(f)
    for name, fs in by_name.items():
        parts.append(Part(name, None, fs[0] if len(fs) == 1 else root, tuple(fs)))
        if len(fs) > 1:
            notes.append(f"split {name!r} merged from {', '.join(f.name for f in fs)}")
    return Plan("paths", root, None, tuple(parts), tuple(notes), path_column=path_column)
