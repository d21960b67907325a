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

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.errors import InputError, SplitError, SplitIntegrityError, nearest

if TYPE_CHECKING:
    import pandas as pd

    from audit.bidsindex import DatasetIndex

__all__ = [
    "SplitPlan",
    "SplitResult",
    "SplitError",
    "SplitIntegrityError",
    "make_splits",
    "write_splits",
    "split_dataset",
    "summary",
    "DEFAULT_BALANCE",
    "PARAMS_FILE",
    "LAYOUTS",
]

DEFAULT_BALANCE: tuple[str, ...] = ("age", "sex", "site")
PARAMS_FILE = "split_params.json"
LAYOUTS = ("folder", "clinicadl", "both")
MIN_PARTICIPANTS = 6
#: a numeric label with more distinct values than this is a regression target (stratified on bins)
MAX_CLASSES = 10
#: covariates that are categories even when written as numbers
CATEGORICAL_NAMES = frozenset({"sex", "gender", "site", "scanner", "center", "centre", "handedness",
                               "manufacturer", "study", "cohort", "race", "ethnicity"})
NUMERIC_NAMES = frozenset({"age", "age_at_scan", "bmi", "education", "education_years", "mmse", "moca"})
_MISSING = frozenset({"", "n/a", "na", "nan"})
_FILE_RE = re.compile(r"^(?:clinicadl/)?(?:(?:train|validation|test)\.tsv|split-\d+/(?:train|validation)\.tsv)$")


# --------------------------------------------------------------------------- plan / result
@dataclass(frozen=True)
class SplitPlan:
    """What split to make.

    Attributes
    ----------
    label : str
        Column of ``participants.tsv`` to stratify on.
    group : str, optional
        Column whose participants must stay together (family, patient id).
    test_size, val_size : float
        Fractions of the labelled participants, each in (0, 0.5]. The split
        cuts folds, so the sizes reached are ``1 / round(1 / test_size)`` and
        ``(1 - test) / round((1 - test_size) / val_size)``; ``val_size`` is
        unused with ``folds``.
    folds : int
        0: one train/validation/test split. k >= 2: k folds over the
        non-test participants (ClinicaDL's ``split-N``) plus a held-out test.
    seed : int
        Non-negative; the same seed gives the same split.
    balance : tuple of str
        Columns to balance. The default three are skipped when absent (and
        ``site`` is taken from the sidecars' scanner fields by
        :func:`split_dataset`); a column named otherwise must exist.
    tries : int
        Random states tried per stage (test, then validation/folds).
    """

    label: str
    group: str | None = None
    test_size: float = 0.2
    val_size: float = 0.2
    folds: int = 0
    seed: int = 0
    balance: tuple[str, ...] = DEFAULT_BALANCE
    tries: int = 200

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "group": self.group, "test_size": self.test_size,
                "val_size": self.val_size, "folds": self.folds, "seed": self.seed,
                "balance": list(self.balance), "tries": self.tries}


@dataclass(frozen=True)
class SplitResult:
    """A split, its balance statistics and the parameters that made it.

    Attributes
    ----------
    assignments : dict
        ``participant_id -> "train" | "validation" | "test"``; with k folds,
        ``"train+validation"`` (the k-fold pool) or ``"test"``.
    folds : tuple of dict
        k-fold only: per fold, ``participant_id -> "train" | "validation"``
        for every participant of the pool.
    test : frozenset
        The held-out test participants (both layouts).
    balance : dict
        Per split: counts per class, mean/SD or level proportions of each
        covariate, |SMD| against the rest; per pair of splits: |SMD| per
        covariate; ``max_abs_smd`` over everything.
    params : dict
        The plan, the method, the random states chosen, sizes, warnings and
        the excluded participants; written to ``split_params.json``.
    excluded : dict
        ``participant_id -> reason`` for participants in no split.
    columns : tuple of str
        Participant columns written beside participant_id/session_id.
    values : dict
        ``participant_id -> {column: value}`` for ``columns`` (raw strings).
    """

    assignments: dict[str, str]
    folds: tuple[dict[str, str], ...] = ()
    test: frozenset[str] = frozenset()
    balance: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def kfold(self) -> bool:
        return bool(self.folds)

    def splits(self) -> dict[str, frozenset[str]]:
        """Members of every split file: ``train``/``validation``/``test``, or ``split-N/train`` ... and ``test``."""
        if not self.folds:
            out: dict[str, set[str]] = {"train": set(), "validation": set(), "test": set()}
            for pid, name in self.assignments.items():
                out[name].add(pid)
            return {k: frozenset(v) for k, v in out.items()}
        res: dict[str, frozenset[str]] = {}
        for i, fold in enumerate(self.folds):
            for name in ("train", "validation"):
                res[f"split-{i}/{name}"] = frozenset(p for p, s in fold.items() if s == name)
        res["test"] = self.test
        return res


# --------------------------------------------------------------------------- small helpers
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover
        pass
    return str(value).strip()


def _is_missing(value: str) -> bool:
    return value.strip().lower() in _MISSING


def _number(value: str) -> float | None:
    """``"71"``, ``"71.5"``, ``"89+"`` -> float; anything else (or missing) -> None."""
    text = value.strip()
    if text.endswith("+"):
        text = text[:-1].strip()
    try:
        out = float(text)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _sub(pid: str) -> str:
    return pid if pid.startswith("sub-") else f"sub-{pid}"


def _suggest(name: str, columns: Sequence[str]) -> str:
    near = nearest(name, columns)
    hint = f"; did you mean '{near}'?" if near else ""
    listed = ", ".join(columns) if len(columns) <= 12 else ", ".join(columns[:12]) + ", ..."
    return f"no column '{name}' (columns: {listed}){hint}"


def _round(x: float | None, nd: int = 4) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def _few(items: Sequence[str], n: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# --------------------------------------------------------------------------- the splitter
def _sgkf(y: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int) -> np.ndarray:
    """Fold (0..n_splits-1) of each sample, as ``StratifiedGroupKFold(n_splits, shuffle=True,
    random_state=random_state)`` assigns it; see :func:`_sgkf_batch`."""
    return _sgkf_batch(y, groups, n_splits, [random_state])[0]


def _sgkf_batch(y: np.ndarray, groups: np.ndarray, n_splits: int, states: Sequence[int]) -> np.ndarray:
    """Folds of each sample for several random states at once, shape (len(states), n).

    scikit-learn's ``StratifiedGroupKFold`` (shuffle=True) algorithm: the groups in a shuffled
    order (``RandomState(state).shuffle``), those with the most unequal class mix first (stable
    sort), each into the fold that keeps the per-class fold proportions most even (mean over
    classes of their SD over folds); a near tie (``np.isclose``) goes to the fold with fewer
    samples, then the first. The arithmetic uses the same ufuncs in the same order, so it is
    bit-identical and ties break exactly as in scikit-learn; the states run side by side, so a
    search over hundreds of them costs about as much as a few single runs. Unlike scikit-learn
    it does not refuse a class with fewer members than folds (the search handles that).
    """
    n_states = len(states)
    _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
    n_classes = len(y_cnt)
    _, groups_inv, groups_cnt = np.unique(groups, return_inverse=True, return_counts=True)
    n_groups = len(groups_cnt)
    per_group = np.zeros((n_groups, n_classes))
    np.add.at(per_group, (groups_inv, y_inv), 1)
    spread = np.std(per_group, axis=1)
    seq = np.empty((n_states, n_groups), dtype=np.intp)  # original group index placed at each step
    for t, state in enumerate(states):
        perm = np.arange(n_groups)
        np.random.RandomState(state).shuffle(perm)
        seq[t] = perm[np.argsort(-spread[perm], kind="stable")]
    rows = np.arange(n_states)
    per_fold = np.zeros((n_states, n_splits, n_classes))
    fold_of = np.empty((n_states, n_groups), dtype=np.intp)
    eye = np.eye(n_splits)[None, :, :, None]
    denom = y_cnt.reshape(1, 1, 1, -1)
    add, div = np.add.reduce, np.true_divide
    for step in range(n_groups):
        gy = per_group[seq[:, step]]  # (T, C)
        cand = (per_fold[:, None, :, :] + eye * gy[:, None, None, :]) / denom  # [t, i]: group added to fold i
        dev = cand - div(add(cand, axis=2, keepdims=True), n_splits)
        evals = div(add(np.sqrt(div(add(dev * dev, axis=2), n_splits)), axis=2), n_classes)  # (T, K)
        sizes = add(per_fold, axis=2)
        best = np.zeros(n_states, dtype=np.intp)
        min_eval = np.full(n_states, np.inf)
        min_size = np.full(n_states, np.inf)
        for i in range(n_splits):
            e, size = evals[:, i], sizes[:, i]
            with np.errstate(invalid="ignore"):
                close = np.isfinite(min_eval) & (np.abs(e - min_eval) <= 1e-8 + 1e-5 * np.abs(min_eval))
            better = (e < min_eval) | (close & (size < min_size))
            best = np.where(better, i, best)
            min_eval = np.where(better, e, min_eval)
            min_size = np.where(better, size, min_size)
        per_fold[rows, best] += gy
        fold_of[rows, seq[:, step]] = best
    return fold_of[:, groups_inv]


def _states(seed: int, stage: int, tries: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence([seed, stage]).generate_state(tries)]


# --------------------------------------------------------------------------- covariates & scoring
@dataclass
class _Cov:
    name: str
    kind: str  # "numeric" | "categorical"
    start: int  # first feature column
    levels: tuple[str, ...] = ()
    var0: float = 0.0  # overall variance (numeric)
    center: float = 0.0
    scored: bool = True
    raw: list[str] = field(default_factory=list)
    ignored: int = 0  # non-numeric values treated as missing

    @property
    def width(self) -> int:
        return 3 if self.kind == "numeric" else len(self.levels)


@dataclass
class _Features:
    """Per-participant features whose column sums give every balance statistic."""

    matrix: np.ndarray  # (n, F): [1, label one-hot..., per covariate: (n, sum, sumsq) or level one-hot]
    n_classes: int
    covs: list[_Cov]
    p_all: np.ndarray

    def sums(self, masks: np.ndarray) -> np.ndarray:
        """(P, F) sums for P boolean/0-1 masks of shape (P, n)."""
        return masks.astype(float) @ self.matrix

    def label_dev(self, s: np.ndarray) -> np.ndarray:
        lab = s[..., 1:1 + self.n_classes]
        size = lab.sum(-1)
        with np.errstate(all="ignore"):
            dev = np.abs(lab / size[..., None] - self.p_all).max(-1)
        return np.where(size > 0, dev, 1.0)

    def smd(self, a: np.ndarray, b: np.ndarray, *, scored_only: bool = True) -> np.ndarray:
        """|SMD| per covariate, shape (..., n_cov)."""
        covs = [c for c in self.covs if c.scored or not scored_only]
        shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        if not covs:
            return np.zeros((*shape, 0))
        return np.stack([_smd_one(c, a, b) for c in covs], axis=-1)


def _smd_one(c: _Cov, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if c.kind == "numeric":
            na, sa, qa = a[..., c.start], a[..., c.start + 1], a[..., c.start + 2]
            nb, sb, qb = b[..., c.start], b[..., c.start + 1], b[..., c.start + 2]
            ma, mb = sa / na, sb / nb
            va = np.where(na >= 2, np.maximum(qa - sa * sa / na, 0) / (na - 1), c.var0)
            vb = np.where(nb >= 2, np.maximum(qb - sb * sb / nb, 0) / (nb - 1), c.var0)
            pooled = np.sqrt((va + vb) / 2)
            pooled = np.where(pooled > 1e-12, pooled, math.sqrt(c.var0))
            d = np.abs(ma - mb) / pooled
            ok = (na > 0) & (nb > 0) & (pooled > 1e-12)
            return np.where(ok, d, 0.0)
        ca, cb = a[..., c.start:c.start + c.width], b[..., c.start:c.start + c.width]
        na, nb = ca.sum(-1, keepdims=True), cb.sum(-1, keepdims=True)
        p = (ca + cb) / (na + nb)
        d = np.abs(ca / na - cb / nb) / np.sqrt(p * (1 - p))
        d = np.where((p > 0) & (p < 1) & (na > 0) & (nb > 0), d, 0.0)
        return d.max(-1) if c.width else np.zeros(d.shape[:-1])


def _covariate(name: str, raw: list[str], start: int, *, scored: bool = True) -> _Cov:
    present = [v for v in raw if not _is_missing(v)]
    nums = [_number(v) for v in present]
    parsed = [x for x in nums if x is not None]
    distinct = len(set(parsed))
    numeric = name.lower() not in CATEGORICAL_NAMES and bool(present) and (
        (len(parsed) == len(present) and (distinct > 5 or name.lower() in NUMERIC_NAMES))
        or (len(parsed) >= 0.9 * len(present) and distinct > 5)
    )
    if numeric:
        vals = [x for x in parsed]
        center = float(np.mean(vals)) if vals else 0.0
        var0 = float(np.var(vals, ddof=1)) if len(vals) >= 2 else 0.0
        return _Cov(name, "numeric", start, var0=var0, center=center, scored=scored, raw=raw,
                    ignored=len(present) - len(parsed))
    levels = tuple(sorted(set(present)))
    return _Cov(name, "categorical", start, levels=levels, scored=scored, raw=raw)


def _cov_block(c: _Cov) -> np.ndarray:
    n = len(c.raw)
    block = np.zeros((n, c.width))
    if c.kind == "numeric":
        for i, v in enumerate(c.raw):
            x = None if _is_missing(v) else _number(v)
            if x is not None:
                x -= c.center
                block[i] = (1.0, x, x * x)
    else:
        pos = {lv: j for j, lv in enumerate(c.levels)}
        for i, v in enumerate(c.raw):
            if not _is_missing(v):
                block[i, pos[v]] = 1.0
    return block


# --------------------------------------------------------------------------- checks of the plan
def _check_plan(plan: SplitPlan) -> tuple[int, int]:
    """Validate the plan; return (test folds, validation folds or k)."""
    def bad(fld: str, expected: str, got: Any) -> SplitError:
        return SplitError(None, None, field=fld, expected=expected, got=repr(got))

    if not isinstance(plan.label, str) or not plan.label.strip():
        raise bad("label", "a column name", plan.label)
    for name in ("test_size", "val_size"):
        v = getattr(plan, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 0.5):
            raise bad(name, "a fraction in (0, 0.5]", v)
    if isinstance(plan.folds, bool) or not isinstance(plan.folds, int) or plan.folds < 0 or plan.folds == 1:
        raise bad("folds", "0 (train/validation/test) or a number of folds >= 2", plan.folds)
    if isinstance(plan.seed, bool) or not isinstance(plan.seed, int) or plan.seed < 0:
        raise bad("seed", "a non-negative integer", plan.seed)
    if isinstance(plan.tries, bool) or not isinstance(plan.tries, int) or not (1 <= plan.tries <= 100_000):
        raise bad("tries", "an integer from 1 to 100000", plan.tries)
    if not isinstance(plan.balance, (tuple, list)) or not all(isinstance(c, str) for c in plan.balance):
        raise bad("balance", "a tuple of column names", plan.balance)
    n_test = int(math.floor(1 / plan.test_size + 0.5))
    if plan.folds:
        return n_test, plan.folds
    n_val = int(math.floor((1 - plan.test_size) / plan.val_size + 0.5))
    if n_val < 2:
        raise SplitError(None, f"val_size={plan.val_size} with test_size={plan.test_size} leaves too little "
                         "for training", field="val_size",
                         expected=f"at most {(1 - plan.test_size) / 1.5:.3f} (a third of the non-test part)")
    return n_test, n_val


# --------------------------------------------------------------------------- make_splits
@dataclass
class _Data:
    pids: list[str]
    y: np.ndarray  # stratum code per participant
    strata: tuple[str, ...]
    g: np.ndarray  # group code per participant
    group_names: list[str]
    member: np.ndarray  # (G, C) group holds a participant of stratum c
    gsize: np.ndarray  # participants per group
    feats: _Features


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
    n_test, n_val = _check_plan(plan)
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
    pre_excluded = {_sub(_cell(k)): v for k, v in (excluded or {}).items()}
    seen: dict[str, int] = {}
    rows: dict[str, dict[str, str]] = {}
    out_excluded: dict[str, str] = {}
    keep_cols = [plan.label] + ([plan.group] if plan.group else []) + balance_cols
    records = {str(k): v for k, v in participants.to_dict(orient="list").items()}
    n_rows = len(participants)
    for i in range(n_rows):
        line = i + 2
        pid = _cell(records["participant_id"][i])
        if not pid or _is_missing(pid):
            raise SplitError(src, "empty participant_id", line=line, field="participant_id")
        pid = _sub(pid)
        if pid in seen:
            raise SplitError(src, f"participant {pid} is listed twice (lines {seen[pid]} and {line})",
                             line=line, field="participant_id")
        seen[pid] = line
        if pid in pre_excluded:
            out_excluded[pid] = pre_excluded[pid]
            continue
        vals = {c: _cell(records[c][i]) for c in keep_cols}
        if _is_missing(vals[plan.label]):
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
        empty = [p for p in pids if _is_missing(rows[p][plan.group])]
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
    nums = [_number(v) for v in labels]
    regression = all(x is not None for x in nums) and len(set(nums)) > MAX_CLASSES
    if regression:
        values = np.array(nums, dtype=float)
        strata_names, y = _bins(values, g, need)
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
    data = _Data(pids, y, strata_names, g, list(map(str, group_names)), member, gsize, feats)

    # search
    test_part, s1 = _search_test(data, plan, n_test, need)
    if plan.folds:
        fold_of_group, s2 = _search_folds(data, plan, test_part)
    else:
        fold_of_group, s2 = _search_validation(data, plan, n_val, test_part)
    # fold_of_group: -1 test; simple: 0 validation, 1 train; k-fold: fold index
    result = _assemble(data, plan, fold_of_group, out_excluded, warnings_)
    _self_audit(result, data, plan)
    balance = _balance(result, data, plan)
    params = {
        "tool": _tool(),
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
    return "n/a" if _is_missing(v) else v


def _tool() -> dict[str, str]:
    from audit import __version__

    return {"name": "bidsaudit", "version": __version__}


def _bins(values: np.ndarray, g: np.ndarray, need: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Quantile bins of a numeric label, as many (<= 5) as leave ``need`` groups in each."""
    for q in range(5, 1, -1):
        edges = np.unique(np.quantile(values, np.linspace(0, 1, q + 1)))
        if len(edges) < 3:
            continue
        y = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        used = np.unique(y)
        y = np.searchsorted(used, y)
        ok = all(len(np.unique(g[y == c])) >= need for c in range(len(used)))
        if ok:
            names = tuple(f"[{_fmt(edges[u])}, {_fmt(edges[u + 1])}{']' if u + 2 == len(edges) else ')'}"
                          for u in used)
            return names, y
    return ("all",), np.zeros(len(values), dtype=np.intp)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _group_fold(fold: np.ndarray, g: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, -1, dtype=np.intp)
    out[g] = fold
    return out


def _class_counts(part_of_group: np.ndarray, member: np.ndarray, n_parts: int) -> np.ndarray:
    """(P, C) number of groups holding each class, per part (parts < 0 ignored)."""
    out = np.zeros((n_parts, member.shape[1]))
    ok = part_of_group >= 0
    np.add.at(out, part_of_group[ok], member[ok])
    return out


def _search_test(d: _Data, plan: SplitPlan, k: int, need: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean mask over groups: the test set."""
    n = len(d.pids)
    n_groups = len(d.group_names)
    total = d.feats.matrix.sum(axis=0)
    gtotal = d.member.sum(axis=0)
    rest_need = need - 1
    best_key: tuple[float, float] | None = None
    best: tuple[int, int, int, np.ndarray] | None = None
    scores: list[float] = []
    states = _states(plan.seed, 1, plan.tries)
    all_folds = _sgkf_batch(d.y, d.g, k, states)
    for t, state in enumerate(states):
        fold = all_folds[t]
        masks = fold[None, :] == np.arange(k)[:, None]
        s = d.feats.sums(masks)
        rest = total - s
        smd = d.feats.smd(s, rest)
        smd_max = smd.max(-1) if smd.shape[-1] else np.zeros(k)
        score = smd_max + d.feats.label_dev(s) + np.abs(s[:, 0] / n - plan.test_size)
        gfold = _group_fold(fold, d.g, n_groups)
        cnt = _class_counts(gfold, d.member, k)
        deficit = np.maximum(0, 1 - cnt).sum(1) + np.maximum(0, rest_need - (gtotal - cnt)).sum(1)
        for j in range(k):
            scores.append(float(score[j]))
            key = (float(deficit[j]), float(score[j]))
            if best_key is None or key < best_key:
                best_key, best = key, (t, j, state, gfold == j)
    assert best is not None and best_key is not None
    t, j, state, test = best
    parts = np.where(test, 0, 1)
    repaired = False
    if best_key[0] > 0:
        need_m = np.array([[1] * d.member.shape[1], [rest_need] * d.member.shape[1]])
        parts = _repair(parts, d.member, need_m, d.gsize)
        repaired = True
    info = {"candidates": len(scores), "try": t, "fold": j, "random_state": state,
            "score": _round(best_key[1]), "median_score": _round(float(np.median(scores))),
            "repaired": repaired}
    return parts == 0, info


def _search_validation(d: _Data, plan: SplitPlan, k: int, test: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Per group: -1 test, 0 validation, 1 train."""
    n = len(d.pids)
    n_groups = len(d.group_names)
    in_rest = ~test[d.g]
    idx = np.flatnonzero(in_rest)
    st = d.feats.sums(test[d.g][None, :])[0]
    sub = d.feats.matrix[idx]
    rtotal = sub.sum(axis=0)
    rgroups = ~test
    gtotal = d.member[rgroups].sum(axis=0)
    best_key: tuple[float, float] | None = None
    best: tuple[int, int, int, np.ndarray] | None = None
    scores: list[float] = []
    states = _states(plan.seed, 2, plan.tries)
    all_folds = _sgkf_batch(d.y[idx], d.g[idx], k, states)
    for t, state in enumerate(states):
        fold = all_folds[t]
        masks = (fold[None, :] == np.arange(k)[:, None]).astype(float)
        s = masks @ sub
        train = rtotal - s
        pair = np.concatenate([d.feats.smd(s, train), d.feats.smd(s, st), d.feats.smd(train, st)], axis=-1)
        smd_max = pair.max(-1) if pair.shape[-1] else np.zeros(k)
        ldev = np.maximum.reduce([d.feats.label_dev(s), d.feats.label_dev(train),
                                  np.broadcast_to(d.feats.label_dev(st), (k,))])
        score = smd_max + ldev + np.abs(s[:, 0] / n - plan.val_size)
        gfold = np.full(n_groups, -1, dtype=np.intp)
        gfold[d.g[idx]] = fold
        cnt = _class_counts(gfold, d.member, k)
        deficit = np.maximum(0, 1 - cnt).sum(1) + np.maximum(0, 1 - (gtotal - cnt)).sum(1)
        for j in range(k):
            scores.append(float(score[j]))
            key = (float(deficit[j]), float(score[j]))
            if best_key is None or key < best_key:
                best_key, best = key, (t, j, state, gfold)
    assert best is not None and best_key is not None
    t, j, state, gfold = best
    parts = np.where(test, -1, np.where(gfold == j, 0, 1))
    repaired = False
    if best_key[0] > 0:
        parts = _repair(parts, d.member, np.ones((2, d.member.shape[1])), d.gsize)
        repaired = True
    info = {"candidates": len(scores), "try": t, "fold": j, "random_state": state,
            "score": _round(best_key[1]), "median_score": _round(float(np.median(scores))),
            "repaired": repaired}
    return parts, info


def _search_folds(d: _Data, plan: SplitPlan, test: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Per group: -1 test, else its fold (0..k-1)."""
    k = plan.folds
    n_groups = len(d.group_names)
    idx = np.flatnonzero(~test[d.g])
    sub = d.feats.matrix[idx]
    ptotal = sub.sum(axis=0)
    npool = len(idx)
    best_key: tuple[float, float] | None = None
    best: tuple[int, int, np.ndarray] | None = None
    scores: list[float] = []
    states = _states(plan.seed, 3, plan.tries)
    all_folds = _sgkf_batch(d.y[idx], d.g[idx], k, states)
    for t, state in enumerate(states):
        fold = all_folds[t]
        masks = (fold[None, :] == np.arange(k)[:, None]).astype(float)
        s = masks @ sub
        smd = d.feats.smd(s, ptotal - s)
        smd_max = float(smd.max()) if smd.size else 0.0
        score = (smd_max + float(d.feats.label_dev(s).max())
                 + float(np.abs(s[:, 0] / npool - 1 / k).max()))
        gfold = np.full(n_groups, -1, dtype=np.intp)
        gfold[d.g[idx]] = fold
        deficit = float(np.maximum(0, 1 - _class_counts(gfold, d.member, k)).sum())
        scores.append(score)
        key = (deficit, score)
        if best_key is None or key < best_key:
            best_key, best = key, (t, state, gfold)
    assert best is not None and best_key is not None
    t, state, gfold = best
    parts = gfold.copy()
    repaired = False
    if best_key[0] > 0:
        parts = _repair(parts, d.member, np.ones((k, d.member.shape[1])), d.gsize)
        repaired = True
    info = {"candidates": len(scores), "try": t, "random_state": state, "score": _round(best_key[1]),
            "median_score": _round(float(np.median(scores))), "repaired": repaired}
    return parts, info


def _repair(parts: np.ndarray, member: np.ndarray, need: np.ndarray, gsize: np.ndarray) -> np.ndarray:
    """Move whole groups between parts (>= 0) until every part holds ``need[p, c]`` groups of class c,
    or no move helps. Smallest groups move first; deterministic."""
    parts = parts.copy()
    n_parts = need.shape[0]
    for _ in range(len(parts) * member.shape[1] + 1):
        have = _class_counts(parts, member, n_parts)
        deficit = np.maximum(0, need - have)
        total = deficit.sum()
        if total == 0:
            break
        p, c = (int(v) for v in np.argwhere(deficit > 0)[0])
        best: tuple[tuple[float, int, int], int] | None = None
        for gi in np.flatnonzero(member[:, c] & (parts >= 0) & (parts != p)):
            q = parts[gi]
            new = have.copy()
            new[q] -= member[gi]
            new[p] += member[gi]
            key = (float(np.maximum(0, need - new).sum()), int(gsize[gi]), int(gi))
            if best is None or key < best[0]:
                best = (key, int(gi))
        if best is None or best[0][0] >= total:
            break
        parts[best[1]] = p
    # whatever the classes, no part may be left without groups (an empty validation fold is worse
    # than a class missing from it, which is reported)
    floor = need.max(axis=1)
    for _ in range(len(parts) + 1):
        count = np.bincount(parts[parts >= 0], minlength=n_parts)
        short = np.flatnonzero(count < floor)
        spare = count - floor
        if not short.size or spare.max() <= 0:
            break
        donor = int(np.argmax(spare))
        cands = np.flatnonzero(parts == donor)
        parts[cands[np.lexsort((cands, gsize[cands]))[0]]] = int(short[0])
    return parts


# --------------------------------------------------------------------------- result, self-audit, balance
def _assemble(d: _Data, plan: SplitPlan, parts: np.ndarray, excluded: dict[str, str],
              warnings_: list[str]) -> SplitResult:
    part_of = parts[d.g]
    test = frozenset(p for p, v in zip(d.pids, part_of) if v == -1)
    if plan.folds:
        assignments = {p: ("test" if v == -1 else "train+validation") for p, v in zip(d.pids, part_of)}
        folds = tuple({p: ("validation" if v == f else "train") for p, v in zip(d.pids, part_of) if v != -1}
                      for f in range(plan.folds))
        names = ["test"] + [f"split-{f}/validation" for f in range(plan.folds)]
        have = _class_counts(np.where(parts < 0, 0, parts + 1), d.member, plan.folds + 1)
    else:
        assignments = {p: ("test" if v == -1 else "validation" if v == 0 else "train") for p, v in zip(d.pids, part_of)}
        folds = ()
        names = ["test", "validation", "train"]
        have = _class_counts(np.where(parts < 0, 0, np.where(parts == 0, 1, 2)), d.member, 3)
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


def _self_audit(r: SplitResult, d: _Data, plan: SplitPlan) -> None:
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


def _describe(d: _Data, mask: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"participants": int(mask.sum()), "groups": int(len(np.unique(d.g[mask])))}
    out["fraction"] = _round(mask.sum() / len(d.pids))
    counts = {name: int(((d.y == c) & mask).sum()) for c, name in enumerate(d.strata)}
    tot = sum(counts.values())
    out["label"] = {"counts": counts,
                    "proportions": {k: _round(v / tot if tot else None) for k, v in counts.items()}}
    covs: dict[str, Any] = {}
    for c in d.feats.covs:
        block = d.feats.matrix[:, c.start:c.start + c.width][mask]
        missing = int(mask.sum() - block.sum() if c.kind == "categorical" else mask.sum() - block[:, 0].sum())
        if c.kind == "numeric":
            present = block[:, 0] > 0
            x = block[present, 1] + c.center
            entry = {"n": int(present.sum()), "missing": missing,
                     "mean": _round(float(x.mean())) if x.size else None,
                     "sd": _round(float(x.std(ddof=1))) if x.size >= 2 else None}
        else:
            n = block.sum()
            entry = {"n": int(n), "missing": missing,
                     "proportions": {lv: _round(block[:, j].sum() / n if n else None)
                                     for j, lv in enumerate(c.levels)}}
        if not c.scored:  # a numeric label
            out["label"].update({k: entry[k] for k in ("n", "mean", "sd")})
        else:
            covs[c.name] = entry
    out["covariates"] = covs
    return out


def _balance(r: SplitResult, d: _Data, plan: SplitPlan) -> dict[str, Any]:
    pid_idx = {p: i for i, p in enumerate(d.pids)}
    everyone = np.ones(len(d.pids), dtype=bool)

    def mask(members: frozenset[str] | set[str]) -> np.ndarray:
        m = np.zeros(len(d.pids), dtype=bool)
        m[[pid_idx[p] for p in members]] = True
        return m

    covs = d.feats.covs
    scored = [c.name for c in covs if c.scored]

    def smd_pair(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
        s = d.feats.sums(np.stack([a, b]))
        vals = d.feats.smd(s[0], s[1], scored_only=False)
        res: dict[str, Any] = {c.name if c.scored else "label": _round(float(v)) for c, v in zip(covs, vals)}
        if "label" not in res:
            lab = _Cov("label", "categorical", 1, levels=d.strata)
            res["label"] = _round(float(_smd_one(lab, s[0], s[1])))
        res["max_abs_smd"] = _round(max((float(v) for c, v in zip(covs, vals) if c.scored), default=0.0))
        return res

    split_sets = r.splits()
    if plan.folds:
        pool = frozenset(r.assignments) - r.test
        parts = {"test": r.test, "train+validation": pool}
        parts.update(split_sets)
        pairs = [("train+validation", "test")] + [(f"split-{i}/train", f"split-{i}/validation")
                                                   for i in range(plan.folds)]
    else:
        parts = dict(split_sets)
        pairs = [("train", "validation"), ("train", "test"), ("validation", "test")]
    masks = {name: mask(members) for name, members in parts.items()}
    splits: dict[str, Any] = {}
    for name, m in masks.items():
        entry = _describe(d, m)
        rest = everyone & ~m
        if plan.folds and name.startswith("split-"):
            rest = masks["train+validation"] & ~m
        vs = smd_pair(m, rest)
        entry["smd_vs_rest"] = vs
        entry["label_deviation"] = _round(float(d.feats.label_dev(d.feats.sums(m[None, :]))[0]))
        splits[name] = entry
    pair_out = {f"{a}|{b}": smd_pair(masks[a], masks[b]) for a, b in pairs}
    worst = max(((v["max_abs_smd"] or 0.0, k) for k, v in pair_out.items()), default=(0.0, None))
    worst_cov = None
    if worst[1] is not None:
        cand = [(pair_out[worst[1]].get(c) or 0.0, c) for c in scored]
        worst_cov = max(cand)[1] if cand else None
    return {
        "covariates": scored,
        "splits": splits,
        "pairs": pair_out,
        "max_abs_smd": _round(worst[0]),
        "max_abs_smd_where": {"pair": worst[1], "covariate": worst_cov} if worst_cov else None,
        "max_label_deviation": _round(max((v["label_deviation"] or 0.0) for v in splits.values())),
    }


def summary(result: SplitResult) -> list[str]:
    """A few lines for the command line: sizes, classes and the worst imbalance."""
    lines = []
    bal = result.balance.get("splits", {})
    for name, members in result.splits().items():
        counts = bal.get(name, {}).get("label", {}).get("counts", {})
        mix = " / ".join(f"{v} {k}" for k, v in counts.items())
        lines.append(f"{name}: {len(members)} participants" + (f" ({mix})" if mix else ""))
    where = result.balance.get("max_abs_smd_where")
    smd = result.balance.get("max_abs_smd")
    if smd is not None:
        lines.append(f"max |SMD| {smd:.3f}" + (f" ({where['covariate']}, {where['pair']})" if where else "")
                     + f"; max class-proportion deviation {result.balance.get('max_label_deviation', 0):.3f}")
    if result.excluded:
        lines.append(f"excluded: {len(result.excluded)} participant(s) (see {PARAMS_FILE})")
    lines += [f"warning: {w}" for w in result.params.get("warnings", [])]
    return lines


# --------------------------------------------------------------------------- writing
def _sessions_of(index_or_sessions: Any) -> tuple[Mapping[str, Sequence[str]], set[str] | None]:
    if index_or_sessions is None:
        return {}, None
    if hasattr(index_or_sessions, "sessions_by_subject"):
        return index_or_sessions.sessions_by_subject, set(index_or_sessions.subjects)
    return {_sub(k): tuple(v) for k, v in dict(index_or_sessions).items()}, None


def _files(result: SplitResult, layout: str) -> dict[str, frozenset[str]]:
    """relative path -> members, for the layout."""
    sets = result.splits()
    if result.kfold:
        return {f"{name}.tsv": members for name, members in sets.items()}
    out: dict[str, frozenset[str]] = {}
    if layout in ("folder", "both"):
        out.update({f"{name}.tsv": sets[name] for name in ("train", "validation", "test")})
    if layout in ("clinicadl", "both"):
        pre = "clinicadl/" if layout == "both" else ""
        out[f"{pre}split-0/train.tsv"] = sets["train"]
        out[f"{pre}split-0/validation.tsv"] = sets["validation"]
        out[f"{pre}test.tsv"] = sets["test"]
    return out


def _audit_files(result: SplitResult, files: dict[str, list[tuple[str, str]]]) -> None:
    """Audit what is about to be written: the rows themselves, not the plan."""
    def members(path: str) -> set[str]:
        return {p for p, _ in files[path]}

    for path, rows in files.items():
        if len(set(rows)) != len(rows):
            raise SplitIntegrityError(f"{path} repeats a participant session")
    prefixes = {p.rsplit("test.tsv", 1)[0] for p in files if p.endswith("test.tsv")}
    everyone = set(result.assignments)
    for pre in prefixes:
        test = members(f"{pre}test.tsv")
        if pre + "train.tsv" in files:  # folder format
            tr, va = members(f"{pre}train.tsv"), members(f"{pre}validation.tsv")
            if tr & va or tr & test or va & test:
                raise SplitIntegrityError(f"{pre or './'}: a participant is in two split files")
            if tr | va | test != everyone:
                raise SplitIntegrityError(f"{pre or './'}: the split files do not cover the split")
            sessions: dict[tuple[str, str], str] = {}
            for name in ("train", "validation", "test"):
                for row in files[f"{pre}{name}.tsv"]:
                    if sessions.setdefault(row, name) != name:
                        raise SplitIntegrityError(f"session {row} is in two split files")
        folds = sorted({p[len(pre):].split("/")[0] for p in files if p.startswith(pre + "split-")})
        seen: set[str] = set()
        for f in folds:
            tr, va = members(f"{pre}{f}/train.tsv"), members(f"{pre}{f}/validation.tsv")
            if tr & va or (tr | va) & test or tr | va | test != everyone or va & seen:
                raise SplitIntegrityError(f"{pre}{f}: overlapping or incomplete train/validation/test")
            seen |= va
        if folds and len(folds) > 1 and seen | test != everyone:
            raise SplitIntegrityError(f"{pre or './'}: the validation folds do not cover the training pool")


def _render(rows: list[tuple[str, str]], result: SplitResult, with_session: bool) -> str:
    header = ["participant_id"] + (["session_id"] if with_session else []) + list(result.columns)
    lines = ["\t".join(header)]
    for pid, ses in rows:
        vals = [result.values.get(pid, {}).get(c, "n/a") for c in result.columns]
        lines.append("\t".join([pid] + ([ses] if with_session else []) + vals))
    return "\n".join(lines) + "\n"


def _check_output(output: Path) -> list[str]:
    """Refuse an output that is a file, or a non-empty folder not written by ``bidsaudit split``;
    return the files a previous split wrote there."""
    if output.exists() and not output.is_dir():
        raise SplitError(output, "is a file", expected="a folder for the split files")
    if not output.is_dir():
        return []
    entries = [e.name for e in output.iterdir()]
    if not entries:
        return []
    params = output / PARAMS_FILE
    if not params.is_file():
        # split files alone (a run interrupted before its split_params.json) may be replaced
        found = [p.relative_to(output).as_posix() for p in output.rglob("*") if not p.is_dir()]
        if all(_FILE_RE.match(f) for f in found):
            return found
        raise SplitError(output, f"the folder is not empty and holds no {PARAMS_FILE}: refusing to mix new "
                         "split files with files bidsaudit did not write", expected="an empty or new folder")
    try:
        old = json.loads(params.read_text(encoding="utf-8"))
        files = old["files"]
        names = list(files) if isinstance(files, dict) else [str(f) for f in files]
    except (OSError, ValueError, KeyError, TypeError):
        raise SplitError(params, "unreadable or not written by bidsaudit split; refusing to overwrite "
                         "the folder", expected="an empty or new folder") from None
    return [n for n in names if _FILE_RE.match(n)]


def write_splits(result: SplitResult, index_or_sessions: DatasetIndex | Mapping[str, Sequence[str]] | None,
                 output: str | Path, *, layout: str = "folder") -> list[Path]:
    """Write the split files and ``split_params.json``; return the paths written.

    Parameters
    ----------
    result : SplitResult
    index_or_sessions : DatasetIndex, mapping or None
        Where sessions come from: a :class:`DatasetIndex`
        (``sessions_by_subject``; participants must have a folder), or
        ``{participant_id: [session_id, ...]}``, or None (no sessions). Each
        participant gets one row per session; without sessions one row (with
        ``session_id`` ``n/a`` when other participants have sessions; no
        ``session_id`` column when nobody has any).
    output : path
        A new or empty folder, or one a previous ``bidsaudit split`` wrote
        (its old split files are replaced; stale ones removed).
    layout : {"folder", "clinicadl", "both"}
        ``folder``: ``train.tsv``, ``validation.tsv``, ``test.tsv``.
        ``clinicadl``: ``split-0/train.tsv``, ``split-0/validation.tsv``,
        ``test.tsv``. ``both``: the folder format, plus the ClinicaDL layout
        under ``clinicadl/``. A k-fold result is always written in ClinicaDL's
        layout (``split-N/`` + ``test.tsv``); ``folder`` is refused for it.

    Every file is written atomically; ``split_params.json`` last.
    """
    output = Path(output)
    if layout not in LAYOUTS:
        raise SplitError(None, None, field="layout", expected=" or ".join(LAYOUTS), got=repr(layout))
    if result.kfold and layout == "folder":
        raise SplitError(None, "the folder format holds one train/validation/test split, not folds",
                         field="layout", expected="'clinicadl' or 'both' for a k-fold split")
    sessions, known = _sessions_of(index_or_sessions)
    if known is not None:
        missing = sorted(set(result.assignments) - known)
        if missing:
            raise SplitError(getattr(index_or_sessions, "root", None),
                             f"participant(s) {_few(missing)} have no folder in the dataset")
    with_session = any(sessions.get(p) for p in result.assignments)
    per_pid = {p: [(p, s) for s in sorted(sessions.get(p) or ())] or [(p, "n/a")] for p in result.assignments}
    plan_files = _files(result, layout)
    rows = {path: [row for p in sorted(members) for row in per_pid[p]] for path, members in plan_files.items()}
    _audit_files(result, rows)
    texts = {path: _render(r, result, with_session) for path, r in rows.items()}
    try:
        old = _check_output(output)
    except OSError as err:
        raise SplitError(output, f"cannot read the output folder: {err.strerror or err}") from None
    params = dict(result.params)
    params["layout"] = "clinicadl" if result.kfold else layout
    params["files"] = {path: {"participants": len(plan_files[path]), "rows": len(r)} for path, r in rows.items()}
    params["balance"] = result.balance
    params_text = json.dumps(_jsonable(params), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    from audit.fsutil import atomic_write_text

    try:
        output.mkdir(parents=True, exist_ok=True)
        written = [atomic_write_text(output / path, text) for path, text in texts.items()]
        for stale in sorted(set(old) - set(texts)):
            target = output / stale
            try:
                target.unlink()
            except FileNotFoundError:
                pass
            parent = target.parent
            while parent != output and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        written.append(atomic_write_text(output / PARAMS_FILE, params_text))
    except OSError as err:
        where = err.filename or output
        raise SplitError(where, f"cannot write: {err.strerror or err}") from None
    return written


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in obj]
        return sorted(items) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------- the one call for the CLI
def split_dataset(dataset: str | Path, plan: SplitPlan, output: str | Path,
                  layout: str = "both") -> tuple[SplitResult, list[Path]]:
    """Index ``dataset``, split its participants as ``plan`` says, write the split to ``output``.

    Participants listed in ``participants.tsv`` without a ``sub-*`` folder,
    and folders not listed there, are excluded (with the reason). When
    ``site`` is a balance column and ``participants.tsv`` has none, each
    subject's scanner (Manufacturer, ManufacturersModelName,
    MagneticFieldStrength from its sidecars) stands in for it.

    Raises
    ------
    InputError
        The dataset cannot be read (no folder, no dataset_description.json).
    SplitError
        No readable participants.tsv, a missing column (with the nearest
        name), or a split that cannot be made (see :func:`make_splits`).
    """
    from audit.bidsindex import index_dataset

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
    table["participant_id"] = [_sub(_cell(p)) if _cell(p) else "" for p in table["participant_id"]]
    folders = set(index.subjects)
    listed = set(table["participant_id"])
    excluded = {p: "listed in participants.tsv but has no folder in the dataset"
                for p in sorted(listed - folders) if p}
    excluded.update({p: "has a folder but is not listed in participants.tsv (no label)"
                     for p in sorted(folders - listed)})
    notes: list[str] = []
    if "site" in plan.balance and "site" not in table.columns and plan.label != "site":
        sites = _scanner_sites(index)
        if sites and any(v != "n/a" for v in sites.values()):
            table["site"] = [sites.get(p, "n/a") for p in table["participant_id"]]
            notes.append("site: each subject's scanner from its sidecars "
                         "(Manufacturer, ManufacturersModelName, MagneticFieldStrength)")
    result = make_splits(table, plan, source=source, excluded=excluded)
    params = dict(result.params)
    params["dataset"] = {"path": str(index.root), "name": index.name}
    if notes:
        params["derived_columns"] = notes
    result = replace(result, params=params)
    paths = write_splits(result, index, output, layout=layout)
    return result, paths


def _scanner_sites(index: DatasetIndex) -> dict[str, str]:
    from collections import Counter

    from audit.api import scanner_label

    per: dict[str, Counter[str]] = {}
    for row in index.images():
        if row.subject is None:
            continue
        label = scanner_label(index.sidecar(row.path))
        if label:
            per.setdefault(row.subject, Counter())[label] += 1
    return {s: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for s, c in per.items()}
