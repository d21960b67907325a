"""pandera schemas of BIDS tables.

:func:`participants_schema` builds the schema of ``participants.tsv`` from
the dataset's own ``participants.json``: a column with ``Levels`` may only
hold those levels, a column with ``Units`` (or a known numeric column,
:data:`audit.values.NUMERIC_COLUMNS`) must be numeric (:func:`audit.values.parse_number`),
and ``n/a`` is always allowed as a missing value. This is a conformance
check, so only BIDS's spelling of a missing value (``n/a``, or an empty cell)
is accepted here (``is_missing(..., only_bids=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from audit.values import (
    BIDS_MISSING,
    NUMERIC_COLUMNS,
    PARTICIPANT_RE,
    is_missing,
    parse_number,
)

if TYPE_CHECKING:
    import pandera.pandas as pa

__all__ = ["participants_schema"]

_ID = f"^{PARTICIPANT_RE.pattern}$"


def _is_number(value: str) -> bool:
    """A number as the statistics read it (``89+`` is how ages of the very old are masked), or BIDS's ``n/a``."""
    return is_missing(value, only_bids=True) or parse_number(value)[0] is not None


def participants_schema(meta: Mapping[str, Any], columns: list[str]) -> pa.DataFrameSchema:
    """Schema for a participants table with ``columns``, described by ``meta``."""
    import pandera.pandas as pa  # heavy: imported when a participants table is checked

    checks: dict[str, pa.Column] = {
        "participant_id": pa.Column(
            str,
            checks=[pa.Check.str_matches(_ID, error="participant_id must look like sub-<alphanumeric label>")],
            unique=True,
            nullable=False,
        )
    }
    for col in columns:
        if col == "participant_id":
            continue
        desc = meta.get(col) if isinstance(meta.get(col), Mapping) else {}
        col_checks = []
        levels = desc.get("Levels") if isinstance(desc, Mapping) else None
        if isinstance(levels, Mapping) and levels:
            allowed = sorted({str(k) for k in levels} | BIDS_MISSING)
            col_checks.append(pa.Check.isin(allowed, error=f"{col} must be one of the levels in participants.json"))
        elif (isinstance(desc, Mapping) and "Units" in desc) or col.lower() in NUMERIC_COLUMNS:
            col_checks.append(pa.Check(lambda s: s.map(_is_number), element_wise=False,
                                       error=f"{col} must be numeric (or n/a)"))
        checks[col] = pa.Column(str, checks=col_checks, nullable=True, required=False)
    return pa.DataFrameSchema(checks, strict=False, coerce=False)
