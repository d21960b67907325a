"""Where a finding points: split-file rows and dataset files, for CI annotations and SARIF.

A finding's evidence names files in a few fixed shapes; :func:`locations_of`
reads them (in this order, duplicates dropped, at most :data:`MAX_LOCATIONS`):

* ``evidence["locations"]``: ``[{"path", "line"?, "root"?}]``, the explicit
  form any check may give (``root`` is ``"dataset"``, the default, or
  ``"cwd"`` for a path as given on the command line);
* ``rows``: ``[{"file", "line"}]``, split-file rows (``leakage.*``): the
  file as the split reader named it (the ``--splits`` argument joined with the
  file name, so relative to the working directory of the run, or absolute);
* ``file`` (+ ``line`` or ``lines``): ``participants.tsv`` and other dataset
  files, except for ``split.*`` checks, whose ``file`` is a split table;
* ``examples``: ``[{"file", "line"?}]`` (the BIDS validator's examples,
  ``/``-prefixed dataset paths), or, for ``quality.missing_metadata``, image
  paths;
* ``files``: ``[{"path"}]`` or ``["path"]`` (images, validator files);
* ``problems``: ``[{"path", "line"?}]`` (unreadable files);
* ``pairs``: ``[{"a": {"path"}, "b": {"path"}}]`` (duplicate images).

Dataset paths are relative to the dataset root. :class:`Resolver` turns a
:class:`Location` into an absolute path and then into a path relative to the
*report root* (the repository checkout in CI: the working directory), which
is what GitHub annotations and SARIF ``uri`` values with the ``%SRCROOT%``
base are relative to. Paths are never resolved through symbolic links: an
annexed image is reported at its place in the dataset, not in the annex.

A finding with no file in its evidence is placed, by :meth:`Resolver.place`,
on the split files of the splits it names (found among the result's
``splits.files``, named like the rows' files), else on the dataset's
``participants.tsv`` (or ``dataset_description.json``), so every CI
annotation has a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from audit.splits.model import normalise_split_name

__all__ = ["Location", "Place", "Resolver", "locations_of", "MAX_LOCATIONS"]

MAX_LOCATIONS = 20
Root = Literal["dataset", "cwd"]


@dataclass(frozen=True)
class Location:
    """A file named by a finding, and its 1-based line when known."""

    path: str
    line: int | None = None
    root: Root = "dataset"
    #: what is at this place (a row's participant and session), when the evidence says
    note: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Place:
    """A location resolved for output: ``path`` relative to the report root (``/``-separated) when
    ``inside``, else absolute; ``line`` 1-based or ``None``."""

    path: str
    line: int | None
    inside: bool
    absolute: str
    root: Root = "dataset"
    note: str | None = None


def _line(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except (TypeError, ValueError):
            return None
    return value if value >= 1 else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _raw(finding: Mapping[str, Any]) -> Iterator[Location]:
    ev = finding.get("evidence") or {}
    if not isinstance(ev, Mapping):
        return
    check = str(finding.get("check") or "")
    for item in ev.get("locations") or []:
        if isinstance(item, Mapping) and _str(item.get("path")):
            root: Root = "cwd" if item.get("root") == "cwd" else "dataset"
            yield Location(item["path"], _line(item.get("line")), root)
    for item in ev.get("rows") or []:
        if isinstance(item, Mapping) and _str(item.get("file")):
            who = "/".join(str(item[k]) for k in ("participant_id", "session_id") if _str(item.get(k)))
            yield Location(item["file"], _line(item.get("line")), "cwd", who or None)
    file = _str(ev.get("file"))
    if file:
        root = "cwd" if check.startswith("split.") else "dataset"
        lines = [n for n in (_line(x) for x in ev.get("lines") or []) if n] if isinstance(ev.get("lines"), list) \
            else []
        if lines:
            yield from (Location(file, n, root) for n in lines)
        else:
            yield Location(file, _line(ev.get("line")), root)
    for item in ev.get("examples") or []:
        if isinstance(item, Mapping) and _str(item.get("file")):
            yield Location(item["file"], _line(item.get("line")))
        elif check == "quality.missing_metadata" and _str(item):
            yield Location(item)
    for item in ev.get("files") or []:
        if isinstance(item, Mapping) and _str(item.get("path")):
            yield Location(item["path"], _line(item.get("line")))
        elif _str(item):
            yield Location(item)
    for item in ev.get("problems") or []:
        if isinstance(item, Mapping) and _str(item.get("path")):
            yield Location(item["path"], _line(item.get("line")))
    for item in ev.get("pairs") or []:
        if isinstance(item, Mapping):
            for side in ("a", "b"):
                s = item.get(side)
                if isinstance(s, Mapping) and _str(s.get("path")):
                    yield Location(s["path"])


def locations_of(finding: Mapping[str, Any], limit: int = MAX_LOCATIONS) -> list[Location]:
    """The files (and lines) a finding (a JSON result's finding dict) names, first ones first.

    A file named both with and without a line keeps the entries with lines.
    """
    out: list[Location] = []
    seen: set[tuple[str, int | None, str]] = set()
    for loc in _raw(finding):
        path = loc.path.strip()
        if loc.root == "dataset":
            path = path.lstrip("/")
        loc = Location(path, loc.line, loc.root, loc.note)
        key = (loc.path, loc.line, loc.root)
        if key in seen:
            continue
        seen.add(key)
        out.append(loc)
    with_line = {(loc.path, loc.root) for loc in out if loc.line}
    out = [loc for loc in out if loc.line or (loc.path, loc.root) not in with_line]
    return out[:limit]


class Resolver:
    """Turn :class:`Location` objects into paths relative to the report root.

    Parameters
    ----------
    dataset_root : path or None
        The audited dataset (the result's ``dataset.path``).
    root : path, optional
        The report root (default: the working directory); paths under it are
        given relative to it.
    cwd : path, optional
        What ``"cwd"`` locations are relative to (default: the working directory).
    """

    def __init__(self, dataset_root: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        self.cwd = os.path.abspath(cwd if cwd is not None else os.getcwd())
        self.root = self._abs(root if root is not None else self.cwd)
        self.dataset_root = self._abs(dataset_root) if dataset_root else None

    def _abs(self, path: str | os.PathLike[str]) -> str:
        return os.path.normpath(os.path.join(self.cwd, os.fspath(path)))

    def absolute(self, loc: Location) -> str | None:
        if os.path.isabs(loc.path):
            return os.path.normpath(loc.path)
        if loc.root == "cwd":
            return self._abs(loc.path)
        if self.dataset_root is None:
            return None
        return os.path.normpath(os.path.join(self.dataset_root, loc.path))

    def resolve(self, loc: Location) -> Place | None:
        absolute = self.absolute(loc)
        if absolute is None:
            return None
        rel = os.path.relpath(absolute, self.root)
        inside = rel != os.pardir and not rel.startswith(os.pardir + os.sep) and not os.path.isabs(rel)
        shown = PurePosixPath(*rel.split(os.sep)).as_posix() if inside else absolute
        return Place(shown, loc.line, inside, absolute, loc.root, loc.note)

    def fallback(self, finding: Mapping[str, Any], result: Mapping[str, Any]) -> list[Location]:
        """Where a finding without files is shown: its splits' files, else the dataset's participants table."""
        splits = [str(s) for s in finding.get("splits") or []]
        files = [str(f) for f in ((result.get("splits") or {}).get("files") or [])]
        if files:
            order = {name: i for i, name in enumerate(splits)}
            chosen = sorted((f for f in files if _split_of(f) in order), key=lambda f: order[_split_of(f)])
            if not chosen and splits:
                chosen = files[:1]
            if chosen:
                return [Location(f, root="cwd") for f in chosen]
        if self.dataset_root is not None:
            for name in ("participants.tsv", "dataset_description.json"):
                if os.path.lexists(os.path.join(self.dataset_root, name)):
                    return [Location(name)]
        if files:
            return [Location(files[0], root="cwd")]
        return []

    def place(self, finding: Mapping[str, Any], result: Mapping[str, Any], *,
              fallback: bool = True) -> list[Place]:
        """Resolved places of a finding (its own locations, else the fallback)."""
        places = [p for p in (self.resolve(loc) for loc in locations_of(finding)) if p is not None]
        if not places and fallback:
            places = [p for p in (self.resolve(loc) for loc in self.fallback(finding, result)) if p is not None]
        return places


def _split_of(path: str) -> str:
    """The split a split file holds, by its name (``val.tsv`` -> ``validation``)."""
    name = PurePosixPath(path.replace("\\", "/")).name
    return normalise_split_name(name.split(".", 1)[0])


def group_by_file(places: Sequence[Place]) -> list[Place]:
    """The first place of each file, in order."""
    seen: set[str] = set()
    out = []
    for p in places:
        if p.path not in seen:
            seen.add(p.path)
            out.append(p)
    return out
