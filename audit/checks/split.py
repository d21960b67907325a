"""split.* checks, and the label checks that read split tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import combinations

from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding

MAX_EXAMPLES = 50


def _dataset_sessions(ctx: AuditContext) -> tuple[set[str], dict[str, set[str]]]:
    assert ctx.index is not None
    subjects = set(ctx.index.subjects)
    sessions = {s: set(v) for s, v in ctx.index.sessions_by_subject.items()}
    return subjects, sessions


@check("split.unknown_subject", default="error", needs={"splits", "dataset"})
def unknown_subject(ctx: AuditContext) -> Iterator[Finding]:
    """A split names a participant or session that is not in the dataset."""
    assert ctx.splits is not None
    subjects, sessions = _dataset_sessions(ctx)
    for table in ctx.splits.tables:
        unknown = sorted(table.subjects() - subjects)
        if unknown:
            yield finding(f"{len(unknown)} participants in {table.name} are not in the dataset",
                          splits=(table.name,), subjects=unknown,
                          evidence={"file": table.path, "fold": table.fold, "count": len(unknown),
                                    "examples": unknown[:MAX_EXAMPLES]})
        missing_ses = sorted((p, s) for p, s in table.sessions()
                             if s is not None and p in subjects and s not in sessions.get(p, ()))
        if missing_ses:
            yield finding(f"{len(missing_ses)} sessions in {table.name} are not in the dataset",
                          splits=(table.name,), subjects={p for p, _ in missing_ses},
                          evidence={"file": table.path, "fold": table.fold, "count": len(missing_ses),
                                    "examples": [f"{p}/{s}" for p, s in missing_ses[:MAX_EXAMPLES]]})


@check("split.unassigned_subject", default="info", needs={"splits", "dataset"})
def unassigned_subject(ctx: AuditContext) -> Iterator[Finding]:
    """Participants in the dataset that are in no split."""
    assert ctx.splits is not None and ctx.index is not None
    assigned: set[str] = set()
    for table in ctx.splits.tables:
        assigned |= table.subjects()
    rest = sorted(set(ctx.index.subjects) - assigned)
    if rest:
        yield finding(f"{len(rest)} of {len(ctx.index.subjects)} participants in the dataset are in no split",
                      subjects=rest, evidence={"count": len(rest), "examples": rest[:MAX_EXAMPLES]})


@check("split.identical_folds", default="warning", needs={"splits"})
def identical_folds(ctx: AuditContext) -> Iterator[Finding]:
    """Two folds of a k-fold split are identical (a seed that did nothing)."""
    assert ctx.splits is not None
    folds = ctx.splits.folds
    if len(folds) < 2:
        return
    for name in sorted({t.name for t in ctx.splits.tables if t.fold is not None}):
        by_fold = {f: ctx.splits.sessions(name, f) for f in folds}
        same = [(a, b) for a, b in combinations(folds, 2) if by_fold[a] and by_fold[a] == by_fold[b]]
        if same:
            yield finding(
                f"{len(same)} pairs of folds have identical {name} sets: "
                + ", ".join(f"{a}={b}" for a, b in same[:10]),
                splits=(name,), evidence={"split": name, "pairs": [list(p) for p in same],
                                          "sizes": {str(f): len(by_fold[f]) for f in folds}},
            )


@check("split.fold_integrity", default="warning", needs={"splits"})
def fold_integrity(ctx: AuditContext) -> Iterator[Finding]:
    """k-fold validation folds overlap each other or do not cover the training pool."""
    assert ctx.splits is not None
    folds = ctx.splits.folds
    if len(folds) < 2 or "validation" not in ctx.splits.names:
        return
    val = {f: ctx.splits.subjects("validation", f) for f in folds}
    pool: set[str] = set()
    for f in folds:
        pool |= val[f] | ctx.splits.subjects("train", f)
    overlaps = {(a, b): val[a] & val[b] for a, b in combinations(folds, 2) if val[a] & val[b]}
    identical = {k for k, v in overlaps.items() if val[k[0]] == val[k[1]]}
    partial = {k: v for k, v in overlaps.items() if k not in identical}
    if partial:
        subjects = set().union(*partial.values())
        yield finding(
            f"validation sets of {len(partial)} fold pairs overlap ({len(subjects)} participants validated twice)",
            splits=("validation",), subjects=subjects,
            evidence={"pairs": {f"{a}-{b}": len(v) for (a, b), v in sorted(partial.items())}},
        )
    covered = set().union(*val.values())
    uncovered = sorted(pool - covered)
    if uncovered:
        yield finding(
            f"{len(uncovered)} of {len(pool)} participants of the training pool are in no validation fold",
            splits=("validation",), subjects=uncovered,
            evidence={"pool": len(pool), "covered": len(covered), "examples": uncovered[:MAX_EXAMPLES]},
        )


@check("quality.label_conflict", default="error", needs={"splits"})
def label_conflict(ctx: AuditContext) -> Iterator[Finding]:
    """One participant (and session) carries different labels in different files or splits.

    Label sets that nest (every session labelled ``pMCI`` is also labelled
    ``MCI``, as in published ClinicaDL/AD-DL lists where ``MCI.tsv`` is the
    union of ``sMCI.tsv`` and ``pMCI.tsv``) are a label hierarchy for
    another task, not a conflict: they are reported as a note. Labels whose
    sessions overlap without nesting (``AD`` and ``CN`` on one session) are
    errors.
    """
    assert ctx.splits is not None
    seen: dict[tuple[str, str | None], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    # members of each label within each split table (name, fold)
    members: dict[tuple[str, int | None], dict[str, set[tuple[str, str | None]]]] = defaultdict(
        lambda: defaultdict(set))
    for table in ctx.splits.tables:
        for pid, ses, label, where in table.labels():
            if label not in (None, "", "n/a"):
                seen[(pid, ses)][label].append(where)
                members[(table.name, table.fold)][label].add((pid, ses))
    conflicts = {k: v for k, v in seen.items() if len(v) > 1}
    if not conflicts:
        return

    def nested(labels: Iterable[str]) -> bool:
        """Within every split table holding both labels, one label's sessions contain the other's."""
        for a, b in combinations(sorted(labels), 2):
            scopes = [m for m in members.values() if a in m and b in m and m[a] & m[b]]
            if not scopes:
                return False  # the two labels meet only across tables: a real disagreement
            if not (all(m[a] <= m[b] for m in scopes) or all(m[b] <= m[a] for m in scopes)):
                return False
        return True

    real = {k: v for k, v in conflicts.items() if not nested(v)}
    hierarchy = {k: v for k, v in conflicts.items() if k not in real}
    for group, severity, what in ((real, None, "carry conflicting labels"),
                                  (hierarchy, "info", "carry nested labels (a label hierarchy, not a conflict)")):
        if not group:
            continue
        keys = sorted(group, key=lambda k: (k[0], k[1] or ""))
        pairs = sorted({tuple(sorted(v)) for v in group.values()})
        yield finding(
            f"{len(keys)} participant sessions {what}: " + "; ".join("/".join(p) for p in pairs[:5]),
            subjects={p for p, _ in keys}, severity=severity,  # type: ignore[arg-type]
            evidence={"count": len(keys), "label_pairs": [list(p) for p in pairs],
                      "conflicts": [{"participant_id": p, "session_id": s,
                                     "labels": {lab: w[:5] for lab, w in group[(p, s)].items()}}
                                    for p, s in keys[:MAX_EXAMPLES]]},
        )


@check("quality.missing_label", default="warning", needs={"splits", "label"})
def missing_label(ctx: AuditContext) -> Iterator[Finding]:
    """Participants in a split with no value for the label."""
    assert ctx.splits is not None
    column = ctx.label_column
    known: dict[str, str] = {}
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants:
        table = ctx.index.participants
        known = {p: v for p, v in zip(table["participant_id"], table[column]) if v not in ("", "n/a")}
    for name in ctx.splits.names:
        have = {pid for table in ctx.splits.tables if table.name == name
                for pid, _, label, _ in table.labels() if label not in (None, "", "n/a")}
        missing = sorted(p for p in ctx.splits.subjects(name) if p not in have and p not in known)
        if missing:
            yield finding(f"{len(missing)} participants in {name} have no value for the label '{column}'",
                          splits=(name,), subjects=missing,
                          evidence={"label": column, "count": len(missing), "examples": missing[:MAX_EXAMPLES]})
