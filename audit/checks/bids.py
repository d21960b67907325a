"""bids.* checks: the official validator's verdict and what the index could not name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding
from audit.validator import validator_findings

MAX_EXAMPLES = 20


@check("bids.invalid", default="error", needs={"validator"})
def invalid(ctx: AuditContext) -> Iterator[Finding]:
    """The dataset breaks BIDS rules (one finding per validator error code)."""
    assert ctx.validator is not None
    yield from (f for f in validator_findings(ctx.validator) if f.severity == "error")


@check("bids.warning", default="warning", needs={"validator"})
def warning(ctx: AuditContext) -> Iterator[Finding]:
    """BIDS validator warnings (one finding per code, counted, with examples)."""
    assert ctx.validator is not None
    yield from (f for f in validator_findings(ctx.validator) if f.severity != "error")


@check("bids.unindexed_file", default="info", needs={"dataset"})
def unindexed_file(ctx: AuditContext) -> Iterator[Finding]:
    """Files whose names are not valid BIDS: listed with the reason, never used as data."""
    assert ctx.index is not None
    bad = ctx.index.invalid
    if not bad:
        return
    reasons = Counter(r.reason for r in bad)
    yield finding(
        f"{len(bad)} files are not valid BIDS names and are not used as data",
        subjects=sorted({r.subject for r in bad if r.subject}),
        evidence={
            "count": len(bad),
            "reasons": dict(reasons.most_common()),
            "files": [{"path": r.path, "reason": r.reason} for r in bad[:MAX_EXAMPLES]],
        },
    )
