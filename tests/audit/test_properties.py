"""Properties of the leakage checks (hypothesis).

(a) splits made by ``make_splits`` never raise a leakage.* (or split.*) finding;
(b) copying one participant's rows into another split raises exactly the
    matching overlap findings, naming that participant; moving one session of
    a longitudinal participant raises a subject overlap but no session overlap;
(c) findings do not depend on the order of rows or of tables;
(d) id normalisation is idempotent.
"""

from __future__ import annotations

import string
from types import MappingProxyType
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit.context import AuditContext, AuditOptions
from audit.findings import Finding
from audit.runner import run_checks
from audit.splits import SplitRow, SplitSet, SplitTable, normalise_participant, normalise_session
from audit.splits import SplitError, SplitPlan, make_splits

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SESSIONS = ("M00", "M12", "M24")
FAMILIES = ("leakage", "split", "quality.label_conflict")


# --------------------------------------------------------------------------------------------------
# building split sets in memory


def _table(name: str, fold: int | None, rows: list[tuple[str, str | None, str | None, dict[str, str]]],
           *, with_sessions: bool, extra: tuple[str, ...]) -> SplitTable:
    path = f"{name}.tsv" if fold is None else f"split-{fold}/{name}.tsv"
    made = [SplitRow(p, s, lab, path, i + 2, MappingProxyType(dict(x))) for i, (p, s, lab, x) in enumerate(rows)]
    columns = ["participant_id", *(["session_id"] if with_sessions else []), "diagnosis", *extra]
    return SplitTable(name, fold, path, made, columns=columns, label_column="diagnosis")


Row = tuple[str, "str | None", "str | None", dict[str, str]]


def split_set(members: dict[tuple[str, int | None], list[str]], sessions: dict[str, tuple[str | None, ...]],
              labels: dict[str, str], groups: dict[str, str] | None = None) -> SplitSet:
    """Tables named ``(split, fold)``, one row per participant session (``None``: a row for every session)."""
    with_sessions = any(s is not None for v in sessions.values() for s in v)
    extra = ("family",) if groups else ()
    tables = []
    for (name, fold), pids in members.items():
        rows: list[Row] = [(p, None if s is None else f"ses-{s}", labels[p], {"family": groups[p]} if groups else {})
                           for p in pids for s in sessions[p]]
        tables.append(_table(name, fold, rows, with_sessions=with_sessions, extra=extra))
    fmt = "clinicadl" if any(f is not None for _, f in members) else "folder"
    return SplitSet(format=fmt, root="", files=tuple(t.path for t in tables), tables=tuple(tables))  # type: ignore[arg-type]


def findings_of(splits: SplitSet, *, group: str | None = None) -> list[Finding]:
    ctx = AuditContext(options=AuditOptions(group=group, label="diagnosis"), splits=splits)
    return run_checks(ctx, FAMILIES)[0]


@st.composite
def participants(draw: st.DrawFn, *, min_per_class: int = 6) -> dict[str, Any]:
    """A participants table (2-3 classes, optional families) and each participant's sessions."""
    classes = draw(st.sampled_from([("AD", "CN"), ("AD", "CN", "MCI")]))
    per_class = draw(st.integers(min_per_class, 12))
    n = per_class * len(classes)
    ids = [f"sub-{i:03d}" for i in range(n)]
    labels = {p: classes[i % len(classes)] for i, p in enumerate(ids)}
    family_size = draw(st.sampled_from([0, 1, 2]))
    groups = {p: f"F{i // family_size}" if family_size else f"F{i}" for i, p in enumerate(ids)} if family_size else None
    longitudinal = draw(st.booleans())
    sessions: dict[str, tuple[str | None, ...]] = {}
    for p in ids:
        k = draw(st.integers(1, len(SESSIONS))) if longitudinal else 0
        sessions[p] = SESSIONS[:k] if k else (None,)
    return {"ids": ids, "labels": labels, "groups": groups, "sessions": sessions}


def members_of(result: Any) -> dict[tuple[str, int | None], list[str]]:
    out: dict[tuple[str, int | None], list[str]] = {}
    for key, pids in result.splits().items():
        fold = None
        name = key
        if "/" in key:
            head, name = key.split("/")
            fold = int(head.removeprefix("split-"))
        out[(name, fold)] = sorted(pids)
    return out


# --------------------------------------------------------------------------------------------------
# (a) make_splits never leaks


@FAST
@given(data=participants(), folds=st.sampled_from([0, 2, 3]), seed=st.integers(0, 2**16))
def test_made_splits_raise_no_leakage_finding(data: dict[str, Any], folds: int, seed: int) -> None:
    frame = pd.DataFrame({"participant_id": data["ids"], "diagnosis": [data["labels"][p] for p in data["ids"]],
                          **({"family": [data["groups"][p] for p in data["ids"]]} if data["groups"] else {})})
    plan = SplitPlan(label="diagnosis", group="family" if data["groups"] else None, folds=folds, seed=seed, tries=4,
                     balance=())
    try:
        result = make_splits(frame, plan)
    except SplitError:  # a plan the table cannot satisfy (too few groups per class): not this property's concern
        assume(False)
    splits = split_set(members_of(result), data["sessions"], data["labels"], data["groups"])
    findings = findings_of(splits, group="family" if data["groups"] else None)
    assert [f.message for f in findings if f.check.startswith(("leakage.", "split."))] == []
    assert [f for f in findings if f.check == "quality.label_conflict"] == []


# --------------------------------------------------------------------------------------------------
# (b) one planted leak, exactly one finding of each matching kind


@st.composite
def partition(draw: st.DrawFn, *, kfold: bool = False) -> dict[str, Any]:
    """A disjoint random split of random participants (folder, or 3-fold + shared test)."""
    data = draw(participants(min_per_class=2))
    ids = list(data["ids"])
    order = draw(st.permutations(ids))
    if not kfold:
        cut1, cut2 = sorted(draw(st.lists(st.integers(1, len(ids) - 1), min_size=2, max_size=2, unique=True)))
        members: dict[tuple[str, int | None], list[str]] = {
            ("train", None): order[:cut1], ("validation", None): order[cut1:cut2], ("test", None): order[cut2:]}
    else:
        n_test = max(1, len(ids) // 5)
        test, pool = order[:n_test], order[n_test:]
        members = {("test", None): list(test)}
        for f in range(3):
            members[("train", f)] = [p for i, p in enumerate(pool) if i % 3 != f]
            members[("validation", f)] = [p for i, p in enumerate(pool) if i % 3 == f]
    return {**data, "members": members}


def leakage_findings(splits: SplitSet) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings_of(splits):
        if f.check.startswith("leakage.") and f.check != "leakage.no_test_split":
            out.setdefault(f.check, []).append(f)
    return out


@FAST
@given(data=partition(), pick=st.data())
def test_copying_one_participant_raises_exactly_its_findings(data: dict[str, Any], pick: st.DataObject) -> None:
    members = data["members"]
    assert leakage_findings(split_set(members, data["sessions"], data["labels"])) == {}
    source = pick.draw(st.sampled_from(sorted(k for k, v in members.items() if v)))
    target = pick.draw(st.sampled_from(sorted(k for k in members if k != source)))
    who = pick.draw(st.sampled_from(members[source]))
    leaky = {k: v + [who] if k == target else v for k, v in members.items()}
    found = leakage_findings(split_set(leaky, data["sessions"], data["labels"]))
    (subject,) = found.pop("leakage.subject_overlap")
    assert subject.subjects == (who,)
    assert set(subject.splits) == {source[0], target[0]}
    assert subject.evidence["count"] == 1
    named_sessions = [s for s in data["sessions"][who] if s is not None]
    if named_sessions:
        (session,) = found.pop("leakage.session_overlap")
        assert session.subjects == (who,)
        assert session.evidence["sessions"] == [f"{who}/ses-{s}" for s in sorted(named_sessions)]
    assert found == {}


@FAST
@given(data=partition(kfold=True), pick=st.data())
def test_a_test_participant_copied_into_one_fold_is_found_in_that_fold(data: dict[str, Any],
                                                                        pick: st.DataObject) -> None:
    members = data["members"]
    who = pick.draw(st.sampled_from(members[("test", None)]))
    target = pick.draw(st.sampled_from([("train", 0), ("validation", 1), ("train", 2)]))
    leaky = {k: v + [who] if k == target else v for k, v in members.items()}
    found = leakage_findings(split_set(leaky, data["sessions"], data["labels"]))
    (subject,) = found.pop("leakage.subject_overlap")
    assert subject.subjects == (who,) and subject.evidence["fold"] == target[1]
    assert subject.splits == (target[0], "test")
    found.pop("leakage.session_overlap", None)
    assert found == {}


@FAST
@given(data=partition(), pick=st.data())
def test_moving_one_session_is_a_subject_overlap_only(data: dict[str, Any], pick: st.DataObject) -> None:
    members = data["members"]
    sessions = dict(data["sessions"])
    source = pick.draw(st.sampled_from(sorted(k for k, v in members.items() if v)))
    target = pick.draw(st.sampled_from(sorted(k for k in members if k != source)))
    who = pick.draw(st.sampled_from(members[source]))
    sessions[who] = ("M00", "M12")
    # who keeps M00 in source; M12 moves to target
    tables = []
    for key, pids in members.items():
        rows: list[Row] = []
        for p in pids:
            mine = sessions[p]
            if p == who:
                mine = ("M00",)
            rows.extend((p, None if s is None else f"ses-{s}", data["labels"][p], {}) for s in mine)
        if key == target:
            rows.append((who, "ses-M12", data["labels"][who], {}))
        tables.append(_table(key[0], key[1], rows, with_sessions=True, extra=()))
    splits = SplitSet(format="folder", root="", files=tuple(t.path for t in tables), tables=tuple(tables))
    found = leakage_findings(splits)
    (subject,) = found.pop("leakage.subject_overlap")
    assert subject.subjects == (who,)
    assert found == {}


# --------------------------------------------------------------------------------------------------
# (c) order does not matter


@st.composite
def leaky_set(draw: st.DrawFn) -> tuple[list[tuple[str, int | None, list[Row]]], str | None]:
    """Tables as row lists, with random copies between splits, label conflicts and families."""
    data = draw(partition(kfold=draw(st.booleans())))
    members = {k: list(v) for k, v in data["members"].items()}
    keys = sorted(members, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    for _ in range(draw(st.integers(0, 4))):
        src, dst = draw(st.sampled_from(keys)), draw(st.sampled_from(keys))
        if members[src]:
            members[dst].append(draw(st.sampled_from(members[src])))
    groups = data["groups"]
    tables = []
    for name, fold in keys:
        rows: list[Row] = []
        for p in members[(name, fold)]:
            for s in data["sessions"][p]:
                label = data["labels"][p]
                if draw(st.integers(0, 19)) == 0:
                    label = draw(st.sampled_from(["AD", "CN", "MCI", "n/a"]))
                rows.append((p, None if s is None else f"ses-{s}", label, {"family": groups[p]} if groups else {}))
        tables.append((name, fold, rows))
    return tables, ("family" if groups else None)


@FAST
@given(case=leaky_set(), pick=st.data())
def test_findings_do_not_depend_on_row_or_table_order(case: Any, pick: st.DataObject) -> None:
    tables, group = case
    with_sessions = any(s is not None for _, _, rows in tables for _, s, _, _ in rows)
    extra = ("family",) if group else ()

    def build(order: list[int], shuffled: bool) -> SplitSet:
        made = []
        for i in order:
            name, fold, rows = tables[i]
            path = f"{name}.tsv" if fold is None else f"split-{fold}/{name}.tsv"
            placed = [SplitRow(p, s, lab, path, j + 2, MappingProxyType(x)) for j, (p, s, lab, x) in enumerate(rows)]
            if shuffled:
                placed = pick.draw(st.permutations(placed))
            columns = ["participant_id", *(["session_id"] if with_sessions else []), "diagnosis", *extra]
            made.append(SplitTable(name, fold, path, placed, columns=columns, label_column="diagnosis"))
        return SplitSet(format="clinicadl" if any(t.fold is not None for t in made) else "folder", root="",
                        files=tuple(t.path for t in made), tables=tuple(made))

    base = [f.to_dict() for f in findings_of(build(list(range(len(tables))), False), group=group)]
    order = pick.draw(st.permutations(range(len(tables))))
    other = [f.to_dict() for f in findings_of(build(list(order), True), group=group)]
    assert other == base


# --------------------------------------------------------------------------------------------------
# (d) id normalisation is idempotent

LABELS = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12)
ANY_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " -_/\t.", max_size=12)


@FAST
@given(label=LABELS, pad=st.sampled_from(["", " ", "  ", "\t"]))
def test_participant_normalisation_is_idempotent(label: str, pad: str) -> None:
    once = normalise_participant(pad + label + pad)
    assert once == f"sub-{label}"
    assert normalise_participant(once) == once
    assert normalise_participant("sub-" + label) == once


@FAST
@given(label=LABELS)
def test_session_normalisation_is_idempotent(label: str) -> None:
    once = normalise_session(label)
    assert once == f"ses-{label}"
    assert normalise_session(once) == once == normalise_session(f" ses-{label} ")


@FAST
@given(value=ANY_TEXT)
def test_normalisation_accepts_exactly_its_own_output(value: str) -> None:
    """Whatever is accepted normalises to a fixed point; whatever is refused is refused again with the prefix."""
    try:
        once = normalise_participant(value)
    except ValueError:
        stripped = value.strip().removeprefix("sub-")
        with pytest.raises(ValueError):
            normalise_participant("sub-" + stripped)
        return
    assert once == "sub-" + value.strip().removeprefix("sub-")
    assert normalise_participant(once) == once
