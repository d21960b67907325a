"""Exceptions raised by bidsaudit: the one tree, with the exit code on each class.

Exception tree (``exit_code`` in brackets; the CLI prints ``str(err)`` on one
line, never a traceback, and exits with that code)::

    BidsauditError [2]            base of everything bidsaudit raises on purpose
    ├── InputError [2]            bad input: a path, file, line or field that is not
    │   │                         what was expected
    │   └── SplitError [2]        a split that cannot be made as asked
    ├── ValidatorError [2]        the official BIDS validator could not be run or
    │                             gave no usable result
    ├── SplitIntegrityError [2]   a split failed its own audit before writing (a bug
    │                             in bidsaudit, never a data problem; nothing written)
    └── Refused [1]               the tool ran and refuses to go on: a closed gate or
        │                         a leak (the contract's exit 1)
        ├── train.gate.GateClosed         the certificate does not vouch for the input
        └── train.predict.LeakageRefused  prediction set shares training participants

Data problems are *not* exceptions: they are findings. An input problem is
anything that stops the tool from reading what it was asked to read.

:func:`did_you_mean` is the one "did you mean ...?" helper: every message that
suggests the nearest valid name (a column, a check id, a key, an expectation
type) calls it, so suggestions are made by one rule everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from os import PathLike

__all__ = [
    "BidsauditError",
    "InputError",
    "Refused",
    "SplitError",
    "SplitIntegrityError",
    "ValidatorError",
    "did_you_mean",
    "EXTRAS",
    "missing_extra",
    "nearest",
]

#: Shown problems of a :class:`Refused` (the rest are counted).
MAX_LISTED = 20


class BidsauditError(Exception):
    """Base class of every error bidsaudit raises deliberately (exit code 2: could not run)."""

    exit_code: int = 2


class InputError(BidsauditError):
    """Input that cannot be read or does not have the expected shape.

    Parameters
    ----------
    path : path-like or str, optional
        The file or folder at fault.
    message : str
        What is wrong, when ``expected``/``got`` do not say it.
    line, column : int, optional
        1-based position in ``path``.
    field : str, optional
        The column, key or option at fault.
    expected, got : str, optional
        What was expected and what was found.

    Examples
    --------
    >>> str(InputError("splits/train.tsv", line=7, field="participant_id",
    ...                expected='"sub-<label>"', got='"sub 03"'))
    'splits/train.tsv, line 7, participant_id: expected "sub-<label>", got "sub 03"'
    """

    def __init__(
        self,
        path: str | PathLike[str] | None = None,
        message: str | None = None,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.field = field
        self.expected = expected
        self.got = got
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        if self.field:
            where.append(self.field)
        what = []
        if self.detail:
            what.append(self.detail)
        if self.expected is not None:
            what.append(f"expected {self.expected}")
        if self.got is not None:
            what.append(f"got {self.got}")
        head = ", ".join(where)
        body = ", ".join(what) if what else "invalid input"
        return f"{head}: {body}" if head else body


class SplitError(InputError):
    """A split that cannot be made as asked (the CLI prints it on one line, exit 2)."""


class ValidatorError(BidsauditError):
    """The official validator could not be run or gave no usable result."""


class SplitIntegrityError(BidsauditError):
    """The split failed its own audit before writing: a bug in bidsaudit, never a data problem."""

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error, nothing was written (please report): {message}")


class Refused(BidsauditError):
    """The tool ran and refuses to go on: a closed gate or a leak (exit code 1).

    Attributes
    ----------
    problems : tuple of str
        Every reason, one sentence each.
    exit_code : int
        Always 1 (the contract's "the gate is closed").
    """

    exit_code = 1

    def __init__(self, headline: str, problems: Sequence[str] = ()) -> None:
        self.headline = headline
        self.problems = tuple(problems)
        shown = list(self.problems[:MAX_LISTED])
        more = len(self.problems) - len(shown)
        body = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        super().__init__(f"{headline}: {body}" if body else headline)


# --------------------------------------------------------------------------- did you mean
def nearest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The valid name closest to ``word``, or ``None``.

    One rule for every suggestion: the closest by :func:`difflib.get_close_matches`
    (``cutoff``); else a name equal but for letter case; else, for dotted ids
    (``family.name``), the id whose part after the dot is closest (cutoff 0.75:
    ``covariate`` suggests ``shift.covariate``).

    >>> nearest("diagnsis", ["age", "diagnosis"])
    'diagnosis'
    >>> nearest("ID", ["id", "age"])
    'id'
    >>> nearest("covariate", ["shift.covariate", "shift.label"])
    'shift.covariate'
    """
    ordered = sorted({str(c) for c in choices})
    near = difflib.get_close_matches(word, ordered, n=1, cutoff=cutoff)
    if near:
        return near[0]
    folded = [c for c in ordered if c.lower() == word.lower()]
    if folded:
        return folded[0]
    tail = word.split(".", 1)[-1]
    tails = {c.split(".", 1)[-1]: c for c in ordered if "." in c}
    near = difflib.get_close_matches(tail, sorted(tails), n=1, cutoff=0.75)
    return tails[near[0]] if near else None


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the :func:`nearest` valid name, or ``""``.

    >>> "no column 'diagnsis'" + did_you_mean("diagnsis", ["age", "diagnosis"])
    "no column 'diagnsis' (did you mean 'diagnosis'?)"
    """
    near = nearest(word, choices, cutoff=cutoff)
    return f" (did you mean '{near}'?)" if near else ""


#: The optional extra of ``pip install 'bidsaudit[EXTRA]'`` that brings each optional top-level module
#: (``None``: a base dependency; its absence means a broken installation).
EXTRAS: dict[str, str | None] = {
    "torch": "train", "monai": "train", "torchvision": "train",
    "onnx": "export", "onnxruntime": "export",
    "great_expectations": "expectations",
    "fastapi": "service", "uvicorn": "service", "sqlalchemy": "service", "alembic": "service",
    "multipart": "service", "python_multipart": "service", "psycopg": "service", "starlette": "service",
    "bids": "pybids",
    "dask": None, "distributed": None,
}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """What to install when an optional module is missing; ``None`` for a module not in :data:`EXTRAS`.

    >>> missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"))
    "this command needs torch, which is not installed: pip install 'bidsaudit[train]'"
    >>> missing_extra(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    True
    """
    top = (err.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra = EXTRAS[top]
    if extra is None:
        return f"this command needs {top}, a dependency of bidsaudit that is missing: reinstall bidsaudit"
    return f"this command needs {top}, which is not installed: pip install 'bidsaudit[{extra}]'"
