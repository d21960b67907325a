"""leakage.* and split.* checks (and the label checks over split tables) on in-memory split sets.

Every check gets a positive case, a negative case and edge cases (an empty
split, a single subject, a missing column); then the k-fold views, the
longitudinal and session rules, nested labels, groups and pretraining.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from audit.context import AuditContext, AuditOptions
from audit.findings import Finding
from audit.runner import run_checks
from audit.splits import SplitRow, SplitSet, SplitTable
from tests.builders import make_bids

# --------------------------------------------------------------------------------------------------
# builders


def r(pid: str, ses: str | None = None, label: str | None = None, **extra: str) -> SplitRow:
    """A row: ``r("01", "M00", "AD", family="F1")`` -> sub-01, ses-M00, label AD, column family=F1."""
    return SplitRow(f"sub-{pid}", None if ses is None else f"ses-{ses}", label,
                    extra=MappingProxyType(dict(extra)))


def T(name: str, *rows: SplitRow, fold: int | None = None, columns: Iterable[str] | None = None,
      label_column: str | None = "diagnosis") -> SplitTable:
    """A table whose rows carry file and line (header is line 1) as a reader would set them."""
    path = f"{name}.tsv" if fold is None else f"split-{fold}/{name}.tsv"
    placed = [SplitRow(x.participant_id, x.session_id, x.label, path, i + 2, x.extra) for i, x in enumerate(rows)]
    return SplitTable(name, fold, path, placed, columns=columns, label_column=label_column)


def S(*tables: SplitTable, format: str = "folder") -> SplitSet:
    return SplitSet(format=format, root="", files=tuple(t.path for t in tables), tables=tables)  # type: ignore[arg-type]


def kfold(folds: Mapping[int, tuple[Iterable[str], Iterable[str]]], test: Iterable[str] = ()) -> SplitSet:
    """A ClinicaDL-like split set: ``{fold: (train ids, validation ids)}`` plus a shared test (ids "01"...)."""
    tables = []
    for f, (train, val) in folds.items():
        tables.append(T("train", *(r(p) for p in train), fold=f))
        tables.append(T("validation", *(r(p) for p in val), fold=f))
    test = list(test)
    if test:
        tables.append(T("test", *(r(p) for p in test)))
    return S(*tables, format="clinicadl")


def run(splits: SplitSet, check: str, *, index: Any = None, pretrained: Iterable[str] | None = None,
        **options: Any) -> list[Finding]:
    """Findings of one check (id), severity stamped as the runner does."""
    ctx = AuditContext(options=AuditOptions(**options), index=index, splits=splits,
                       pretrain_subjects=None if pretrained is None else frozenset(pretrained))
    findings, skipped = run_checks(ctx, (check,))
    assert not skipped, skipped
    assert all(f.check == check for f in findings)
    return findings


def skipped_reason(splits: SplitSet, check: str, **kw: Any) -> str:
    ctx = AuditContext(options=AuditOptions(**{k: v for k, v in kw.items() if k != "index"}),
                       index=kw.get("index"), splits=splits)
    findings, skipped = run_checks(ctx, (check,))
    assert findings == []
    (s,) = skipped
    return s["reason"]


def one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A dataset of sub-01..sub-04 (sub-01, sub-02 with sessions M00 and M12), a family column."""
    from audit.bidsindex import index_dataset

    root = make_bids(tmp_path_factory.mktemp("ds") / "ds", ["01", "02", "03", "04"], images=False,
                     participants={"01": {"diagnosis": "CN", "family": "F1"}, "02": {"diagnosis": "AD", "family": "F1"},
                                   "03": {"diagnosis": "CN", "family": "F2"}, "04": {"diagnosis": "n/a", "family": "n/a"}},
                     sessions={"01": ["M00", "M12"], "02": ["M00", "M12"]})
    return index_dataset(root)


# --------------------------------------------------------------------------------------------------
# leakage.subject_overlap

SUBJECT_CASES = [
    pytest.param(S(T("train", r("01"), r("02")), T("test", r("02"), r("03"))), ["sub-02"], id="positive"),
    pytest.param(S(T("train", r("01"), r("02")), T("test", r("03"))), [], id="negative"),
    pytest.param(S(T("train", r("01")), T("test")), [], id="empty-split"),
    pytest.param(S(T("train", r("01")), T("test", r("01"))), ["sub-01"], id="single-subject"),
    pytest.param(S(T("train", r("01", label=None), columns=["participant_id"]),
                   T("test", r("01"), columns=["participant_id"])), ["sub-01"], id="no-session-column"),
    pytest.param(S(T("train", r("01", "M00"), r("01", "M12"), r("01", "M24"), r("02", "M00")),
                   T("test", r("03", "M00"))), [], id="longitudinal-in-one-split"),
]


@pytest.mark.parametrize(("splits", "subjects"), SUBJECT_CASES)
def test_subject_overlap(splits: SplitSet, subjects: list[str]) -> None:
    findings = run(splits, "leakage.subject_overlap")
    assert [list(f.subjects) for f in findings] == ([subjects] if subjects else [])
    for f in findings:
        assert f.severity == "error"
        assert f.splits == ("train", "test")  # canonical order, as in the contract's example
        assert f.message.startswith(f"{len(subjects)} participants are in both train and test")
        assert f.evidence["count"] == len(subjects)
        rows = f.evidence["rows"]
        assert {(x["file"], x["participant_id"]) for x in rows} == {(n, s) for s in subjects
                                                                    for n in ("train.tsv", "test.tsv")}
        assert all(x["line"] >= 2 for x in rows)


def test_subject_overlap_names_them_after_the_count() -> None:
    f = one(run(S(T("train", *(r(f"{i:02d}") for i in range(10))), T("test", *(r(f"{i:02d}") for i in range(8)))),
                "leakage.subject_overlap"))
    assert f.message.startswith("8 participants are in both train and test: sub-00, sub-01")
    assert "and 3 more" in f.message
    assert len(f.subjects) == 8


def test_subject_overlap_every_pair_of_splits() -> None:
    splits = S(T("train", r("01"), r("02")), T("validation", r("02"), r("03")), T("test", r("03"), r("01")),
               T("holdout", r("09")))
    found = {f.splits: f.subjects for f in run(splits, "leakage.subject_overlap")}
    assert found == {("train", "validation"): ("sub-02",), ("train", "test"): ("sub-01",),
                     ("validation", "test"): ("sub-03",)}


def test_subject_overlap_evidence_is_bounded() -> None:
    n = 300
    splits = S(T("train", *(r(f"{i:04d}", "M00") for i in range(n))), T("test", *(r(f"{i:04d}", "M00") for i in range(n))))
    f = one(run(splits, "leakage.subject_overlap"))
    assert f.evidence["count"] == n and len(f.subjects) == n
    assert 0 < len(f.evidence["rows"]) <= 100


# --------------------------------------------------------------------------------------------------
# leakage.session_overlap

SESSION_CASES = [
    pytest.param(S(T("train", r("01", "M00"), r("01", "M12")), T("test", r("01", "M12"))),
                 ["sub-01/ses-M12"], id="positive"),
    pytest.param(S(T("train", r("01", "M00")), T("test", r("01", "M12"))), [], id="negative-other-session"),
    pytest.param(S(T("train", r("01", "M00")), T("test")), [], id="empty-split"),
    pytest.param(S(T("train", r("01", "M00")), T("test", r("01", "M00"))), ["sub-01/ses-M00"], id="single-subject"),
    pytest.param(S(T("train", r("01"), columns=["participant_id"]), T("test", r("01", "M00"), r("01", "M12"))),
                 ["sub-01/ses-M00", "sub-01/ses-M12"], id="no-session-vs-sessions"),
    pytest.param(S(T("train", r("01", "M00"), r("02", "M00")), T("test", r("02"), columns=["participant_id"])),
                 ["sub-02/ses-M00"], id="sessions-vs-no-session"),
    # both rows mean "every session": the whole participant is on both sides; subject_overlap says so
    pytest.param(S(T("train", r("01")), T("test", r("01"))), [], id="no-session-both-sides"),
    pytest.param(S(T("train", r("01", "M00"), r("01", "M12"), r("01", "M24")), T("test", r("02", "M00"))), [],
                 id="longitudinal-in-one-split"),
]


@pytest.mark.parametrize("lookup", ["rows", "frame"])
@pytest.mark.parametrize(("splits", "sessions"), SESSION_CASES)
def test_session_overlap(splits: SplitSet, sessions: list[str], lookup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.checks.leakage as leakage

    # a few shared participants are looked up row by row, many through the column frame: same answer
    monkeypatch.setattr(leakage, "FEW", 10_000 if lookup == "rows" else 0)
    findings = run(splits, "leakage.session_overlap")
    assert [f.evidence["sessions"] for f in findings] == ([sessions] if sessions else [])
    for f in findings:
        assert f.severity == "error" and f.splits == ("train", "test")
        assert f.subjects == tuple(sorted({s.split("/")[0] for s in sessions}))
        assert f.message.startswith(f"{len(sessions)} participant sessions are in both train and test")
        # the rows behind it (file and line on each side), for SARIF and annotations
        rows = f.evidence["rows"]
        assert {row["participant_id"] for row in rows} == set(f.subjects)
        assert all(row["line"] >= 1 and row["file"] for row in rows)


def test_baseline_file_inside_the_longitudinal_file_is_no_leak() -> None:
    """ClinicaDL's AD.tsv and AD_baseline.tsv merged into one split: the baseline rows appear twice."""
    longitudinal = [r("01", "M00", "AD"), r("01", "M12", "AD"), r("02", "M00", "AD"), r("02", "M06", "AD")]
    baseline = [r("01", "M00", "AD"), r("02", "M00", "AD")]
    s = S(T("train", *longitudinal, *baseline), T("test", r("03", "M00", "CN"), r("03", "M00", "CN")))
    for check in ("leakage.subject_overlap", "leakage.session_overlap", "quality.label_conflict"):
        assert run(s, check) == [], check


def test_session_overlap_is_also_a_subject_overlap() -> None:
    splits = S(T("train", r("01", "M00"), r("02", "M00")), T("test", r("01", "M00")))
    assert one(run(splits, "leakage.subject_overlap")).subjects == ("sub-01",)
    assert one(run(splits, "leakage.session_overlap")).subjects == ("sub-01",)


# --------------------------------------------------------------------------------------------------
# k-fold views


def test_test_set_is_audited_against_every_fold() -> None:
    pool = ["01", "02", "03", "04", "05", "06"]
    folds = {f: ([p for i, p in enumerate(pool) if i % 3 != f], [p for i, p in enumerate(pool) if i % 3 == f])
             for f in range(3)}
    # sub-06 is in the pool and in test: in fold 2's validation, in fold 0 and 1's training set
    findings = run(kfold(folds, test=["06", "07"]), "leakage.subject_overlap")
    by_fold = {f.evidence["fold"]: f for f in findings}
    assert sorted(by_fold) == [0, 1, 2]
    assert by_fold[0].splits == by_fold[1].splits == ("train", "test")
    assert by_fold[2].splits == ("validation", "test")
    assert all(f.subjects == ("sub-06",) for f in findings)
    assert by_fold[2].message.startswith("1 participants are in both validation and test (fold 2)")


def test_a_leak_inside_one_fold_names_that_fold() -> None:
    folds = {0: (["01", "02"], ["03", "04"]), 1: (["03", "04", "02"], ["01", "02"])}
    (f,) = run(kfold(folds, test=["05"]), "leakage.subject_overlap")
    assert f.evidence["fold"] == 1 and f.splits == ("train", "validation") and f.subjects == ("sub-02",)


def test_clean_kfold_has_no_finding() -> None:
    folds = {0: (["01", "02"], ["03", "04"]), 1: (["03", "04"], ["01", "02"])}
    s = kfold(folds, test=["05"])
    for check in ("leakage.subject_overlap", "leakage.session_overlap", "leakage.no_test_split",
                  "split.identical_folds", "split.fold_integrity"):
        assert run(s, check) == [], check


# --------------------------------------------------------------------------------------------------
# split.identical_folds


IDENTICAL_CASES = [
    pytest.param({0: (["01", "02"], ["03", "04"]), 1: (["01", "02"], ["03", "04"]), 2: (["03", "04"], ["01", "02"])},
                 {"train": [[0, 1]], "validation": [[0, 1]]}, id="positive"),
    pytest.param({0: (["01", "02"], ["03", "04"]), 1: (["03", "04"], ["01", "02"])}, {}, id="negative"),
    pytest.param({0: (["01", "02"], ["03", "04"])}, {}, id="single-fold"),
    pytest.param({0: (["01"], []), 1: (["01"], [])}, {"train": [[0, 1]]}, id="empty-validation"),
]


@pytest.mark.parametrize(("folds", "pairs"), IDENTICAL_CASES)
def test_identical_folds(folds: dict[int, tuple[list[str], list[str]]], pairs: dict[str, list[list[int]]]) -> None:
    findings = run(kfold(folds, test=["09"]), "split.identical_folds")
    assert {f.evidence["split"]: f.evidence["pairs"] for f in findings} == pairs
    for f in findings:
        assert f.severity == "warning"
        assert f.message.startswith(f"{len(f.evidence['pairs'])} pairs of folds have identical {f.splits[0]} sets: 0=1")


def test_identical_folds_compares_sessions() -> None:
    # the same participants, other sessions: not a seed that did nothing, but they are validated twice
    tables = [T("train", r("03", "M00"), fold=0), T("validation", r("01", "M00"), r("02", "M00"), fold=0),
              T("train", r("03", "M00"), fold=1), T("validation", r("01", "M12"), r("02", "M12"), fold=1)]
    s = S(*tables, format="clinicadl")
    assert [f.evidence["split"] for f in run(s, "split.identical_folds")] == ["train"]
    f = one([f for f in run(s, "split.fold_integrity") if "overlap" in f.message])
    assert f.subjects == ("sub-01", "sub-02")


# --------------------------------------------------------------------------------------------------
# split.fold_integrity


def test_fold_integrity_overlapping_validation_folds() -> None:
    folds = {0: (["03", "04", "05"], ["01", "02"]), 1: (["01", "05"], ["02", "03", "04"]),
             2: (["01", "02", "03", "04"], ["05"])}
    (f,) = run(kfold(folds), "split.fold_integrity")
    assert f.severity == "warning" and f.subjects == ("sub-02",)
    assert f.message.startswith("validation sets of 1 fold pairs overlap (1 participants validated twice)")
    assert f.evidence["pairs"] == {"0-1": 1}


def test_fold_integrity_uncovered_pool() -> None:
    folds = {0: (["03", "04", "05"], ["01", "02"]), 1: (["01", "02", "05"], ["03", "04"])}
    (f,) = run(kfold(folds), "split.fold_integrity")
    assert f.subjects == ("sub-05",)
    assert f.message.startswith("1 of 5 participants of the training pool are in no validation fold")
    assert f.evidence["pool"] == 5 and f.evidence["covered"] == 4


def test_fold_integrity_leaves_identical_folds_to_identical_folds() -> None:
    folds = {0: (["03", "04"], ["01", "02"]), 1: (["03", "04"], ["01", "02"]), 2: (["01", "02"], ["03", "04"])}
    assert run(kfold(folds), "split.fold_integrity") == []
    assert len(run(kfold(folds), "split.identical_folds")) == 2


@pytest.mark.parametrize("splits", [
    pytest.param(S(T("train", r("01")), T("validation", r("02"))), id="no-folds"),
    pytest.param(kfold({0: (["01"], ["02"])}), id="single-fold"),
    pytest.param(S(T("train", r("01"), fold=0), T("train", r("02"), fold=1), format="clinicadl"), id="no-validation"),
    pytest.param(kfold({0: (["01", "02"], ["03", "04"]), 1: (["03", "04"], ["01", "02"])}), id="clean"),
])
def test_fold_integrity_negative(splits: SplitSet) -> None:
    assert run(splits, "split.fold_integrity") == []


# --------------------------------------------------------------------------------------------------
# leakage.group_overlap

GROUP_SPLIT_CASES = [
    pytest.param(S(T("train", r("01", family="F1"), r("03", family="F2")), T("test", r("02", family="F1"))),
                 {"F1": {"train": ["sub-01"], "test": ["sub-02"]}}, id="positive"),
    pytest.param(S(T("train", r("01", family="F1")), T("test", r("02", family="F2"))), {}, id="negative"),
    pytest.param(S(T("train", r("01", family="F1")), T("test")), {}, id="empty-split"),
    # one participant in both splits is subject_overlap's finding, not a group's
    pytest.param(S(T("train", r("01", family="F1")), T("test", r("01", family="F1"))), {}, id="single-subject"),
    pytest.param(S(T("train", r("01", family="n/a")), T("test", r("02", family="n/a"))), {}, id="n/a-is-no-group"),
    pytest.param(S(T("train", r("01")), T("test", r("02"))), {}, id="missing-column"),
    # the same participant on both sides and a relative: the relative is a group leak
    pytest.param(S(T("train", r("01", family="F1"), r("02", family="F1")), T("test", r("01", family="F1"))),
                 {"F1": {"train": ["sub-01", "sub-02"], "test": ["sub-01"]}}, id="relative-beside-overlap"),
]


@pytest.mark.parametrize(("splits", "groups"), GROUP_SPLIT_CASES)
def test_group_overlap_from_split_column(splits: SplitSet, groups: dict[str, Any]) -> None:
    findings = run(splits, "leakage.group_overlap", group="family")
    assert [f.evidence["groups"] for f in findings] == ([groups] if groups else [])
    for f in findings:
        assert f.severity == "error" and f.splits == ("train", "test")
        assert f.message.startswith(f"{len(groups)} groups (family) have members in both train and test")
        assert f.subjects == tuple(sorted({p for g in groups.values() for m in g.values() for p in m}))


def test_group_overlap_from_participants_tsv(index: Any) -> None:
    splits = S(T("train", r("01", "M00"), r("03")), T("test", r("02", "M00"), r("04")))
    f = one(run(splits, "leakage.group_overlap", index=index, group="family"))
    assert f.subjects == ("sub-01", "sub-02") and f.evidence["groups"] == {"F1": {"train": ["sub-01"], "test": ["sub-02"]}}
    clean = S(T("train", r("01"), r("02")), T("test", r("03"), r("04")))
    assert run(clean, "leakage.group_overlap", index=index, group="family") == []


def test_group_overlap_participants_tsv_wins_over_split_files(index: Any) -> None:
    # the split files say F9 for sub-02; participants.tsv says F1 (the family of sub-01)
    splits = S(T("train", r("01", family="F1")), T("test", r("02", family="F9")))
    assert one(run(splits, "leakage.group_overlap", index=index, group="family")).subjects == ("sub-01", "sub-02")


def test_group_overlap_in_kfold_views() -> None:
    tables = [T("train", r("01", family="A"), r("02", family="B"), fold=0), T("validation", r("03", family="A"), fold=0),
              T("train", r("03", family="A"), r("01", family="A"), fold=1), T("validation", r("02", family="B"), fold=1),
              T("test", r("04", family="B"))]
    found = {(f.evidence["fold"], f.splits): f.subjects for f in run(S(*tables, format="clinicadl"),
                                                                     "leakage.group_overlap", group="family")}
    assert found == {(0, ("train", "validation")): ("sub-01", "sub-03"), (0, ("train", "test")): ("sub-02", "sub-04"),
                     (1, ("validation", "test")): ("sub-02", "sub-04")}


def test_group_overlap_skipped_without_group() -> None:
    assert skipped_reason(S(T("train", r("01"))), "leakage.group_overlap") == "no --group given"


# --------------------------------------------------------------------------------------------------
# leakage.pretrain_overlap

PRETRAIN_CASES = [
    pytest.param(["02", "09"], {("test",): ("error", ("sub-02",))}, id="test-is-error"),
    pytest.param(["03"], {("validation",): ("warning", ("sub-03",))}, id="validation-is-warning"),
    pytest.param(["01", "09"], {}, id="train-is-fine"),
    pytest.param([], {}, id="empty-pretrain"),
    pytest.param(["01", "02", "03"], {("test",): ("error", ("sub-02",)), ("validation",): ("warning", ("sub-03",))},
                 id="both"),
]


@pytest.mark.parametrize(("pretrain", "expected"), PRETRAIN_CASES)
def test_pretrain_overlap(pretrain: list[str], expected: dict[tuple[str, ...], tuple[str, tuple[str, ...]]]) -> None:
    splits = S(T("train", r("01")), T("validation", r("03")), T("test", r("02")))
    findings = run(splits, "leakage.pretrain_overlap", pretrained=[f"sub-{p}" for p in pretrain],
                   pretrain="maps/train+validation.tsv")
    assert {f.splits: (f.severity, f.subjects) for f in findings} == expected
    for f in findings:
        assert f.message.startswith(f"{len(f.subjects)} participants used for pretraining are in {f.splits[0]}")
        assert f.evidence["pretrain"] == "maps/train+validation.tsv"


def test_pretrain_overlap_empty_test_split() -> None:
    splits = S(T("train", r("01")), T("test"))
    assert run(splits, "leakage.pretrain_overlap", pretrained=["sub-01"]) == []


def test_pretrain_overlap_kfold_validation_folds() -> None:
    s = kfold({0: (["01", "02"], ["03", "04"]), 1: (["03", "04"], ["01", "02"])}, test=["05"])
    f = one(run(s, "leakage.pretrain_overlap", pretrained=["sub-04"]))
    assert f.splits == ("validation",) and f.severity == "warning"


def test_pretrain_overlap_skipped_without_pretrain() -> None:
    assert skipped_reason(S(T("test", r("01"))), "leakage.pretrain_overlap") == "no --pretrain given"


# --------------------------------------------------------------------------------------------------
# leakage.no_test_split

NO_TEST_CASES = [
    pytest.param(S(T("train", r("01")), T("validation", r("02"))), True, id="positive"),
    pytest.param(S(T("train", r("01")), T("test", r("02"))), False, id="negative"),
    pytest.param(S(T("train", r("01")), T("test")), True, id="empty-test-split"),
    pytest.param(S(T("test", r("01"))), False, id="single-subject-test-only"),
    pytest.param(kfold({0: (["01"], ["02"]), 1: (["02"], ["01"])}), True, id="kfold-without-test"),
    pytest.param(S(T("train", r("01")), T("holdout", r("02"))), True, id="other-name"),
]


@pytest.mark.parametrize(("splits", "warned"), NO_TEST_CASES)
def test_no_test_split(splits: SplitSet, warned: bool) -> None:
    findings = run(splits, "leakage.no_test_split")
    assert len(findings) == int(warned)
    for f in findings:
        assert f.severity == "warning"
        assert "test split" in f.message


# --------------------------------------------------------------------------------------------------
# split.unknown_subject, split.unassigned_subject (need the dataset)

UNKNOWN_CASES = [
    pytest.param(S(T("train", r("01"), r("09")), T("test", r("02"))), [("train", ("sub-09",))], id="positive"),
    pytest.param(S(T("train", r("01", "M00"), r("01", "M99")), T("test", r("03"))),
                 [("train", ("sub-01",))], id="unknown-session"),
    pytest.param(S(T("train", r("03", "M00"))), [("train", ("sub-03",))], id="session-of-a-sessionless-subject"),
    pytest.param(S(T("train", r("01", "M00"), r("02")), T("test", r("03"), r("04"))), [], id="negative"),
    pytest.param(S(T("train", r("01")), T("test")), [], id="empty-split"),
]


@pytest.mark.parametrize(("splits", "expected"), UNKNOWN_CASES)
def test_unknown_subject(index: Any, splits: SplitSet, expected: list[tuple[str, tuple[str, ...]]]) -> None:
    findings = run(splits, "split.unknown_subject", index=index)
    assert [(f.splits[0], f.subjects) for f in findings] == expected
    assert all(f.severity == "error" for f in findings)


def test_unknown_subject_names_sessions(index: Any) -> None:
    f = one(run(S(T("train", r("01", "M99"))), "split.unknown_subject", index=index))
    assert f.message == "1 sessions in train are not in the dataset: sub-01/ses-M99"
    assert f.evidence["examples"] == ["sub-01/ses-M99"] and f.evidence["file"] == "train.tsv"


def test_unknown_subject_in_kfold_names_the_fold(index: Any) -> None:
    s = kfold({0: (["01", "09"], ["02"]), 1: (["02"], ["01", "09"])}, test=["03"])
    found = [(f.message, f.evidence["fold"]) for f in run(s, "split.unknown_subject", index=index)]
    assert found == [("1 participants in train (fold 0) are not in the dataset: sub-09", 0),
                     ("1 participants in validation (fold 1) are not in the dataset: sub-09", 1)]


def test_dataset_checks_skipped_without_dataset() -> None:
    for check in ("split.unknown_subject", "split.unassigned_subject"):
        assert skipped_reason(S(T("train", r("01"))), check) == "no dataset given"


UNASSIGNED_CASES = [
    pytest.param(S(T("train", r("01"), r("02")), T("test", r("03"))), ("sub-04",), id="positive"),
    pytest.param(S(T("train", r("01"), r("02")), T("test", r("03"), r("04"))), (), id="negative"),
    pytest.param(S(T("train"), T("test")), ("sub-01", "sub-02", "sub-03", "sub-04"), id="empty-splits"),
    pytest.param(S(T("train", r("01", "M00")), T("validation", r("02")), T("test", r("03"), r("04"))), (),
                 id="one-session-assigns-the-participant"),
]


@pytest.mark.parametrize(("splits", "rest"), UNASSIGNED_CASES)
def test_unassigned_subject(index: Any, splits: SplitSet, rest: tuple[str, ...]) -> None:
    findings = run(splits, "split.unassigned_subject", index=index)
    assert [f.subjects for f in findings] == ([rest] if rest else [])
    for f in findings:
        assert f.severity == "info" and f.message.startswith(f"{len(rest)} of 4 participants")


# --------------------------------------------------------------------------------------------------
# quality.label_conflict


def test_nested_labels_within_a_table_are_a_note() -> None:
    train = T("train", r("01", "M00", "MCI"), r("01", "M12", "MCI"), r("02", "M00", "MCI"), r("03", "M00", "MCI"),
              r("01", "M00", "pMCI"), r("01", "M12", "pMCI"), r("02", "M00", "sMCI"), r("04", "M00", "AD"))
    f = one(run(S(train, T("test", r("05", "M00", "CN"))), "quality.label_conflict"))
    assert f.severity == "info"
    assert f.message.startswith("3 participant sessions carry nested labels (a label hierarchy, not a conflict): "
                                "MCI/pMCI; MCI/sMCI")
    assert f.subjects == ("sub-01", "sub-02")
    assert f.evidence["label_pairs"] == [["MCI", "pMCI"], ["MCI", "sMCI"]]
    first = f.evidence["conflicts"][0]
    assert first == {"participant_id": "sub-01", "session_id": "ses-M00",
                     "labels": {"MCI": ["train.tsv:2"], "pMCI": ["train.tsv:6"]}}


def test_two_labels_on_one_session_are_an_error() -> None:
    train = T("train", r("01", "M00", "AD"), r("02", "M00", "AD"), r("01", "M00", "CN"), r("03", "M00", "CN"))
    f = one(run(S(train), "quality.label_conflict"))
    assert f.severity == "error"
    assert f.message == "1 participant sessions carry conflicting labels: AD/CN"
    assert f.subjects == ("sub-01",)
    assert f.evidence["conflicts"] == [{"participant_id": "sub-01", "session_id": "ses-M00",
                                        "labels": {"AD": ["train.tsv:2"], "CN": ["train.tsv:4"]}}]


def test_labels_that_meet_only_across_splits_are_an_error() -> None:
    # sub-01 M00 is AD in train and CN in test: no table nests one label in the other
    s = S(T("train", r("01", "M00", "AD"), r("02", "M00", "CN")), T("test", r("01", "M00", "CN"), r("03", "M00", "AD")))
    f = one(run(s, "quality.label_conflict"))
    assert f.severity == "error" and f.subjects == ("sub-01",)
    assert f.evidence["conflicts"][0]["labels"] == {"AD": ["train.tsv:2"], "CN": ["test.tsv:2"]}


def test_nested_and_conflicting_together() -> None:
    train = T("train", r("01", "M00", "MCI"), r("02", "M00", "MCI"), r("01", "M00", "pMCI"),
              r("03", "M00", "AD"), r("04", "M00", "AD"), r("03", "M00", "CN"), r("05", "M00", "CN"))
    found = {f.severity: f.subjects for f in run(S(train), "quality.label_conflict")}
    assert found == {"error": ("sub-03",), "info": ("sub-01",)}


LABEL_NEGATIVE = [
    pytest.param(S(T("train", r("01", "M00", "AD"), r("01", "M12", "CN")), T("test", r("02", "M00", "CN"))),
                 id="labels-change-over-sessions"),
    pytest.param(S(T("train", r("01", "M00", "AD"), r("01", "M00", "AD"))), id="repeated-row-same-label"),
    pytest.param(S(T("train", r("01", "M00", "AD"), r("01", "M00", None), r("01", "M00", "n/a"))), id="missing-label"),
    pytest.param(S(T("train", r("01"), r("02"), label_column=None)), id="no-label-column"),
    pytest.param(S(T("train"), T("test")), id="empty-splits"),
    pytest.param(S(T("train", r("01", "M00", "AD"), fold=0), T("validation", r("01", "M00", "AD"), fold=1),
                   T("train", r("02", "M00", "CN"), fold=1), T("validation", r("02", "M00", "CN"), fold=0),
                   format="clinicadl"), id="same-label-in-every-fold"),
]


@pytest.mark.parametrize("splits", LABEL_NEGATIVE)
def test_label_conflict_negative(splits: SplitSet) -> None:
    assert run(splits, "quality.label_conflict") == []


# --------------------------------------------------------------------------------------------------
# quality.missing_label


MISSING_CASES = [
    pytest.param(S(T("train", r("01", label="AD"), r("02")), T("test", r("03", label="CN"))), {"train": ("sub-02",)},
                 id="positive"),
    pytest.param(S(T("train", r("01", label="AD")), T("test", r("03", label="CN"))), {}, id="negative"),
    pytest.param(S(T("train", r("01", label="AD")), T("test")), {}, id="empty-split"),
    pytest.param(S(T("train", r("01", "M00", "AD"), r("01", "M12", "n/a"))), {}, id="one-session-labelled"),
    pytest.param(S(T("train", r("01", label="n/a")), T("test", r("02"))), {"train": ("sub-01",), "test": ("sub-02",)},
                 id="no-values"),
    pytest.param(S(T("train", r("01"), label_column=None), T("test", r("02"), label_column=None)),
                 {"train": ("sub-01",), "test": ("sub-02",)}, id="missing-column"),
]


@pytest.mark.parametrize(("splits", "expected"), MISSING_CASES)
def test_missing_label(splits: SplitSet, expected: dict[str, tuple[str, ...]]) -> None:
    findings = run(splits, "quality.missing_label", label="diagnosis")
    assert {f.splits[0]: f.subjects for f in findings} == expected
    for f in findings:
        assert f.severity == "warning"
        assert f.message.startswith(f"{len(f.subjects)} participants in {f.splits[0]} have no value for the label "
                                    f"'diagnosis': {f.subjects[0]}")


def test_missing_label_taken_from_participants_tsv(index: Any) -> None:
    # sub-01..03 have a diagnosis in participants.tsv; sub-04 has n/a there and nothing in the split
    splits = S(T("train", r("01"), r("02"), r("03")), T("test", r("04")))
    f = one(run(splits, "quality.missing_label", index=index, label="diagnosis"))
    assert f.splits == ("test",) and f.subjects == ("sub-04",)


def test_missing_label_skipped_without_label() -> None:
    s = S(T("train", r("01"), label_column=None))
    assert skipped_reason(s, "quality.missing_label") == "no label column (--label) given or found"


# --------------------------------------------------------------------------------------------------
# the whole battery on one clean and one leaky set


def _families(splits: SplitSet, **kw: Any) -> list[Finding]:
    ctx = AuditContext(options=AuditOptions(**kw), splits=splits)
    return run_checks(ctx, ("leakage", "split", "quality.label_conflict", "quality.missing_label"))[0]


def test_clean_split_has_no_finding() -> None:
    s = S(T("train", r("01", "M00", "AD"), r("01", "M12", "AD"), r("02", "M00", "CN")),
          T("validation", r("03", "M00", "AD")), T("test", r("04", "M00", "CN"), r("05", label="AD")))
    assert _families(s) == []


def test_leaky_split_battery() -> None:
    s = S(T("train", r("01", "M00", "AD"), r("01", "M12", "AD"), r("02", "M00", "CN")),
          T("validation", r("01", "M24", "AD")), T("test", r("02", "M00", "CN"), r("05", label="AD")))
    found = [(f.check, f.splits, f.subjects) for f in _families(s)]
    assert sorted(found) == sorted([("leakage.session_overlap", ("train", "test"), ("sub-02",)),
                                    ("leakage.subject_overlap", ("train", "validation"), ("sub-01",)),
                                    ("leakage.subject_overlap", ("train", "test"), ("sub-02",))])


def test_checks_accept_tables_built_from_paths(tmp_path: Path) -> None:
    """The same checks over split files read from disk (the reader's rows carry real file names and lines)."""
    from audit.splits import read_splits

    (tmp_path / "train.tsv").write_text("participant_id\tsession_id\nsub-01\tses-M00\nsub-02\tses-M00\n")
    (tmp_path / "test.tsv").write_text("participant_id\tsession_id\n02\tM00\n03\tM00\n")
    f = one(run(read_splits(tmp_path), "leakage.session_overlap"))
    assert f.evidence["sessions"] == ["sub-02/ses-M00"]
    g = one(run(read_splits(tmp_path), "leakage.subject_overlap"))
    assert {(Path(x["file"]).name, x["line"]) for x in g.evidence["rows"]} == {("train.tsv", 3), ("test.tsv", 2)}
