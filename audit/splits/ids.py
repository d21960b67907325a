"""Participant (and session) ids from image paths: one documented rule for a whole split input.

Published splits of medical-imaging code (MONAI datalists, lists of image
paths) name images, not participants. :func:`ids_from_paths` maps every
image path to a participant and, where the path says it, a session, by the
first rule that maps *every* path (rules are tried in this order):

``bids``
    The BIDS entities in the path: ``sub-<label>`` (and ``ses-<label>``) of
    the file name, else of the folders (``.../sub-01/ses-02/anat/x.nii.gz``).
``nnunet``
    nnU-Net's case files: the file name without its extension and without
    the ``_0000`` channel suffix (``BraTS_001_0000.nii.gz`` -> ``BraTS_001``),
    for a file with such a suffix or in an ``imagesTr``/``imagesTs``/
    ``labelsTr`` folder. Case ids map to participants as
    :func:`~audit.splits.model.normalise_case_id` does.
``case-folder``
    BraTS-style trees ``Case/Case_t1.nii.gz``: the folder whose name the file
    name starts with (followed by ``_``, ``-``, ``.``) is the case.
``pattern``
    ``--id-pattern REGEX`` (always wins when given): searched in each path
    (``/``-separated); the participant is the first capture group, or the
    whole match when there is none (a group named ``session`` gives the session).

A rule that maps two different cases to one id by accident is an error
that asks for ``--id-pattern``: ``sub-01`` under two different dataset roots
(``a/sub-01/...`` and ``b/sub-01/...``; a ``derivatives/<pipeline>`` folder
counts as its dataset), or two ``Case1/`` folders under different parents.

>>> rule = ids_from_paths(["ixi/sub-01/anat/sub-01_T1w.nii.gz", "ixi/sub-02/ses-1/anat/x.nii.gz"])
>>> rule.name, rule.participants, rule.sessions
('bids', ('sub-01', 'sub-02'), (None, 'ses-1'))
>>> ids_from_paths(["imagesTr/BraTS_001_0000.nii.gz"]).participants
('sub-BraTS_001',)
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.errors import InputError
from audit.splits.model import normalise_case_id

__all__ = ["IdRule", "RULES", "compile_pattern", "ids_from_paths", "normalise_path", "path_roots"]

#: The default rules, in the order they are tried.
RULES = ("bids", "nnunet", "case-folder")
DESCRIPTIONS = {
    "bids": "the BIDS sub- (and ses-) entities in each path",
    "nnunet": "nnU-Net case ids: the file name without extension and _0000 channel suffix",
    "case-folder": "the case folder of Case/Case_t1.nii.gz trees (BraTS style)",
    "pattern": "--id-pattern",
    "case-id": "the case ids as written (BIDS entities, or the whole id)",
}
MAX_LISTED = 5
_SUB = re.compile(r"(?:^|_)sub-([A-Za-z0-9]+)")
_SES = re.compile(r"(?:^|_)ses-([A-Za-z0-9]+)")
_SUB_DIR = re.compile(r"sub-([A-Za-z0-9]+)")
_SES_DIR = re.compile(r"ses-([A-Za-z0-9]+)")
_EXT = re.compile(r"(\.nii\.gz|\.nii|\.mha|\.mhd|\.nrrd|\.nhdr|\.png|\.tiff?|\.npz|\.npy|\.b2nd|\.dcm|\.h5|\.gz)$",
                  re.IGNORECASE)
# root/sub-X/[ses-Y/]datatype/sub-X[_ses-Y]_..., the usual BIDS path: one match, no split
_BIDS_FAST = re.compile(r"(.*?/)??sub-([A-Za-z0-9]+)/(?:ses-([A-Za-z0-9]+)/)?[A-Za-z0-9]+/"
                        r"sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?_[^/]*")
_CHANNEL = re.compile(r"(.+)_\d{4}$")
_NNUNET_DIR = re.compile(r"(images|labels)T[rs]", re.IGNORECASE)


@dataclass(frozen=True)
class IdRule:
    """The ids of a list of paths and the rule that produced them.

    ``participants``/``sessions`` are aligned with the paths given;
    ``examples`` holds three ``(path, id)`` pairs for the record.
    """

    name: str
    participants: tuple[str, ...]
    sessions: tuple[str | None, ...]
    examples: tuple[tuple[str, str], ...] = ()
    pattern: str | None = None
    description: str = field(default="")

    def record(self) -> dict[str, Any]:
        """The JSON form kept in the result (``splits.id_rule``)."""
        return {"rule": self.name, "description": self.description or DESCRIPTIONS.get(self.name, ""),
                **({"pattern": self.pattern} if self.pattern else {}),
                "examples": [{"path": p, "id": i} for p, i in self.examples]}


def normalise_path(value: str) -> str:
    """A path as compared between splits: ``/``-separated, ``.`` and ``..`` folded (``./a/../b`` -> ``b``)."""
    if ("\\" not in value and "/." not in value and "//" not in value and not value.startswith(".")
            and not value.endswith("/") and value == value.strip()):
        return value  # already normal (the common case: no call into posixpath)
    return posixpath.normpath(value.strip().replace("\\", "/"))


def _is_absolute(p: str) -> bool:
    return p[:1] in ("/", "\\") or p[1:2] == ":"


def path_roots(paths: Sequence[str], where: Callable[[int], str], *, source: str) -> None:
    """Refuse paths that mix absolute ones and relative ones (two different roots), naming both.

    ``where(i)`` says where path ``i`` was read (``line 7``, ``training[3]``).
    """
    flags = [p[:1] in ("/", "\\") or p[1:2] == ":" for p in paths]  # _is_absolute, inlined: 400,000 paths
    if not any(flags) or all(flags):
        return
    first_abs, first_rel = flags.index(True), flags.index(False)
    absolute = [p for p in paths[:10_000] if _is_absolute(p)]
    try:
        root = posixpath.commonpath(absolute) or "/"
    except ValueError:
        root = "/"
    raise InputError(source, f"the paths mix absolute paths under {root} ({where(first_abs)}: {paths[first_abs]}) "
                     f"and relative paths ({where(first_rel)}: {paths[first_rel]}), relative to another root",
                     expected="all paths absolute, or all relative to one folder")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``--id-pattern`` compiled, or an :class:`InputError` that shows where the expression breaks."""
    try:
        return re.compile(pattern)
    except re.error as err:
        pos = err.pos if err.pos is not None else len(pattern)
        raise InputError(None, f"not a valid regular expression: {err.msg} at position {pos}: "
                         f"{pattern[:pos]}<here>{pattern[pos:]}", field="--id-pattern",
                         expected="a Python regular expression whose first group is the participant id") from None


def _bids(path: str) -> tuple[str, str | None, str] | None:
    m = _BIDS_FAST.fullmatch(path)
    if m is not None and m.group(2) == m.group(4) and m.group(3) == m.group(5):
        root = (m.group(1) or "").rstrip("/")
        if "derivatives" not in root:
            return "sub-" + m.group(2), None if m.group(3) is None else "ses-" + m.group(3), root
    folder, name = posixpath.split(path)
    sub = _SUB.search(name)
    ses = _SES.search(name) if sub else None
    parts = folder.split("/") if folder else []
    sub_at = next((i for i in range(len(parts) - 1, -1, -1) if _SUB_DIR.fullmatch(parts[i])), None)
    if sub is None and sub_at is None:
        return None
    pid = sub.group(1) if sub else _SUB_DIR.fullmatch(parts[sub_at]).group(1)  # type: ignore[union-attr]
    if ses is None:
        ses_dir = next((m for p in parts[(sub_at or 0):] if (m := _SES_DIR.fullmatch(p))), None)
        ses_label = ses_dir.group(1) if ses_dir else None
    else:
        ses_label = ses.group(1)
    root = "/".join(parts[:sub_at]) if sub_at is not None else folder
    d = root.find("derivatives")
    if d >= 0 and (d == 0 or root[d - 1] == "/"):
        root = root[:d].rstrip("/")
    return "sub-" + pid, None if ses_label is None else "ses-" + ses_label, root


def _stem(name: str) -> str:
    return _EXT.sub("", name)


def _nnunet(path: str) -> tuple[str, str | None, str] | None:
    folder, name = posixpath.split(path)
    stem = _stem(name)
    m = _CHANNEL.fullmatch(stem)
    if m is None and not _NNUNET_DIR.fullmatch(posixpath.basename(folder)):
        return None
    case = m.group(1) if m else stem
    try:
        pid, ses = normalise_case_id(case)
    except ValueError:
        return None
    return pid, ses, case


def _case_folder(path: str) -> tuple[str, str | None, str] | None:
    folder, name = posixpath.split(path)
    case = posixpath.basename(folder)
    if not case or not name.startswith(case):
        return None
    rest = name[len(case):]
    if rest and rest[0] not in "_-.":
        return None
    try:
        pid, ses = normalise_case_id(case)
    except ValueError:
        return None
    return pid, ses, folder


_RULES: dict[str, Callable[[str], tuple[str, str | None, str] | None]] = {
    "bids": _bids, "nnunet": _nnunet, "case-folder": _case_folder}


def _shown(pid: str, ses: str | None) -> str:
    return pid if ses is None else f"{pid}/{ses}"


def _examples(paths: Sequence[str], pids: Sequence[str], sess: Sequence[str | None]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for p, i, s in zip(paths, pids, sess):
        if i not in seen:
            seen.add(i)
            out.append((p, _shown(i, s)))
            if len(out) == 3:
                break
    return tuple(out)


def _by_pattern(paths: Sequence[str], pattern: str, where: Callable[[int], str], source: str) -> IdRule:
    rx = compile_pattern(pattern)
    names = rx.groupindex
    group: int | str = "participant" if "participant" in names else (
        1 if rx.groups and names.get("session") != 1 else 0)
    pids: list[str] = []
    sess: list[str | None] = []
    missed: list[int] = []
    cache: dict[str, tuple[str, str | None] | None] = {}
    for i, p in enumerate(paths):
        hit = cache.get(p, ())
        if hit == ():
            m = rx.search(p)
            value = m.group(group) if m is not None else None
            ses = m.group("session") if m is not None and "session" in names else None
            hit = None
            if value:
                try:
                    pid = normalise_case_id(value.replace("/", "_"))[0]
                    ses_id = "ses-" + normalise_case_id(ses)[0][4:] if ses else None
                    hit = (pid, ses_id)
                except ValueError:
                    hit = None
            cache[p] = hit
        if hit is None:
            missed.append(i)
            pids.append("")
            sess.append(None)
        else:
            pids.append(hit[0])
            sess.append(hit[1])
    if missed:
        listed = "; ".join(f"{where(i)}: {paths[i]}" for i in missed[:MAX_LISTED])
        raise InputError(source, f"--id-pattern {pattern!r} matches no usable id in {len(missed)} of {len(paths)} "
                         f"paths (first: {listed})", field="--id-pattern",
                         expected="a pattern that finds the participant id in every path")
    return IdRule("pattern", tuple(pids), tuple(sess), _examples(paths, pids, sess), pattern=pattern,
                  description=DESCRIPTIONS["pattern"])


def ids_from_paths(paths: Sequence[str], *, pattern: str | None = None,
                   where: Callable[[int], str] | None = None, source: str = "") -> IdRule:
    """Participant and session of every path, by ``pattern`` or the first default rule that maps them all.

    ``where(i)`` names where path ``i`` was read, for messages (default:
    ``path 1``, ``path 2``...). ``source`` is the file named in errors.

    Raises
    ------
    InputError
        No rule maps every path (the rows no rule maps are listed, and
        ``--id-pattern`` is asked for), a rule maps two different cases to
        one id, or ``pattern`` is invalid or misses some paths.
    """
    where = where or (lambda i: f"path {i + 1}")
    if pattern is not None:
        return _by_pattern(paths, pattern, where, source)
    unique = list(dict.fromkeys(paths))
    best: tuple[int, str, list[int]] | None = None
    for name in RULES:
        func = _RULES[name]
        mapped: dict[str, tuple[str, str | None, str]] = {}
        missed: list[int] = []
        for j, p in enumerate(unique):
            hit = func(p)
            if hit is None:
                missed.append(j)
                if len(missed) > MAX_LISTED and best is not None and len(missed) >= len(best[2]):
                    break
            else:
                mapped[p] = hit
        if not missed:
            _check_collisions(name, mapped, source)
            pids = [mapped[p][0] for p in paths]
            sess = [mapped[p][1] for p in paths]
            return IdRule(name, tuple(pids), tuple(sess), _examples(paths, pids, sess),
                          description=DESCRIPTIONS[name])
        if best is None or len(missed) < len(best[2]):
            best = (len(unique) - len(missed), name, missed)
    assert best is not None
    index = {p: i for i, p in reversed(list(enumerate(paths)))}
    rows = [index[unique[j]] for j in best[2][:MAX_LISTED]]
    listed = "; ".join(f"{where(i)}: {paths[i]}" for i in rows)
    raise InputError(source, f"no rule maps every path to a participant (rules tried: {', '.join(RULES)}; "
                     f"unmapped by {best[1]!r}, first: {listed})", field="--id-pattern",
                     expected="BIDS sub-<label> entities, nnU-Net case files, Case/Case_*.nii.gz folders, or "
                     "--id-pattern REGEX whose first group is the participant id")


def _check_collisions(name: str, mapped: dict[str, tuple[str, str | None, str]], source: str) -> None:
    """Two different cases (dataset roots, case folders, case ids) mapped to one participant: an error."""
    first: dict[str, tuple[str, str]] = {}
    for path, (pid, _ses, case) in mapped.items():
        seen = first.setdefault(pid, (case, path))
        if seen[0] != case:
            what = {"bids": "dataset roots", "nnunet": "case ids", "case-folder": "case folders"}[name]
            raise InputError(source, f"rule {name!r} maps two different cases to {pid}: {seen[1]} and {path} "
                             f"(different {what}: {seen[0] or '.'!r}, {case or '.'!r})", field="--id-pattern",
                             expected="one participant per case; give --id-pattern REGEX to say how paths name "
                             "participants")
