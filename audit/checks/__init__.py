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

# Registration order: late must stay last (an import sorter must leave these lines alone).
# isort: off
from audit.checks import bids, leakage, quality, split  # noqa: F401
from audit.checks import images  # noqa: F401
from audit.checks import confound, shift  # noqa: F401
from audit.checks import content  # noqa: F401
from audit.checks import expectations  # noqa: F401
from audit.checks import late  # noqa: F401  (registered last: it reports what the others met while reading)
# isort: on
