"""Coverage: how much of the dataset and the splits a verdict rests on.

Every result carries a ``coverage`` block (contract, "JSON result")::

    {"complete": false,
     "limits": ["443 of 443 images absent (content not fetched: DataLad/git-annex)"],
     "image_content": false,
     "images": {"total": 443, "checked": 0, "absent": 443, "unreadable": 0, "not_read": 0},
     "split_pairs": {"compared": 0, "pairs": []},      # null for commands without splits
     "checks": {"run": 31, "skipped": 6, "limiting": 4}}

``complete`` is true when nothing that could have been checked was left out:
a dataset was given, every image's content was read, the validator ran, the
splits (for ``audit``) give at least one pair to compare, and no check was
skipped for lack of data. Checks skipped only because an option was not asked
for (``--group``, ``--pretrain``, ``--expectations``) do not limit coverage.
``limits`` says, one short sentence each, what was not checked.
``image_content`` is true when every image's content was read (the default
certificate policy, :func:`audit.policy.certificate_refusal`, needs it).

:func:`verdict_line` is the one wording of a verdict for the terminal and the
report: ``PASS``, ``FAIL`` or ``PASS (limited: ...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

from audit.context import AuditContext

__all__ = ["MAX_LIMITS", "NOT_LIMITING", "coverage_for", "readiness_line", "verdict_line"]

#: Skip reasons that mean "not asked for", not "could not be checked".
NOT_LIMITING = ("no --group given", "no --pretrain given", "no --expectations given")
MAX_LIMITS = 3  # limits named in the verdict line; the rest are counted


def _images(ctx: AuditContext) -> dict[str, int]:
    assert ctx.index is not None
    total = len(ctx.index.images())
    out = {"total": total, "checked": 0, "absent": 0, "unreadable": 0, "not_read": 0}
    summaries = ctx.__dict__.get("images")  # the image pass, when a check asked for it (a cached property)
    if summaries is None:
        absent = sum(1 for r in ctx.index.images() if r.link in ("dangling", "annex-pointer"))
        out.update(absent=absent, not_read=total - absent)
        return out
    statuses = [s.status for s in summaries]
    out["absent"] = summaries.n_absent
    out["unreadable"] = sum(1 for s in statuses if s == "unreadable")
    out["not_read"] = sum(1 for s in statuses if s in ("skipped", "placeholder"))
    out["checked"] = sum(1 for s in statuses if s in ("ok", "corrupt", "empty"))
    return out


def _pairs(ctx: AuditContext) -> dict[str, Any]:
    assert ctx.splits is not None
    seen: dict[tuple[str, str], int] = {}
    for _fold, tables in ctx.splits.views():
        order = [n for n in ctx.splits.names if n in tables] + sorted(n for n in tables if n not in ctx.splits.names)
        names = [n for n in order if tables[n].subjects()]
        for a, b in combinations(names, 2):
            seen[(a, b)] = seen.get((a, b), 0) + 1
    return {"compared": sum(seen.values()), "pairs": [[a, b] for a, b in seen]}


def coverage_for(ctx: AuditContext, skipped: Iterable[Mapping[str, str]], *, splits_in_scope: bool) -> dict[str, Any]:
    """The ``coverage`` block of a result, from the context the checks ran on and the checks skipped.

    ``splits_in_scope``: the command audits splits (``audit``), so a split
    input that gives no pair to compare limits coverage.
    """
    skipped = list(skipped)
    limits: list[str] = []
    images: dict[str, int] | None = None
    if ctx.index is None:
        limits.append("no dataset: split tables only, no image or BIDS check")
    else:
        images = _images(ctx)
        if images["total"] == 0:
            limits.append("the dataset has no image")
        if images["absent"]:
            limits.append(f"{images['absent']} of {images['total']} images absent "
                          "(content not fetched: DataLad/git-annex)")
        if images["not_read"]:
            why = ("--ignore-nifti-headers" if ctx.options.ignore_nifti_headers
                   else "image checks turned off" if not ctx.options.check_images else "no image check ran")
            limits.append(f"{images['not_read']} of {images['total']} images not read ({why})")
        if images["unreadable"]:
            limits.append(f"{images['unreadable']} of {images['total']} images unreadable")
        if ctx.validator is None:
            limits.append("BIDS validator not run")
    pairs = None
    if splits_in_scope and ctx.splits is not None:
        pairs = _pairs(ctx)
        if not pairs["compared"]:
            names = ", ".join(ctx.splits.names) or "none"
            limits.append(f"one split only ({names}): nothing to compare it with")
    limiting = [s for s in skipped if str(s.get("reason", "")) not in NOT_LIMITING]
    covered = ("no dataset given", "the BIDS validator was not run", "image checks were turned off")
    by_reason: dict[str, int] = {}
    for s in limiting:
        reason = str(s.get("reason", ""))
        if reason not in covered:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    for reason, n in by_reason.items():
        limits.append(f"{n} check{'s' if n != 1 else ''} skipped: {reason}")
    image_content = images is not None and images["total"] > 0 and images["checked"] + images["unreadable"] == \
        images["total"]
    return {
        "complete": not limits,
        "limits": limits,
        "image_content": image_content,
        "images": images,
        "split_pairs": pairs,
        "checks": {"run": len(ctx.checks_ran), "skipped": len(skipped), "limiting": len(limiting)},
    }


def verdict_line(status: str, coverage: Mapping[str, Any] | None) -> str:
    """``PASS``, ``FAIL`` or ``PASS (limited: ...)`` (at most :data:`MAX_LIMITS` limits named).

    >>> verdict_line("pass", {"complete": False, "limits": ["BIDS validator not run"]})
    'PASS (limited: BIDS validator not run)'
    >>> verdict_line("fail", {"complete": False, "limits": ["BIDS validator not run"]})
    'FAIL'
    """
    word = "PASS" if status == "pass" else "FAIL"
    if word == "FAIL" or not coverage or coverage.get("complete", True):
        return word
    limits = [str(x) for x in coverage.get("limits") or []]
    shown = limits[:MAX_LIMITS]
    more = len(limits) - len(shown)
    return f"{word} (limited: {'; '.join(shown)}{f'; and {more} more' if more > 0 else ''})"


def readiness_line(readiness: Mapping[str, Any] | None) -> str:
    """``readiness B2, 71.4/100 over 12 of 14 items`` (empty without a level; no score when unrated).

    >>> readiness_line({"level": "C3", "score": 40.0, "assessed": 5, "items": [{}] * 14})
    'readiness C3, 40.0/100 over 5 of 14 items'
    >>> readiness_line({"level": "unrated", "score": 100.0, "assessed": 2, "items": [{}] * 14})
    'readiness unrated (2 of 14 items assessed)'
    """
    if not readiness or not readiness.get("level"):
        return ""
    items = readiness.get("items") or []
    assessed = readiness.get("assessed")
    scope = f" over {assessed} of {len(items)} items" if assessed is not None and items else ""
    if readiness["level"] == "unrated":  # band C not assessed (no dataset): a score over a few items means little
        return f"readiness unrated ({assessed} of {len(items)} items assessed)" if scope else "readiness unrated"
    return f"readiness {readiness['level']}, {float(readiness.get('score') or 0):.1f}/100{scope}"
