"""pandera schemas of BIDS tables.

:func:`participants_schema` builds the schema of ``participants.tsv`` from
the dataset's own ``participants.json``: a column with ``Levels`` may only
hold those levels, a column with ``Units`` (or a known numeric column such as
``age``) must be numeric, and ``n/a`` is always allowed as a missing value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandera.pandas as pa

__all__ = ["participants_schema", "NUMERIC_COLUMNS", "MISSING"]

NUMERIC_COLUMNS = frozenset({"age", "weight", "height", "bmi"})
MISSING = frozenset({"n/a", ""})
_ID = r"^sub-[A-Za-z0-9]+$"


def _is_number(value: str) -> bool:
    if value in MISSING:
        return True
    text = value.rstrip("+")  # "89+" is how ages of the very old are masked
    try:
        float(text)
    except ValueError:
        return False
    return True


def participants_schema(meta: Mapping[str, Any], columns: list[str]) -> pa.DataFrameSchema:
    """Schema for a participants table with ``columns``, described by ``meta``."""
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
            allowed = sorted({str(k) for k in levels} | MISSING)
            col_checks.append(pa.Check.isin(allowed, error=f"{col} must be one of the levels in participants.json"))
        elif (isinstance(desc, Mapping) and "Units" in desc) or col.lower() in NUMERIC_COLUMNS:
            col_checks.append(pa.Check(lambda s: s.map(_is_number), element_wise=False,
                                       error=f"{col} must be numeric (or n/a)"))
        checks[col] = pa.Column(str, checks=col_checks, nullable=True, required=False)
    return pa.DataFrameSchema(checks, strict=False, coerce=False)
