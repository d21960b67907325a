"""Findings: immutable records of what a check found.

A check yields :class:`Finding` objects made with :func:`finding`; the runner
stamps each with the check's id and its (possibly overridden) severity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from audit.values import normalise_participant

__all__ = ["Severity", "Status", "SEVERITIES", "Finding", "finding", "normalise_subject"]

Severity = Literal["error", "warning", "info"]
Status = Literal["pass", "fail"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def normalise_subject(label: str) -> str:
    """Return a participant id with exactly one ``sub-`` prefix (:func:`audit.values.normalise_participant`,
    not validated: findings name whatever id a file held).

    >>> normalise_subject(" 03 "), normalise_subject("sub-03")
    ('sub-03', 'sub-03')
    """
    return normalise_participant(label, validate=False)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found.

    Attributes follow the contract's JSON result: ``check`` (the check id),
    ``severity``, a one-line ``message`` (counts first, then names), the
    ``splits`` and ``subjects`` concerned (``sub-`` prefixed, sorted) and the
    ``evidence`` (figures, files, hashes) behind it.
    """

    check: str
    severity: Severity
    message: str
    splits: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def stamped(self, check: str, severity: Severity) -> Finding:
        """Return a copy carrying ``check`` and ``severity``."""
        return replace(self, check=check, severity=severity)

    @property
    def rank(self) -> int:
        """0 for error, 1 for warning, 2 for info (for sorting)."""
        return _RANK.get(self.severity, 0)

    def sort_key(self) -> tuple[Any, ...]:
        return (self.rank, self.check, self.splits, self.subjects, self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "splits": list(self.splits),
            "subjects": list(self.subjects),
            "evidence": _plain(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            check=str(data["check"]),
            severity=data["severity"],
            message=str(data["message"]),
            splits=tuple(data.get("splits", ())),
            subjects=tuple(data.get("subjects", ())),
            evidence=MappingProxyType(dict(data.get("evidence", {}))),
        )


def finding(
    message: str,
    *,
    splits: Iterable[str] = (),
    subjects: Iterable[str] = (),
    evidence: Mapping[str, Any] | None = None,
    severity: Severity | None = None,
) -> Finding:
    """Make a finding inside a check.

    ``check`` is left empty and filled in by the runner. ``severity`` is left
    empty too (the check's registered default, or the configured override,
    is applied by the runner) unless given, e.g. an ``info`` side result of a
    check whose default is ``error``.
    """
    return Finding(
        check="",
        severity=severity or "",  # type: ignore[arg-type]
        message=message,
        splits=tuple(splits),
        subjects=tuple(sorted({normalise_subject(s) for s in subjects})),
        evidence=MappingProxyType(dict(evidence or {})),
    )


def _plain(value: Any) -> Any:
    """Turn evidence into JSON-ready plain data (tuples→lists, numpy→python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)
