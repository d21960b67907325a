"""``bidsaudit-precommit``: ``bidsaudit audit`` as a pre-commit hook.

The hook (``.pre-commit-hooks.yaml``, id ``bidsaudit-splits``) runs when a
split table (or ``participants.tsv``) is staged, with the hook's ``args``
(default: ``. --splits splits --no-validator --ignore-nifti-headers``) passed
on to ``bidsaudit audit`` unchanged, and exits as it does (0 pass, 1 an error
finding, 2 could not run). What differs from a plain ``bidsaudit audit``:

* no certificate is written (a commit hook must not add files beside the
  split files), unless ``--certificate PATH`` is given;
* no JSON/HTML report lands in the repository: unless ``--json``/``--html``
  is given, the JSON result goes to a temporary folder that is removed;
* file names staged by pre-commit are not passed (``pass_filenames: false``):
  the split set is audited whole, since a leak lies between files.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence

from audit.cli import app

__all__ = ["main", "audit_argv"]


def _has(args: Sequence[str], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


def audit_argv(args: Sequence[str], tmp: str) -> list[str]:
    """The ``bidsaudit`` argument list the hook runs for its ``args``."""
    argv = ["audit", *args]
    if not _has(args, "--certificate", "--no-certificate"):
        argv.append("--no-certificate")
    if not _has(args, "--json", "--html", "--out-dir"):
        argv += ["--json", f"{tmp}/bidsaudit-precommit.json"]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the audit's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="bidsaudit-precommit-") as tmp:
        try:
            app(audit_argv(args, tmp), prog_name="bidsaudit-precommit", standalone_mode=True)
        except SystemExit as exit_:
            code = exit_.code
            return code if isinstance(code, int) else (0 if code is None else 2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
