"""Split plan: what split to make (:class:`SplitPlan`), what came out (:class:`SplitResult`), and its errors.

Also the small helpers the split modules share (cells, names, rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.errors import SplitError, SplitIntegrityError, nearest

__all__ = [
    "CATEGORICAL_NAMES",
    "DEFAULT_BALANCE",
    "LAYOUTS",
    "MAX_CLASSES",
    "MIN_PARTICIPANTS",
    "PARAMS_FILE",
    "SplitError",
    "SplitIntegrityError",
    "SplitPlan",
    "SplitResult",
    "check_plan",
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
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' NA / NaT, without importing pandas
        return ""
    return str(value).strip()


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
# --------------------------------------------------------------------------- checks of the plan
def check_plan(plan: SplitPlan) -> tuple[int, int]:
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
