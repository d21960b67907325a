"""Exceptions raised by bidsaudit.

Exception tree::

    BidsauditError            base of everything bidsaudit raises on purpose
    └── InputError            bad input: a path, file, line or field that is not
                              what was expected. The CLI prints ``str(err)`` on one
                              line and exits with code 2.

Data problems are *not* exceptions: they are findings. An input problem is
anything that stops the tool from reading what it was asked to read.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["BidsauditError", "InputError"]


class BidsauditError(Exception):
    """Base class of every error bidsaudit raises deliberately."""


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
