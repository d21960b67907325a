"""SARIF 2.1.0 (``--sarif FILE``): findings as code-scanning results.

One run of one tool, ``bidsaudit``:

* ``tool.driver.rules``: every registered check id (and any other id a result
  names), with its one-line description, the check family as a tag and
  ``defaultConfiguration.level`` from its default severity (``error`` ->
  ``error``, ``warning`` -> ``warning``, ``info`` -> ``note``);
* ``results``: one per finding, ``level`` from the finding's own severity
  (so a severity raised in ``bidsaudit.toml`` shows), the message, and
  ``locations``: the first file the finding names (:mod:`audit.outputs.locations`:
  a split file and line, an image, ``participants.tsv``...), the other files
  in ``relatedLocations``. A finding that names no file is placed on the
  split files of its splits, else on ``participants.tsv``, because code
  scanning wants a location on every result;
* paths are relative to the *report root*, by default the working directory
  (in CI: the repository checkout, where ``actions/checkout`` puts it), and
  carry ``uriBaseId: "%SRCROOT%"``, whose absolute ``file://`` URI is in
  ``run.originalUriBaseIds``. A file outside the root gets an absolute
  ``file://`` URI instead;
* ``partialFingerprints["bidsauditFinding/v1"]``: a hash of what identifies
  the finding across runs (check, severity, fold, splits, the primary file,
  and discriminating evidence such as the validator code or the variable),
  not of its message or line, so a count that changes or a row that moves
  keeps the same alert;
* ``invocations``: the exit code, and the skipped checks as notifications.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from audit.checks.registry import all_checks
from audit.outputs.locations import Place, Resolver

__all__ = ["sarif_log", "sarif_json", "LEVELS", "SRCROOT"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
SRCROOT = "%SRCROOT%"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
FINGERPRINT = "bidsauditFinding/v1"
_DISCRIMINATING = ("code", "problem", "variable", "field", "kind", "column", "suffix")
MAX_RELATED = 10


def _rules(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    specs: dict[str, Any] = {}
    for spec in all_checks().values():
        specs.setdefault(spec.id, spec)
    ids = set(specs) | {str(f.get("check")) for f in result.get("findings") or [] if f.get("check")}
    rules = []
    for rid in sorted(ids):
        spec = specs.get(rid)
        title = spec.title if spec is not None else rid
        default = spec.default if spec is not None else "warning"
        rules.append({
            "id": rid,
            "name": "".join(part.capitalize() for part in rid.replace(".", "_").split("_")),
            "shortDescription": {"text": title},
            "fullDescription": {"text": title},
            "help": {"text": f"{rid}: {title}"},
            "defaultConfiguration": {"level": LEVELS.get(default, "warning")},
            "properties": {"tags": ["bidsaudit", rid.split(".", 1)[0]]},
        })
    return rules


def _uri(place: Place) -> dict[str, Any]:
    if place.inside:
        return {"uri": quote(place.path, safe="/"), "uriBaseId": SRCROOT}
    return {"uri": Path(place.absolute).as_uri()}


def _physical(place: Place) -> dict[str, Any]:
    out: dict[str, Any] = {"artifactLocation": _uri(place)}
    if place.line:
        out["region"] = {"startLine": place.line}
    return out


def _fingerprint(finding: Mapping[str, Any], primary: Place | None) -> str:
    ev = finding.get("evidence") or {}
    ident = {
        "check": finding.get("check"),
        "severity": finding.get("severity"),
        "fold": ev.get("fold") if isinstance(ev, Mapping) else None,
        "splits": sorted(str(s) for s in finding.get("splits") or []),
        "file": primary.path if primary is not None else None,
        **({k: ev.get(k) for k in _DISCRIMINATING if isinstance(ev, Mapping) and k in ev}),
    }
    if primary is None:
        ident["subjects"] = sorted(str(s) for s in finding.get("subjects") or [])
    text = json.dumps(ident, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _message(finding: Mapping[str, Any]) -> str:
    text = str(finding.get("message") or finding.get("check") or "finding")
    return " ".join(text.split()) or "finding"


def sarif_log(result: Mapping[str, Any], *, root: str | os.PathLike[str] | None = None,
              cwd: str | os.PathLike[str] | None = None, exit_code: int | None = None) -> dict[str, Any]:
    """The SARIF 2.1.0 log (a dict) of a JSON result (a dict).

    ``root`` is the report root (default: the working directory); split
    files are named in a result as they were given, so relative to the
    working directory of the run, where this is called (``cwd``: another one).
    """
    dataset = result.get("dataset") or {}
    resolver = Resolver(dataset.get("path") if isinstance(dataset, Mapping) else None, root, cwd)
    rules = _rules(result)
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    seen: dict[str, int] = {}
    for f in result.get("findings") or []:
        rid = str(f.get("check") or "")
        places = resolver.place(f, result)
        primary = places[0] if places else None
        fp = _fingerprint(f, primary)
        seen[fp] = seen.get(fp, 0) + 1
        if seen[fp] > 1:  # two findings alike in every identifying part: keep their alerts apart
            fp = f"{fp}:{seen[fp]}"
        item: dict[str, Any] = {
            "ruleId": rid,
            "ruleIndex": index[rid],
            "level": LEVELS.get(str(f.get("severity")), "warning"),
            "message": {"text": _message(f)},
            "partialFingerprints": {FINGERPRINT: fp},
            "properties": {
                "severity": f.get("severity"),
                "splits": [str(s) for s in f.get("splits") or []],
                "subjects": [str(s) for s in f.get("subjects") or []],
            },
        }
        if primary is not None:
            item["locations"] = [{"physicalLocation": _physical(primary)}]
        related = places[1:1 + MAX_RELATED]
        if related:
            item["relatedLocations"] = [{"id": i, "physicalLocation": _physical(p),
                                         **({"message": {"text": " ".join(p.note.split())}} if p.note else {})}
                                        for i, p in enumerate(related, 1)]
        if primary is not None and primary.note:
            item["locations"][0]["message"] = {"text": " ".join(primary.note.split())}
        results.append(item)
    status = str(result.get("status") or "")
    code = exit_code if exit_code is not None else (1 if status == "fail" else 0)
    invocation: dict[str, Any] = {"executionSuccessful": True, "exitCode": code}
    notes = [{"level": "note", "message": {"text": f"{s.get('check')}: skipped: {s.get('reason')}"},
              "descriptor": {"id": str(s.get("check"))}}
             for s in result.get("skipped") or [] if s.get("check")]
    if notes:
        invocation["toolExecutionNotifications"] = notes
    tool = result.get("tool") or {}
    driver: dict[str, Any] = {"name": "bidsaudit", "rules": rules}
    if tool.get("version"):
        driver["version"] = str(tool["version"])
        driver["semanticVersion"] = str(tool["version"])
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "originalUriBaseIds": {SRCROOT: {"uri": Path(resolver.root).as_uri().rstrip("/") + "/"}},
        "automationDetails": {"id": f"bidsaudit/{result.get('command') or 'audit'}/"},
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {k: v for k, v in _properties(result).items() if v is not None},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _properties(result: Mapping[str, Any]) -> dict[str, Any]:
    dataset = result.get("dataset") or {}
    splits = result.get("splits") or {}
    readiness = result.get("readiness") or {}
    return {
        "status": result.get("status"),
        "counts": result.get("counts"),
        "dataset.fingerprint": dataset.get("fingerprint") if isinstance(dataset, Mapping) else None,
        "splits.fingerprint": splits.get("fingerprint") if isinstance(splits, Mapping) else None,
        "readiness.level": readiness.get("level") if isinstance(readiness, Mapping) else None,
    }


def sarif_json(result: Mapping[str, Any], **kwargs: Any) -> str:
    """:func:`sarif_log` as JSON text."""
    return json.dumps(sarif_log(result, **kwargs), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
