"""Split writing: the split files of a layout (folder, ClinicaDL) and ``split_params.json``, audited first.

Every file is written atomically, ``split_params.json`` last; an output
folder not written by ``bidsaudit split`` is refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.fsutil import atomic_write_text
from audit.splits.plan import (
    LAYOUTS,
    PARAMS_FILE,
    SplitError,
    SplitIntegrityError,
    SplitResult,
    _few,
)
from audit.values import normalise_participant

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex

__all__ = ["write_splits"]

_FILE_RE = re.compile(r"^(?:clinicadl/)?(?:(?:train|validation|test)\.tsv|split-\d+/(?:train|validation)\.tsv)$")


def _sessions_of(index_or_sessions: Any) -> tuple[Mapping[str, Sequence[str]], set[str] | None]:
    if index_or_sessions is None:
        return {}, None
    if hasattr(index_or_sessions, "sessions_by_subject"):
        return index_or_sessions.sessions_by_subject, set(index_or_sessions.subjects)
    return {normalise_participant(k, validate=False): tuple(v) for k, v in dict(index_or_sessions).items()}, None


def _files(result: SplitResult, layout: str) -> dict[str, frozenset[str]]:
    """relative path -> members, for the layout."""
    sets = result.splits()
    if result.kfold:  # leave-site-out folds have no test split: no empty test.tsv
        return {f"{name}.tsv": members for name, members in sets.items() if members or name != "test"}
    out: dict[str, frozenset[str]] = {}
    if layout in ("folder", "both"):
        out.update({f"{name}.tsv": sets[name] for name in ("train", "validation", "test")})
    if layout in ("clinicadl", "both"):
        pre = "clinicadl/" if layout == "both" else ""
        out[f"{pre}split-0/train.tsv"] = sets["train"]
        out[f"{pre}split-0/validation.tsv"] = sets["validation"]
        out[f"{pre}test.tsv"] = sets["test"]
    return out


def _audit_files(result: SplitResult, files: dict[str, list[tuple[str, str]]]) -> None:
    """Audit what is about to be written: the rows themselves, not the plan."""
    def members(path: str) -> set[str]:
        return {p for p, _ in files[path]}

    for path, rows in files.items():
        if len(set(rows)) != len(rows):
            raise SplitIntegrityError(f"{path} repeats a participant session")
    prefixes = {p.rsplit("test.tsv", 1)[0] for p in files if p.endswith("test.tsv")}
    everyone = set(result.assignments)
    for pre in prefixes:
        test = members(f"{pre}test.tsv")
        if pre + "train.tsv" in files:  # folder format
            tr, va = members(f"{pre}train.tsv"), members(f"{pre}validation.tsv")
            if tr & va or tr & test or va & test:
                raise SplitIntegrityError(f"{pre or './'}: a participant is in two split files")
            if tr | va | test != everyone:
                raise SplitIntegrityError(f"{pre or './'}: the split files do not cover the split")
            sessions: dict[tuple[str, str], str] = {}
            for name in ("train", "validation", "test"):
                for row in files[f"{pre}{name}.tsv"]:
                    if sessions.setdefault(row, name) != name:
                        raise SplitIntegrityError(f"session {row} is in two split files")
        folds = sorted({p[len(pre):].split("/")[0] for p in files if p.startswith(pre + "split-")})
        seen: set[str] = set()
        for f in folds:
            tr, va = members(f"{pre}{f}/train.tsv"), members(f"{pre}{f}/validation.tsv")
            if tr & va or (tr | va) & test or tr | va | test != everyone or va & seen:
                raise SplitIntegrityError(f"{pre}{f}: overlapping or incomplete train/validation/test")
            seen |= va
        if folds and len(folds) > 1 and seen | test != everyone:
            raise SplitIntegrityError(f"{pre or './'}: the validation folds do not cover the training pool")


def _render(rows: list[tuple[str, str]], result: SplitResult, with_session: bool) -> str:
    header = ["participant_id"] + (["session_id"] if with_session else []) + list(result.columns)
    lines = ["\t".join(header)]
    for pid, ses in rows:
        vals = [result.values.get(pid, {}).get(c, "n/a") for c in result.columns]
        lines.append("\t".join([pid] + ([ses] if with_session else []) + vals))
    return "\n".join(lines) + "\n"


def _check_output(output: Path) -> list[str]:
    """Refuse an output that is a file, or a non-empty folder not written by ``bidsaudit split``;
    return the files a previous split wrote there."""
    if output.exists() and not output.is_dir():
        raise SplitError(output, "is a file", expected="a folder for the split files")
    if not output.is_dir():
        return []
    entries = [e.name for e in output.iterdir()]
    if not entries:
        return []
    params = output / PARAMS_FILE
    if not params.is_file():
        # split files alone (a run interrupted before its split_params.json) may be replaced
        found = [p.relative_to(output).as_posix() for p in output.rglob("*") if not p.is_dir()]
        if all(_FILE_RE.match(f) for f in found):
            return found
        raise SplitError(output, f"the folder is not empty and holds no {PARAMS_FILE}: refusing to mix new "
                         "split files with files bidsaudit did not write", expected="an empty or new folder")
    try:
        old = json.loads(params.read_text(encoding="utf-8"))
        files = old["files"]
        names = list(files) if isinstance(files, dict) else [str(f) for f in files]
    except (OSError, ValueError, KeyError, TypeError):
        raise SplitError(params, "unreadable or not written by bidsaudit split; refusing to overwrite "
                         "the folder", expected="an empty or new folder") from None
    return [n for n in names if _FILE_RE.match(n)]


def write_splits(result: SplitResult, index_or_sessions: DatasetIndex | Mapping[str, Sequence[str]] | None,
                 output: str | Path, *, layout: str = "folder") -> list[Path]:
    """Write the split files and ``split_params.json``; return the paths written.

    Parameters
    ----------
    result : SplitResult
    index_or_sessions : DatasetIndex, mapping or None
        Where sessions come from: a :class:`DatasetIndex`
        (``sessions_by_subject``; participants must have a folder), or
        ``{participant_id: [session_id, ...]}``, or None (no sessions). Each
        participant gets one row per session; without sessions one row (with
        ``session_id`` ``n/a`` when other participants have sessions; no
        ``session_id`` column when nobody has any).
    output : path
        A new or empty folder, or one a previous ``bidsaudit split`` wrote
        (its old split files are replaced; stale ones removed).
    layout : {"folder", "clinicadl", "both"}
        ``folder``: ``train.tsv``, ``validation.tsv``, ``test.tsv``.
        ``clinicadl``: ``split-0/train.tsv``, ``split-0/validation.tsv``,
        ``test.tsv``. ``both``: the folder format, plus the ClinicaDL layout
        under ``clinicadl/``. A k-fold result is always written in ClinicaDL's
        layout (``split-N/`` + ``test.tsv``); ``folder`` is refused for it.

    Every file is written atomically; ``split_params.json`` last.
    """
    output = Path(output)
    if layout not in LAYOUTS:
        raise SplitError(None, None, field="layout", expected=" or ".join(LAYOUTS), got=repr(layout))
    if result.kfold and layout == "folder":
        raise SplitError(None, "the folder format holds one train/validation/test split, not folds",
                         field="layout", expected="'clinicadl' or 'both' for a k-fold split")
    sessions, known = _sessions_of(index_or_sessions)
    if known is not None:
        missing = sorted(set(result.assignments) - known)
        if missing:
            raise SplitError(getattr(index_or_sessions, "root", None),
                             f"participant(s) {_few(missing)} have no folder in the dataset")
    with_session = any(sessions.get(p) for p in result.assignments)
    per_pid = {p: [(p, s) for s in sorted(sessions.get(p) or ())] or [(p, "n/a")] for p in result.assignments}
    plan_files = _files(result, layout)
    rows = {path: [row for p in sorted(members) for row in per_pid[p]] for path, members in plan_files.items()}
    _audit_files(result, rows)
    texts = {path: _render(r, result, with_session) for path, r in rows.items()}
    try:
        old = _check_output(output)
    except OSError as err:
        raise SplitError(output, f"cannot read the output folder: {err.strerror or err}") from None
    params = dict(result.params)
    params["layout"] = "clinicadl" if result.kfold else layout
    params["files"] = {path: {"participants": len(plan_files[path]), "rows": len(r)} for path, r in rows.items()}
    params["balance"] = result.balance
    params_text = json.dumps(_jsonable(params), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    try:
        output.mkdir(parents=True, exist_ok=True)
        written = [atomic_write_text(output / path, text) for path, text in texts.items()]
        for stale in sorted(set(old) - set(texts)):
            target = output / stale
            try:
                target.unlink()
            except FileNotFoundError:
                pass
            parent = target.parent
            while parent != output and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        written.append(atomic_write_text(output / PARAMS_FILE, params_text))
    except OSError as err:
        where = err.filename or output
        raise SplitError(where, f"cannot write: {err.strerror or err}") from None
    return written


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in obj]
        return sorted(items) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj
