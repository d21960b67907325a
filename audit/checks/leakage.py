"""leakage.* checks over split tables: ids, groups, pretraining, test independence.

Every fold view of a k-fold layout is audited (the shared test split against
each fold's train and validation). Rows of one subject inside one split (a
longitudinal subject) are never a leak.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from itertools import combinations
from typing import Any

from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding

MAX_EXAMPLES = 50
EVALUATION = ("test", "validation")


def _views(ctx: AuditContext) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    assert ctx.splits is not None
    yield from ctx.splits.views()


def _where(fold: int | None) -> dict[str, Any]:
    return {} if fold is None else {"fold": fold}


def _label(fold: int | None, a: str, b: str) -> str:
    return f"{a} and {b}" + ("" if fold is None else f" (fold {fold})")


def _files_of(table: Any, subjects: set[str]) -> list[dict[str, Any]]:
    out = []
    for row in table.rows_for(subjects)[:MAX_EXAMPLES]:
        out.append({"participant_id": row.participant_id, "session_id": row.session_id,
                    "file": row.file, "line": row.line})
    return out


@check("leakage.subject_overlap", default="error", needs={"splits"})
def subject_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """A participant is in more than one split."""
    for fold, tables in _views(ctx):
        for a, b in combinations(sorted(tables), 2):
            both = tables[a].subjects() & tables[b].subjects()
            if both:
                yield finding(
                    f"{len(both)} participants are in both {_label(fold, a, b)}",
                    splits=(a, b), subjects=both,
                    evidence={**_where(fold), "count": len(both),
                              "rows": _files_of(tables[a], both) + _files_of(tables[b], both)},
                )


@check("leakage.session_overlap", default="error", needs={"splits"})
def session_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """The same participant and session is in more than one split."""
    for fold, tables in _views(ctx):
        for a, b in combinations(sorted(tables), 2):
            sa, sb = tables[a].sessions(), tables[b].sessions()
            both = {s for s in sa & sb if s[1] is not None}
            # a row without session means every session of that participant
            any_a = {p for p, s in sa if s is None}
            any_b = {p for p, s in sb if s is None}
            both |= {(p, s) for p, s in sb if p in any_a and s is not None}
            both |= {(p, s) for p, s in sa if p in any_b and s is not None}
            if both:
                pairs = sorted(both)
                yield finding(
                    f"{len(pairs)} participant sessions are in both {_label(fold, a, b)}",
                    splits=(a, b), subjects={p for p, _ in pairs},
                    evidence={**_where(fold), "count": len(pairs),
                              "sessions": [f"{p}/{s}" for p, s in pairs[:MAX_EXAMPLES]]},
                )


def _group_of(ctx: AuditContext) -> dict[str, str] | None:
    column = ctx.options.group
    if not column:
        return None
    mapping: dict[str, str] = {}
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants:
        table = ctx.index.participants
        for pid, g in zip(table["participant_id"], table[column]):
            if g not in ("", "n/a"):
                mapping[pid] = g
    assert ctx.splits is not None
    for t in ctx.splits.tables:
        for pid, g in t.column_values(column):
            if g not in ("", "n/a", None):
                mapping.setdefault(pid, g)
    return mapping


@check("leakage.group_overlap", default="error", needs={"splits", "group"})
def group_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """Participants of one group (--group: family, patient) are in different splits."""
    groups = _group_of(ctx) or {}
    for fold, tables in _views(ctx):
        where: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for name, table in tables.items():
            for pid in table.subjects():
                g = groups.get(pid)
                if g is not None:
                    where[g][name].add(pid)
        for a, b in combinations(sorted(tables), 2):
            # the same participant on both sides is subject_overlap; here: different members of one group
            cross = {g: m for g, m in where.items()
                     if a in m and b in m and any(p != q for p in m[a] for q in m[b])}
            if cross:
                members = sorted({p for m in cross.values() for p in m[a] | m[b]})
                yield finding(
                    f"{len(cross)} groups ({ctx.options.group}) have members in both {_label(fold, a, b)}",
                    splits=(a, b), subjects=members,
                    evidence={**_where(fold), "column": ctx.options.group, "count": len(cross),
                              "groups": {g: {a: sorted(m[a]), b: sorted(m[b])}
                                         for g, m in sorted(cross.items())[:MAX_EXAMPLES]}},
                )


@check("leakage.pretrain_overlap", default="error", needs={"splits", "pretrain"})
def pretrain_overlap(ctx: AuditContext) -> Iterator[Finding]:
    """Participants used for pretraining are in an evaluation split (test; validation as a warning)."""
    assert ctx.pretrain_subjects is not None and ctx.splits is not None
    for name in ctx.splits.names:
        if name not in EVALUATION:
            continue
        both = ctx.splits.subjects(name) & ctx.pretrain_subjects
        if both:
            yield finding(
                f"{len(both)} participants used for pretraining are in {name}",
                splits=(name,), subjects=both, severity=None if name == "test" else "warning",
                evidence={"pretrain": ctx.options.pretrain, "count": len(both)},
            )


@check("leakage.no_test_split", default="warning", needs={"splits"})
def no_test_split(ctx: AuditContext) -> Iterator[Finding]:
    """There is no independent test split."""
    assert ctx.splits is not None
    if "test" not in ctx.splits.names:
        yield finding(
            "there is no test split: metrics chosen on validation data are not an independent estimate",
            splits=tuple(ctx.splits.names), evidence={"splits": list(ctx.splits.names)},
        )
