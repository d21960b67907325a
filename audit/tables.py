"""Reading BIDS tables (participants.tsv, sessions.tsv) robustly.

Problems with the table itself (an invalid UTF-8 byte, a BOM, a comma
delimiter, a header without rows) are returned as :class:`IndexProblem`
records, never raised: they are findings about the data, and the audit goes
on with what could be read.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from audit.bidsindex import IndexProblem

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_bids_tsv", "read_participants"]


def read_bids_tsv(path: Path, relpath: str) -> tuple[pd.DataFrame | None, list[IndexProblem]]:
    """Read a BIDS TSV as strings, returning the table and what was wrong with it."""
    import pandas as pd

    problems: list[IndexProblem] = []
    try:
        raw = path.read_bytes()
    except OSError as err:
        return None, [IndexProblem("unreadable", relpath, f"cannot read: {err.strerror or err}")]
    if raw.startswith(b"\xef\xbb\xbf"):
        problems.append(IndexProblem("table", relpath, "starts with a UTF-8 byte-order mark (BOM); BIDS TSV files must not", 1, 1))
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        problems.append(IndexProblem("table", relpath, f"invalid UTF-8 byte 0x{raw[err.start]:02x} at offset {err.start}", line, col))
        return None, problems
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        problems.append(IndexProblem("table", relpath, "empty file: expected a header line", 1))
        return None, problems
    header = lines[0]
    if "\t" not in header and ("," in header or ";" in header):
        sep = "," if "," in header else ";"
        problems.append(IndexProblem(
            "table", relpath, f"columns are separated by '{sep}', expected tab-separated values", 1))
        return None, problems
    if len(lines) == 1:
        problems.append(IndexProblem("table", relpath, "header only: the table has no rows", 1))
    try:
        table = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, ValueError) as err:
        problems.append(IndexProblem("table", relpath, f"cannot parse as TSV: {str(err).strip()}"))
        return None, problems
    table.columns = [str(c).strip() for c in table.columns]
    for col in table.columns:
        table[col] = table[col].str.strip()
    return table, problems


def read_participants(root: Path) -> tuple[pd.DataFrame | None, list[IndexProblem]]:
    """``participants.tsv`` of the dataset at ``root`` (``None`` when absent or unreadable)."""
    path = root / "participants.tsv"
    if not path.exists():
        return None, []
    table, problems = read_bids_tsv(path, "participants.tsv")
    if table is not None and "participant_id" not in table.columns:
        problems.append(IndexProblem(
            "table", "participants.tsv",
            f"no participant_id column (columns: {', '.join(table.columns) or 'none'})", 1))
        return None, problems
    return table, problems
