"""quality.* checks over the index: participants table and sidecar metadata."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding
from schemas.tables import participants_schema

#: Sidecar fields the confound and shift checks rely on to identify a scanner.
SCANNER_FIELDS = ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength")
#: Fields that sharpen scanner identity when present (reported, never required).
SCANNER_FIELDS_OPTIONAL = ("InstitutionName", "StationName", "DeviceSerialNumber")
MAX_EXAMPLES = 10


@check("quality.participants_table", default="error", needs={"dataset"})
def participants_table(ctx: AuditContext) -> Iterator[Finding]:
    """participants.tsv is readable, ids are unique and match sub- folders, values match participants.json."""
    assert ctx.index is not None
    index = ctx.index
    table = index.participants
    for p in index.all_problems():
        if p.path == "participants.tsv":
            where = f", line {p.line}" if p.line else ""
            yield finding(f"participants.tsv{where}: {p.message}", severity=None if p.severity == "error" else p.severity,
                          evidence={"file": p.path, "line": p.line, "column": p.column})
    if table is None:
        if not (index.root / "participants.tsv").exists():
            yield finding("participants.tsv is missing: no participant variables (label, age, sex, site) to audit",
                          severity="warning", evidence={"file": "participants.tsv"})
        return
    yield from _schema_failures(table, index.participants_meta)
    ids = {str(v).strip() for v in table["participant_id"]}
    folders = set(index.subjects)
    no_row = sorted(folders - ids)
    no_folder = sorted(i for i in ids - folders if i.startswith("sub-"))
    if no_row:
        yield finding(f"{len(no_row)} subject folders have no row in participants.tsv",
                      subjects=no_row, evidence={"file": "participants.tsv", "subjects": no_row[:MAX_EXAMPLES]})
    if no_folder:
        yield finding(f"{len(no_folder)} participants in participants.tsv have no sub- folder",
                      severity="warning", subjects=no_folder,
                      evidence={"file": "participants.tsv", "subjects": no_folder[:MAX_EXAMPLES]})


def _schema_failures(table, meta) -> Iterator[Finding]:  # type: ignore[no-untyped-def]
    import pandera.errors as pe

    schema = participants_schema(meta, list(table.columns))
    try:
        schema.validate(table, lazy=True)
        return
    except pe.SchemaErrors as errs:
        cases = errs.failure_cases
    grouped: dict[tuple[str, str], list[tuple[int | None, str]]] = defaultdict(list)
    for row in cases.itertuples(index=False):
        column = str(getattr(row, "column", "") or "")
        check_name = str(getattr(row, "check", "") or "")
        idx = getattr(row, "index", None)
        line = int(idx) + 2 if idx is not None and idx == idx else None  # header is line 1
        grouped[(column, check_name)].append((line, str(getattr(row, "failure_case", ""))))
    for (column, check_name), items in sorted(grouped.items()):
        items.sort(key=lambda t: (t[0] is None, t[0] or 0))
        lines = [ln for ln, _ in items if ln is not None]
        values = [v for _, v in items]
        subjects = []
        if column == "participant_id" and "unique" in check_name:
            subjects = sorted(set(values))
            message = f"participants.tsv: {len(items)} rows repeat a participant_id ({', '.join(subjects[:5])})"
        else:
            message = f"participants.tsv: {len(items)} values in column '{column}' fail: {check_name}"
        yield finding(message, subjects=[s for s in subjects if s.startswith("sub-")], evidence={
            "file": "participants.tsv", "column": column, "check": check_name,
            "lines": lines[:MAX_EXAMPLES], "values": values[:MAX_EXAMPLES], "count": len(items)})


@check("quality.missing_metadata", default="warning", needs={"dataset"})
def missing_metadata(ctx: AuditContext) -> Iterator[Finding]:
    """Sidecar fields needed to identify the scanner (confound analysis) are missing."""
    assert ctx.index is not None
    index = ctx.index
    images = index.images()
    if not images:
        return
    missing: dict[str, list[str]] = defaultdict(list)
    optional_seen: Counter[str] = Counter()
    for row in images:
        meta = index.sidecar(row.path)
        for key in SCANNER_FIELDS:
            if meta.get(key) in (None, ""):
                missing[key].append(row.path)
        for key in SCANNER_FIELDS_OPTIONAL:
            if meta.get(key) not in (None, ""):
                optional_seen[key] += 1
    for key, paths in sorted(missing.items()):
        subjects = sorted({p.split("/", 1)[0] for p in paths})
        hint = " (give --site COL to name sites explicitly)" if not ctx.options.site else ""
        yield finding(
            f"{len(paths)} of {len(images)} images have no {key} in their sidecars{hint}",
            subjects=subjects,
            evidence={"field": key, "count": len(paths), "images": len(images),
                      "examples": paths[:MAX_EXAMPLES], "optional_fields_present": dict(optional_seen)},
        )
