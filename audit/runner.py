"""The one runner: run the selected checks over a context and build a result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit.checks.registry import CheckSpec, all_checks
from audit.context import AuditContext
from audit.findings import Finding
from audit.result import Result, sort_findings

__all__ = ["run_checks", "build_result"]


def run_checks(
    ctx: AuditContext, families: Iterable[str] | None = None, *, out_of_scope: Iterable[str] = ()
) -> tuple[list[Finding], list[dict[str, str]]]:
    """Run every registered check of ``families`` (all when ``None``).

    Checks that need anything in ``out_of_scope`` (e.g. ``"splits"`` for
    ``validate``) are not part of this command: neither run nor listed.
    Returns the stamped findings and the checks skipped, each with a reason
    (a need that is not met, e.g. "no dataset given").
    """
    scope_out = set(out_of_scope)
    wanted = None if families is None else set(families)
    overrides = ctx.options.config.severity_overrides()
    findings: list[Finding] = []
    skipped: dict[str, str] = {}
    ran: set[str] = set()
    for spec in all_checks().values():
        if wanted is not None and spec.family not in wanted and spec.id not in wanted:
            continue
        if spec.needs & scope_out:
            continue
        reason = _unmet(ctx, spec)
        if reason is not None:
            if spec.id not in ran:
                skipped.setdefault(spec.id, reason)
            continue
        ran.add(spec.id)
        skipped.pop(spec.id, None)
        severity = overrides.get(spec.id, spec.default)
        for f in spec.func(ctx):
            findings.append(f.stamped(spec.id, f.severity or severity))
    ctx.checks_ran = tuple(sorted(ran))
    return findings, [{"check": k, "reason": v} for k, v in sorted(skipped.items())]


def _unmet(ctx: AuditContext, spec: CheckSpec) -> str | None:
    for need in sorted(spec.needs):
        reason = ctx.missing(need)
        if reason is not None:
            return reason
    return None


def build_result(command: str, ctx: AuditContext, findings: list[Finding], skipped: list[dict[str, str]],
                 **extra: Any) -> Result:
    """Assemble a :class:`Result` (findings sorted, errors first)."""
    return Result(command=command, findings=sort_findings(findings), skipped=tuple(skipped), **extra)
