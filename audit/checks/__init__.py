"""Check families. Importing this package registers every check.

Order matters only for :mod:`audit.checks.late`, which reports problems met by
lazy reads in the other checks and so must stay last.
"""

from audit.checks import bids, leakage, quality, split  # noqa: F401
from audit.checks import images  # noqa: F401
from audit.checks import confound, shift  # noqa: F401
from audit.checks import content  # noqa: F401
from audit.checks import expectations  # noqa: F401
from audit.checks import late  # noqa: F401  (keep last)
