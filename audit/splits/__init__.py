"""Split inputs: detect the format, read it, and hand checks one normalised, immutable model.

>>> from audit.splits import read_splits            # doctest: +SKIP
>>> splits = read_splits("splits/")                  # doctest: +SKIP
>>> splits.format, splits.names, splits.folds        # doctest: +SKIP
('folder', ('train', 'validation', 'test'), ())

See :mod:`audit.splits.detect` for how a format is recognised,
:mod:`audit.splits.readers` for what is accepted in a file, and
:mod:`audit.splits.model` for the model.
"""

from __future__ import annotations

from audit.splits.detect import detect_format, plan_splits
from audit.splits.model import (
    KNOWN_SPLITS,
    SPLIT_FORMATS,
    FoldView,
    SplitFormat,
    SplitRow,
    SplitSet,
    SplitTable,
    normalise_case_id,
    normalise_participant,
    normalise_session,
    normalise_split_name,
)
from audit.splits.readers import DEFAULT_LABEL, read_splits, read_table_file

__all__ = [
    "DEFAULT_LABEL",
    "KNOWN_SPLITS",
    "SPLIT_FORMATS",
    "FoldView",
    "SplitFormat",
    "SplitRow",
    "SplitSet",
    "SplitTable",
    "detect_format",
    "normalise_case_id",
    "normalise_participant",
    "normalise_session",
    "normalise_split_name",
    "plan_splits",
    "read_splits",
    "read_table_file",
]
