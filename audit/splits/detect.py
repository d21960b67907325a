"""Which split format a path holds, decided from names only, never guessed.

:func:`plan_splits` looks at a path (without reading any table) and returns a
:class:`Plan`: the format, the tables to build and the files each is made of,
and notes on what was deliberately left out. Anything that fits no rule, or
fits two, is an :class:`~audit.errors.InputError` that says what was expected.

Rules, first match wins:

a file
    ``*.json`` -> ``nnunet`` (nnU-Net ``splits_final.json``);
    ``*.tsv``/``*.csv`` -> ``table`` (one file with a ``split`` column and
    optionally a ``fold`` column; without a ``split`` column the whole file is
    one split named after the file, as in a folder of split files).
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
a folder of TSV/CSV files
    ``folder``: one split per file, named after the file
    (``val``/``valid`` -> ``validation``; a ``_baseline`` suffix, ClinicaDL's
    baseline-session list, names the same split: ``train.tsv`` and
    ``train_baseline.tsv`` are both ``train``). The same split in a ``.tsv``
    and a ``.csv`` is an error (ambiguous).
a folder with ``splits_final.json`` (or exactly one ``*.json``) and no TSV/CSV
    ``nnunet`` (nnU-Net's preprocessed folder: its other JSON files are not read).

Hidden files, bidsaudit's own ``bidsaudit-certificate.json`` and ``split_params.json``, and files that are neither
TSV/CSV nor JSON are ignored everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
            "ClinicaDL's split-N folders, or nnU-Net's splits_final.json")
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


def detect_format(path: str | Path) -> SplitFormat:
    """The split format at ``path``: ``folder``, ``table``, ``clinicadl`` or ``nnunet``.

    Raises
    ------
    InputError
        The path does not exist, or holds no recognisable split files, or
        could be read two ways (ambiguous).
    """
    return plan_splits(path).format


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


def plan_splits(path: str | Path) -> Plan:
    """Decide how to read ``path`` (see the module docstring for the rules)."""
    root = Path(path)
    if not root.exists():
        raise InputError(root, "no such file or folder", expected=EXPECTED)
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".json":
            return Plan("nnunet", root, root, (), ())
        if suffix in TABLE_SUFFIXES:
            return Plan("table", root, root, (), ())
        raise InputError(root, "not a split file", expected="a .tsv, .csv or .json file, or a folder",
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
        rest = [f.name for f in jsons if f != chosen]
        if rest:  # nnU-Net's preprocessed folder also holds dataset.json, plans and a fingerprint
            notes.append(f"read {chosen.name}; not read: {', '.join(rest)}")
        return Plan("nnunet", root, chosen, (), tuple(notes))
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
