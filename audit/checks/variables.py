"""Variables compared between splits: which columns are covariates, and how each is read.

Shared by the shift checks (:mod:`audit.checks.shift`) and the report's
distributions (:mod:`audit.outputs.distributions`), so both compare and
chart the same covariates read the same way.

* the label column (``--label``, or ``diagnosis``);
* every other participant column (participants.tsv when a dataset is
  given, else the columns the split files carry), minus identifiers, the
  label, the site and group columns (:func:`excluded_columns`);
* the site/scanner identity (:mod:`audit.scanner`) and the protocol of each
  participant's reference image (field strength, TR, TE, TI, flip angle,
  voxel size), a protocol field or site column kept only when the scanner
  identity does not determine it already.

How a column is read (:func:`make_variable`)
    ``"89+"``/``">89"`` are read as 89 (censored, counted in notes),
    ``"26-30"`` as 28 (binned); a column with a few non-numeric cells in
    numbers is compared on its numbers and the others are reported; a
    column that mixes numbers and text, or looks like an identifier (nearly
    one value per participant) is not compared, and its notes say why.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit.catalogue import MAX_LEVELS
from audit.scanner import (
    SITE_COLUMNS,
    normalise_key,
    participant_values,
    protocol_values,
)
from audit.values import NUMERIC_COLUMNS, is_missing, parse_number

if TYPE_CHECKING:
    from audit.context import AuditContext

__all__ = [
    "MAX_LEVELS", "NOT_COVARIATES", "MAX_DISCRETE", "Variable", "make_variable",
    "excluded_columns", "covariate_columns", "label_variables", "covariate_variables", "acquisition_variables",
    "source_of",
]

#: A text column with more levels is an identifier or free text, not compared (the default of ``max_levels``).
#: Columns that are never covariates (identifiers, split bookkeeping).
NOT_COVARIATES = frozenset({"participant_id", "session_id", "split", "fold", "label", "file", "line"})
#: Numbers with at most this many distinct values are categories (0/1 codes, field strength).
MAX_DISCRETE = 10
MAX_EXAMPLES = 5


@dataclass
class Variable:
    """One thing compared between splits: one value per participant."""

    check: str
    name: str
    kind: str  # "continuous" | "categorical" | "skipped"
    values: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "source": self.source, "participants": len(self.values)}
        if self.notes:
            out["notes"] = self.notes
        if self.reason:
            out["not_tested"] = self.reason
        return out


def make_variable(check_id: str, name: str, raw: Mapping[str, str], *, source: str, max_levels: int,
                  categorical: bool = False) -> Variable:
    """Decide how to compare a column (continuous, categorical, or not at all) and parse its values."""
    present = {p: v for p, v in raw.items() if not is_missing(v)}
    var = Variable(check_id, name, "skipped", source=source)
    if not present:
        var.reason = "no values"
        return var
    parsed = {p: parse_number(v) for p, v in present.items()}
    numbers = {p: x for p, (x, _how) in parsed.items() if x is not None}
    text = sorted({present[p] for p, (x, _h) in parsed.items() if x is None})
    frac = len(numbers) / len(present)
    distinct = len(set(numbers.values()))
    numeric_name = name.lower() in NUMERIC_COLUMNS
    if not categorical and (frac >= 0.9 or (numeric_name and frac >= 0.5)) and (distinct > MAX_DISCRETE
                                                                                  or (numeric_name and distinct > 2)):
        var.kind = "continuous"
        var.values = numbers
        hows = Counter(h for _x, h in parsed.values() if h in ("censored", "range"))
        if hows.get("censored"):
            var.notes["censored"] = hows["censored"]
            var.notes["censored_examples"] = sorted({present[p] for p, (_x, h) in parsed.items()
                                                     if h == "censored"})[:MAX_EXAMPLES]
        if hows.get("range"):
            var.notes["binned"] = hows["range"]
        if text:
            var.notes["non_numeric"] = len(present) - len(numbers)
            var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    if not categorical and frac >= 0.9:
        # few distinct numbers: categories ("1" and "1.0" are one level)
        var.kind = "categorical"
        var.values = {p: f"{x:g}" for p, x in numbers.items()}
        if text:
            var.notes["non_numeric"] = len(present) - len(numbers)
            var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    if not categorical and numeric_name and 0 < frac < 0.5:
        # "age" holding "62", "sixty", "70s", "abc": neither numbers to compare nor honest categories
        var.reason = (f"should hold numbers but {len(present) - len(numbers)} of {len(present)} values are not "
                      "numbers (e.g. " + ", ".join(repr(t) for t in text[:3]) + ")")
        var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    if not categorical and 0.1 < frac < 0.9 and distinct > MAX_DISCRETE:
        var.reason = (f"mixes numbers ({len(numbers)}) and text ({len(present) - len(numbers)}, e.g. "
                      + ", ".join(repr(t) for t in text[:3]) + ")")
        var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    keyed: dict[str, str] = {}
    spell: dict[str, Counter[str]] = defaultdict(Counter)
    for p, v in present.items():
        k = normalise_key(v) or v
        keyed[p] = k
        spell[k][v] += 1
    shown = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in spell.items()}
    levels = len(shown)
    if levels > max_levels or (levels > 2 and levels > 0.5 * len(present) and not categorical):
        var.reason = f"{levels} distinct values for {len(present)} participants: an identifier or free text"
        return var
    var.kind = "categorical"
    var.values = {p: shown[k] for p, k in keyed.items()}
    merged = {shown[k]: sorted(c) for k, c in spell.items() if len(c) > 1}
    if merged:
        var.notes["spellings_merged"] = merged
    return var


def label_variables(ctx: AuditContext, th: Mapping[str, Any]) -> list[Variable]:
    """The label column as a :class:`Variable` (none without a label column)."""
    column = ctx.label_column
    if not column:
        return []
    raw = participant_values(ctx, column, label=True)
    return [make_variable("shift.label", column, raw, source=source_of(ctx, column), max_levels=th["max_levels"])]


def source_of(ctx: AuditContext, column: str) -> str:
    """Where a column's values come from: ``participants.tsv`` or the split files."""
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants.columns:
        return "participants.tsv"
    return "split files"


def excluded_columns(ctx: AuditContext) -> set[str]:
    """Columns that are not covariates: ids, the label, site and group (the report's charts use it too)."""
    out = set(NOT_COVARIATES) | set(SITE_COLUMNS)
    for c in (ctx.label_column, ctx.options.site, ctx.options.group):
        if c:
            out.add(c)
    if ctx.splits is not None:
        out |= {t.label_column for t in ctx.splits.tables if t.label_column}
    return out


def covariate_columns(ctx: AuditContext) -> list[str]:
    """The participant columns compared as covariates, in order: participants.tsv's, then the split files' new ones.

    Every column but :func:`excluded_columns` (the report's charts use this choice too).
    """
    columns: list[str] = []
    if ctx.index is not None and ctx.index.participants is not None:
        columns += [c for c in ctx.index.participants.columns]
    if ctx.splits is not None:
        for t in ctx.splits.tables:
            columns += [c for c in t.columns if c not in columns]
    skip = excluded_columns(ctx)
    return [c for c in columns if c not in skip and c.lower() not in skip]


def covariate_variables(ctx: AuditContext, th: Mapping[str, Any]) -> list[Variable]:
    """One :class:`Variable` per covariate column (:func:`covariate_columns`)."""
    return [make_variable("shift.covariate", c, participant_values(ctx, c), source=source_of(ctx, c),
                          max_levels=th["max_levels"]) for c in covariate_columns(ctx)]


def _determined_by(values: Mapping[str, Any], by: Mapping[str, Any]) -> bool:
    """Every group of ``by`` has at most one value of ``values`` (on participants that have both)."""
    seen: dict[Any, set[Any]] = defaultdict(set)
    for p, v in values.items():
        if p in by:
            seen[by[p]].add(v)
    return bool(seen) and all(len(s) <= 1 for s in seen.values())


def acquisition_variables(ctx: AuditContext, th: Mapping[str, Any]) -> tuple[list[Variable], dict[str, Any]]:
    """The site/scanner identity and the protocol fields it does not determine; and where they came from."""
    ident = ctx.scanner_identity
    info: dict[str, Any] = {"site_source": ident.evidence()}
    out: list[Variable] = []
    if ident.by_subject:
        name = "site" if ident.source != "sidecars" else "scanner"
        var = make_variable("shift.acquisition", name, dict(ident.by_subject), source=ident.describe(),
                            max_levels=10**6, categorical=True)
        out.append(var)
    candidates: list[Variable] = []
    for column in SITE_COLUMNS:
        if column == ident.column:
            continue
        raw = participant_values(ctx, column)
        if raw:
            candidates.append(make_variable("shift.acquisition", column, raw, source=source_of(ctx, column),
                                            max_levels=10**6, categorical=True))
    if ctx.index is not None:
        zooms = None
        if ctx.missing("images") is None:
            zooms = {s.path: s.zooms for s in ctx.images if s.ok and s.zooms}
        suffix, fields, converted = protocol_values(ctx.index, zooms)
        info["protocol_suffix"] = suffix
        if converted:
            info["protocol_converted_from_ms"] = converted
        for f, raw in fields.items():
            candidates.append(make_variable("shift.acquisition", f, raw, source=f"sidecars ({suffix})"
                                            if f != "VoxelSize" else f"image headers ({suffix})",
                                            max_levels=th["max_levels"]))
    kept: list[Variable] = [v for v in out if v.kind != "skipped"]
    redundant = []
    for var in candidates:
        if var.kind == "skipped":
            out.append(var)
            continue
        if any(_determined_by(var.values, k.values) for k in kept):
            redundant.append(var.name)
            continue
        kept.append(var)
        out.append(var)
    if redundant:
        info["determined_by_scanner"] = redundant
    return out, info
