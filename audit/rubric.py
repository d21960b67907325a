"""The readiness rubric as data: bands, levels, thresholds, and the fourteen items with their measures.

Each :class:`Item` names its band, points, the checks whose findings move it,
what it needs, the rule that decides its status, the advice that would raise
it and, for some, a measure taken from the data (:class:`Inputs`).
:func:`rubric_markdown` writes the rubric as the tables of
``docs/readiness.md``. Scoring is :mod:`audit.readiness`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from audit.values import is_missing

__all__ = [
    "BANDS",
    "BAND_NAMES",
    "Inputs",
    "Item",
    "LEVELS",
    "RUBRIC",
    "RUBRIC_VERSION",
    "STATUS_CREDIT",
    "WORSE",
    "clean_label",
    "rubric_markdown",
]

RUBRIC_VERSION = "1"
BANDS = ("C", "B", "A")
BAND_NAMES = {"C": "accessibility", "B": "faithfulness", "A": "appropriateness for the task"}
LEVELS: dict[str, str] = {
    "A1": "ready for the task",
    "A2": "appropriate for the task, with caveats",
    "B1": "faithful: checked and consistent; task appropriateness not yet shown",
    "B2": "faithful, with caveats; task appropriateness not yet shown",
    "C1": "accessible: loadable, faithfulness not yet shown",
    "C2": "accessible, with caveats; faithfulness not yet shown",
    "C3": "not accessible: cannot be loaded as it is",
    "unrated": "not rated: accessibility (band C) needs the dataset",
}
STATUS_CREDIT = {"pass": 1.0, "partial": 0.5, "fail": 0.0}
#: Status order, best first (an item takes the worse of findings and measures).
WORSE = {"pass": 0, "partial": 1, "fail": 2}

#: Rubric thresholds (documented in each item's rule).
MIN_PER_CLASS_PASS = 20
MIN_PER_CLASS_PARTIAL = 10
BALANCE_PASS = 0.5      # smallest class / largest class
BALANCE_PARTIAL = 0.2
MIN_LABELLED_PASS = 50  # continuous label (regression)
MIN_LABELLED_PARTIAL = 20
MAX_CLASSES = 10        # a numeric label with more distinct values is continuous


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Inputs:
    """What the rubric looks at (plain data)."""

    findings: tuple[tuple[str, str, str], ...]  # (check, severity, message)
    summary: Mapping[str, Any] | None
    label: str | None
    labels: Mapping[str, Any] | None
    splits_given: bool
    skipped: Mapping[str, str]
    ran: frozenset[str] | None
    waivers: tuple[Mapping[str, Any], ...] = ()

    def of(self, checks: Iterable[str]) -> list[tuple[str, str, str]]:
        wanted = set(checks)
        return [f for f in self.findings if f[0] in wanted]

    def ran_any(self, checks: Iterable[str]) -> bool:
        checks = list(checks)
        if self.ran is not None:
            return any(c in self.ran for c in checks)
        return any(c not in self.skipped for c in checks)

    def skip_reason(self, checks: Iterable[str]) -> str | None:
        reasons = [self.skipped[c] for c in checks if c in self.skipped]
        return reasons[0] if reasons else None

    def count(self, key: str) -> int:
        value = (self.summary or {}).get(key)
        return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0

    def label_values(self) -> list[str | None]:
        return [clean_label(v) for v in (self.labels or {}).values()]


def clean_label(value: Any) -> str | None:
    """A label value as text; ``None`` when missing (empty, ``n/a``, NaN ...)."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = str(value).strip()
    return None if is_missing(text, unknown=False) else text  # a label: "unknown" may be a class


def _continuous(values: list[str]) -> bool:
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    return len(set(numbers)) > MAX_CLASSES


# --------------------------------------------------------------------------- the rubric
Rule = Callable[[Inputs], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Item:
    """One rubric item.

    ``checks`` are the check ids whose findings move it; ``needs`` the
    inputs without which it is not assessed (``dataset``, ``images``,
    ``label``, ``splits``); ``rule`` the plain-words rule (documentation);
    ``measure`` an optional function of the inputs returning ``(status,
    evidence)`` from data, or ``None`` when it cannot measure.
    """

    id: str
    band: str
    title: str
    points: int
    checks: tuple[str, ...]
    needs: tuple[str, ...]
    rule: str
    advice: str
    measure: Rule | None = None


def _m_loadable(x: Inputs) -> tuple[str, str] | None:
    subjects, files = x.count("subjects"), x.count("files")
    if subjects == 0:
        return "fail", f"no sub- folder found ({files} files indexed)"
    return "pass", f"{files} files indexed, {subjects} participants"


def _m_formats(x: Inputs) -> tuple[str, str] | None:
    invalid = x.count("invalid_names")
    if invalid:
        return "partial", f"{invalid} files have names that are not valid BIDS (not used as data)"
    return "pass", "every file name is valid BIDS"


def _m_images_present(x: Inputs) -> tuple[str, str] | None:
    images, absent = x.count("images"), x.count("images_absent")
    if images == 0:
        return "fail", "no images in the dataset"
    if absent >= images:
        return "fail", f"none of the {images} images has its content here (dangling links or annex pointers)"
    if absent:
        return "partial", f"{absent} of {images} images have no content here (dangling links or annex pointers)"
    return "pass", f"all {images} images have their content here"


def _m_label_complete(x: Inputs) -> tuple[str, str] | None:
    values = x.label_values()
    if not values:
        return None
    missing = sum(v is None for v in values)
    if missing == len(values):
        return "fail", f"no participant has a value for '{x.label}'"
    if missing:
        return "partial", f"{missing} of {len(values)} participants have no value for '{x.label}'"
    return "pass", f"all {len(values)} participants have a value for '{x.label}'"


def _classes(x: Inputs) -> Counter[str] | None:
    values = [v for v in x.label_values() if v is not None]
    if not values or _continuous(values):
        return None
    return Counter(values)


def _show_classes(counts: Counter[str]) -> str:
    shown = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {n}" for k, n in shown[:8])
    return text + (f", ... ({len(shown)} classes)" if len(shown) > 8 else "")


def _m_balance(x: Inputs) -> tuple[str, str] | None:
    values = [v for v in x.label_values() if v is not None]
    if not values:
        return None
    if _continuous(values):
        return "not_assessed", f"'{x.label}' is continuous ({len(set(values))} distinct values): class balance " \
                               "does not apply"
    counts = Counter(values)
    if len(counts) < 2:
        return "fail", f"only one class ({_show_classes(counts)}): nothing to tell apart"
    ratio = min(counts.values()) / max(counts.values())
    status = "pass" if ratio >= BALANCE_PASS else "partial" if ratio >= BALANCE_PARTIAL else "fail"
    return status, f"{_show_classes(counts)}; smallest/largest class {ratio:.2f}"


def _m_per_class(x: Inputs) -> tuple[str, str] | None:
    values = [v for v in x.label_values() if v is not None]
    if not values:
        return None
    if _continuous(values):
        n = len(values)
        status = "pass" if n >= MIN_LABELLED_PASS else "partial" if n >= MIN_LABELLED_PARTIAL else "fail"
        return status, f"{n} participants with a value of continuous '{x.label}'"
    counts = Counter(values)
    smallest = min(counts.values())
    status = "pass" if smallest >= MIN_PER_CLASS_PASS else "partial" if smallest >= MIN_PER_CLASS_PARTIAL \
        else "fail"
    return status, f"smallest class has {smallest} participants ({_show_classes(counts)})"


RUBRIC: tuple[Item, ...] = (
    # ---- band C: accessibility
    Item("C.loadable", "C", "The dataset can be indexed and read", 8,
         ("quality.unreadable_file",), ("dataset",),
         "fail when no sub- folder is found or a file cannot be read (error); partial on a warning",
         "Fix the files listed as unreadable (malformed JSON, permissions, symbolic-link loops).",
         _m_loadable),
    Item("C.participants", "C", "participants.tsv is readable and matches the sub- folders", 7,
         ("quality.participants_table",), ("dataset",),
         "fail on an error of quality.participants_table (unreadable, repeated or unmatched ids); "
         "partial on a warning (e.g. no participants.tsv)",
         "Write participants.tsv with one row per sub- folder, unique ids, values matching participants.json."),
    Item("C.formats", "C", "Files follow BIDS", 7,
         ("bids.invalid",), ("dataset",),
         "fail on a BIDS validator error (bids.invalid); partial when some file names are not valid BIDS",
         "Fix the BIDS validator errors and rename the files listed as not valid BIDS.",
         _m_formats),
    Item("C.images_present", "C", "Image content is present", 8,
         ("quality.absent_images",), ("dataset",),
         "fail with no image, or no image content here; partial when some images are dangling links or "
         "git-annex pointers",
         "Fetch the image content (e.g. `datalad get .`) or remove the dangling links.",
         _m_images_present),
    # ---- band B: faithfulness
    Item("B.images_intact", "B", "Images are readable and not empty", 10,
         ("quality.corrupt_image", "quality.empty_image"), ("dataset", "images"),
         "fail on any corrupt, truncated or empty image (errors); partial on a warning",
         "Re-export or exclude the corrupt and empty images listed in the findings."),
    Item("B.geometry", "B", "Image geometry is consistent", 5,
         ("quality.inconsistent_geometry",), ("dataset", "images"),
         "partial when voxel size, orientation or shape departs from the dataset's norm (warning); "
         "fail if raised to an error",
         "Resample or reorient the outliers, or document why they differ."),
    Item("B.metadata", "B", "Scanner metadata is complete", 5,
         ("quality.missing_metadata",), ("dataset",),
         "partial when sidecars lack Manufacturer, ManufacturersModelName or MagneticFieldStrength (warning)",
         "Add the scanner fields to the sidecars (dcm2niix writes them), or give --site COL."),
    Item("B.labels", "B", "Labels are complete and consistent", 10,
         ("quality.label_conflict", "quality.missing_label"), ("label",),
         "fail when a participant carries conflicting labels (error) or no participant has a label; "
         "partial when some participants have no label",
         "Fill in the missing labels (or drop those participants) and resolve the conflicting ones.",
         _m_label_complete),
    Item("B.duplicates", "B", "No scan appears twice under different ids", 5,
         ("leakage.duplicate_image", "leakage.near_duplicate_image"), ("dataset", "images", "splits"),
         "fail on an identical or near-identical image under two participant or session ids (error)",
         "Remove the duplicated scans, or merge the ids that name one person."),
    # ---- band A: appropriateness for the task
    Item("A.class_balance", "A", "Classes are balanced", 6,
         (), ("label",),
         f"smallest/largest class >= {BALANCE_PASS}: pass; >= {BALANCE_PARTIAL}: partial; below, or a single "
         "class: fail; not assessed for a continuous label",
         "Collect more participants of the small classes, or plan for class weights and balanced metrics.",
         _m_balance),
    Item("A.per_class", "A", "Enough participants per class", 7,
         (), ("label",),
         f"smallest class >= {MIN_PER_CLASS_PASS}: pass; >= {MIN_PER_CLASS_PARTIAL}: partial; fewer: fail "
         f"(continuous label: >= {MIN_LABELLED_PASS} labelled participants pass, >= {MIN_LABELLED_PARTIAL} "
         "partial)",
         "Add participants to the smallest class; with so few, report confidence intervals and use k-fold.",
         _m_per_class),
    Item("A.confounds", "A", "The label does not follow the site", 8,
         ("confound.label_site",), ("label",),
         "fail when the label is strongly associated with site or scanner (error); partial on a warning",
         "Balance sites across classes (or match on site), harmonise, and report per-site results."),
    Item("A.shift", "A", "Splits come from the same distribution", 4,
         ("shift.label", "shift.covariate", "shift.acquisition", "shift.image"), ("splits",),
         "partial when label, covariate, acquisition or image shift between splits is found (warnings); "
         "fail if raised to an error",
         "Re-split with stratification on the label and balance on age, sex and site (bidsaudit split)."),
    Item("A.split_integrity", "A", "Splits do not leak", 10,
         ("leakage.subject_overlap", "leakage.session_overlap", "leakage.group_overlap",
          "leakage.pretrain_overlap", "leakage.no_test_split", "split.unknown_subject", "split.identical_folds",
          "split.fold_integrity"), ("splits",),
         "fail on any leakage or unknown participant (errors); partial on a warning (no test split, "
         "identical or overlapping folds)",
         "Split by participant (and group), keep an independent test split: bidsaudit split does both."),
)
_BY_ID = {item.id: item for item in RUBRIC}
assert sum(i.points for i in RUBRIC) == 100, "the rubric's points must add up to 100"


# --------------------------------------------------------------------------- documentation
def rubric_markdown() -> str:
    """The rubric as Markdown tables (embedded in docs/readiness.md)."""
    lines = []
    for band in BANDS:
        items = [i for i in RUBRIC if i.band == band]
        total = sum(i.points for i in items)
        lines += [f"### Band {band}: {BAND_NAMES[band]} ({total} points)", "",
                  "| item | points | moved by | rule | what raises it |", "| --- | --- | --- | --- | --- |"]
        for i in items:
            moved = ", ".join(f"`{c}`" for c in i.checks) or "measured from the data"
            if i.checks and i.measure is not None:
                moved += "; measured from the data"
            needs = " (needs " + ", ".join(i.needs) + ")"
            lines.append(f"| `{i.id}` {i.title}{needs} | {i.points} | {moved} | {i.rule} | {i.advice} |")
        lines.append("")
    lines += ["### Levels", "", "| level | meaning |", "| --- | --- |"]
    lines += [f"| `{k}` | {v} |" for k, v in LEVELS.items()]
    return "\n".join(lines) + "\n"
