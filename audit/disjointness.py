"""The level at which each pair of splits is disjoint (CLAIM 2020 item 21; CLAIM 2024: patient level or higher).

For every pair of splits of every fold view, :func:`disjointness` counts the
units the two splits share at five levels, coarse to fine:

``site``
    sites or scanners (``--site``, or the scanner identity of
    :mod:`audit.scanner`: a site column, or the sidecars of the dataset);
``group``
    ``--group`` values (family, patient);
``subject``
    participants;
``session``
    participant sessions (a row without a session stands for every session
    of its participant: with the dataset, those it has; without, one);
``image``
    image files: the paths a datalist or path list names (compared after
    normalisation), or, with a dataset, the images of the shared sessions.

The pair's ``level`` is the coarsest measured unit of which the two splits
share none; ``none`` when they share every measured unit down to the
finest (an image, or a session when images are not measured). A level the
audit has no data for is ``null`` in ``shared`` with the reason in
``not_measured``, never guessed: without a dataset, site (unless a site
column is given) and image (unless the split files name images) are not
measured.

>>> level_of({"site": None, "group": None, "subject": 0, "session": 0, "image": None})
'subject'
>>> level_of({"site": 2, "group": None, "subject": 3, "session": 1, "image": 0})
'image'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import TYPE_CHECKING, Any

from audit.findings import normalise_subject
from audit.scanner import participant_values
from audit.splits.ids import normalise_path
from audit.values import normalise_session

if TYPE_CHECKING:
    from audit.context import AuditContext
    from audit.splits import SplitTable

__all__ = ["LEVELS", "disjointness", "level_of"]

#: Units, coarse to fine.
LEVELS = ("site", "group", "subject", "session", "image")
#: The levels CLAIM 2024 accepts ("the patient level or higher").
PATIENT_OR_HIGHER = ("site", "group", "subject")


def level_of(shared: Mapping[str, int | None]) -> str:
    """The coarsest measured level with nothing shared, else ``none``."""
    for unit in LEVELS:
        if shared.get(unit) == 0:
            return unit
    return "none"


def _images_of(table: SplitTable) -> set[str] | None:
    """Normalised image paths a path-based table names (``None`` for a participant table)."""
    if "image" not in table.columns:
        return None
    out: set[str] = set()
    for _pid, cell in table.column_values("image"):
        if cell:
            out.update(normalise_path(p) for p in str(cell).split("\n"))
    return out


class _Units:
    """Per-audit lookups: site and group of each participant, images of each session (built once)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.reasons: dict[str, str] = {}
        ident = ctx.scanner_identity
        self.site: dict[str, str] | None = {normalise_subject(k): v for k, v in ident.by_subject.items()} \
            if ident.source != "none" and ident.by_subject else None
        if self.site is None:
            self.reasons["site"] = ("no dataset given and no site column (--site)" if ctx.index is None
                                    else "no site column and no scanner fields in the sidecars")
        self.group: dict[str, str] | None = None
        if ctx.options.group:
            self.group = {normalise_subject(k): v for k, v in participant_values(ctx, ctx.options.group).items()}
        else:
            self.reasons["group"] = "no --group given"
        self.sessions: dict[str, tuple[str, ...]] = {}
        self.images: dict[tuple[str, str | None], set[str]] = defaultdict(set)
        if ctx.index is not None:
            self.sessions = {normalise_subject(k): tuple(normalise_session(s) for s in v)
                             for k, v in ctx.index.sessions_by_subject.items()}
            for row in ctx.index.images():
                if row.subject:
                    pid = normalise_subject(row.subject)
                    ses = normalise_session(row.session) if row.session else None
                    self.images[(pid, ses)].add(row.path)
                    self.images[(pid, None)].add(row.path)

    def expand(self, pairs: Iterable[tuple[str, str | None]]) -> set[tuple[str, str | None]]:
        """Sessions a table names, a session-less row standing for each of its participant's sessions."""
        out: set[tuple[str, str | None]] = set()
        for pid, ses in pairs:
            if ses is None and self.sessions.get(pid):
                out.update((pid, s) for s in self.sessions[pid])
            else:
                out.add((pid, ses))
        return out

    def table_images(self, table: SplitTable, sessions: set[tuple[str, str | None]]) -> set[str] | None:
        named = _images_of(table)
        if named is not None:
            return named
        if self.ctx.index is None:
            return None
        out: set[str] = set()
        for key in sessions:
            out |= self.images.get(key, set())
        return out


def _shared_sessions(a: set[tuple[str, str | None]], b: set[tuple[str, str | None]]) -> int:
    """Sessions in both; a participant named without a session on one side shares each of its sessions on the other."""
    both = a & b
    a_all = {p for p, s in a if s is None}
    b_all = {p for p, s in b if s is None}
    extra = {x for x in b if x[0] in a_all} | {x for x in a if x[0] in b_all}
    return len(both | extra)


def _values(mapping: Mapping[str, str] | None, subjects: Iterable[str]) -> set[str] | None:
    if mapping is None:
        return None
    return {mapping[p] for p in subjects if p in mapping}


def disjointness(ctx: AuditContext) -> list[dict[str, Any]]:
    """``splits.disjointness``: one entry per pair of splits (per fold view), in the split set's order."""
    if ctx.splits is None:
        return []
    units = _Units(ctx)
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    cache: dict[int, tuple[Any, ...]] = {}

    def facts(table: SplitTable) -> tuple[Any, ...]:
        key = id(table)
        if key not in cache:
            subjects = set(table.subjects())
            sessions = units.expand(table.sessions())
            cache[key] = (subjects, sessions, units.table_images(table, sessions),
                          _values(units.site, subjects), _values(units.group, subjects))
        return cache[key]

    for fold, tables in ctx.splits.views():
        for a, b in combinations(list(tables), 2):
            ta, tb = tables[a], tables[b]
            ident = (a, b, ta.fold, tb.fold)
            if ta.fold is None and tb.fold is None and ident in seen:
                continue  # two shared tables: the same pair in every fold view
            seen.add(ident)
            sa, sb = facts(ta), facts(tb)
            shared: dict[str, int | None] = {
                "site": None if sa[3] is None else len(sa[3] & sb[3]),
                "group": None if sa[4] is None else len(sa[4] & sb[4]),
                "subject": len(sa[0] & sb[0]),
                "session": _shared_sessions(sa[1], sb[1]),
                "image": None if sa[2] is None or sb[2] is None else len(sa[2] & sb[2]),
            }
            not_measured = {u: units.reasons.get(u) or _image_reason(ctx) for u in LEVELS if shared[u] is None}
            entry: dict[str, Any] = {"splits": [a, b], "level": level_of(shared), "shared": shared}
            if fold is not None and not (ta.fold is None and tb.fold is None):
                entry["fold"] = fold
            if not_measured:
                entry["not_measured"] = not_measured
            entry["patient_level_or_higher"] = entry["level"] in PATIENT_OR_HIGHER
            out.append(entry)
    return out


def _image_reason(ctx: AuditContext) -> str:
    return "no dataset given and the split files name no images" if ctx.index is None else "not measured"
