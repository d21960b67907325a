"""The check registry: every check is a small function registered by id.

A check declares what it needs (``dataset``, ``splits``, ``images``,
``validator``...) and its default severity; the runner skips it, with a
reason, when a need is not met, and applies configured severity overrides.
Checks never read files, print or decide exit codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit.context import AuditContext
    from audit.findings import Finding, Severity

__all__ = ["CheckSpec", "CHECKS", "check", "all_checks"]

CheckFunc = Callable[["AuditContext"], Iterable["Finding"]]


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its id, default severity, needs and function."""

    id: str
    default: Severity
    needs: frozenset[str]
    func: CheckFunc
    title: str

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


CHECKS: dict[str, CheckSpec] = {}


def check(id: str, *, default: Severity, needs: Iterable[str] = ()) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as check ``id``.

    Several functions may register under one id (e.g. the id covers more than
    one kind of evidence); the runner runs them all under that id.
    """

    def register(func: CheckFunc) -> CheckFunc:
        doc = (func.__doc__ or id).strip().splitlines()[0]
        key = id if id not in CHECKS else f"{id}#{func.__name__}"
        CHECKS[key] = CheckSpec(id=id, default=default, needs=frozenset(needs), func=func, title=doc)
        return func

    return register


def all_checks() -> dict[str, CheckSpec]:
    """Import every check family and return the registry."""
    import audit.checks  # noqa: F401  (imports the family modules)

    return CHECKS
