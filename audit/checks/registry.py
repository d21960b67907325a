"""The check registry: every check is a small function registered by id.

A check declares what it needs (``dataset``, ``splits``, ``images``,
``validator``...) and its default severity; the runner skips it, with a
reason, when a need is not met, and applies configured severity overrides.
A check also declares its configurable thresholds (``@check(...,
thresholds={...})``; a table shared by a family, such as ``shift``, through
:func:`shared_thresholds`): the configuration is validated against them once,
when it is read, and a check reads the merged values with
:meth:`audit.context.AuditContext.thresholds`.
Checks never read files, print or decide exit codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from audit.catalogue import CHECK_IDS
from audit.catalogue import THRESHOLDS as CATALOGUE

if TYPE_CHECKING:
    from audit.context import AuditContext
    from audit.findings import Finding, Severity

__all__ = ["CheckSpec", "CHECKS", "THRESHOLDS", "check", "shared_thresholds", "all_checks", "all_thresholds"]

CheckFunc = Callable[["AuditContext"], Iterable["Finding"]]


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its id, default severity, needs and function."""

    id: str
    default: Severity
    needs: frozenset[str]
    func: CheckFunc
    title: str
    thresholds: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


CHECKS: dict[str, CheckSpec] = {}
#: Configurable thresholds and their defaults, per check id or shared family table (``shift``).
THRESHOLDS: dict[str, dict[str, Any]] = {}


def shared_thresholds(key: str, defaults: Mapping[str, Any]) -> Mapping[str, Any]:
    """Declare thresholds shared by several checks (configured as ``[thresholds.<key>]``); returns them.

    Validated once, here: the table must be the catalogue's (:data:`audit.catalogue.THRESHOLDS`), which
    the configuration reads without importing any check.
    """
    if dict(defaults) != CATALOGUE.get(key):
        raise RuntimeError(f"thresholds of {key} are not those of audit.catalogue.THRESHOLDS")
    THRESHOLDS.setdefault(key, {}).update(defaults)
    return defaults


def check(id: str, *, default: Severity, needs: Iterable[str] = (),
          thresholds: Mapping[str, Any] | None = None) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as check ``id`` (with its configurable ``thresholds`` and their defaults).

    Several functions may register under one id (e.g. the id covers more than
    one kind of evidence); the runner runs them all under that id.
    """
    if id not in CHECK_IDS:
        raise RuntimeError(f"check id {id} is not in audit.catalogue.CHECK_IDS")
    if thresholds:
        shared_thresholds(id, thresholds)

    def register(func: CheckFunc) -> CheckFunc:
        doc = (func.__doc__ or id).strip().splitlines()[0]
        key = id if id not in CHECKS else f"{id}#{func.__name__}"
        CHECKS[key] = CheckSpec(id=id, default=default, needs=frozenset(needs), func=func, title=doc,
                                thresholds=MappingProxyType(dict(thresholds or {})))
        return func

    return register


def all_checks() -> dict[str, CheckSpec]:
    """The registry: every check family (imported with the :mod:`audit.checks` package, this module's parent)."""
    return CHECKS


def all_thresholds() -> dict[str, dict[str, Any]]:
    """Import every check family and return the declared thresholds (a copy)."""
    all_checks()
    return {k: dict(v) for k, v in sorted(THRESHOLDS.items())}
