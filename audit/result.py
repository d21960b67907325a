"""The audit result: what ``--json`` writes and the report renders.

In a notebook a :class:`Result` shows itself: ``_repr_html_`` renders the
report's summary part inline (:mod:`audit.display`), :meth:`Result.to_frame`
gives the findings as a pandas DataFrame, and :meth:`Result.save_json` /
:meth:`Result.save_html` write the JSON result and the summary page
atomically (:mod:`audit.fsutil`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit import __version__, display
from audit.findings import Finding, Status, _plain
from audit.fsutil import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Result", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1"


@dataclass(frozen=True, repr=False)
class Result:
    """One run's outcome, shaped as the contract's JSON result.

    ``dataset``, ``splits``, ``readiness`` and ``summary`` are plain
    dictionaries (already JSON-ready); ``findings`` are sorted, errors first.
    ``repr()`` is one line (verdict and counts); in Jupyter the result
    renders its summary (:meth:`_repr_html_`).
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

    # ------------------------------------------------------------------ display (notebooks)
    def __repr__(self) -> str:
        c = self.counts()
        name = self.dataset.get("name") if self.dataset else None
        return (f"<Result {self.command or 'result'} {self.status.upper()}: {c['error']} errors, "
                f"{c['warning']} warnings, {c['info']} notes" + (f" ({name})" if name else "") + ">")

    def _repr_html_(self) -> str:
        """The report's summary part, inline (Jupyter calls this); escaped, no script."""
        return display.summary_html(self.to_dict())

    def to_frame(self) -> pd.DataFrame:
        """The findings as a pandas DataFrame, one row per finding.

        Columns: ``check``, ``severity``, ``message``, ``splits`` and
        ``subjects`` (tuples), ``n_subjects``, then the evidence's figures
        (counts, p-values, effect sizes: ``association.cramers_v``), one
        column per figure (see :func:`audit.display.main_figures`).
        """
        return display.findings_frame(self.to_dict())

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON result (what ``--json`` writes), atomically; returns the path."""
        return atomic_write_text(path, self.to_json())

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the summary page (what the notebook shows), atomically; returns the path.

        The full report (charts, duplicate pictures, reproduce block) is
        rendered by ``reports/``, which only the command line imports:
        ``bidsaudit report RESULT.json --output report.html`` on a file
        written by :meth:`save_json`.
        """
        return atomic_write_text(path, display.summary_page(self.to_dict()))

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
