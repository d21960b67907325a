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

A waiver holds through its ``expires`` day; after it, the waiver is listed as
expired and the findings it covered come back (see :mod:`audit.policy`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover  (Python 3.10)
    import tomli as tomllib  # type: ignore[no-redef]

from audit.errors import InputError
from audit.findings import normalise_subject

__all__ = [
    "AuditConfig",
    "Waiver",
    "CONFIG_NAMES",
    "CONTRACT_CHECK_IDS",
    "SEVERITY_LEVELS",
    "load_config",
    "parse_config",
    "config_from_mapping",
    "find_config",
    "known_check_ids",
    "known_thresholds",
]

CONFIG_NAMES = ("bidsaudit.toml", "pyproject.toml")
#: Check ids of the contract (``contract.md``, "Check ids"): valid in a
#: configuration even before a check of that id is registered.
CONTRACT_CHECK_IDS = frozenset({
    "bids.invalid", "bids.warning", "quality.corrupt_image", "quality.empty_image",
    "quality.inconsistent_geometry", "quality.missing_label", "quality.missing_metadata",
    "split.unknown_subject", "split.unassigned_subject", "split.identical_folds", "split.fold_integrity",
    "quality.label_conflict", "leakage.subject_overlap", "leakage.session_overlap", "leakage.duplicate_image",
    "leakage.near_duplicate_image", "leakage.group_overlap", "leakage.pretrain_overlap",
    "leakage.no_test_split", "confound.label_site", "shift.label", "shift.covariate", "shift.acquisition",
    "shift.image",
})
SEVERITY_LEVELS = ("error", "warning", "info", "off")
TOP_KEYS = ("severity", "thresholds", "columns", "waivers")
COLUMN_KEYS = ("label", "site", "group")
WAIVER_KEYS = ("check", "subjects", "reason", "expires")
SEVERITY_TABLE_KEYS = ("level", "reason", "expires")
_CHECK_ID = re.compile(r"^(bids|quality|split|leakage|confound|shift|expectations)\.[a-z_]+$")
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


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
        return cls(severity=_frozen(severity), thresholds=_frozen({k: _frozen(v) for k, v in thresholds.items()}),
                   columns=_frozen(data.get("columns") or {}), waivers=waivers,
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
    def empty(self) -> bool:
        return not (self.severity or self.thresholds or self.columns or self.waivers)


# --------------------------------------------------------------------------- registry of valid names
def known_check_ids() -> frozenset[str]:
    """Every check id a configuration may name: the registered ones and the contract's."""
    from audit.checks.registry import all_checks

    return frozenset({spec.id for spec in all_checks().values()}) | CONTRACT_CHECK_IDS


def known_thresholds() -> dict[str, dict[str, Any]]:
    """Configurable thresholds and their defaults, per check id or shared family table.

    Declared with the checks (``@check(..., thresholds=...)``, see
    :mod:`audit.checks.registry`), so a check that declares thresholds is
    configurable without touching this file.
    """
    from audit.checks.registry import all_thresholds

    return all_thresholds()


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
        for k, v in over.items():
            if k not in defaults:
                ignored.setdefault(key, []).append(f"{key}.{k}: unknown")
                continue
            d = defaults[k]
            if _number_ok(d, v):
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
            data, _ = _read_toml(pyproject)
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
    data, text = _read_toml(path)
    if prefix:
        tool = data.get("tool")
        if not isinstance(tool, Mapping) or "bidsaudit" not in tool:
            raise InputError(path, "no [tool.bidsaudit] table", field="--config",
                             expected="a pyproject.toml with a [tool.bidsaudit] table, or a bidsaudit.toml")
        data = tool["bidsaudit"]
    return config_from_mapping(data, path, prefix=prefix, text=text), str(path)


def parse_config(text: str, source: str | Path = "bidsaudit.toml", *, prefix: str = "") -> AuditConfig:
    """Parse and validate configuration text (``prefix`` ``"tool.bidsaudit"`` for a pyproject.toml)."""
    data = _loads(text, source)
    if prefix:
        for part in prefix.split("."):
            data = data.get(part, {}) if isinstance(data, Mapping) else {}
    return config_from_mapping(data, source, prefix=prefix, text=text)


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(path, "not UTF-8 text", line=line, expected="a TOML file in UTF-8") from None
    return _loads(text, path), text


def _loads(text: str, source: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        line = column = None
        m = _TOML_POS.search(message)
        if m:
            line, column = int(m.group(1)), int(m.group(2))
            message = message[: m.start()]
        elif _TOML_END.search(message):
            message = _TOML_END.sub("", message) + " (at the end of the file)"
            line = max(1, len(text.splitlines()))
        raise InputError(source, f"TOML syntax: {message}", line=line, column=column) from None


# --------------------------------------------------------------------------- validation
class _Where:
    """Names the file, key path and (best effort) line of a problem."""

    def __init__(self, source: str | Path, prefix: str, text: str | None) -> None:
        self.source = source
        self.prefix = prefix
        self.lines = text.splitlines() if text else []

    def path(self, *parts: str | int) -> str:
        out = self.prefix
        for part in parts:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part, ensure_ascii=False)
                out = f"{out}.{key}" if out else key
        return out

    def header(self, section: str) -> int | None:
        """Line of the first table header of ``section`` (``[section]``, ``[section.x]``, with the prefix)."""
        pat = re.compile(r"^\s*\[\[?\s*(tool\s*\.\s*bidsaudit\s*\.\s*)?" + re.escape(section) + r"\s*[\].]")
        for i, line in enumerate(self.lines, start=1):
            if pat.match(line):
                return i
        return None

    def token(self, key: str, after: int | None = 0) -> int | None:
        """First line after line ``after`` holding ``key`` as a whole key or value (comments skipped)."""
        pat = re.compile(r"(?<![A-Za-z0-9_\-])" + re.escape(key) + r"(?![A-Za-z0-9_\-]|\.[A-Za-z])")
        for i, line in enumerate(self.lines[after or 0:], start=(after or 0) + 1):
            if line.lstrip().startswith("#"):
                continue
            if pat.search(line):
                return i
        return None

    def waiver_line(self, number: int, key: str | None = None) -> int | None:
        """Line of the ``number``-th ``[[waivers]]`` header (or of ``key`` inside that entry)."""
        header = re.compile(r"^\s*\[\[\s*(tool\s*\.\s*bidsaudit\s*\.\s*)?waivers\s*\]\]")
        count = 0
        for i, line in enumerate(self.lines, start=1):
            if header.match(line):
                count += 1
                if count == number:
                    if key is None:
                        return i
                    for j in range(i, len(self.lines)):
                        text = self.lines[j]
                        if text.lstrip().startswith("["):
                            break
                        if re.match(rf"^\s*{re.escape(key)}\s*=", text):
                            return j + 1
                    return i
        return None

    def error(self, parts: Sequence[str | int], message: str, *, line: int | None = None,
              expected: str | None = None, got: str | None = None) -> InputError:
        return InputError(self.source, message, line=line, field=self.path(*parts), expected=expected, got=got)


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    choices = sorted(set(choices))
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if near:
        return near[0]
    # a check id written without its family ("covariate"), or with another family
    tail = word.split(".", 1)[-1]
    tails = {c.split(".", 1)[-1]: c for c in choices if "." in c}
    near = difflib.get_close_matches(tail, sorted(tails), n=1, cutoff=0.75)
    return tails[near[0]] if near else None


def _hint(word: str, choices: Iterable[str]) -> str:
    near = _nearest(word, choices)
    return f" (did you mean '{near}'?)" if near else ""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def config_from_mapping(data: Any, source: str | Path = "bidsaudit.toml", *, prefix: str = "",
                        text: str | None = None) -> AuditConfig:
    """Validate parsed TOML data (the table itself, ``[tool.bidsaudit]`` already selected)."""
    where = _Where(source, prefix, text)
    if not isinstance(data, Mapping):
        raise where.error((), "not a table", expected="a table of severity, thresholds, columns, waivers")
    for key in data:
        if key not in TOP_KEYS:
            line = where.header(key) or where.token(key)
            raise where.error((key,), f"unknown key '{key}'{_hint(key, TOP_KEYS)}", line=line,
                              expected="one of " + ", ".join(TOP_KEYS))
    ids = known_check_ids()
    severity, off_waivers = _severity(data.get("severity", {}), where, ids)
    thresholds = _thresholds(data.get("thresholds", {}), where, ids)
    columns = _columns(data.get("columns", {}), where)
    waivers = _waivers(data.get("waivers", []), where, ids)
    return AuditConfig(severity=_frozen(severity), thresholds=_frozen({k: _frozen(v) for k, v in thresholds.items()}),
                       columns=_frozen(columns), waivers=tuple(off_waivers) + tuple(waivers))


def _check_id(value: Any, parts: Sequence[str | int], where: _Where, ids: frozenset[str], *,
              line: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(parts, "not a check id", line=line, expected="a check id such as 'shift.covariate'",
                          got=_show(value))
    value = value.strip()
    if value not in ids:
        line = line or where.token(value)
        raise where.error(parts, f"unknown check id '{value}'{_hint(value, ids)}", line=line,
                          expected="a check id listed in the contract (e.g. 'leakage.subject_overlap')")
    return value


def _severity(table: Any, where: _Where, ids: frozenset[str]) -> tuple[dict[str, str], list[Waiver]]:
    if not isinstance(table, Mapping):
        raise where.error(("severity",), "not a table", line=where.token("severity"),
                          expected='a table of check id = severity, e.g. "shift.covariate" = "error"',
                          got=_show(table))
    out: dict[str, str] = {}
    waivers: list[Waiver] = []
    for key, value in table.items():
        parts: tuple[str | int, ...] = ("severity", key)
        line = where.token(key, after=(where.header("severity") or 1) - 1)
        check = _check_id(key, parts, where, ids, line=line)
        reason: str | None = None
        expires: dt.date | None = None
        if isinstance(value, Mapping):
            for k in value:
                if k not in SEVERITY_TABLE_KEYS:
                    raise where.error((*parts, k), f"unknown key '{k}'{_hint(k, SEVERITY_TABLE_KEYS)}", line=line,
                                      expected="level, reason, expires")
            if "level" not in value:
                raise where.error((*parts, "level"), "missing", line=line,
                                  expected="one of " + ", ".join(SEVERITY_LEVELS))
            level = value["level"]
            if "reason" in value:
                reason = _reason(value["reason"], (*parts, "reason"), where, line)
            if "expires" in value:
                expires = _date(value["expires"], (*parts, "expires"), where, line)
            parts = (*parts, "level")
        else:
            level = value
        if not isinstance(level, str) or level.strip().lower() not in SEVERITY_LEVELS:
            hint = _hint(level, SEVERITY_LEVELS) if isinstance(level, str) else ""
            raise where.error(parts, f"unknown severity{hint}", line=line,
                              expected="one of " + ", ".join(SEVERITY_LEVELS), got=_show(level))
        level = level.strip().lower()
        if level == "off":
            if reason is None:
                raise where.error(parts, "turning a check off needs a written reason", line=line,
                                  expected=f'{json.dumps(check)} = {{ level = "off", reason = "why" }} '
                                  "(or a [[waivers]] entry)")
            waivers.append(Waiver(check=check, subjects=None, reason=reason, expires=expires,
                                  origin=where.path("severity", check)))
        elif expires is not None:
            raise where.error((*parts[:2], "expires"), "only a check turned off can expire", line=line,
                              expected='level = "off" with a reason, or a [[waivers]] entry')
        out[check] = level
    return out, waivers


def _number_ok(default: Any, value: Any) -> bool:
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        return value.is_integer()
    return math.isfinite(float(value))


def _thresholds(table: Any, where: _Where, ids: frozenset[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(table, Mapping):
        raise where.error(("thresholds",), "not a table", line=where.token("thresholds"),
                          expected='tables such as [thresholds."shift.covariate"]', got=_show(table))
    known = known_thresholds()
    out: dict[str, dict[str, Any]] = {}
    for key, values in table.items():
        parts: tuple[str | int, ...] = ("thresholds", key)
        line = where.token(key, after=(where.header("thresholds") or 1) - 1)
        if key not in known:
            if key in ids:
                raise where.error(parts, f"check '{key}' has no configurable thresholds", line=line,
                                  expected="one of " + ", ".join(sorted(known)))
            raise where.error(parts, f"unknown check id '{key}'{_hint(key, set(known) | ids)}", line=line,
                              expected="a check with thresholds: " + ", ".join(sorted(known)))
        if not isinstance(values, Mapping):
            raise where.error(parts, "not a table", line=line, expected="name = value pairs", got=_show(values))
        defaults = known[key]
        kept: dict[str, Any] = {}
        for name, value in values.items():
            vline = where.token(name, after=(line or 1) - 1)
            if name not in defaults:
                raise where.error((*parts, name), f"unknown threshold '{name}'{_hint(name, defaults)}", line=vline,
                                  expected="one of " + ", ".join(sorted(defaults)))
            default = defaults[name]
            if not _number_ok(default, value):
                kind = "text" if isinstance(default, str) else ("true or false" if isinstance(default, bool)
                                                                else "a whole number" if isinstance(default, int)
                                                                else "a finite number")
                raise where.error((*parts, name), "wrong type", line=vline,
                                  expected=f"{kind} (default {_show(default)})", got=_show(value))
            kept[name] = value
        out[key] = kept
    return out


def _columns(table: Any, where: _Where) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise where.error(("columns",), "not a table", line=where.token("columns"),
                          expected="label, site, group = column names", got=_show(table))
    out: dict[str, str] = {}
    for key, value in table.items():
        line = where.token(key, after=(where.header("columns") or 1) - 1)
        if key not in COLUMN_KEYS:
            raise where.error(("columns", key), f"unknown key '{key}'{_hint(key, COLUMN_KEYS)}", line=line,
                              expected="one of " + ", ".join(COLUMN_KEYS))
        if not isinstance(value, str) or not value.strip():
            raise where.error(("columns", key), "not a column name", line=line,
                              expected="the name of a participants.tsv or split-file column", got=_show(value))
        out[key] = value.strip()
    return out


def _reason(value: Any, parts: Sequence[str | int], where: _Where, line: int | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(parts, "a written reason is mandatory", line=line,
                          expected="a sentence saying why (the report shows it)", got=_show(value))
    return " ".join(value.split())


def _date(value: Any, parts: Sequence[str | int], where: _Where, line: int | None) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise where.error(parts, "not a date", line=line, expected="a date such as 2026-01-31", got=_show(value))


def _waivers(entries: Any, where: _Where, ids: frozenset[str]) -> list[Waiver]:
    if isinstance(entries, Mapping):
        entries = [entries]  # [waivers] written once instead of [[waivers]]
    if not isinstance(entries, list):
        raise where.error(("waivers",), "not a list of tables", line=where.token("waivers"),
                          expected="[[waivers]] entries with check, reason and optional subjects, expires",
                          got=_show(entries))
    out: list[Waiver] = []
    for number, entry in enumerate(entries, start=1):
        parts: tuple[str | int, ...] = ("waivers", number)
        head = where.waiver_line(number)
        if not isinstance(entry, Mapping):
            raise where.error(parts, "not a table", line=head, expected="check, reason, subjects, expires",
                              got=_show(entry))
        for key in entry:
            if key not in WAIVER_KEYS:
                raise where.error((*parts, key), f"unknown key '{key}'{_hint(key, WAIVER_KEYS)}",
                                  line=where.waiver_line(number, key) or head,
                                  expected="one of " + ", ".join(WAIVER_KEYS))
        if "check" not in entry:
            raise where.error((*parts, "check"), "missing", line=head, expected="the check id to waive")
        check = _check_id(entry["check"], (*parts, "check"), where, ids, line=where.waiver_line(number, "check"))
        if "reason" not in entry:
            raise where.error((*parts, "reason"), "a written reason is mandatory", line=head,
                              expected="reason = \"why this is acceptable\" (the report shows it)")
        reason = _reason(entry["reason"], (*parts, "reason"), where, where.waiver_line(number, "reason"))
        subjects: tuple[str, ...] | None = None
        if "subjects" in entry:
            raw = entry["subjects"]
            sline = where.waiver_line(number, "subjects")
            if isinstance(raw, str):
                raw = [raw]
            if not isinstance(raw, list) or not raw:
                raise where.error((*parts, "subjects"), "not a list of participants", line=sline,
                                  expected='a non-empty list such as ["sub-03", "sub-17"] (leave it out to waive '
                                  "the whole check)", got=_show(raw))
            norm = []
            for i, s in enumerate(raw, start=1):
                if not isinstance(s, (str, int)) or isinstance(s, bool) or not str(s).strip() \
                        or not re.fullmatch(r"(sub-)?[A-Za-z0-9]+", str(s).strip()):
                    raise where.error((*parts, "subjects", i), "not a participant id", line=sline,
                                      expected='"sub-<label>" (letters and digits)', got=_show(s))
                norm.append(normalise_subject(str(s)))
            subjects = tuple(sorted(set(norm)))
        expires = _date(entry["expires"], (*parts, "expires"), where, where.waiver_line(number, "expires")) \
            if "expires" in entry else None
        out.append(Waiver(check=check, subjects=subjects, reason=reason, expires=expires,
                          origin=where.path("waivers", number)))
    return out
