"""expectations.failed: a user's Great Expectations suites (``--expectations``) over the dataset's tables.

One finding per failed expectation (default severity ``error``: a suite is
a data contract the user wrote, so breaking it closes the gate; lower it in
``bidsaudit.toml`` with ``[severity] "expectations.failed" = "warning"``,
or per expectation with Great Expectations' own ``"severity": "warning"``).
Evidence: the suite (name, file, table), the expectation type and
arguments, Great Expectations' result (observed value, unexpected count and
percentage, up to 20 unexpected values) and the rows at fault (participant
ids, and image paths for the images table). One info finding per suite
says how many expectations passed. Tables and suite formats:
:mod:`audit.expectations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from audit.checks.registry import check
from audit.context import AuditContext
from audit.expectations import images_table, load_suites, participants_table, run_suite
from audit.findings import Finding, finding, normalise_subject


def _describe(rec: dict[str, Any]) -> str:
    kw = rec["kwargs"]
    target = f" on column '{kw['column']}'" if isinstance(kw.get("column"), str) else ""
    if rec["exception"]:
        return f"{rec['type']}{target} could not be evaluated: {rec['exception']}"
    res = rec["result"]
    parts = []
    if res.get("unexpected_count") is not None:
        n, total = res["unexpected_count"], res.get("element_count")
        parts.append(f"{n} of {total} values unexpected" if total is not None else f"{n} values unexpected")
        examples = res.get("partial_unexpected_list") or []
        if examples:
            parts.append("e.g. " + ", ".join(repr(x) for x in examples[:3]))
    if "observed_value" in res:
        parts.append(f"observed {res['observed_value']!r}")
    return f"{rec['type']}{target} failed" + (f" ({'; '.join(parts)})" if parts else "")


@check("expectations.failed", default="error", needs={"expectations"})
def expectations_failed(ctx: AuditContext) -> Iterator[Finding]:
    """An expectation of the user's Great Expectations suite (--expectations) fails."""
    paths = tuple(ctx.options.expectations)
    suites = load_suites(paths)
    tables: dict[str, Any] = {}
    for suite in suites:
        where = {"suite": suite.name, "file": suite.path, "table": suite.table}
        if suite.table == "images" and ctx.index is None:
            yield finding(f"expectation suite '{suite.name}' not run: the images table needs a dataset",
                          severity="info", evidence=where)
            continue
        if suite.table not in tables:
            tables[suite.table] = participants_table(ctx) if suite.table == "participants" else images_table(ctx)
        table = tables[suite.table]
        records = run_suite(suite, table)
        failed = [r for r in records if not r["success"]]
        for rec in failed:
            rows = rec["rows"]
            subjects: list[str] = []
            paths_at_fault: list[str] = []
            if "participant_id" in table.columns:
                ids = table["participant_id"].tolist()
                subjects = sorted({normalise_subject(str(ids[i])) for i in rows
                                   if 0 <= i < len(ids) and ids[i] is not None and str(ids[i]).strip()})
            if suite.table == "images" and "path" in table.columns:
                all_paths = table["path"].tolist()
                paths_at_fault = [all_paths[i] for i in rows if 0 <= i < len(all_paths)]
            severity = {"warning": "warning", "info": "info"}.get(rec["severity"])
            evidence = {**where, "expectation_type": rec["type"], "kwargs": rec["kwargs"],
                        "result": rec["result"], "exception": rec["exception"], "rows": rows,
                        "expectation_severity": rec["severity"]}
            if paths_at_fault:
                evidence["paths"] = paths_at_fault
            yield finding(f"expectation suite '{suite.name}' ({suite.table}): {_describe(rec)}",
                          severity=severity, subjects=subjects, evidence=evidence)
        yield finding(f"expectation suite '{suite.name}' ({suite.table} table, {len(table)} rows): "
                      f"{len(records) - len(failed)} of {len(records)} expectations met",
                      severity="info", evidence={**where, "expectations": len(records), "failed": len(failed),
                                                 "rows": len(table), "columns": [str(c) for c in table.columns]})
