"""Scanner identity: which site or scanner each participant (and image) was acquired on.

Sources, in order (the evidence of every check that uses it says which):

1. ``--site COL``: the values of that column (participants.tsv, then the
   split files for participants the dataset does not list).
2. The sidecars of the dataset's images (BIDS inheritance applied):
   ``Manufacturer``, ``ManufacturersModelName``, ``MagneticFieldStrength``,
   ``InstitutionName``, ``StationName``, ``DeviceSerialNumber``.
3. When neither gives anything: a participants or split column named
   ``site``, ``scanner``, ``center``/``centre`` (or ``site_id``...).

Normalisation of the spellings real datasets mix (all case-insensitive;
``_`` and ``-`` count as spaces; runs of spaces collapse):

* vendors to one name: ``SIEMENS``, ``Siemens Healthineers`` -> ``Siemens``;
  ``GE MEDICAL SYSTEMS``, ``GE Healthcare`` -> ``GE``; ``Philips Medical
  Systems`` -> ``Philips``; Canon/Toshiba, Hitachi, United Imaging, Bruker;
* models, institutions, stations, serial numbers and ``--site`` values by
  that key (``DISCOVERY_MR750`` = ``Discovery MR750``, ``cni`` = ``CNI``),
  shown in their most frequent spelling;
* field strength to the nominal value when within 5 % of one (Siemens
  reports 2.89 T for its 3 T scanners; 1.494 -> 1.5), gauss (values above
  100) to tesla.

Fields used (sidecars): a field is considered when at least half of the
images with any scanner field have it. ``Manufacturer``,
``ManufacturersModelName`` and ``MagneticFieldStrength`` make the scanner
model; ``InstitutionName``, ``StationName`` and ``DeviceSerialNumber`` are
added, in that order, only when they tell apart images that the fields
before them do not (two Prisma 3T at two hospitals), so labels stay short.
An image missing a used field takes the value of the other images of its
group when they agree on one, else ``unknown``.

A participant with images from several scanners is assigned the scanner of
most of its images (ties: the first label in sorted order) and counted in
``mixed_subjects``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit.findings import normalise_subject
from audit.values import is_missing, normalise_participant

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex
    from audit.context import AuditContext

__all__ = [
    "SCANNER_FIELDS",
    "MODEL_FIELDS",
    "PROTOCOL_FIELDS",
    "SITE_COLUMNS",
    "ScannerIdentity",
    "normalise_key",
    "normalise_manufacturer",
    "normalise_field_strength",
    "scanner_identity",
    "identify",
    "from_values",
    "from_sidecars",
    "participant_values",
    "protocol_values",
    "reference_images",
]

SCANNER_FIELDS: tuple[str, ...] = ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength",
                                   "InstitutionName", "StationName", "DeviceSerialNumber")
MODEL_FIELDS: tuple[str, ...] = SCANNER_FIELDS[:3]
#: Protocol fields compared between splits by ``shift.acquisition`` (seconds, degrees, tesla).
PROTOCOL_FIELDS: tuple[str, ...] = ("MagneticFieldStrength", "RepetitionTime", "EchoTime", "InversionTime",
                                    "FlipAngle")
#: Columns taken as the site when no --site is given and the sidecars say nothing.
SITE_COLUMNS: tuple[str, ...] = ("site", "scanner", "center", "centre", "site_id", "scanner_id", "study_site")
#: Nominal field strengths (tesla) that measured values are snapped to.
NOMINAL_FIELDS: tuple[float, ...] = (0.2, 0.35, 0.5, 1.0, 1.5, 3.0, 4.0, 5.0, 7.0, 9.4, 10.5, 11.7, 14.0)

_VENDORS: tuple[tuple[str, str], ...] = (
    (r"SIEMENS.*", "Siemens"),
    (r"GE|GE MEDICAL.*|GE HEALTHCARE.*|GENERAL ELECTRIC.*|GEMS.*", "GE"),
    (r"PHILIPS.*", "Philips"),
    (r"TOSHIBA.*", "Toshiba"),
    (r"CANON.*", "Canon"),
    (r"HITACHI.*", "Hitachi"),
    (r"UIH.*|UNITED IMAGING.*", "United Imaging"),
    (r"BRUKER.*", "Bruker"),
)


def _blank(value: Any) -> bool:
    """A sidecar field or site value with nothing in it (``unknown`` included: it names no scanner)."""
    return is_missing(value)


def normalise_key(value: Any) -> str | None:
    """The grouping key of a free-text value: upper case, ``_``/``-`` as spaces, spaces collapsed.

    >>> normalise_key("DISCOVERY_MR750") == normalise_key(" Discovery  MR750 "), normalise_key("cni")
    (True, 'CNI')
    >>> normalise_key("n/a") is None
    True
    """
    if _blank(value):
        return None
    text = re.sub(r"[_\-\s]+", " ", str(value)).strip().upper()
    return text or None


def _spelling(value: Any) -> str:
    return " ".join(str(value).replace("_", " ").split())


def normalise_manufacturer(value: Any) -> str | None:
    """One name per vendor (``SIEMENS``, ``Siemens Healthineers`` -> ``Siemens``; ``GE MEDICAL SYSTEMS`` -> ``GE``).

    Unknown vendors keep their own spelling (underscores as spaces).

    >>> normalise_manufacturer("SIEMENS"), normalise_manufacturer("GE MEDICAL SYSTEMS")
    ('Siemens', 'GE')
    >>> normalise_manufacturer("Philips Medical Systems"), normalise_manufacturer("Acme_MR")
    ('Philips', 'Acme MR')
    """
    key = normalise_key(value)
    if key is None:
        return None
    for pattern, name in _VENDORS:
        if re.fullmatch(pattern, key):
            return name
    return _spelling(value)


def normalise_field_strength(value: Any) -> float | None:
    """Field strength in tesla, snapped to the nominal value when within 5 %.

    >>> normalise_field_strength(2.89), normalise_field_strength("1.494"), normalise_field_strength(30000)
    (3.0, 1.5, 3.0)
    >>> normalise_field_strength("high") is None
    True
    """
    if _blank(value):
        return None
    try:
        x = float(str(value).strip().lower().removesuffix("t").strip())
    except ValueError:
        return None
    if not x == x or x <= 0 or x == float("inf"):
        return None
    if x > 100:  # gauss
        x /= 10000.0
    for nominal in NOMINAL_FIELDS:
        if abs(x - nominal) <= 0.05 * nominal:
            return nominal
    return round(x, 2)


def _field_key(name: str, value: Any) -> tuple[str, str] | None:
    """``(key, shown spelling)`` of one sidecar field, or ``None`` when it has no usable value."""
    if name == "Manufacturer":
        v = normalise_manufacturer(value)
        return None if v is None else (v.upper(), v)
    if name == "MagneticFieldStrength":
        f = normalise_field_strength(value)
        return None if f is None else (f"{f:g}", f"{f:g}T")
    key = normalise_key(value)
    return None if key is None else (key, _spelling(value))


@dataclass(frozen=True)
class ScannerIdentity:
    """Site or scanner of each participant, and how it was found.

    Attributes
    ----------
    source : str
        ``"column"`` (``--site``), ``"sidecars"``, ``"fallback_column"`` or
        ``"none"``.
    column : str or None
        The column read (column sources).
    fields : tuple of str
        Sidecar fields the labels are made of (sidecar source).
    by_subject : dict
        ``participant_id -> label``.
    by_image : dict
        ``image path -> label`` (sidecar source).
    missing : dict
        Scanner fields absent from some images: ``field -> images without it``.
    redundant : tuple of str
        Sidecar fields present but not needed (they tell apart nothing more).
    mixed_subjects : tuple of str
        Participants whose images come from more than one scanner.
    spellings : dict
        For labels that merged several spellings: ``label -> spellings``.
    images_without_metadata : int
        Images with no scanner field at all (sidecar source).
    """

    source: str
    column: str | None = None
    fields: tuple[str, ...] = ()
    by_subject: Mapping[str, str] = field(default_factory=dict)
    by_image: Mapping[str, str] = field(default_factory=dict)
    missing: Mapping[str, int] = field(default_factory=dict)
    redundant: tuple[str, ...] = ()
    mixed_subjects: tuple[str, ...] = ()
    spellings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    images_without_metadata: int = 0

    @property
    def labels(self) -> list[str]:
        return sorted(set(self.by_subject.values()))

    def describe(self) -> str:
        """A few words on where the identity came from (for messages)."""
        if self.source == "column":
            return f"column '{self.column}'"
        if self.source == "fallback_column":
            return f"column '{self.column}' (no --site given, no scanner fields in sidecars)"
        if self.source == "sidecars":
            return "sidecars (" + ", ".join(self.fields) + ")"
        return "nothing"

    def evidence(self) -> dict[str, Any]:
        """Plain data for findings: source, fields used, what was merged, what was missing."""
        out: dict[str, Any] = {"source": self.source, "described": self.describe()}
        if self.column:
            out["column"] = self.column
        if self.source == "sidecars":
            out["fields_used"] = list(self.fields)
            out["fields_redundant"] = list(self.redundant)
            out["fields_missing"] = dict(sorted(self.missing.items()))
            out["images_without_metadata"] = self.images_without_metadata
            out["participants_with_several_scanners"] = len(self.mixed_subjects)
            if self.mixed_subjects:
                out["several_scanners_examples"] = list(self.mixed_subjects[:10])
        if self.spellings:
            out["spellings_merged"] = {k: list(v) for k, v in sorted(self.spellings.items())}
        out["counts"] = dict(sorted(Counter(self.by_subject.values()).items()))
        return out


def _shown(spellings: Counter[str]) -> str:
    """The most frequent spelling (ties: sorted first)."""
    return sorted(spellings.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def from_values(values: Mapping[str, Any], *, column: str, source: str = "column") -> ScannerIdentity:
    """Identity from a participant -> value mapping (a site column), spellings merged by :func:`normalise_key`.

    >>> ident = from_values({"sub-1": "cni", "sub-2": "CNI", "sub-3": "n/a", "sub-4": "UCLA"}, column="site")
    >>> sorted(ident.by_subject.items()), ident.spellings
    ([('sub-1', 'CNI'), ('sub-2', 'CNI'), ('sub-4', 'UCLA')], {'CNI': ('CNI', 'cni')})
    """
    keyed: dict[str, str] = {}
    spell: dict[str, Counter[str]] = defaultdict(Counter)
    for pid, raw in values.items():
        key = normalise_key(raw)
        if key is None:
            continue
        keyed[pid] = key
        spell[key][" ".join(str(raw).split())] += 1
    shown = {k: _shown(c) for k, c in spell.items()}
    merged = {shown[k]: tuple(sorted(c)) for k, c in spell.items() if len(c) > 1}
    return ScannerIdentity(source, column, by_subject={p: shown[k] for p, k in sorted(keyed.items())},
                           spellings=merged)


def from_sidecars(index: DatasetIndex) -> ScannerIdentity:
    """Identity from the scanner fields of every image's (inherited) sidecar; see the module docstring."""
    images = [r for r in index.images() if r.subject]
    per_image: dict[str, dict[str, tuple[str, str]]] = {}
    subject_of: dict[str, str] = {}
    without = 0
    for row in images:
        meta = index.sidecar(row.path)
        fields = {}
        for name in SCANNER_FIELDS:
            kv = _field_key(name, meta.get(name))
            if kv is not None:
                fields[name] = kv
        if not fields:
            without += 1
            continue
        per_image[row.path] = fields
        subject_of[row.path] = normalise_participant(row.subject, validate=False)
    if not per_image:
        return ScannerIdentity("none", images_without_metadata=without)
    n = len(per_image)
    present = {f: sum(f in v for v in per_image.values()) for f in SCANNER_FIELDS}
    missing = {f: n - c for f, c in present.items() if 0 < n - c}
    considered = [f for f in SCANNER_FIELDS if present[f] * 2 >= n]
    used: list[str] = []
    redundant: list[str] = []
    groups: dict[str, tuple[str, ...]] = {p: () for p in per_image}
    for f in considered:
        if f not in MODEL_FIELDS:
            # does f tell apart images of one current group (among images that have it)?
            seen: dict[tuple[str, ...], set[str]] = defaultdict(set)
            for p, v in per_image.items():
                if f in v:
                    seen[groups[p]].add(v[f][0])
            if all(len(s) <= 1 for s in seen.values()):
                redundant.append(f)
                continue
        # fill a missing value from the group when the group agrees on one
        values_in_group: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for p, v in per_image.items():
            if f in v:
                values_in_group[groups[p]].add(v[f][0])
        for p, v in per_image.items():
            if f in v:
                key = v[f][0]
            else:
                options = values_in_group.get(groups[p], set())
                key = next(iter(options)) if len(options) == 1 else "?"
            groups[p] = (*groups[p], key)
        used.append(f)
    # shown spellings per (field, key)
    spell: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for v in per_image.values():
        for f, (key, shown) in v.items():
            spell[(f, key)][shown] += 1
    merged: dict[str, tuple[str, ...]] = {}

    def label_of(keys: tuple[str, ...]) -> str:
        parts: list[str] = []
        for f, key in zip(used, keys):
            text = "unknown" if key == "?" else _shown(spell[(f, key)])
            if key != "?" and len(spell[(f, key)]) > 1:
                merged[text] = tuple(sorted(spell[(f, key)]))
            if f == "InstitutionName":
                parts.append(("@ " if parts else "") + text)
            elif f == "StationName":
                parts.append(f"station {text}")
            elif f == "DeviceSerialNumber":
                parts.append(f"s/n {text}")
            elif f == "MagneticFieldStrength" and key == "?":
                parts.append("unknown field")
            else:
                parts.append(text)
        return " ".join(parts) or "unknown"

    by_image = {p: label_of(groups[p]) for p in sorted(per_image)}
    per_subject: dict[str, Counter[str]] = defaultdict(Counter)
    for p, lab in by_image.items():
        per_subject[subject_of[p]][lab] += 1
    by_subject = {s: _shown(c) for s, c in sorted(per_subject.items())}
    mixed = tuple(sorted(s for s, c in per_subject.items() if len(c) > 1))
    return ScannerIdentity("sidecars", None, tuple(used), by_subject, by_image, missing, tuple(redundant), mixed,
                           merged, without)


def participant_values(ctx: AuditContext, column: str, *, label: bool = False) -> dict[str, str]:
    """One value of ``column`` per participant: participants.tsv first, then the split files.

    From the split files the first non-missing value in file order is kept
    (longitudinal rows may repeat a participant). ``label=True`` also reads
    the split tables' label column when it is ``column``. Missing cells
    (:func:`audit.values.is_missing`, ``unknown`` kept) are left out; values are stripped strings.
    """
    out: dict[str, str] = {}
    index = ctx.index
    if index is not None and index.participants is not None and column in index.participants.columns:
        table = index.participants
        for pid, v in zip(table["participant_id"].tolist(), table[column].tolist()):
            if str(pid).strip() and not _blank_cell(v):
                out.setdefault(normalise_subject(pid), str(v).strip())
    if ctx.splits is not None:
        from_splits: dict[str, list[str]] = {}
        for t in ctx.splits.tables:
            pairs: Iterable[tuple[str, Any]]
            if label and t.label_column == column:
                pairs = ((p, lab) for p, _s, lab, _w in t.labels())
            else:
                pairs = t.column_values(column)
            for pid, v in pairs:
                if not _blank_cell(v) and pid not in out:
                    seen = from_splits.setdefault(pid, [])
                    value = str(v).strip()
                    if value not in seen:
                        seen.append(value)
        if label and any(len(v) > 1 for v in from_splits.values()):
            # A participant under several labels: published lists nest them (ClinicaDL's MCI.tsv is the union
            # of sMCI.tsv and pMCI.tsv). Keep the most specific one, the label fewest participants carry, so
            # that one split's pMCI is not another split's MCI (real conflicts are quality.label_conflict's).
            carriers: dict[str, int] = defaultdict(int)
            for values in from_splits.values():
                for value in values:
                    carriers[value] += 1
            out.update({pid: min(values, key=lambda v: (carriers[v], v)) for pid, values in from_splits.items()})
        else:
            out.update({pid: values[0] for pid, values in from_splits.items()})
    return out


def _blank_cell(v: Any) -> bool:
    """A participant cell with no value (``unknown`` is kept: it may be a label class)."""
    return is_missing(v, unknown=False)


def _has_column(ctx: AuditContext, column: str) -> bool:
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants.columns:
        return True
    return ctx.splits is not None and any(column in t.columns for t in ctx.splits.tables)


def scanner_identity(ctx: AuditContext) -> ScannerIdentity:
    """The site/scanner identity for this audit (:func:`identify`, computed once: ``ctx.scanner_identity``)."""
    return ctx.scanner_identity


def identify(ctx: AuditContext) -> ScannerIdentity:
    """Work out the site/scanner identity of an audit's participants (see the module documentation)."""
    ident: ScannerIdentity | None = None
    if ctx.options.site:
        ident = from_values(participant_values(ctx, ctx.options.site), column=ctx.options.site)
    elif ctx.index is not None:
        ident = from_sidecars(ctx.index)
        if ident.source == "none" or not ident.by_subject:
            ident = None
    if ident is None:
        for column in SITE_COLUMNS:
            if _has_column(ctx, column):
                ident = from_values(participant_values(ctx, column), column=column, source="fallback_column")
                break
    if ident is None:
        ident = ScannerIdentity("none")
    return ident


# --------------------------------------------------------------------------- protocol
def reference_images(index: DatasetIndex) -> tuple[str | None, dict[str, str]]:
    """The most common image suffix (``T1w``...) and, per participant, its first image of that suffix (path order)."""
    rows = [r for r in index.images() if r.subject and r.suffix]
    if not rows:
        return None, {}
    suffix = sorted(Counter(r.suffix for r in rows).items(), key=lambda kv: (-kv[1], str(kv[0])))[0][0]
    out: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r.path):
        if r.suffix == suffix:
            sub = normalise_participant(r.subject, validate=False)
            out.setdefault(sub, r.path)
    return suffix, out


def _protocol_value(name: str, value: Any) -> tuple[str | None, bool]:
    """A protocol field as a short string (4 significant digits), and whether a unit was converted."""
    if name == "MagneticFieldStrength":
        f = normalise_field_strength(value)
        return (None if f is None else f"{f:g}"), False
    if isinstance(value, bool) or _blank(value):
        return None, False
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, False
    if not x == x or x in (float("inf"), float("-inf")):
        return None, False
    converted = False
    if name in ("RepetitionTime", "InversionTime") and x > 100:  # milliseconds
        x, converted = x / 1000.0, True
    elif name == "EchoTime" and x > 1:  # milliseconds
        x, converted = x / 1000.0, True
    return f"{x:.4g}", converted


def protocol_values(index: DatasetIndex, zooms: Mapping[str, Any] | None = None
                    ) -> tuple[str | None, dict[str, dict[str, str]], dict[str, int]]:
    """Protocol fields per participant, from its reference image (see :func:`reference_images`).

    Returns ``(suffix, {field: {participant: value}}, {field: values converted from ms})``.
    ``zooms`` (image path -> voxel size in mm, from the image pass) adds a
    ``VoxelSize`` field (``"1x1x1.2"``, 2 decimals).
    """
    suffix, ref = reference_images(index)
    out: dict[str, dict[str, str]] = {f: {} for f in PROTOCOL_FIELDS}
    converted: Counter[str] = Counter()
    for sub, path in ref.items():
        meta = index.sidecar(path)
        for f in PROTOCOL_FIELDS:
            v, conv = _protocol_value(f, meta.get(f))
            if v is not None:
                out[f][sub] = v
                converted[f] += conv
    if zooms is not None:
        vox: dict[str, str] = {}
        for sub, path in ref.items():
            z = zooms.get(path)
            if z:
                vox[sub] = "x".join(f"{float(v):.2f}".rstrip("0").rstrip(".") for v in list(z)[:3])
        out["VoxelSize"] = vox
    return suffix, {k: v for k, v in out.items() if v}, {k: c for k, c in converted.items() if c}
