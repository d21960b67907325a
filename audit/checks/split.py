"""split.* checks, and the label checks that read split tables.

The label checks work on the tables' column frames (shared with the leakage
checks through :func:`audit.checks.leakage.table_frame`) with integer codes
for participants, sessions and labels, so they stay fast on split sets of a
million rows: Python objects are built only for what is reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import combinations
from typing import TYPE_CHECKING, Any

from audit.checks.frames import member_of, named, sorted_unique, table_frame
from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding, normalise_subject
from audit.values import is_missing

if TYPE_CHECKING:
    import pandas as pd

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
        where = table.name if table.fold is None else f"{table.name} (fold {table.fold})"
        unknown = sorted(table.subjects() - subjects)
        if unknown:
            yield finding(f"{len(unknown)} participants in {where} are not in the dataset" + named(unknown),
                          splits=(table.name,), subjects=unknown,
                          evidence={"file": table.path, "fold": table.fold, "count": len(unknown),
                                    "examples": unknown[:MAX_EXAMPLES]})
        missing_ses = sorted((p, s) for p, s in table.sessions()
                             if s is not None and p in subjects and s not in sessions.get(p, ()))
        if missing_ses:
            yield finding(f"{len(missing_ses)} sessions in {where} are not in the dataset"
                          + named(f"{p}/{s}" for p, s in missing_ses),
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
        yield finding(f"{len(rest)} of {len(ctx.index.subjects)} participants in the dataset are in no split"
                      + named(rest),
                      subjects=rest, evidence={"count": len(rest), "examples": rest[:MAX_EXAMPLES]})


@check("split.identical_folds", default="warning", needs={"splits"})
def identical_folds(ctx: AuditContext) -> Iterator[Finding]:
    """Two folds of a k-fold split are identical (a seed that did nothing).

    Folds are identical when they list the same participant sessions. Only
    folds with the same participants are compared session by session.
    """
    assert ctx.splits is not None
    folds = ctx.splits.folds
    if len(folds) < 2:
        return
    for name in [n for n in ctx.splits.names if any(t.name == n and t.fold is not None for t in ctx.splits.tables)]:
        same = _identical_pairs(ctx, name)
        if same:
            sizes = {str(f): len(ctx.splits.sessions(name, f)) for f in folds}
            yield finding(
                f"{len(same)} pairs of folds have identical {name} sets: "
                + ", ".join(f"{a}={b}" for a, b in same[:10]),
                splits=(name,), evidence={"split": name, "pairs": [list(p) for p in same], "sizes": sizes},
            )


def _identical_pairs(ctx: AuditContext, name: str) -> list[tuple[int, int]]:
    """Pairs of folds whose ``name`` tables list the same (non-empty) participant sessions."""
    assert ctx.splits is not None
    folds = ctx.splits.folds
    subjects = {f: ctx.splits.subjects(name, f) for f in folds}
    return [(a, b) for a, b in combinations(folds, 2)
            if subjects[a] and subjects[a] == subjects[b]
            and ctx.splits.sessions(name, a) == ctx.splits.sessions(name, b)]


@check("split.fold_integrity", default="warning", needs={"splits"})
def fold_integrity(ctx: AuditContext) -> Iterator[Finding]:
    """k-fold validation folds overlap each other or do not cover the training pool.

    Two identical validation folds are ``split.identical_folds``' finding;
    every other overlap (the same participants under other sessions included)
    is reported here.
    """
    assert ctx.splits is not None
    folds = ctx.splits.folds
    if len(folds) < 2 or "validation" not in ctx.splits.names:
        return
    val = {f: ctx.splits.subjects("validation", f) for f in folds}
    pool: set[str] = set()
    for f in folds:
        pool |= val[f] | ctx.splits.subjects("train", f)
    overlaps = {(a, b): val[a] & val[b] for a, b in combinations(folds, 2) if val[a] & val[b]}
    identical = set(_identical_pairs(ctx, "validation"))
    partial = {k: v for k, v in overlaps.items() if k not in identical}
    if partial:
        subjects = set().union(*partial.values())
        yield finding(
            f"validation sets of {len(partial)} fold pairs overlap ({len(subjects)} participants validated twice)"
            + named(subjects),
            splits=("validation",), subjects=subjects,
            evidence={"pairs": {f"{a}-{b}": len(v) for (a, b), v in sorted(partial.items())}},
        )
    covered = set().union(*val.values())
    uncovered = sorted(pool - covered)
    if uncovered:
        yield finding(
            f"{len(uncovered)} of {len(pool)} participants of the training pool are in no validation fold"
            + named(uncovered),
            splits=("validation",), subjects=uncovered,
            evidence={"pool": len(pool), "covered": len(covered), "examples": uncovered[:MAX_EXAMPLES]},
        )


def _labelled(label: pd.Series) -> pd.Series:
    """Rows with a label value (:func:`audit.values.is_missing`, ``unknown`` a class), judged per distinct value."""
    missing = [v for v in label.dropna().unique() if is_missing(v, unknown=False)]
    return label.notna() & ~label.isin(missing)


class _Labels:
    """Every labelled row of every split table, as integer codes.

    ``key`` codes a (participant, session) pair (session ``None`` included),
    ``lab`` a label, ``tab`` the table's position in ``ctx.splits.tables``.
    """

    def __init__(self, ctx: AuditContext) -> None:
        import numpy as np
        import pandas as pd

        assert ctx.splits is not None
        parts = []
        for i, table in enumerate(ctx.splits.tables):
            frame = table_frame(ctx, table)
            label = frame["label"]
            keep = _labelled(label)
            if keep.any():
                parts.append(frame.loc[keep, ["participant_id", "session_id", "label", "file", "line"]]
                             .assign(tab=np.int64(i)))
        self.empty = not parts
        if self.empty:
            return
        rows = pd.concat(parts, ignore_index=True)
        pcode, self.pids = pd.factorize(rows["participant_id"])
        scode, self.sessions = pd.factorize(rows["session_id"])  # None -> -1
        lcode, labels = pd.factorize(rows["label"])
        self.labels = [str(x) for x in labels]
        self.width = len(self.sessions) + 1
        self.key = pcode.astype(np.int64) * self.width + (scode.astype(np.int64) + 1)
        self.lab = lcode.astype(np.int64)
        self.tab = rows["tab"].to_numpy(np.int64)
        self.rows = rows
        self._members: dict[tuple[int, int], Any] | None = None

    def pair(self, key: int) -> tuple[str, str | None]:
        ses = key % self.width - 1
        return str(self.pids[key // self.width]), None if ses < 0 else str(self.sessions[ses])

    def conflicts(self) -> dict[int, tuple[str, ...]]:
        """``key -> labels`` (sorted) for every (participant, session) with more than one label."""
        import pandas as pd

        nl = len(self.labels)
        kl = pd.unique(self.key * nl + self.lab)  # distinct (key, label), hashed: faster than a sort
        keys = kl // nl
        sel = pd.Series(keys).duplicated(keep=False).to_numpy()
        if not sel.any():
            return {}
        out: dict[int, list[str]] = defaultdict(list)
        for k, lab in zip(keys[sel].tolist(), (kl[sel] % nl).tolist()):
            out[k].append(self.labels[lab])
        return {k: tuple(sorted(v)) for k, v in out.items()}

    def members(self) -> dict[tuple[int, int], Any]:
        """``(table, label) -> sorted unique keys`` of that label in that table."""
        import numpy as np

        if self._members is None:
            nl = len(self.labels)
            tl = self.tab * nl + self.lab
            order = np.lexsort((self.key, tl))
            tl_sorted, key_sorted = tl[order], self.key[order]
            cuts = np.flatnonzero(np.diff(tl_sorted)) + 1
            self._members = {}
            for chunk_tl, chunk in zip(np.split(tl_sorted, cuts), np.split(key_sorted, cuts)):
                t, lab = divmod(int(chunk_tl[0]), nl)
                self._members[(t, lab)] = sorted_unique(chunk)  # sorted already: the sort is cheap
        return self._members

    def nested(self, labels: tuple[str, ...]) -> bool:
        """Within every split table holding both labels, one label's sessions contain the other's."""
        import numpy as np

        members = self.members()
        code = {lab: i for i, lab in enumerate(self.labels)}
        tables = {t for t, _ in members}
        for a, b in combinations(labels, 2):
            ia, ib = code[a], code[b]
            scopes = []
            for t in sorted(tables):
                ma, mb = members.get((t, ia)), members.get((t, ib))
                if ma is None or mb is None:
                    continue
                inter = len(np.intersect1d(ma, mb, assume_unique=True))
                if inter:
                    scopes.append((inter == len(ma), inter == len(mb)))  # a <= b, b <= a
            if not scopes:
                return False  # the two labels meet only across tables: a real disagreement
            if not (all(x for x, _ in scopes) or all(y for _, y in scopes)):
                return False
        return True

    def where(self, keys: list[int]) -> dict[int, dict[str, list[str]]]:
        """``key -> label -> ["file:line", ...]`` (sorted by file and line, five at most) for ``keys``."""
        import numpy as np

        sel = member_of(self.key, np.asarray(keys, dtype=np.int64))
        rows = self.rows.loc[sel, ["label", "file", "line"]].assign(_key=self.key[sel])
        rows = rows.sort_values(["file", "line"], kind="stable")
        out: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for k, lab, file, line in zip(rows["_key"].tolist(), rows["label"].tolist(), rows["file"].tolist(),
                                      rows["line"].tolist()):
            if len(out[k][lab]) < 5:
                out[k][lab].append(f"{file}:{line}")
        return out


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
    data = _Labels(ctx)
    if data.empty:
        return
    conflicts = data.conflicts()
    if not conflicts:
        return
    verdict = {labels: data.nested(labels) for labels in set(conflicts.values())}
    real = {k: v for k, v in conflicts.items() if not verdict[v]}
    hierarchy = {k: v for k, v in conflicts.items() if verdict[v]}
    for group, severity, what in ((real, None, "carry conflicting labels"),
                                  (hierarchy, "info", "carry nested labels (a label hierarchy, not a conflict)")):
        if not group:
            continue
        named_keys = {k: data.pair(k) for k in group}
        keys = sorted(group, key=lambda k: (named_keys[k][0], named_keys[k][1] or ""))
        pairs = sorted(set(group.values()))
        shown = keys[:MAX_EXAMPLES]
        where = data.where(shown)
        yield finding(
            f"{len(keys)} participant sessions {what}: " + "; ".join("/".join(p) for p in pairs[:5]),
            subjects={named_keys[k][0] for k in keys}, severity=severity,  # type: ignore[arg-type]
            evidence={"count": len(keys), "label_pairs": [list(p) for p in pairs],
                      "conflicts": [{"participant_id": named_keys[k][0], "session_id": named_keys[k][1],
                                     "labels": {lab: list(where[k][lab]) for lab in group[k]}}
                                    for k in shown]},
        )


@check("quality.missing_label", default="warning", needs={"splits", "label"})
def missing_label(ctx: AuditContext) -> Iterator[Finding]:
    """Participants in a split with no value for the label."""
    assert ctx.splits is not None
    column = ctx.label_column
    known: set[str] = set()
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants:
        table = ctx.index.participants
        known = {normalise_subject(p) for p, v in zip(table["participant_id"].tolist(), table[column].tolist())
                 if not is_missing(v, unknown=False) and str(p).strip()}
    for name in ctx.splits.names:
        frames = []
        for t in ctx.splits.tables:
            if t.name == name:
                frame = table_frame(ctx, t)
                label = frame["label"]
                frames.append((frame["participant_id"], _labelled(label)))
        # participants with a row without a label, less those with a labelled row in another row or file
        unlabelled: set[str] = set()
        for pid, has in frames:
            unlabelled.update(pid[~has].unique().tolist())
        unlabelled -= known
        for pid, has in frames:
            if unlabelled:
                unlabelled -= set(pid[has & pid.isin(unlabelled)].unique().tolist())
        missing = sorted(unlabelled)
        if missing:
            yield finding(f"{len(missing)} participants in {name} have no value for the label '{column}'"
                          + named(missing),
                          splits=(name,), subjects=missing,
                          evidence={"label": column, "count": len(missing), "examples": missing[:MAX_EXAMPLES]})
