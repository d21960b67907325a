"""leakage.* checks over split tables: ids, groups, pretraining, test independence.

Every fold view of a k-fold layout is audited (the shared test split against
each fold's train and validation). Rows of one subject inside one split (a
longitudinal subject) are never a leak.

Pairs of splits are taken in the split set's order (train, validation, test,
then the others by name), so a finding reads "in both train and test".
Findings and their evidence do not depend on the order of rows or files:
subjects are sorted, and evidence rows are listed by participant, session,
file and line.

Speed: participant sets are cached by the tables; session pairs are built
only for the participants two splits share, from the tables' column frames
(:func:`audit.checks.frames.table_frame`, built once per audit), so a million-row
split set is audited in well under a second when it does not leak.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

from audit.checks.frames import member_of, named, sorted_unique, table_frame
from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding, normalise_subject
from audit.values import is_missing

if TYPE_CHECKING:
    import pandas as pd

    from audit.splits import SplitTable

MAX_EXAMPLES = 50
EVALUATION = ("test", "validation")
FEW = 2000  # up to this many participants, rows are looked up one by one rather than through a frame


def _views(ctx: AuditContext) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    assert ctx.splits is not None
    yield from ctx.splits.views()


def _pairs(tables: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Pairs of split names in the view's order (train, validation, test, others)."""
    return combinations(list(tables), 2)


def _where(fold: int | None) -> dict[str, Any]:
    return {} if fold is None else {"fold": fold}


def _label(fold: int | None, a: str, b: str) -> str:
    return f"{a} and {b}" + ("" if fold is None else f" (fold {fold})")


def _files_of(table: SplitTable, ordered: Sequence[str]) -> list[dict[str, Any]]:
    """The first rows (by participant, session, file, line) of the participants ``ordered`` (sorted) in ``table``.

    Only the first participants are looked up: the rows listed come from them.
    """
    first = ordered[:MAX_EXAMPLES]
    rows = sorted(table.rows_for(first), key=lambda r: (r.participant_id, r.session_id or "", r.file, r.line))
    return [{"participant_id": r.participant_id, "session_id": r.session_id, "file": r.file, "line": r.line}
            for r in rows[:MAX_EXAMPLES]]


def _sessions_of(ctx: AuditContext, table: SplitTable, subjects: Collection[str]) -> pd.DataFrame:
    """``participant_id, session_id`` of (at least) the rows of ``subjects`` in ``table`` (repeats kept).

    A few participants: their rows alone are built. Many: the whole column
    frame is returned, rows of other participants included (selecting them
    would cost more than :func:`shared_sessions` spends on them, and they can
    share no session).
    """
    import pandas as pd

    if len(subjects) <= FEW:
        rows = table.rows_for(subjects)
        return pd.DataFrame({"participant_id": pd.Series([r.participant_id for r in rows], dtype=object),
                             "session_id": pd.Series([r.session_id for r in rows], dtype=object)})
    return table_frame(ctx, table)[["participant_id", "session_id"]]


def shared_sessions(sa: pd.DataFrame, sb: pd.DataFrame) -> tuple[list[str], list[str], int]:
    """Participant sessions of both sides: ``(participant ids, session ids, count)``, sorted.

    ``sa`` and ``sb`` hold ``participant_id, session_id`` rows (repeats
    allowed). A row without a session (``None``) stands for every session of
    its participant, so it shares every named session of that participant on
    the other side. Two rows without a session give nothing (the participant
    overlap is ``leakage.subject_overlap``'s). Ids are coded as integers in
    sorted order, so sorting the codes sorts the pairs.
    """
    import numpy as np
    import pandas as pd

    n = len(sa)
    pcode, pids = pd.factorize(pd.concat([sa["participant_id"], sb["participant_id"]], ignore_index=True), sort=True)
    scode, sessions = pd.factorize(pd.concat([sa["session_id"], sb["session_id"]], ignore_index=True), sort=True)
    width = len(sessions) + 1
    key = pcode.astype(np.int64) * width + (scode.astype(np.int64) + 1)  # session code 0: no session
    named = scode >= 0
    ka, kb = key[:n][named[:n]], key[n:][named[n:]]
    every_a, every_b = pcode[:n][~named[:n]], pcode[n:][~named[n:]]
    both = sorted_unique(np.concatenate([
        ka[member_of(ka, kb)],
        kb[member_of(kb // width, every_a)],
        ka[member_of(ka // width, every_b)],
    ]))
    return ([str(p) for p in pids[both // width]], [str(x) for x in sessions[both % width - 1]], len(both))


@check("leakage.subject_overlap", default="error", needs={"splits"})
def subject_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """A participant is in more than one split."""
    for fold, tables in _views(ctx):
        for a, b in _pairs(tables):
            both = tables[a].subjects() & tables[b].subjects()
            if both:
                ordered = sorted(both)
                yield finding(
                    f"{len(both)} participants are in both {_label(fold, a, b)}{named(ordered, count=len(both))}",
                    splits=(a, b), subjects=ordered,
                    evidence={**_where(fold), "count": len(both),
                              "rows": _files_of(tables[a], ordered) + _files_of(tables[b], ordered)},
                )


@check("leakage.session_overlap", default="error", needs={"splits"})
def session_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """The same participant and session is in more than one split.

    A row without a session means every session of that participant: it
    overlaps every session of that participant on the other side. Two rows
    without a session (a participant on both sides, sessions unnamed) are
    left to ``leakage.subject_overlap``.
    """
    for fold, tables in _views(ctx):
        for a, b in _pairs(tables):
            shared = tables[a].subjects() & tables[b].subjects()
            if not shared:  # no participant on both sides, no session either
                continue
            pids, sessions, count = shared_sessions(_sessions_of(ctx, tables[a], shared),
                                                    _sessions_of(ctx, tables[b], shared))
            if count:
                shown = [f"{p}/{s}" for p, s in zip(pids[:MAX_EXAMPLES], sessions[:MAX_EXAMPLES])]
                ordered = sorted(set(pids))
                yield finding(
                    f"{count} participant sessions are in both {_label(fold, a, b)}" + named(shown, count=count),
                    splits=(a, b), subjects=set(pids),
                    evidence={**_where(fold), "count": count, "sessions": shown,
                              "rows": _files_of(tables[a], ordered) + _files_of(tables[b], ordered)},
                )


def _group_of(ctx: AuditContext) -> dict[str, str]:
    """``participant_id -> group`` from participants.tsv, then (for participants it lacks) the split files.

    In the split files the first table (in the split set's order) and the first row with a value win.
    """
    column = ctx.options.group
    mapping: dict[str, str] = {}
    if not column:
        return mapping
    assert ctx.splits is not None
    for t in reversed(ctx.splits.tables):
        rows = [(pid, g) for pid, g in t.column_values(column) if not is_missing(g, unknown=False)]
        mapping.update(reversed(rows))  # the last update wins: the first row, of the first table
    mapping = {pid: str(g).strip() for pid, g in mapping.items()}
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants:
        table = ctx.index.participants
        for pid, g in zip(table["participant_id"].tolist(), table[column].tolist()):
            if not is_missing(g, unknown=False) and str(pid).strip():
                mapping[normalise_subject(pid)] = str(g).strip()
    return mapping


@check("leakage.group_overlap", default="error", needs={"splits", "group"})
def group_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """Participants of one group (--group: family, patient) are in different splits.

    The evidence lists the first groups (by name) and, for each, the first
    members (by id) on each side.
    """
    groups = _group_of(ctx)
    for fold, tables in _views(ctx):
        where: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for name, table in tables.items():
            for pid in table.subjects():
                g = groups.get(pid)
                if g is not None:
                    where[g][name].add(pid)
        for a, b in _pairs(tables):
            # the same participant on both sides is subject_overlap; here: different members of one group
            cross = {g: m for g, m in where.items()
                     if a in m and b in m and (len(m[a]) > 1 or len(m[b]) > 1 or m[a] != m[b])}
            if cross:
                members = {p for m in cross.values() for p in m[a] | m[b]}
                first = heapq.nsmallest(MAX_EXAMPLES, cross)
                yield finding(
                    f"{len(cross)} groups ({ctx.options.group}) have members in both {_label(fold, a, b)}"
                    + named(first, count=len(cross)),
                    splits=(a, b), subjects=members,
                    evidence={**_where(fold), "column": ctx.options.group, "count": len(cross),
                              "groups": {g: {a: heapq.nsmallest(MAX_EXAMPLES, cross[g][a]),
                                             b: heapq.nsmallest(MAX_EXAMPLES, cross[g][b])} for g in first}},
                )


@check("leakage.pretrain_overlap", default="error", needs={"splits", "pretrain"})
def pretrain_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """Participants used for pretraining are in an evaluation split (test; validation as a warning).

    Each fold is audited: a fold's validation split is named with its fold; a
    test set shared by every fold is reported once.
    """
    assert ctx.pretrain_subjects is not None and ctx.splits is not None
    pretrained = {normalise_subject(p) for p in ctx.pretrain_subjects}
    done: set[tuple[str, int | None]] = set()
    for fold, tables in _views(ctx):
        for name, table in tables.items():
            if name not in EVALUATION or (name, table.fold) in done:
                continue
            done.add((name, table.fold))
            both = table.subjects() & pretrained
            if both:
                where = _where(table.fold)
                yield finding(
                    f"{len(both)} participants used for pretraining are in {name}"
                    + ("" if table.fold is None else f" (fold {table.fold})") + named(both),
                    splits=(name,), subjects=both, severity=None if name == "test" else "warning",
                    evidence={**where, "pretrain": ctx.options.pretrain, "count": len(both),
                              "examples": sorted(both)[:MAX_EXAMPLES]},
                )


@check("leakage.no_test_split", default="warning", needs={"splits"})
def no_test_split(ctx: AuditContext) -> Iterator[Finding]:
    """There is no independent test split (none, or an empty one)."""
    assert ctx.splits is not None
    names = list(ctx.splits.names)
    if "test" not in names:
        yield finding(
            "there is no test split: metrics chosen on validation data are not an independent estimate",
            splits=tuple(names), evidence={"splits": names},
        )
    elif not ctx.splits.subjects("test"):
        yield finding(
            "the test split is empty: metrics chosen on validation data are not an independent estimate",
            splits=("test",), evidence={"splits": names, "test_rows": 0},
        )
