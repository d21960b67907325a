"""Check families: importing this package registers every check.

Besides the registry and one module per family, shared modules hold what
several families use (no family imports another): :mod:`~audit.checks.variables`
(which columns are compared and how), :mod:`~audit.checks.features` (image
features), :mod:`~audit.checks.frames` (split tables as frames and codes) and
:mod:`~audit.checks.shift_family` (the shift comparisons, shared by the four
shift checks and the report).

Order matters only for :mod:`audit.checks.late`, which reports problems met by
lazy reads in the other checks and so must stay last.
"""

# isort: skip_file  (the order is the registration order; late must stay last)
from audit.checks import (  # noqa: F401  # noqa: F401
    bids,
    confound,
    content,  # noqa: F401
    expectations,  # noqa: F401
    images,  # noqa: F401
    late,  # noqa: F401  (keep last)
    leakage,
    quality,
    shift,
    split,
)
