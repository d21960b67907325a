"""``bidsaudit split``: subject-level (or group-level) splits that cannot leak.

The unit of splitting is the *group*: the value of ``--group`` (family,
patient id) when given, otherwise the participant itself. Every session of a
participant, and every participant of a group, lands in one split only.

Algorithm
---------
1. Participants without a label value are left out (listed, with the reason).
   The label is stratified on as classes; a numeric label with more than ten
   distinct values (a regression target) is stratified on quantile bins.
2. *Test set*: scikit-learn's ``StratifiedGroupKFold`` algorithm
   (``n_splits = round(1 / test_size)``, shuffled) cuts the groups into folds;
   each fold is a candidate test set. This is repeated for ``tries`` random
   states derived from ``seed``, and the candidate with the best balance is
   kept.
3. *Validation*: the same on the remaining groups, with
   ``n_splits = round((1 - test_size) / val_size)`` (``val_size`` and
   ``test_size`` are fractions of all labelled participants); or, with
   ``folds = k``, ``k`` folds of the remaining groups (each fold is the
   validation set of one split, the other folds its training set).
4. A candidate's score is ``max |SMD|`` over the balance covariates (numeric:
   difference of means over the pooled SD; categorical: the largest
   difference in a level's proportion over ``sqrt(p (1 - p))``), plus the
   largest deviation of a class proportion from the whole, plus the deviation
   of the split's size from the one asked for. Candidates that leave a class
   out of a split lose to every candidate that does not. If the best one
   still misses a class, whole groups are moved to repair it.

The greedy fold assignment is scikit-learn's ``StratifiedGroupKFold``
(shuffle=True) re-implemented with the same steps, random stream, arithmetic
and tie-breaks, run for all the random states of a stage side by side: the
search needs hundreds of runs, which cost ~30 ms each in scikit-learn for 200
participants (~1 s for 200 tries here, all stages). ``tests/splits/test_splitting.py``
checks that both give the same folds.

Same ``seed``, same split (on any machine: the random streams are numpy's
``SeedSequence`` and legacy ``RandomState``); another seed, another split.

Before anything is written the split is audited by construction: no
participant and no group in two splits; in k-fold, validation folds disjoint
and covering the pool. A failure there is a bug and raises
:class:`SplitIntegrityError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit import __version__
from audit.bidsindex import index_dataset
from audit.scanner import from_sidecars
from audit.splits.balance import (
    SplitData,
    _balance,
    _Cov,
    _cov_block,
    _covariate,
    _Features,
)
from audit.splits.plan import (
    DEFAULT_BALANCE,
    LAYOUTS,
    MAX_CLASSES,
    MIN_PARTICIPANTS,
    SplitError,
    SplitIntegrityError,
    SplitPlan,
    SplitResult,
    _cell,
    _few,
    _suggest,
    check_plan,
)
from audit.splits.search import (
    class_counts,
    quantile_bins,
    search_folds,
    search_test,
    search_validation,
)
from audit.splits.write import write_splits
from audit.values import is_missing, normalise_participant, parse_number

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["make_splits", "split_dataset"]


def make_splits(participants: pd.DataFrame, plan: SplitPlan, *, source: str | Path | None = None,
                excluded: Mapping[str, str] | None = None) -> SplitResult:
    """Split the participants of a table (pure: no file is read or written).

    Parameters
    ----------
    participants : DataFrame
        One row per participant: ``participant_id`` (with or without
        ``sub-``), the label column, the group column if any, covariates.
        Values may be strings (as read from ``participants.tsv``) or numbers.
    plan : SplitPlan
    source : path, optional
        The file the table came from; named in error messages.
    excluded : mapping, optional
        ``participant_id -> reason``: participants to leave out of every split.

    Raises
    ------
    SplitError
        A column is missing, the plan is invalid, or a constraint cannot be
        met (too few participants, a class with too few groups, a group
        column with empty values, duplicate participant ids).
    """
    src = None if source is None else str(source)
    n_test, n_val = check_plan(plan)
    columns = [str(c) for c in participants.columns]
    if "participant_id" not in columns:
        raise SplitError(src, _suggest("participant_id", columns), field="participant_id")
    for col in (plan.label, plan.group):
        if col is not None and col not in columns:
            raise SplitError(src, _suggest(col, columns), field=col)
    warnings_: list[str] = []
    balance_cols: list[str] = []
    skipped: list[str] = []
    for col in plan.balance:
        if col in (plan.label, plan.group, "participant_id") or col in balance_cols:
            continue
        if col in columns:
            balance_cols.append(col)
        elif col in DEFAULT_BALANCE:
            skipped.append(col)
        else:
            raise SplitError(src, _suggest(col, columns) + " (a --balance column)", field=col)

    # rows, ids, exclusions
    pre_excluded = {normalise_participant(_cell(k), validate=False): v for k, v in (excluded or {}).items()}
    seen: dict[str, int] = {}
    rows: dict[str, dict[str, str]] = {}
    out_excluded: dict[str, str] = {}
    keep_cols = [plan.label] + ([plan.group] if plan.group else []) + balance_cols
    records = {str(k): v for k, v in participants.to_dict(orient="list").items()}
    n_rows = len(participants)
    for i in range(n_rows):
        line = i + 2
        pid = _cell(records["participant_id"][i])
        if not pid or is_missing(pid, only_bids=True):
            raise SplitError(src, "empty participant_id", line=line, field="participant_id")
        pid = normalise_participant(pid, validate=False)
        if pid in seen:
            raise SplitError(src, f"participant {pid} is listed twice (lines {seen[pid]} and {line})",
                             line=line, field="participant_id")
        seen[pid] = line
        if pid in pre_excluded:
            out_excluded[pid] = pre_excluded[pid]
            continue
        vals = {c: _cell(records[c][i]) for c in keep_cols}
        if is_missing(vals[plan.label], unknown=False):
            out_excluded[pid] = f"no value for the label '{plan.label}'"
            continue
        rows[pid] = vals
    for pid, why in pre_excluded.items():
        out_excluded.setdefault(pid, why)
    if not rows:
        what = "has no value for any participant" if n_rows else "has no rows"
        raise SplitError(src, f"the label column '{plan.label}' {what}", field=plan.label)
    if len(rows) < MIN_PARTICIPANTS:
        raise SplitError(src, f"only {len(rows)} participants have a value for '{plan.label}'; a split needs "
                         f"at least {MIN_PARTICIPANTS}", field=plan.label)
    pids = sorted(rows)
    if plan.group:
        empty = [p for p in pids if is_missing(rows[p][plan.group], unknown=False)]
        if empty:
            raise SplitError(src, f"the group column '{plan.group}' is empty for {len(empty)} participant(s) "
                             f"({_few(empty)}); give every participant a group (a unique value for those "
                             "without relatives)", field=plan.group)
        group_of = [rows[p][plan.group] for p in pids]
    else:
        group_of = pids

    # strata (label classes, or quantile bins of a numeric label)
    need = plan.folds + 1 if plan.folds else 3
    where = "a train/validation/test split" if not plan.folds else f"{plan.folds} folds plus a test set"
    labels = [rows[p][plan.label] for p in pids]
    group_names, g = np.unique(np.array(group_of, dtype=object).astype(str), return_inverse=True)
    n_groups = len(group_names)
    nums = [parse_number(v)[0] for v in labels]
    regression = all(x is not None for x in nums) and len(set(nums)) > MAX_CLASSES
    if regression:
        values = np.array(nums, dtype=float)
        strata_names, y = quantile_bins(values, g, need)
        if len(strata_names) == 1:
            warnings_.append(f"the numeric label '{plan.label}' is too small a sample to stratify on bins")
    else:
        strata_arr, y = np.unique(np.array(labels, dtype=object).astype(str), return_inverse=True)
        strata_names = tuple(str(s) for s in strata_arr)
    n_classes = len(strata_names)
    member = np.zeros((n_groups, n_classes), dtype=bool)
    member[g, y] = True
    gsize = np.bincount(g, minlength=n_groups)
    for c, name in enumerate(strata_names):
        ng = int(member[:, c].sum())
        if ng < need:
            npart = int((y == c).sum())
            unit = "participants" if not plan.group else f"participants in {ng} group(s) of '{plan.group}'"
            raise SplitError(
                src, f"class '{name}' of '{plan.label}' has {npart} {unit}; {where} needs at least {need} "
                f"{'groups' if plan.group else 'participants'} per class so that it is in every split "
                "(merge or drop the class, or leave its label empty to exclude it)", field=plan.label)
    if n_classes == 1 and not regression:
        warnings_.append(f"the label '{plan.label}' has a single class ('{strata_names[0]}')")

    # features
    covs: list[_Cov] = []
    start = 1 + n_classes
    if regression:
        lc = _covariate(plan.label, labels, start, scored=False)
        covs.append(lc)
        start += lc.width
    for col in balance_cols:
        c = _covariate(col, [rows[p][col] for p in pids], start)
        covs.append(c)
        start += c.width
        if c.ignored:
            warnings_.append(f"{c.ignored} non-numeric value(s) of '{col}' were left out of its statistics")
    onehot = np.zeros((len(pids), n_classes))
    onehot[np.arange(len(pids)), y] = 1.0
    matrix = np.hstack([np.ones((len(pids), 1)), onehot, *[_cov_block(c) for c in covs]])
    feats = _Features(matrix, n_classes, covs, onehot.mean(axis=0))
    data = SplitData(pids, y, strata_names, g, list(map(str, group_names)), member, gsize, feats)

    # search
    test_part, s1 = search_test(data, plan, n_test, need)
    if plan.folds:
        fold_of_group, s2 = search_folds(data, plan, test_part)
    else:
        fold_of_group, s2 = search_validation(data, plan, n_val, test_part)
    # fold_of_group: -1 test; simple: 0 validation, 1 train; k-fold: fold index
    result = _assemble(data, plan, fold_of_group, out_excluded, warnings_)
    _self_audit(result, data, plan)
    balance = _balance(result, data, plan)
    params = {
        "tool": {"name": "bidsaudit", "version": __version__},
        "plan": plan.as_dict(),
        "method": {
            "unit": f"group ('{plan.group}')" if plan.group else "participant",
            "splitter": "scikit-learn StratifiedGroupKFold algorithm (shuffle=True), seeded search",
            "stratified_on": (f"quantile bins of '{plan.label}'" if regression else f"classes of '{plan.label}'"),
            "strata": list(strata_names),
            "test_folds": n_test,
            **({"folds": plan.folds} if plan.folds else {"validation_folds": n_val}),
            "score": "max |SMD| over balance covariates + max class-proportion deviation + size deviation",
            "search": {"test": s1, "folds" if plan.folds else "validation": s2},
        },
        "balance_columns": balance_cols,
        "balance_skipped": skipped,
        "covariates": {c.name: c.kind for c in covs},
        "sizes": {name: len(members) for name, members in result.splits().items()},
        "participants": len(pids),
        "groups": n_groups,
        "excluded": [{"participant_id": p, "reason": r} for p, r in sorted(out_excluded.items())],
        "warnings": warnings_,
    }
    written = [plan.label]
    written += [c for c in ("age", "sex", "site") if c in columns and c not in written]
    written += [c for c in balance_cols if c not in written]
    if plan.group and plan.group not in written:
        written.append(plan.group)
    values = {p: {c: _raw(records, seen[p], c, rows[p]) for c in written} for p in pids}
    return replace(result, balance=balance, params=params, columns=tuple(written), values=values)


def _raw(records: dict[str, list[Any]], line: int, col: str, row: dict[str, str]) -> str:
    v = row[col] if col in row else _cell(records[col][line - 2])
    return "n/a" if is_missing(v, unknown=False) else v

# --------------------------------------------------------------------------- result, self-audit, balance
def _assemble(d: SplitData, plan: SplitPlan, parts: np.ndarray, excluded: dict[str, str],
              warnings_: list[str]) -> SplitResult:
    part_of = parts[d.g]
    test = frozenset(p for p, v in zip(d.pids, part_of) if v == -1)
    if plan.folds:
        assignments = {p: ("test" if v == -1 else "train+validation") for p, v in zip(d.pids, part_of)}
        folds = tuple({p: ("validation" if v == f else "train") for p, v in zip(d.pids, part_of) if v != -1}
                      for f in range(plan.folds))
        names = ["test"] + [f"split-{f}/validation" for f in range(plan.folds)]
        have = class_counts(np.where(parts < 0, 0, parts + 1), d.member, plan.folds + 1)
    else:
        assignments = {p: ("test" if v == -1 else "validation" if v == 0 else "train") for p, v in zip(d.pids, part_of)}
        folds = ()
        names = ["test", "validation", "train"]
        have = class_counts(np.where(parts < 0, 0, np.where(parts == 0, 1, 2)), d.member, 3)
    for pi, name in enumerate(names):
        for c, cname in enumerate(d.strata):
            if have[pi, c] == 0:
                warnings_.append(f"class '{cname}' of '{plan.label}' has no participant in {name}: "
                                 "the groups left no way to place it")
    n = len(d.pids)
    targets = {"test": plan.test_size} if plan.folds else {"test": plan.test_size, "validation": plan.val_size}
    for name, target in targets.items():
        frac = sum(1 for v in assignments.values() if v == name) / n
        if abs(frac - target) > 0.1:
            warnings_.append(f"{name} holds {frac:.0%} of the participants (asked {target:.0%}): "
                             "the groups are large or few")
    return SplitResult(assignments=assignments, folds=folds, test=test, excluded=dict(sorted(excluded.items())))


def _self_audit(r: SplitResult, d: SplitData, plan: SplitPlan) -> None:
    """Disjointness and coverage, checked on the result itself (never trusted from construction)."""
    pids = set(d.pids)
    if set(r.assignments) != pids:
        raise SplitIntegrityError("the splits do not cover exactly the labelled participants")
    if pids & set(r.excluded):
        raise SplitIntegrityError("a participant is both excluded and in a split")
    group_split: dict[str, str] = {}
    for p, gi in zip(d.pids, d.g):
        gname = d.group_names[gi]
        s = r.assignments[p]
        if group_split.setdefault(gname, s) != s:
            raise SplitIntegrityError(f"group {gname} is in both {group_split[gname]} and {s}")
    if r.test != frozenset(p for p, s in r.assignments.items() if s == "test"):
        raise SplitIntegrityError("the test set disagrees with the assignments")
    if not r.test:
        raise SplitIntegrityError("the test set is empty")
    if plan.folds:
        pool = pids - r.test
        seen: set[str] = set()
        for i, fold in enumerate(r.folds):
            if set(fold) != pool:
                raise SplitIntegrityError(f"split-{i} does not cover the training pool exactly")
            val = {p for p, s in fold.items() if s == "validation"}
            if not val or val & seen:
                raise SplitIntegrityError(f"split-{i}: validation fold empty or overlapping another fold")
            seen |= val
            where: dict[int, str] = {}
            for p, gi in zip(d.pids, d.g):
                if p in fold and where.setdefault(int(gi), fold[p]) != fold[p]:
                    raise SplitIntegrityError(f"split-{i}: group {d.group_names[gi]} is split")
        if seen != pool:
            raise SplitIntegrityError("the validation folds do not cover the training pool")
    elif not any(s == "validation" for s in r.assignments.values()):
        raise SplitIntegrityError("the validation set is empty")

# --------------------------------------------------------------------------- the one call for the CLI
def split_dataset(dataset: str | Path, plan: SplitPlan, output: str | Path,
                  layout: str = "both") -> tuple[SplitResult, list[Path]]:
    """Index ``dataset``, split its participants as ``plan`` says, write the split to ``output``.

    Participants listed in ``participants.tsv`` without a ``sub-*`` folder,
    and folders not listed there, are excluded (with the reason). When
    ``site`` is a balance column and ``participants.tsv`` has none, each
    subject's scanner from its sidecars stands in for it, as the audit's
    checks identify it (:func:`audit.scanner.from_sidecars`: vendor spellings
    merged, field strength snapped to its nominal value).

    Raises
    ------
    InputError
        The dataset cannot be read (no folder, no dataset_description.json).
    SplitError
        No readable participants.tsv, a missing column (with the nearest
        name), or a split that cannot be made (see :func:`make_splits`).
    """
    if layout not in LAYOUTS:
        raise SplitError(None, None, field="layout", expected=" or ".join(LAYOUTS), got=repr(layout))
    index = index_dataset(dataset)
    source = index.root / "participants.tsv"
    table = index.participants
    if table is None:
        probs = [p.message for p in index.all_problems() if p.path == "participants.tsv"]
        why = probs[0] if probs else "no such file"
        raise SplitError(source, why, expected="a participants.tsv with participant_id and the label column")
    table = table.copy()
    table["participant_id"] = [normalise_participant(_cell(p), validate=False) if _cell(p) else "" for p in table["participant_id"]]
    folders = set(index.subjects)
    listed = set(table["participant_id"])
    excluded = {p: "listed in participants.tsv but has no folder in the dataset"
                for p in sorted(listed - folders) if p}
    excluded.update({p: "has a folder but is not listed in participants.tsv (no label)"
                     for p in sorted(folders - listed)})
    notes: list[str] = []
    if "site" in plan.balance and "site" not in table.columns and plan.label != "site":
        # the audit's identity (audit.scanner), so the split balances the sites confound.label_site counts
        scanners = from_sidecars(index)
        if scanners.by_subject:
            table["site"] = [scanners.by_subject.get(p, "n/a") for p in table["participant_id"]]
            notes.append(f"site: each subject's scanner from its {scanners.describe()}")
    result = make_splits(table, plan, source=source, excluded=excluded)
    params = dict(result.params)
    params["dataset"] = {"path": str(index.root), "name": index.name}
    if notes:
        params["derived_columns"] = notes
    result = replace(result, params=params)
    paths = write_splits(result, index, output, layout=layout)
    return result, paths
