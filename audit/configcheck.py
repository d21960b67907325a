"""Configuration checking: a parsed ``bidsaudit.toml`` table, key by key, with the line it was written on.

:func:`check_tables` validates the tables of a configuration (``severity``,
``thresholds``, ``columns``, ``waivers``, ``certificate``) against the valid names it is given
and returns plain data; :mod:`audit.config` builds the
:class:`~audit.config.AuditConfig` from it. Every problem is an
:class:`~audit.errors.InputError` naming the file, the line, the key path
(``waivers[2].reason``) and, for a misspelling, the nearest valid name.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover  (Python 3.10)
    import tomli as tomllib  # type: ignore[no-redef]

from audit.catalogue import RENAMED_THRESHOLDS
from audit.errors import InputError, did_you_mean
from audit.findings import normalise_subject
from audit.fsutil import read_utf8

__all__ = [
    "CERTIFICATE_KEYS",
    "CheckedTables",
    "COLUMN_KEYS",
    "LIMITED_PASS",
    "SEVERITY_LEVELS",
    "SEVERITY_TABLE_KEYS",
    "TOP_KEYS",
    "WAIVER_KEYS",
    "check_tables",
    "loads_toml",
    "number_ok",
    "read_toml",
]

SEVERITY_LEVELS = ("error", "warning", "info", "off")
TOP_KEYS = ("severity", "thresholds", "columns", "waivers", "certificate")
CERTIFICATE_KEYS = ("limited_pass",)
#: ``[certificate] limited_pass``: which passes that did not check everything (see audit.coverage) get a certificate
LIMITED_PASS = ("with-images", "allow", "refuse")
COLUMN_KEYS = ("label", "site", "group")
WAIVER_KEYS = ("check", "subjects", "reason", "expires")
SEVERITY_TABLE_KEYS = ("level", "reason", "expires")
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


@dataclass(frozen=True)
class CheckedTables:
    """A configuration's tables once checked: plain data, waivers as dicts of :class:`~audit.config.Waiver` fields."""

    severity: dict[str, str]
    thresholds: dict[str, dict[str, Any]]
    columns: dict[str, str]
    waivers: list[dict[str, Any]]
    certificate: dict[str, str] = field(default_factory=dict)


def check_tables(data: Any, source: str | Path = "bidsaudit.toml", *, prefix: str = "", text: str | None = None,
                 ids: frozenset[str], thresholds: Mapping[str, Mapping[str, Any]]) -> CheckedTables:
    """Validate parsed TOML data (the table itself, ``[tool.bidsaudit]`` already selected).

    ``ids`` are the check ids a configuration may name, ``thresholds`` the
    configurable thresholds with their defaults (per check id or family table).
    """
    where = _Where(source, prefix, text)
    if not isinstance(data, Mapping):
        raise where.error((), "not a table", expected="a table of severity, thresholds, columns, waivers, certificate")
    for key in data:
        if key not in TOP_KEYS:
            line = where.header(key) or where.token(key)
            raise where.error((key,), f"unknown key '{key}'{did_you_mean(key, TOP_KEYS)}", line=line,
                              expected="one of " + ", ".join(TOP_KEYS))
    severity, off_waivers = _severity(data.get("severity", {}), where, ids)
    checked = _thresholds(data.get("thresholds", {}), where, ids, thresholds)
    columns = _columns(data.get("columns", {}), where)
    waivers = _waivers(data.get("waivers", []), where, ids)
    certificate = _certificate(data.get("certificate", {}), where)
    return CheckedTables(severity=severity, thresholds=checked, columns=columns, waivers=off_waivers + waivers,
                         certificate=certificate)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML file and its text (an unreadable or malformed file is an InputError)."""
    text = read_utf8(path, expected="a TOML file in UTF-8")
    return loads_toml(text, path), text


def loads_toml(text: str, source: str | Path) -> dict[str, Any]:
    """Parse TOML text; a syntax error is an InputError with its line and column."""
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


def _check_id(value: Any, parts: Sequence[str | int], where: _Where, ids: frozenset[str], *,
              line: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(parts, "not a check id", line=line, expected="a check id such as 'shift.covariate'",
                          got=_show(value))
    value = value.strip()
    if value not in ids:
        line = line or where.token(value)
        raise where.error(parts, f"unknown check id '{value}'{did_you_mean(value, ids)}", line=line,
                          expected="a check id listed in the contract (e.g. 'leakage.subject_overlap')")
    return value


def _severity(table: Any, where: _Where, ids: frozenset[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    if not isinstance(table, Mapping):
        raise where.error(("severity",), "not a table", line=where.token("severity"),
                          expected='a table of check id = severity, e.g. "shift.covariate" = "error"',
                          got=_show(table))
    out: dict[str, str] = {}
    waivers: list[dict[str, Any]] = []
    for key, value in table.items():
        parts: tuple[str | int, ...] = ("severity", key)
        line = where.token(key, after=(where.header("severity") or 1) - 1)
        check = _check_id(key, parts, where, ids, line=line)
        reason: str | None = None
        expires: dt.date | None = None
        if isinstance(value, Mapping):
            for k in value:
                if k not in SEVERITY_TABLE_KEYS:
                    raise where.error((*parts, k), f"unknown key '{k}'{did_you_mean(k, SEVERITY_TABLE_KEYS)}", line=line,
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
            hint = did_you_mean(level, SEVERITY_LEVELS) if isinstance(level, str) else ""
            raise where.error(parts, f"unknown severity{hint}", line=line,
                              expected="one of " + ", ".join(SEVERITY_LEVELS), got=_show(level))
        level = level.strip().lower()
        if level == "off":
            if reason is None:
                raise where.error(parts, "turning a check off needs a written reason", line=line,
                                  expected=f'{json.dumps(check)} = {{ level = "off", reason = "why" }} '
                                  "(or a [[waivers]] entry)")
            waivers.append(dict(check=check, subjects=None, reason=reason, expires=expires,
                                origin=where.path("severity", check)))
        elif expires is not None:
            raise where.error((*parts[:2], "expires"), "only a check turned off can expire", line=line,
                              expected='level = "off" with a reason, or a [[waivers]] entry')
        out[check] = level
    return out, waivers


def number_ok(default: Any, value: Any) -> bool:
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        return value.is_integer()
    return math.isfinite(float(value))


def _thresholds(table: Any, where: _Where, ids: frozenset[str],
                known: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    if not isinstance(table, Mapping):
        raise where.error(("thresholds",), "not a table", line=where.token("thresholds"),
                          expected='tables such as [thresholds."shift.covariate"]', got=_show(table))
    out: dict[str, dict[str, Any]] = {}
    for key, values in table.items():
        parts: tuple[str | int, ...] = ("thresholds", key)
        line = where.token(key, after=(where.header("thresholds") or 1) - 1)
        if key not in known:
            if key in ids:
                raise where.error(parts, f"check '{key}' has no configurable thresholds", line=line,
                                  expected="one of " + ", ".join(sorted(known)))
            raise where.error(parts, f"unknown check id '{key}'{did_you_mean(key, set(known) | ids)}", line=line,
                              expected="a check with thresholds: " + ", ".join(sorted(known)))
        if not isinstance(values, Mapping):
            raise where.error(parts, "not a table", line=line, expected="name = value pairs", got=_show(values))
        defaults = known[key]
        kept: dict[str, Any] = {}
        for name, value in values.items():
            vline = where.token(name, after=(line or 1) - 1)
            renamed = RENAMED_THRESHOLDS.get(key, {})
            given = name
            if name in renamed and name not in defaults:
                if renamed[name] is None:
                    raise where.error((*parts, name), f"threshold '{name}' no longer decides anything: findings are "
                                      "decided by effect size (docs/effects.md)", line=vline,
                                      expected="one of " + ", ".join(sorted(defaults)))
                name = str(renamed[name])  # an earlier release's name, read as the new one for one release
            if name not in defaults:
                raise where.error((*parts, name), f"unknown threshold '{name}'{did_you_mean(name, defaults)}", line=vline,
                                  expected="one of " + ", ".join(sorted(defaults)))
            default = defaults[name]
            if not number_ok(default, value):
                kind = "text" if isinstance(default, str) else ("true or false" if isinstance(default, bool)
                                                                else "a whole number" if isinstance(default, int)
                                                                else "a finite number")
                raise where.error((*parts, given), "wrong type", line=vline,
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
            raise where.error(("columns", key), f"unknown key '{key}'{did_you_mean(key, COLUMN_KEYS)}", line=line,
                              expected="one of " + ", ".join(COLUMN_KEYS))
        if not isinstance(value, str) or not value.strip():
            raise where.error(("columns", key), "not a column name", line=line,
                              expected="the name of a participants.tsv or split-file column", got=_show(value))
        out[key] = value.strip()
    return out


def _certificate(table: Any, where: _Where) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise where.error(("certificate",), "not a table", line=where.token("certificate"),
                          expected="limited_pass = " + " | ".join(repr(v) for v in LIMITED_PASS), got=_show(table))
    out: dict[str, str] = {}
    for key, value in table.items():
        line = where.token(key, after=(where.header("certificate") or 1) - 1)
        if key not in CERTIFICATE_KEYS:
            raise where.error(("certificate", key), f"unknown key '{key}'{did_you_mean(key, CERTIFICATE_KEYS)}",
                              line=line, expected="one of " + ", ".join(CERTIFICATE_KEYS))
        if value not in LIMITED_PASS:
            hint = did_you_mean(value, LIMITED_PASS) if isinstance(value, str) else ""
            raise where.error(("certificate", key), f"not a certificate policy{hint}", line=line,
                              expected=" or ".join(repr(v) for v in LIMITED_PASS), got=_show(value))
        out[key] = value
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


def _waivers(entries: Any, where: _Where, ids: frozenset[str]) -> list[dict[str, Any]]:
    if isinstance(entries, Mapping):
        entries = [entries]  # [waivers] written once instead of [[waivers]]
    if not isinstance(entries, list):
        raise where.error(("waivers",), "not a list of tables", line=where.token("waivers"),
                          expected="[[waivers]] entries with check, reason and optional subjects, expires",
                          got=_show(entries))
    out: list[dict[str, Any]] = []
    for number, entry in enumerate(entries, start=1):
        parts: tuple[str | int, ...] = ("waivers", number)
        head = where.waiver_line(number)
        if not isinstance(entry, Mapping):
            raise where.error(parts, "not a table", line=head, expected="check, reason, subjects, expires",
                              got=_show(entry))
        for key in entry:
            if key not in WAIVER_KEYS:
                raise where.error((*parts, key), f"unknown key '{key}'{did_you_mean(key, WAIVER_KEYS)}",
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
        out.append(dict(check=check, subjects=subjects, reason=reason, expires=expires,
                        origin=where.path("waivers", number)))
    return out
