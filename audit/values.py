"""Values: the one definition of a missing cell, a number, a participant/session id and a numeric column.

Every table bidsaudit reads (``participants.tsv``, split files, sidecar
fields) goes through these, so a value is missing, a number or an id in the
same way for the split maker, the checks, the statistics and the readiness
score.

Missing value
    BIDS writes a missing value as ``n/a``. Reading is more lenient than
    BIDS, never stricter: ``""``, ``n/a``, ``NA``, ``NaN``, ``None``,
    ``null`` and ``?`` (any case, surrounding spaces ignored), ``None`` and
    float NaN are missing. ``unknown`` is missing for measures and
    covariates (``unknown=True``, the default) but may be a literal value
    where a column names things a user chose: a label class, a group id, a
    split-file cell (``unknown=False``). ``only_bids=True`` accepts only what
    the BIDS specification writes (``n/a`` or an empty cell, case-sensitive):
    for the conformance schema of ``participants.tsv``.
Number
    :func:`parse_number`: plain, top/bottom-coded (``89+``, ``>89``,
    ``<18``: the bound) and binned (``26-30``: the midpoint) values.
Participant and session ids
    :func:`normalise_participant` / :func:`normalise_session`: stripped,
    exactly one ``sub-``/``ses-`` prefix, a BIDS label (letters and digits)
    when ``validate`` (the default). A string that fully matches
    :data:`PARTICIPANT_RE` / :data:`SESSION_RE` is already normalised (the
    readers' vectorised fast path relies on it). An id column's missing value
    is BIDS's only (``n/a``, empty): ``na`` is a valid label.
Numeric columns
    :data:`NUMERIC_COLUMNS`: participant columns that hold measures by name.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "BIDS_MISSING",
    "MISSING",
    "NUMERIC_COLUMNS",
    "PARTICIPANT_RE",
    "SESSION_RE",
    "UNKNOWN",
    "bids_label_problem",
    "is_missing",
    "normalise_participant",
    "normalise_session",
    "parse_number",
]

#: What the BIDS specification writes for a missing value (``n/a``; an empty cell is tolerated).
BIDS_MISSING = frozenset({"n/a", ""})
#: Spellings of "no value" (compared case-insensitively, after stripping); ``unknown`` is :data:`UNKNOWN`.
MISSING = frozenset({"", "n/a", "na", "nan", "none", "null", "?"})
#: Missing for measures and covariates; a literal value where ``unknown=False``.
UNKNOWN = "unknown"
#: Participant columns that hold measures (numbers) by their name, whatever their values look like.
NUMERIC_COLUMNS = frozenset({"age", "age_at_scan", "bmi", "education_years", "mmse", "moca", "height",
                             "weight", "iq"})
#: A BIDS label: letters and digits.
LABEL_RE = re.compile(r"[A-Za-z0-9]+")
#: A participant id already in normal form (``normalise_participant(x) == x`` for a full match).
PARTICIPANT_RE = re.compile(r"sub-[A-Za-z0-9]+")
#: A session id already in normal form (``normalise_session(x) == x`` for a full match).
SESSION_RE = re.compile(r"ses-[A-Za-z0-9]+")

_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*$")


def is_missing(value: Any, *, unknown: bool = True, only_bids: bool = False) -> bool:
    """A missing cell.

    ``None``, NaN (float or pandas' ``NA``) and the spellings of :data:`MISSING`
    are missing; ``unknown`` too unless ``unknown=False``; with
    ``only_bids=True``, only ``n/a`` and an empty cell (exactly as BIDS writes it).

    >>> is_missing("n/a"), is_missing(" NA "), is_missing("?"), is_missing("0"), is_missing(None)
    (True, True, True, False, True)
    >>> is_missing("Unknown"), is_missing("unknown", unknown=False)
    (True, False)
    >>> is_missing("NA", only_bids=True), is_missing("n/a", only_bids=True), is_missing(float("nan"))
    (False, True, True)
    """
    if value is None:
        return True
    if isinstance(value, float):
        if math.isnan(value):
            return True
    elif type(value).__name__ in ("NAType", "NaTType"):  # pandas' NA / NaT, without importing pandas
        return True
    text = str(value).strip()
    if only_bids:
        return text in BIDS_MISSING
    low = text.lower()
    return low in MISSING or (unknown and low == UNKNOWN)


def parse_number(value: Any) -> tuple[float | None, str | None]:
    """A number from a table cell, and how it was read.

    Returns ``(number, how)``: ``how`` is ``None`` for a plain number,
    ``"censored"`` for a top- or bottom-coded value (``"89+"``, ``">89"``,
    ``"<18"``: read as the bound), ``"range"`` for a binned value
    (``"26-30"``: read as the midpoint), and the number is ``None`` when the
    cell is not a number (``how`` is then ``"text"``, or ``"missing"``).
    Infinite and NaN spellings are not numbers.

    >>> parse_number("71.5"), parse_number("89+"), parse_number("26-30")
    ((71.5, None), (89.0, 'censored'), (28.0, 'range'))
    >>> parse_number("old"), parse_number("n/a"), parse_number("inf")
    ((None, 'text'), (None, 'missing'), (None, 'text'))
    """
    if is_missing(value):
        return None, "missing"
    text = str(value).strip()
    how = None
    if text.endswith("+"):
        text, how = text[:-1].strip(), "censored"
    elif text[:1] in "<>":
        text, how = text[1:].lstrip("=").strip(), "censored"
    try:
        x = float(text)
    except ValueError:
        m = _RANGE.match(text) if how is None else None
        if m is None:
            return None, "text"
        lo, hi = float(m.group(1)), float(m.group(2))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
            return None, "text"
        return (lo + hi) / 2.0, "range"
    if not math.isfinite(x):
        return None, "text"
    return x, how


def bids_label_problem(body: str, what: str = "label") -> str:
    """Why ``body`` is not a BIDS label (``what="label"``) or an nnU-Net case id (any other ``what``).

    >>> bids_label_problem(""), bids_label_problem("a b"), bids_label_problem("a_b")
    ('empty label', 'the label contains whitespace', 'a BIDS label has letters and digits only')
    """
    if body == "":
        return f"empty {what}"
    if any(c.isspace() for c in body):
        return f"the {what} contains whitespace"
    if "/" in body or "\\" in body:
        return f"the {what} contains a path separator"
    if what == "label":
        return "a BIDS label has letters and digits only"
    return f"the {what} has characters other than letters, digits, '_', '.', '-'"


def _prefixed(value: Any, prefix: str, validate: bool) -> str:
    s = str(value).strip()
    body = s.removeprefix(prefix)
    if validate and not LABEL_RE.fullmatch(body):
        raise ValueError(bids_label_problem(body))
    return prefix + body


def normalise_participant(value: Any, *, validate: bool = True) -> str:
    """A participant id with exactly one ``sub-`` prefix (surrounding spaces stripped; idempotent).

    Raises
    ------
    ValueError
        With ``validate`` (the default), when the label (what follows
        ``sub-``) is empty or not alphanumeric, as BIDS requires. Without it,
        any text is prefixed as it is (for ids found in other tools' files).

    >>> normalise_participant(" 03 "), normalise_participant("sub-03"), normalise_participant("a_b", validate=False)
    ('sub-03', 'sub-03', 'sub-a_b')
    >>> all(PARTICIPANT_RE.fullmatch(normalise_participant(x)) for x in ("01", " sub-ABC "))
    True
    """
    return _prefixed(value, "sub-", validate)


def normalise_session(value: Any, *, validate: bool = True) -> str | None:
    """A session id with exactly one ``ses-`` prefix, or ``None`` for a missing value ("every session").

    A missing value is :func:`is_missing` with ``only_bids=True`` (``n/a`` or empty): any other
    alphanumeric text (``na``, ``none``) is a valid BIDS session label, not a missing value.

    >>> normalise_session("M00"), normalise_session("ses-M00"), normalise_session(""), normalise_session("n/a")
    ('ses-M00', 'ses-M00', None, None)
    """
    if is_missing(value, only_bids=True):
        return None
    return _prefixed(value, "ses-", validate)
