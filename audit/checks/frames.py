"""Split tables as the leakage.* and split.* checks read them: column frames, integer codes, named examples.

Shared by :mod:`audit.checks.leakage` and :mod:`audit.checks.split` (no
check family imports another). pandas is imported inside the functions
that need it (``bidsaudit --help`` stays fast).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from audit.context import AuditContext
    from audit.splits import SplitTable

__all__ = ["NAMED", "table_frame", "named", "sorted_unique", "member_of"]

#: Label cells that mean "no label" in a split table's frame.
NAMED = 5  # participants named in a message after the count


def table_frame(ctx: AuditContext, table: SplitTable) -> pd.DataFrame:
    """``table.to_frame()`` (participant_id, session_id, label, file, line, ...), built once per audit."""
    return ctx.split_frame(table)


def named(names: Iterable[str], n: int = NAMED, *, count: int | None = None) -> str:
    """``": sub-01, sub-02, and 3 more"``: the names after a count in a message (empty for none).

    ``names`` is sorted here, unless ``count`` (the total) is given: then it is
    taken as already sorted, and may hold only the first names.
    """
    if count is None:
        first = sorted(names)
        count = len(first)
    else:
        first = list(islice(names, n))
    if not count:
        return ""
    more = count - min(n, len(first))
    return ": " + ", ".join(first[:n]) + (f", and {more} more" if more > 0 else "")


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (sort and compare: numpy 2's hashed ``unique`` is slower)."""
    import numpy as np

    s = np.sort(values)
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if len(s) else s


def member_of(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``values`` in ``pool`` (a boolean mask), hashed by pandas."""
    import pandas as pd

    return pd.Series(values, copy=False).isin(pool).to_numpy()
