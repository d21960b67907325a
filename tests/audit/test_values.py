"""audit.values: one missing value, number parser, id normaliser and numeric-column list (and its doctests)."""

from __future__ import annotations

import doctest
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.values
from audit.splits.readers import normalise_ids
from audit.values import (
    PARTICIPANT_RE,
    is_missing,
    normalise_participant,
    normalise_session,
    parse_number,
)


def test_doctests():
    result = doctest.testmod(audit.values, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("cell", ["", " ", "n/a", "N/A", "NA", "nan", "None", "null", "?", None, float("nan")])
def test_missing_everywhere(cell):
    assert is_missing(cell) and is_missing(cell, unknown=False)


def test_unknown_is_a_value_only_where_asked_and_bids_spelling_only_for_the_schema():
    assert is_missing("Unknown") and not is_missing("Unknown", unknown=False)
    assert [is_missing(v, only_bids=True) for v in ("n/a", "", "NA", "unknown")] == [True, True, False, False]


def test_numbers_read_as_the_statistics_read_them():
    assert [parse_number(v)[0] for v in ("71", "89+", "<18", "26-30", "n/a", "unknown", "inf")] == [
        71.0, 89.0, 18.0, 28.0, None, None, None]


@settings(deadline=None, max_examples=60)
@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits + " _-", min_size=1, max_size=8),
                min_size=1, max_size=6))
def test_readers_fast_path_agrees_with_the_one_definition(values):
    """A full match of PARTICIPANT_RE is a fixed point; the column-wise normaliser gives what the scalar one does."""
    arr = np.array(values, dtype=object)
    out, bad, _why = normalise_ids(arr, "sub-", missing_ok=False)
    for i, v in enumerate(values):
        try:
            expected = normalise_participant(v)
        except ValueError:
            assert bad is not None
            return
        if PARTICIPANT_RE.fullmatch(v):
            assert expected == v
    assert bad is None and list(out) == [normalise_participant(v) for v in values]


def test_session_missing_is_bids_only():
    assert normalise_session("n/a") is None and normalise_session("na") == "ses-na"
