"""Apply a configuration's severity overrides and waivers to an audit's findings.

:func:`apply_policy` is a pure function over findings and an
:class:`~audit.config.AuditConfig`:

* **Severity overrides** change the severity of every finding that carries
  its check's default severity (a finding a check deliberately gave another
  severity, e.g. an ``info`` side note of an ``error`` check, keeps it). The
  runner already stamps overrides through ``AuditOptions.config["severity"]``;
  applying them again here changes nothing, so the two agree.
* **Waivers** (including checks turned ``off``, which are whole-check waivers
  carrying their reason): a whole-check waiver removes every finding of the
  check; a subject waiver removes a finding whose participants are all
  waived, and narrows a finding some of whose participants are waived (the
  finding stays, with the remaining participants, the message notes how many
  were waived and ``evidence["waived_subjects"]`` names them). A finding that
  names no participant is never removed by a subject waiver.
* **Expiry**: a waiver holds through its ``expires`` day. An expired waiver
  changes nothing: it is listed with status ``expired`` and the findings it
  would have covered (``matched``) stay in place.

The second value returned lists every waiver of the configuration (whether
it matched anything or not), so the report can show every waiver in force::

    {"check": "leakage.subject_overlap", "subjects": ["sub-03"],  # [] = whole check
     "reason": "...", "expires": "2026-01-31" | None, "origin": "waivers[1]",
     "status": "active" | "expired", "matched": 2,
     "silenced": [<finding dicts removed>], "narrowed": [{"message", "subjects"}]}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from audit.checks.registry import all_checks
from audit.config import AuditConfig, Waiver
from audit.findings import SEVERITIES, Finding

__all__ = ["apply_policy", "certificate_refusal", "check_defaults"]

NAMED = 5  # waived participants named in a narrowed finding's message


def check_defaults() -> dict[str, str]:
    """Default severity of every registered check id."""
    return {spec.id: spec.default for spec in all_checks().values()}


def apply_policy(findings: Iterable[Finding], config: AuditConfig, today: dt.date | None = None, *,
                 defaults: Mapping[str, str] | None = None) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Return the findings kept (overrides applied, waivers honoured) and every waiver's record.

    ``today`` decides which waivers have expired (default: the local date).
    ``defaults`` maps check ids to default severities (default: the registry).
    """
    today = today or dt.date.today()
    if defaults is None:
        defaults = check_defaults() if config.severity else {}
    records = [_record(w, today) for w in config.waivers]
    active = [(w, rec) for w, rec in zip(config.waivers, records) if rec["status"] == "active"]
    expired = [(w, rec) for w, rec in zip(config.waivers, records) if rec["status"] == "expired"]

    kept: list[Finding] = []
    for f in findings:
        f = _override(f, config, defaults)
        for w, rec in expired:
            if _covers(w, f):
                rec["matched"] += 1
        whole = next(((w, rec) for w, rec in active if w.check == f.check and w.subjects is None), None)
        if whole is not None:
            whole[1]["matched"] += 1
            whole[1]["silenced"].append(f.to_dict())
            continue
        partial = [(w, rec) for w, rec in active
                   if w.check == f.check and w.subjects is not None and f.subjects
                   and set(w.subjects) & set(f.subjects)]
        if not partial:
            kept.append(f)
            continue
        waived = set().union(*(set(w.subjects or ()) for w, _ in partial)) & set(f.subjects)
        remaining = tuple(s for s in f.subjects if s not in waived)
        if not remaining:
            first = True
            for w, rec in partial:
                rec["matched"] += 1
                if first:  # the finding is listed once, under the first waiver that covers it
                    rec["silenced"].append(f.to_dict())
                    first = False
            continue
        narrowed = _narrow(f, remaining, sorted(waived))
        for w, rec in partial:
            mine = sorted(set(w.subjects or ()) & waived)
            rec["matched"] += 1
            rec["narrowed"].append({"message": f.message, "subjects": mine})
        kept.append(narrowed)
    return kept, records


def certificate_refusal(status: str, coverage: Mapping[str, Any] | None, config: AuditConfig) -> str | None:
    """Why a result gets no certificate (``None``: it may have one), by the ``[certificate]`` policy.

    A failing result never gets one. A complete pass always does. A limited
    pass (``coverage["complete"]`` false, see :mod:`audit.coverage`) gets one
    according to ``limited_pass``: ``with-images`` (default) when every
    image's content was checked, ``allow`` always, ``refuse`` never.

    >>> from audit.config import AuditConfig
    >>> certificate_refusal("pass", {"complete": False, "limits": ["no dataset"], "image_content": False},
    ...                     AuditConfig())[:40]
    'the pass is limited (no dataset) and not'
    """
    if status != "pass":
        return "the audit did not pass"
    if not coverage or coverage.get("complete", True):
        return None
    policy = config.limited_pass
    limits = "; ".join(str(x) for x in coverage.get("limits") or []) or "not everything was checked"
    how = ("set [certificate] limited_pass = \"allow\" in bidsaudit.toml to certify it anyway")
    if policy == "allow":
        return None
    if policy == "with-images" and coverage.get("image_content"):
        return None
    if policy == "refuse":
        return f"the pass is limited ({limits}) and the policy certifies only a complete audit ({how})"
    return f"the pass is limited ({limits}) and not every image's content was checked ({how})"


def _override(f: Finding, config: AuditConfig, defaults: Mapping[str, str]) -> Finding:
    level = config.severity.get(f.check)
    if level in SEVERITIES and level != f.severity and defaults.get(f.check) == f.severity:
        return f.stamped(f.check, level)  # type: ignore[arg-type]
    return f


def _covers(w: Waiver, f: Finding) -> bool:
    if w.check != f.check:
        return False
    return w.subjects is None or bool(f.subjects and set(w.subjects) & set(f.subjects))


def _narrow(f: Finding, remaining: tuple[str, ...], waived: list[str]) -> Finding:
    named = ", ".join(waived[:NAMED]) + (", ..." if len(waived) > NAMED else "")
    message = f"{f.message} [{len(waived)} waived: {named}]"
    evidence = dict(f.evidence)
    evidence["waived_subjects"] = waived
    return replace(f, subjects=remaining, message=message, evidence=MappingProxyType(evidence))


def _record(w: Waiver, today: dt.date) -> dict[str, Any]:
    return {
        "check": w.check,
        "subjects": list(w.subjects) if w.subjects is not None else [],
        "reason": w.reason,
        "expires": w.expires.isoformat() if w.expires is not None else None,
        "origin": w.origin,
        "status": "active" if w.active(today) else "expired",
        "matched": 0,
        "silenced": [],
        "narrowed": [],
    }
