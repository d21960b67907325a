"""Configuration: ``bidsaudit.toml``, or ``[tool.bidsaudit]`` in ``pyproject.toml``.

What a configuration may hold (every key optional; anything else is an error
that names the file, the key and the nearest valid key)::

    # bidsaudit.toml (or the same tables under [tool.bidsaudit] in pyproject.toml)

    [severity]                       # per-check severity: error, warning, info
    "shift.covariate" = "error"      # a CI raises a warning to an error
    "split.unassigned_subject" = "warning"
    # silencing a whole check needs a written reason (the report shows it):
    "shift.image" = { level = "off", reason = "images are defaced differently per site", expires = 2026-06-30 }

    [thresholds."shift.covariate"]   # the check's own thresholds (names listed in the error when wrong)
    smd = 0.3
    [thresholds.shift]               # thresholds shared by every shift.* check
    fdr = 0.1

    [columns]                        # dataset columns (a command-line option wins over these)
    label = "diagnosis"
    site = "site"
    group = "family_id"

    [certificate]                    # which passes get a certificate (see audit.coverage)
    limited_pass = "with-images"     # default: a limited pass is certified only when every image was read;
                                     # "allow": every pass; "refuse": only a complete pass

    [[waivers]]                      # silence a check, or only some participants of it
    check = "leakage.subject_overlap"
    subjects = ["sub-03", "17"]      # optional: without it the whole check is waived
    reason = "sub-03 and sub-17 are phantom scans, excluded at training time"   # mandatory
    expires = 2026-01-31             # optional: the waiver holds through this day, then lapses

Where it is looked for (the first file found wins; files are never merged):

1. ``--config FILE`` when given (a file named ``pyproject.toml`` is read for
   its ``[tool.bidsaudit]`` table, any other file as a whole);
2. in the dataset folder: ``bidsaudit.toml``, then ``pyproject.toml`` with a
   ``[tool.bidsaudit]`` table (a ``pyproject.toml`` without one is passed over);
3. from the split files' folder (the folder itself, or the folder holding a
   split file) upwards: the same two files in each folder, stopping after the
   first folder that holds ``.git`` (the repository root) or at the
   filesystem root.

Validation is strict: unknown keys, unknown check ids (the registered checks
and the contract's ids), unknown severities or threshold names, a waiver
without a written reason, a bad date: each is an :class:`~audit.errors.InputError`
that names the file, the line where it can be found, the key path (for
example ``waivers[2].reason``, counting ``[[waivers]]`` entries from 1) and,
for a misspelling, the nearest valid key or id.

:func:`load_options` is what every front end (the CLI, the service's workers)
calls: the configuration found (or given) applied to the command's options.
It prints nothing; what a user should be told comes back as notes.

A waiver holds through its ``expires`` day; after it, the waiver is listed as
expired and the findings it covered come back (see :mod:`audit.policy`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from audit.catalogue import CHECK_IDS, CONTRACT_CHECK_IDS, RENAMED_THRESHOLDS, THRESHOLDS
from audit.configcheck import (
    LIMITED_PASS,
    SEVERITY_LEVELS,
    check_tables,
    loads_toml,
    number_ok,
    read_toml,
)
from audit.errors import InputError

__all__ = [
    "AuditConfig",
    "AuditOptions",
    "Waiver",
    "CONFIG_NAMES",
    "CONTRACT_CHECK_IDS",
    "SEVERITY_LEVELS",
    "load_config",
    "load_options",
    "parse_config",
    "config_from_mapping",
    "find_config",
    "known_check_ids",
    "known_thresholds",
]

CONFIG_NAMES = ("bidsaudit.toml", "pyproject.toml")


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Waiver:
    """A check, or some participants of a check, silenced with a written reason.

    ``subjects`` is ``None`` for the whole check, else ``sub-`` prefixed ids.
    ``expires`` is the last day the waiver holds (``None``: no end).
    ``origin`` says where it was written (``waivers[2]``, or
    ``severity."shift.image"`` for a check turned ``off``).
    """

    check: str
    subjects: tuple[str, ...] | None
    reason: str
    expires: dt.date | None = None
    origin: str = ""

    def active(self, today: dt.date) -> bool:
        """Whether the waiver holds on ``today`` (through its expiry day)."""
        return self.expires is None or today <= self.expires

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subjects": None if self.subjects is None else list(self.subjects),
            "reason": self.reason,
            "expires": None if self.expires is None else self.expires.isoformat(),
            "origin": self.origin,
        }


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class AuditConfig:
    """A validated configuration (immutable; empty means every default).

    ``severity`` maps check ids to ``error``/``warning``/``info``/``off``;
    every ``off`` check also has a whole-check :class:`Waiver` (carrying its
    reason) in ``waivers``. ``thresholds`` maps a check id (or a family's
    shared table, e.g. ``shift``) to ``{name: value}``. ``columns`` holds
    ``label``/``site``/``group`` defaults for the command-line options.
    """

    severity: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    thresholds: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _frozen({}))
    columns: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    waivers: tuple[Waiver, ...] = ()
    #: ``[certificate]``: ``limited_pass`` (one of :data:`~audit.configcheck.LIMITED_PASS`; absent: the default).
    certificate: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    #: The file it was read from (not part of the fingerprint).
    source: str | None = field(default=None, compare=False)
    #: Threshold overrides left out of a hand-written mapping (:meth:`from_options_dict`), each with why,
    #: per threshold table (``thresholds`` itself when it was not a table).
    ignored: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _frozen({}), compare=False)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def canonical(self) -> dict[str, Any]:
        """Plain, sorted data: what :meth:`fingerprint` hashes."""
        return {
            "severity": dict(sorted(self.severity.items())),
            "thresholds": {k: dict(sorted(v.items())) for k, v in sorted(self.thresholds.items())},
            "columns": dict(sorted(self.columns.items())),
            "waivers": [w.to_dict() for w in self.waivers],
            # only when set: a configuration without it keeps the fingerprint it had
            **({"certificate": dict(sorted(self.certificate.items()))} if self.certificate else {}),
        }

    def fingerprint(self) -> str:
        """``sha256:`` of the canonical JSON (the certificate binds to it)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def as_options_dict(self) -> dict[str, Any]:
        """The dict for :attr:`audit.context.AuditOptions.config`.

        ``severity`` holds only real severities (the runner stamps findings
        with them); checks turned ``off`` are listed under ``off`` and
        silenced by :func:`audit.policy.apply_policy` through their waiver.
        """
        return {
            "severity": {k: v for k, v in sorted(self.severity.items()) if v != "off"},
            "off": sorted(k for k, v in self.severity.items() if v == "off"),
            "thresholds": {k: dict(v) for k, v in sorted(self.thresholds.items())},
            "columns": dict(sorted(self.columns.items())),
            "waivers": [w.to_dict() for w in self.waivers],
            **({"certificate": dict(sorted(self.certificate.items()))} if self.certificate else {}),
            "fingerprint": self.fingerprint(),
        }

    @classmethod
    def from_options_dict(cls, data: Mapping[str, Any] | None) -> AuditConfig:
        """A configuration from :meth:`as_options_dict` output or a hand-written ``{"thresholds": ...}`` mapping.

        ``{}`` gives the empty configuration. Severities and waivers are
        trusted (they come from a configuration validated when read);
        thresholds are checked once, here, against the declared ones: an
        unknown name or a value of the wrong type is left out and listed in
        :attr:`ignored` (the checks' evidence shows it).
        """
        data = data or {}
        severity = dict(data.get("severity") or {})
        severity.update({k: "off" for k in data.get("off") or ()})
        waivers = tuple(
            Waiver(check=str(w["check"]),
                   subjects=None if w.get("subjects") is None else tuple(w["subjects"]),
                   reason=str(w["reason"]),
                   expires=None if not w.get("expires") else dt.date.fromisoformat(str(w["expires"])),
                   origin=str(w.get("origin", "")))
            for w in data.get("waivers") or ())
        thresholds, ignored = _lenient_thresholds(data.get("thresholds") or {})
        source = data.get("source")
        certificate = {k: str(v) for k, v in dict(data.get("certificate") or {}).items()
                       if k == "limited_pass" and v in LIMITED_PASS}
        return cls(severity=_frozen(severity), thresholds=_frozen({k: _frozen(v) for k, v in thresholds.items()}),
                   columns=_frozen(data.get("columns") or {}), waivers=waivers, certificate=_frozen(certificate),
                   source=None if source is None else str(source),
                   ignored=_frozen({k: tuple(v) for k, v in ignored.items()}))

    def ignored_overrides(self, *keys: str) -> list[str]:
        """The overrides of the threshold tables ``keys`` that were left out (see :attr:`ignored`)."""
        return [m for k in ("thresholds", *keys) for m in self.ignored.get(k, ())]

    def severity_overrides(self) -> dict[str, str]:
        """Configured severities the runner stamps (checks turned ``off`` are silenced by their waiver)."""
        return {k: v for k, v in sorted(self.severity.items()) if v != "off"}

    def with_source(self, source: str | Path | None) -> AuditConfig:
        """The same configuration, saying which file it was read from."""
        return replace(self, source=None if source is None else str(source))

    def column(self, name: str, given: str | None = None) -> str | None:
        """The column for ``label``/``site``/``group``: the option when given, else the configured one."""
        return given if given else self.columns.get(name)

    @property
    def limited_pass(self) -> str:
        """Which limited passes get a certificate: ``with-images`` (default), ``allow`` or ``refuse``."""
        return self.certificate.get("limited_pass", LIMITED_PASS[0])

    @property
    def empty(self) -> bool:
        return not (self.severity or self.thresholds or self.columns or self.waivers or self.certificate)


# --------------------------------------------------------------------------- registry of valid names
def known_check_ids() -> frozenset[str]:
    """Every check id a configuration may name: the registered ones and the contract's."""
    return CHECK_IDS


def known_thresholds() -> dict[str, dict[str, Any]]:
    """Configurable thresholds and their defaults, per check id or shared family table.

    Declared with the checks (``@check(..., thresholds=...)``, see
    :mod:`audit.checks.registry`), so a check that declares thresholds is
    configurable without touching this file.
    """
    return {k: dict(v) for k, v in sorted(THRESHOLDS.items())}


def _lenient_thresholds(table: Any) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The overrides of ``table`` that name a declared threshold with a value of its type; the others, why."""
    ignored: dict[str, list[str]] = {}
    if not isinstance(table, Mapping):
        return {}, {"thresholds": ["thresholds: not a table"]}
    known = known_thresholds()
    out: dict[str, dict[str, Any]] = {}
    for key, over in table.items():
        defaults = known.get(key)
        if defaults is None:
            ignored.setdefault(key, []).append(f"{key}: unknown")
            continue
        if not isinstance(over, Mapping):
            ignored.setdefault(key, []).append(f"{key}: not a table")
            continue
        kept: dict[str, Any] = {}
        renamed = RENAMED_THRESHOLDS.get(key, {})
        for k, v in over.items():
            if k in renamed and k not in defaults:
                if renamed[k] is None:
                    ignored.setdefault(key, []).append(f"{key}.{k}: no longer decides (decided by effect size)")
                    continue
                k = str(renamed[k])  # an earlier release's name, read as the new one for one release
            if k not in defaults:
                ignored.setdefault(key, []).append(f"{key}.{k}: unknown")
                continue
            d = defaults[k]
            if number_ok(d, v):
                kept[k] = v
            else:
                ignored.setdefault(key, []).append(
                    f"{key}.{k}: {v!r} is not a {'string' if isinstance(d, str) else 'number'}")
        out[key] = kept
    return out, ignored


# --------------------------------------------------------------------------- loading
def find_config(dataset: Path | str | None, splits: Path | str | None) -> tuple[Path, str] | None:
    """The configuration file that applies, and the table prefix within it (``""`` or ``"tool.bidsaudit"``).

    See the module documentation for the search order.
    """
    folders: list[Path] = []
    if dataset is not None:
        d = Path(dataset)
        if d.is_dir():
            folders.append(d)
    if splits is not None:
        s = Path(splits)
        start = s if s.is_dir() else s.parent
        try:
            start = start.resolve()
        except (OSError, RuntimeError):
            start = Path(start.absolute())
        for folder in (start, *start.parents):
            folders.append(folder)
            if (folder / ".git").exists():
                break
    seen: set[Path] = set()
    for folder in folders:
        key = Path(folder).absolute()
        if key in seen:
            continue
        seen.add(key)
        own = folder / "bidsaudit.toml"
        if own.is_file():
            return own, ""
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            data, _ = read_toml(pyproject)
            tool = data.get("tool")
            if isinstance(tool, Mapping) and "bidsaudit" in tool:
                return pyproject, "tool.bidsaudit"
    return None


def load_config(dataset: Path | str | None, splits: Path | str | None,
                explicit: Path | str | None = None) -> tuple[AuditConfig, str | None]:
    """Find, read and validate the configuration; return it and the file it came from.

    Returns an empty :class:`AuditConfig` and ``None`` when there is none.
    Raises :class:`~audit.errors.InputError` for anything malformed.
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.exists():
            raise InputError(path, "no such file", field="--config",
                             expected="a bidsaudit.toml or a pyproject.toml with a [tool.bidsaudit] table")
        if not path.is_file():
            raise InputError(path, "is not a file", field="--config",
                             expected="a bidsaudit.toml or a pyproject.toml with a [tool.bidsaudit] table")
        prefix = "tool.bidsaudit" if path.name == "pyproject.toml" else ""
    else:
        found = find_config(dataset, splits)
        if found is None:
            return AuditConfig(), None
        path, prefix = found
    data, text = read_toml(path)
    if prefix:
        tool = data.get("tool")
        if not isinstance(tool, Mapping) or "bidsaudit" not in tool:
            raise InputError(path, "no [tool.bidsaudit] table", field="--config",
                             expected="a pyproject.toml with a [tool.bidsaudit] table, or a bidsaudit.toml")
        data = tool["bidsaudit"]
    return config_from_mapping(data, path, prefix=prefix, text=text), str(path)


def parse_config(text: str, source: str | Path = "bidsaudit.toml", *, prefix: str = "") -> AuditConfig:
    """Parse and validate configuration text (``prefix`` ``"tool.bidsaudit"`` for a pyproject.toml)."""
    data = loads_toml(text, source)
    if prefix:
        for part in prefix.split("."):
            data = data.get(part, {}) if isinstance(data, Mapping) else {}
    return config_from_mapping(data, source, prefix=prefix, text=text)


def config_from_mapping(data: Any, source: str | Path = "bidsaudit.toml", *, prefix: str = "",
                        text: str | None = None) -> AuditConfig:
    """Validate parsed TOML data (the table itself, ``[tool.bidsaudit]`` already selected)."""
    checked = check_tables(data, source, prefix=prefix, text=text, ids=known_check_ids(),
                           thresholds=known_thresholds())
    return AuditConfig(severity=_frozen(checked.severity),
                       thresholds=_frozen({k: _frozen(v) for k, v in checked.thresholds.items()}),
                       columns=_frozen(checked.columns), waivers=tuple(Waiver(**w) for w in checked.waivers),
                       certificate=_frozen(checked.certificate))


@dataclass(frozen=True)
class AuditOptions:
    """What the user asked for (CLI options, after validation).

    ``config`` is the validated :class:`~audit.config.AuditConfig`; a plain
    mapping (the :meth:`~audit.config.AuditConfig.as_options_dict` form, or a
    hand-written ``{"thresholds": ...}``) is turned into one here, once.
    """

    label: str | None = None
    site: str | None = None
    group: str | None = None
    pretrain: str | None = None
    id_pattern: str | None = None  # --id-pattern: participant ids from image paths
    path_column: str | None = None  # --path-column: the column (or datalist key) of image paths
    ignore_nifti_headers: bool = False
    validator_config: Path | None = None
    run_validator: bool = True
    check_images: bool = True
    workers: int | None = None  # None: all local cores
    scheduler: str | None = None  # dask.distributed address
    shard_size: int | None = None  # --shard-size: subjects per validator shard (0: one run; None: by size)
    validator_jobs: int | None = None  # --jobs: validator processes at once (None: all local cores)
    validator_memory_mib: int | None = None  # --validator-memory: heap limit of one shard's validator, MiB
    expectations: tuple[str, ...] = ()  # Great Expectations suite files (--expectations)
    config: AuditConfig = field(default_factory=AuditConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.config, AuditConfig):
            object.__setattr__(self, "config", AuditConfig.from_options_dict(self.config))


def load_options(dataset: Path | str | None, splits: Path | str | None, config_path: Path | str | None,
                 **kwargs: Any) -> tuple[AuditOptions, list[str]]:
    """AuditOptions with the configuration file found (or given) applied; options given win over the file.

    ``kwargs`` are :class:`~audit.context.AuditOptions` fields; ``label``,
    ``site`` and ``group`` given as ``None`` take the configured column.
    Returns the options and the notes to show the user (which configuration
    file was read); prints nothing.
    """
    config, source = load_config(dataset, splits, config_path)
    for name in ("label", "site", "group"):
        if name in kwargs:
            kwargs[name] = config.column(name, kwargs[name])
    notes = [f"Configuration: {source}"] if source else []
    return AuditOptions(config=config.with_source(source), **kwargs), notes
