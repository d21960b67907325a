"""JUnit XML (``--junit FILE``): the audit as tests, for any CI.

One ``<testsuite name="bidsaudit">`` (inside ``<testsuites>``, the shape
pytest, Jenkins, GitLab, GitHub and Azure read) with one ``<testcase>`` per
check, ``classname="bidsaudit.<family>"`` and ``name="<check id>"``:

* a check with ``error`` findings **fails**: ``<failure type="error">``, its
  message the first finding's (and how many more), its text every error
  finding of the check, one per line, with the participants named;
* a check with only ``warning``/``info`` findings **passes**, the findings in
  ``<system-out>``. A CI that wants warnings to fail raises the check's
  severity to ``error`` in ``bidsaudit.toml`` (the one mechanism that also
  closes the gate and shows in the report); ``warnings_as_failures=True``
  turns them into ``<failure type="warning">`` in the XML alone;
* a check that was not run is **skipped**: ``<skipped message="reason"/>``;
* a check silenced by a waiver (or turned ``off``) with no finding left is
  **skipped** with the waiver's written reason; waivers that only narrowed a
  check's findings are noted in ``<system-out>``.

Every string comes from the result and may hold anything: characters XML
cannot carry (control characters, lone surrogates) are written as ``\\xNN``
/ ``\\uNNNN``; ElementTree escapes the rest.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from audit.checks.registry import all_checks

__all__ = ["junit_xml", "checks_of_result"]

_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_MESSAGE = 500
NAMED = 10


def _clean(value: Any) -> str:
    text = "" if value is None else str(value)

    def esc(m: re.Match[str]) -> str:
        code = ord(m.group(0))
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _ILLEGAL.sub(esc, text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def checks_of_result(result: Mapping[str, Any]) -> list[str]:
    """The check ids a result covers: those that ran, were skipped, found or were waived.

    Uses the result's ``checks`` list (ids that ran) when present; otherwise
    the registered checks in scope of the result's command (``validate``
    and ``readiness`` run the checks that need no split).
    """
    ids: set[str] = set()
    ran = result.get("checks")
    if isinstance(ran, list):
        ids |= {str(c) for c in ran}
    else:
        command = str(result.get("command") or "")
        families = {"validate": ("bids", "quality"), "readiness": ("bids", "quality", "confound")}.get(command)
        for spec in all_checks().values():
            if families is not None and ("splits" in spec.needs or spec.family not in families):
                continue
            ids.add(spec.id)
    ids |= {str(f.get("check")) for f in result.get("findings") or [] if f.get("check")}
    ids |= {str(s.get("check")) for s in result.get("skipped") or [] if s.get("check")}
    ids |= {str(w.get("check")) for w in result.get("waivers") or [] if w.get("check")}
    return sorted(ids)


def _finding_line(f: Mapping[str, Any]) -> str:
    line = f"[{f.get('severity', '')}] {f.get('message', '')}"
    subjects = list(f.get("subjects") or [])
    splits = list(f.get("splits") or [])
    if splits:
        line += f" (splits: {', '.join(map(str, splits))})"
    if subjects:
        more = f", ... ({len(subjects)} in all)" if len(subjects) > NAMED else ""
        line += f" (participants: {', '.join(map(str, subjects[:NAMED]))}{more})"
    return line


def _waiver_line(w: Mapping[str, Any]) -> str:
    who = ", ".join(map(str, w.get("subjects") or [])) or "whole check"
    until = f", until {w['expires']}" if w.get("expires") else ""
    status = w.get("status", "active")
    return f"waiver ({who}{until}; {status}): {w.get('reason', '')}"


def junit_xml(result: Mapping[str, Any], *, checks: Iterable[str] | None = None,
              warnings_as_failures: bool = False) -> str:
    """Render a JSON result (a dict) as JUnit XML text.

    ``checks`` overrides the check ids to list (default:
    :func:`checks_of_result`).
    """
    ids = sorted(set(checks) | set(checks_of_result(result))) if checks is not None else checks_of_result(result)
    by_check: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for f in result.get("findings") or []:
        by_check[str(f.get("check"))].append(f)
    skipped = {str(s.get("check")): str(s.get("reason", "")) for s in result.get("skipped") or []}
    waivers: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for w in result.get("waivers") or []:
        waivers[str(w.get("check"))].append(w)

    suite = ET.Element("testsuite", name="bidsaudit")
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(result):
        ET.SubElement(props, "property", name=name, value=_clean(value))
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    for check in ids:
        counts["tests"] += 1
        family = check.split(".", 1)[0]
        case = ET.SubElement(suite, "testcase", classname=_clean(f"bidsaudit.{family}"), name=_clean(check),
                             time="0")
        found = by_check.get(check, [])
        errors = [f for f in found if f.get("severity") == "error"]
        warnings = [f for f in found if f.get("severity") == "warning"]
        out_lines = [_finding_line(f) for f in found if f not in errors]
        mine = waivers.get(check, [])
        out_lines += [_waiver_line(w) for w in mine]
        whole = [w for w in mine if w.get("status", "active") == "active" and not w.get("subjects")]
        failing = errors or (warnings if warnings_as_failures else [])
        if failing:
            counts["failures"] += 1
            kind = "error" if errors else "warning"
            head = str(failing[0].get("message", ""))
            more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
            failure = ET.SubElement(case, "failure", message=_clean(_short(head) + more), type=kind)
            failure.text = _clean("\n".join(_finding_line(f) for f in failing))
            if kind == "warning":
                out_lines = [ln for ln in out_lines if not ln.startswith("[warning]")]
        elif whole and not found:
            counts["skipped"] += 1
            w = whole[0]
            until = f" (until {w['expires']})" if w.get("expires") else ""
            ET.SubElement(case, "skipped", message=_clean(_short(f"waived: {w.get('reason', '')}{until}")))
        elif check in skipped and not found:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_clean(_short(skipped[check] or "not run")))
        if out_lines:
            ET.SubElement(case, "system-out").text = _clean("\n".join(out_lines))
    time = _total_time(result)
    for key in ("tests", "failures", "skipped"):
        suite.set(key, str(counts[key]))
    suite.set("errors", "0")
    suite.set("time", time)
    root = ET.Element("testsuites", name="bidsaudit", tests=str(counts["tests"]),
                      failures=str(counts["failures"]), errors="0", skipped=str(counts["skipped"]), time=time)
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _total_time(result: Mapping[str, Any]) -> str:
    timings = (result.get("reproduce") or {}).get("timings") or {}
    value = timings.get("total_s") if isinstance(timings, Mapping) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0 \
            and value != float("inf"):
        return f"{float(value):.3f}"
    return "0"


def _properties(result: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("status", result.get("status", ""))]
    tool = result.get("tool") or {}
    if tool.get("version"):
        out.append(("bidsaudit.version", tool["version"]))
    dataset = result.get("dataset") or {}
    if dataset.get("fingerprint"):
        out.append(("dataset.fingerprint", dataset["fingerprint"]))
    splits = result.get("splits") or {}
    if splits.get("fingerprint"):
        out.append(("splits.fingerprint", splits["fingerprint"]))
    readiness = result.get("readiness") or {}
    if isinstance(readiness, Mapping) and readiness.get("level"):
        out.append(("readiness.level", readiness["level"]))
        out.append(("readiness.score", readiness.get("score", "")))
    config = result.get("config") or {}
    if isinstance(config, Mapping) and config.get("fingerprint"):
        out.append(("config.fingerprint", config["fingerprint"]))
    return out
