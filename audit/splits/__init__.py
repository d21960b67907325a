"""Split inputs: detect the format, read it, and hand checks one normalised, immutable model.

>>> from audit.splits import read_splits            # doctest: +SKIP
>>> splits = read_splits("splits/")                  # doctest: +SKIP
>>> splits.format, splits.names, splits.folds        # doctest: +SKIP
('folder', ('train', 'validation', 'test'), ())

See :mod:`audit.splits.detect` for how a format is recognised,
:mod:`audit.splits.readers` for what is accepted in a file,
:mod:`audit.splits.datalists` for MONAI datalists and image-path lists,
:mod:`audit.splits.ids` for participant ids from image paths, and
:mod:`audit.splits.model` for the model.

Making splits (``bidsaudit split``): :mod:`audit.splits.plan` (what to make),
:mod:`audit.splits.folds` (the batched StratifiedGroupKFold),
:mod:`audit.splits.search` (the seeded balance search),
:mod:`audit.splits.balance` (covariates and balance statistics),
:mod:`audit.splits.making` (:func:`make_splits`, :func:`split_dataset`) and
:mod:`audit.splits.write` (layouts and ``split_params.json``).
"""

from __future__ import annotations

from audit.splits.balance import summary
from audit.splits.detect import detect_format, plan_splits
from audit.splits.making import make_splits, split_dataset
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
from audit.splits.plan import (
    LAYOUTS,
    PARAMS_FILE,
    SplitError,
    SplitIntegrityError,
    SplitPlan,
    SplitResult,
)
from audit.splits.readers import DEFAULT_LABEL, read_splits, read_table_file
from audit.splits.write import write_splits

__all__ = [
    "DEFAULT_LABEL",
    "KNOWN_SPLITS",
    "LAYOUTS",
    "PARAMS_FILE",
    "SPLIT_FORMATS",
    "FoldView",
    "SplitError",
    "SplitFormat",
    "SplitIntegrityError",
    "SplitPlan",
    "SplitResult",
    "SplitRow",
    "SplitSet",
    "SplitTable",
    "detect_format",
    "make_splits",
    "normalise_case_id",
    "normalise_participant",
    "normalise_session",
    "normalise_split_name",
    "plan_splits",
    "read_splits",
    "read_table_file",
    "split_dataset",
    "summary",
    "write_splits",
]
