"""The audit result: what ``--json`` writes and the report renders."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit import __version__
from audit.findings import Finding, Status, _plain

__all__ = ["Result", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class Result:
    """One run's outcome, shaped as the contract's JSON result.

    ``dataset``, ``splits``, ``readiness`` and ``summary`` are plain
    dictionaries (already JSON-ready); ``findings`` are sorted, errors first.
    """

    command: str
    findings: tuple[Finding, ...]
    dataset: Mapping[str, Any] | None = None
    splits: Mapping[str, Any] | None = None
    readiness: Mapping[str, Any] | None = None
    skipped: tuple[Mapping[str, str], ...] = ()
    waivers: tuple[Mapping[str, Any], ...] = ()
    checks: tuple[str, ...] = ()
    config: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    reproduce: Mapping[str, Any] = field(default_factory=dict)
    #: How much the verdict rests on (:mod:`audit.coverage`); ``None`` for a result made without it.
    coverage: Mapping[str, Any] | None = None
    #: Data that travels with the result in memory but is not part of the JSON
    #: result (e.g. per-file hashes that the certificate binds to).
    attachments: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def status(self) -> Status:
        return "fail" if any(f.severity == "error" for f in self.findings) else "pass"

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "fail" else 0

    def counts(self) -> dict[str, int]:
        out = {"error": 0, "warning": 0, "info": 0}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "bidsaudit", "version": __version__},
            "command": self.command,
            "dataset": _plain(self.dataset) if self.dataset is not None else None,
            "splits": _plain(self.splits) if self.splits is not None else None,
            "status": self.status,
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "readiness": _plain(self.readiness) if self.readiness is not None else None,
            "skipped": [dict(s) for s in self.skipped],
            "waivers": [_plain(w) for w in self.waivers],
            "checks": list(self.checks),
            "config": _plain(self.config) if self.config is not None else None,
            "summary": _plain(self.summary),
            "reproduce": _plain(self.reproduce),
            "coverage": _plain(self.coverage) if self.coverage is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        return cls(
            command=str(data.get("command", "")),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings", [])),
            dataset=data.get("dataset"),
            splits=data.get("splits"),
            readiness=data.get("readiness"),
            skipped=tuple(data.get("skipped", [])),
            waivers=tuple(data.get("waivers") or ()),
            checks=tuple(data.get("checks") or ()),
            config=data.get("config"),
            summary=data.get("summary") or {},
            reproduce=data.get("reproduce") or {},
            coverage=data.get("coverage"),
        )


def sort_findings(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=Finding.sort_key))
