"""Checks that must run after the others: problems met by lazy reads during the audit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from audit.bidsindex import IndexProblem
from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding


@check("quality.unreadable_file", default="error", needs={"dataset"})
def unreadable_file(ctx: AuditContext) -> Iterator[Finding]:
    """Files or folders the audit could not read: malformed JSON, permissions, symbolic-link loops."""
    assert ctx.index is not None
    by_kind = defaultdict(list)
    for p in ctx.index.all_problems():
        if p.kind == "table" and p.path == "participants.tsv":
            continue  # reported by quality.participants_table
        by_kind[p.kind if p.severity == "error" else f"{p.kind}_{p.severity}"].append(p)
    if ctx.missing("images") is None:  # images the image pass could not read (permissions, a reader that died)
        for s in ctx.images.with_status("unreadable"):
            by_kind["unreadable"].append(IndexProblem("unreadable", s.path, s.problem or "cannot be read"))
    labels = {"malformed_json": "JSON files are malformed", "unreadable": "files or folders cannot be read",
              "symlink_loop": "symbolic links form a loop", "table": "TSV tables are malformed",
              "table_warning": "TSV tables need a fix the official validator does not ask for"}
    for kind, problems in sorted(by_kind.items()):
        first = problems[0]
        where = first.path + (f", line {first.line}" if first.line else "") + (
            f", column {first.column}" if first.column else "")
        yield finding(
            f"{len(problems)} {labels.get(kind, kind)} (first: {where}: {first.message})",
            severity=None if first.severity == "error" else first.severity,
            subjects=sorted({p.path.split("/", 1)[0] for p in problems if p.path.startswith("sub-")}),
            evidence={"kind": kind, "problems": [
                {"path": p.path, "line": p.line, "column": p.column, "message": p.message} for p in problems[:20]],
                "count": len(problems)},
        )
