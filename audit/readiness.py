"""Data readiness: a score (0-100) and a level on Lawrence's (2017) bands.

The rubric is data (:data:`RUBRIC`, defined in :mod:`audit.rubric` and
importable from here): fourteen items in three bands, read from C up, each
with its points, the checks whose findings move it, the rule
that decides its status and the advice that would raise it. The document
``docs/readiness.md`` embeds :func:`rubric_markdown` (a test keeps the two
the same).

Bands
    **C, accessibility**: the dataset can be loaded (index, participants
    table, valid formats, image content present).
    **B, faithfulness**: the data means what it claims (images intact,
    consistent geometry, scanner metadata, labels complete and consistent,
    no duplicated scans).
    **A, appropriateness for this task** (needs a label column): class
    balance, participants per class, label-site confounding, shift between
    splits, split integrity (leakage).

Status of an item
    From findings: an ``error`` finding of one of its checks makes it
    ``fail``, a ``warning`` makes it ``partial``; ``info`` findings do not
    move it. Some items also measure data directly (participants per class,
    missing labels, absent images); the item takes the worse of the two.
    An item whose inputs are missing (no dataset, no images, no label, no
    splits, its checks skipped) is ``not_assessed``: listed, but out of the
    score's denominator.

Score
    ``pass`` earns the item's points, ``partial`` half, ``fail`` none. A band
    with a failing item holds back the bands above it (Lawrence reads from C
    up): their items earn no points (``counted: false``) until it is fixed.
    score = 100 x points earned / points of the assessed items, rounded to
    one decimal.

Level
    The highest band reached, reading from C: a band is reached when it has
    at least one assessed item and none fails, and every band below it is
    reached (band A also needs a label column). The digit is 1 when every
    assessed item of that band passes, 2 when some are partial. ``C3``: a
    band C item fails (not accessible). ``unrated``: band C could not be
    assessed (no dataset given).

:func:`score_readiness` is a pure function over plain data;
:func:`readiness_for` gathers those data from an audit context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from audit.checks.registry import all_checks
from audit.rubric import (
    BAND_NAMES,
    BANDS,
    LEVELS,
    RUBRIC,
    RUBRIC_VERSION,
    STATUS_CREDIT,
    WORSE,
    Inputs,
    Item,
    clean_label,
    rubric_markdown,
)

__all__ = [
    "RUBRIC",
    "RUBRIC_VERSION",
    "LEVELS",
    "Item",
    "score_readiness",
    "readiness_for",
    "labels_for",
    "checks_in_reach",
    "rubric_markdown",
]

MAX_EVIDENCE = 3  # finding messages quoted per item

# --------------------------------------------------------------------------- scoring
def _finding_tuple(f: Any) -> tuple[str, str, str]:
    if isinstance(f, Mapping):
        return str(f.get("check", "")), str(f.get("severity", "")), str(f.get("message", ""))
    return str(f.check), str(f.severity), str(f.message)


def _unmet(item: Item, x: Inputs) -> str | None:
    for need in item.needs:
        if need == "dataset" and x.summary is None:
            return "no dataset given"
        if need == "images" and x.summary is not None and x.count("images") - x.count("images_absent") <= 0:
            return "no image content to read"
        if need == "label" and not x.label:
            return "no label column (--label) given or found"
        if need == "label" and x.labels is None and item.measure is not None and not x.ran_any(item.checks):
            return f"no values of '{x.label}' found"
        if need == "splits" and not x.splits_given:
            return "no splits given"
    return None


def _evaluate(item: Item, x: Inputs) -> dict[str, Any]:
    base = {"id": item.id, "band": item.band, "title": item.title, "max_points": item.points}
    reason = _unmet(item, x)
    measured = item.measure(x) if reason is None and item.measure is not None else None
    checks_ran = bool(item.checks) and x.ran_any(item.checks)
    if reason is None and measured is None and not checks_ran:
        if item.measure is not None and "label" in item.needs:
            reason = f"no values of '{x.label}' found"
        else:
            reason = x.skip_reason(item.checks) or "its checks did not run"
    if reason is None and measured is not None and measured[0] == "not_assessed":
        reason = measured[1]
    if reason is not None:
        return {**base, "status": "not_assessed", "points": 0.0, "counted": False, "evidence": reason,
                "findings": [], "advice": _not_assessed_advice(item, reason)}
    status, notes = "pass", []
    if measured is not None:
        status = measured[0]
        notes.append(measured[1])
    moved = [f for f in x.of(item.checks) if f[1] in ("error", "warning")] if checks_ran else []
    for check, severity, message in moved:
        status = max(status, "fail" if severity == "error" else "partial", key=WORSE.__getitem__)
    if moved:
        quoted = [f"{m} ({c}, {s})" for c, s, m in moved[:MAX_EVIDENCE]]
        more = len(moved) - len(quoted)
        notes.extend(quoted + ([f"and {more} more findings"] if more > 0 else []))
    elif checks_ran:
        # the same findings the report lists: notes (info) of these checks do not move the item, and are counted
        ran = [c for c in item.checks if x.ran_any([c])]
        infos = [f for f in x.of(item.checks) if f[1] == "info"]
        notes.append("no error or warning from " + ", ".join(ran)
                     + (f"; {len(infos)} note{'s' if len(infos) != 1 else ''} from "
                        + ", ".join(sorted({c for c, _, _ in infos})) + " (listed with the findings)" if infos else ""))
    for w in x.waivers:
        if w.get("check") in item.checks and w.get("status", "active") == "active" and w.get("matched"):
            who = ", ".join(map(str, w.get("subjects") or [])) or "the whole check"
            notes.append(f"{w['matched']} finding(s) of {w['check']} waived for {who}: {w.get('reason', '')}")
    return {**base, "status": status, "points": 0.0, "counted": True, "evidence": "; ".join(notes),
            "findings": sorted({c for c, _, _ in moved}), "advice": "" if status == "pass" else item.advice}


def _not_assessed_advice(item: Item, reason: str) -> str:
    if "label" in reason:
        return "Give the task's label column (--label COL)."
    if "splits" in reason:
        return "Audit the split files too (bidsaudit audit DATASET --splits SPLITS)."
    if "dataset" in reason:
        return "Give the dataset (not only the split files)."
    if "image" in reason:
        return "Make the image content available, and keep the image checks on."
    return ""


def score_readiness(findings: Iterable[Any], summary: Mapping[str, Any] | None = None, *,
                    label: str | None = None, labels: Mapping[str, Any] | None = None,
                    splits_given: bool = False, skipped: Iterable[Mapping[str, str]] = (),
                    ran: Iterable[str] | None = None, waivers: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Score data readiness from plain data.

    Parameters
    ----------
    findings : iterable of Finding or dict
        The audit's findings, after waivers and severity overrides.
    summary : mapping, optional
        :func:`audit.api.dataset_summary` (``subjects``, ``files``,
        ``images``, ``images_absent``, ``invalid_names``); ``None``
        without a dataset.
    label : str, optional
        The label column of the task (band A needs it).
    labels : mapping, optional
        ``participant -> label value`` (missing values as ``None``, ``""``
        or ``"n/a"``).
    splits_given : bool
        Whether split files were audited.
    skipped : iterable of dict
        The result's ``skipped`` list (``check``, ``reason``).
    ran : iterable of str, optional
        The check ids that ran. When not given, a check not in ``skipped``
        is taken to have run.
    waivers : iterable of dict
        The waiver records of :func:`audit.policy.apply_policy`: an item
        whose findings were waived says so in its evidence (waived findings
        do not move it).

    Returns
    -------
    dict
        ``{"score", "assessed", "scope", "level", "level_name", "band", "label",
        "items", "explanation", "next_steps", "rubric_version"}`` (``assessed``: items
        in the score; ``scope``: what the score is over and what was not assessed,
        so that scores of different commands can be compared) (plain JSON data,
        no NaN).
    """
    x = Inputs(
        findings=tuple(_finding_tuple(f) for f in findings),
        summary=summary, label=label or None, labels=labels, splits_given=splits_given,
        skipped={str(s.get("check")): str(s.get("reason", "")) for s in skipped},
        ran=None if ran is None else frozenset(ran),
        waivers=tuple(waivers),
    )
    items = [_evaluate(item, x) for item in RUBRIC]

    held_by: str | None = None
    for band in BANDS:
        band_items = [i for i in items if i["band"] == band and i["status"] != "not_assessed"]
        for i in band_items:
            if held_by is not None:
                i["counted"] = False
                i["held_back_by"] = held_by
            else:
                i["points"] = round(i["max_points"] * STATUS_CREDIT[i["status"]], 1)
        if held_by is None and any(i["status"] == "fail" for i in band_items):
            held_by = band

    assessed = [i for i in items if i["status"] != "not_assessed"]
    denominator = sum(i["max_points"] for i in assessed)
    earned = sum(i["points"] for i in assessed)
    score = round(100.0 * earned / denominator, 1) if denominator else 0.0
    level, reached, why = _level(items, x)
    return {
        "score": min(100.0, max(0.0, score)),
        "assessed": len(assessed),
        "scope": _scope(items, len(assessed)),
        "level": level,
        "level_name": LEVELS[level],
        "band": reached,
        "label": x.label,
        "points": round(earned, 1),
        "max_points": denominator,
        "explanation": why,
        "items": items,
        "next_steps": _next_steps(items),
        "rubric_version": RUBRIC_VERSION,
    }


def _scope(items: list[dict[str, Any]], n_assessed: int) -> str:
    """What the score is over, and why another command may give another one (one definition, different inputs)."""
    missing: dict[str, list[str]] = {}
    for i in items:
        if i["status"] == "not_assessed":
            missing.setdefault(str(i["evidence"]), []).append(i["id"])
    out = (f"The score is over the {n_assessed} of {len(items)} rubric items this run could assess"
           " (one definition for validate, readiness and audit; each command gives it different inputs)")
    if missing:
        out += "; not assessed: " + "; ".join(f"{', '.join(ids)} ({why})" for why, ids in missing.items())
    return out + "."


def _level(items: list[dict[str, Any]], x: Inputs) -> tuple[str, str | None, str]:
    reached: str | None = None
    digit = 1
    why = ""
    for band in BANDS:
        assessed = [i for i in items if i["band"] == band and i["status"] != "not_assessed"]
        failing = [i["id"] for i in assessed if i["status"] == "fail"]
        if failing:
            why = f"band {band} ({BAND_NAMES[band]}) fails: " + ", ".join(failing)
            break
        if band == "A" and not x.label:
            why = "band A (appropriateness for the task) needs the task's label column (--label)"
            break
        if not assessed:
            reasons = sorted({i["evidence"] for i in items if i["band"] == band})
            why = f"band {band} ({BAND_NAMES[band]}) was not assessed: " + "; ".join(reasons)
            break
        reached = band
        digit = 1 if all(i["status"] == "pass" for i in assessed) else 2
        partial = [i["id"] for i in assessed if i["status"] == "partial"]
        why = f"band {band} reached" + (f", with caveats: {', '.join(partial)}" if partial else "")
    if reached is None:
        c_failing = any(i["band"] == "C" and i["status"] == "fail" for i in items)
        return ("C3" if c_failing else "unrated"), None, why
    return f"{reached}{digit}", reached, why


def _next_steps(items: list[dict[str, Any]]) -> list[str]:
    """What would raise the score or the level.

    First the advice of the items that lose points (lowest band first,
    biggest loss first), then what would let the items not assessed count
    (grouped: one line per kind of missing input).
    """
    order = {b: n for n, b in enumerate(BANDS)}
    losing = [i for i in items if i["status"] in ("fail", "partial")]
    losing.sort(key=lambda i: (order[i["band"]], -(i["max_points"] - i["points"]), i["id"]))
    out = [f"{i['id']}: {i['advice']}" for i in losing if i["advice"]]
    grouped: dict[str, list[str]] = {}
    for i in items:
        if i["status"] == "not_assessed" and i["advice"]:
            grouped.setdefault(i["advice"], []).append(i["id"])
    out += [f"{', '.join(ids)}: {advice}" for advice, ids in grouped.items()]
    return out


# --------------------------------------------------------------------------- gathering inputs
def labels_for(ctx: Any, label: str | None = None) -> dict[str, str | None] | None:
    """``participant -> label value`` from participants.tsv, else from the split files.

    ``None`` when no label column is known or no table has it.
    """
    column = label or getattr(ctx, "label_column", None)
    if not column:
        return None
    index = getattr(ctx, "index", None)
    table = getattr(index, "participants", None) if index is not None else None
    if table is not None and column in table.columns and "participant_id" in table.columns:
        out: dict[str, str | None] = {}
        for pid, value in zip(table["participant_id"].tolist(), table[column].tolist()):
            out.setdefault(str(pid).strip(), clean_label(value))
        return out
    splits = getattr(ctx, "splits", None)
    if splits is not None:
        found: dict[str, str | None] = {}
        any_column = False
        for t in splits.tables:
            if t.label_column == column:
                any_column = True
                for pid, _ses, value, _where in t.labels():
                    if found.get(pid) is None:
                        found[pid] = clean_label(value)
            elif column in t.columns:
                any_column = True
                for pid, value in t.column_values(column):
                    if found.get(pid) is None:
                        found[pid] = clean_label(value)
        return found if any_column else None
    return None


def checks_in_reach(ctx: Any, families: Iterable[str] | None = None) -> frozenset[str]:
    """Check ids the runner would have run on ``ctx`` for ``families`` (all when ``None``): needs met."""
    wanted = None if families is None else set(families)
    out = set()
    for spec in all_checks().values():
        if wanted is not None and spec.family not in wanted and spec.id not in wanted:
            continue
        if all(ctx.missing(need) is None for need in spec.needs):
            out.add(spec.id)
    return frozenset(out)


def readiness_for(ctx: Any, findings: Iterable[Any], skipped: Iterable[Mapping[str, str]],
                  summary: Mapping[str, Any] | None, *, ran: Iterable[str] | None = None,
                  families: Iterable[str] | None = None,
                  waivers: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """:func:`score_readiness` with its inputs taken from an :class:`~audit.context.AuditContext`.

    ``ran`` (the check ids that ran) defaults to ``ctx.cache["checks_ran"]``
    when the runner left it there, else to the checks of ``families`` whose
    needs the context meets (what the runner runs): pass the command's
    families so a check the command does not run is not taken as passed.
    """
    label = getattr(ctx, "label_column", None)
    if ran is None:
        cached = ctx.cache.get("checks_ran") if isinstance(getattr(ctx, "cache", None), dict) else None
        ran = cached if cached is not None else checks_in_reach(ctx, families)
    return score_readiness(findings, summary if getattr(ctx, "index", None) is not None else None,
                           label=label, labels=labels_for(ctx, label), splits_given=ctx.splits is not None,
                           skipped=skipped, ran=ran, waivers=waivers)
