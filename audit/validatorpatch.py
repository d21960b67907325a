"""A stored shard re-validated for its changed subjects only, its other subjects' issues kept.

When a shard's files changed since its result was stored, the store knows
which of its subjects changed (their content digests differ) and how many
issues of each code, severity and sub-code every subject had
(:attr:`~audit.validatorshards.ShardResult.parts`). The rule
(:func:`patchable`): the shard is *patched* rather than validated whole when

* the top level and the dataset's datatypes are the same as when it was
  stored (the stored result is found by its shard's *identity*: options, top
  level, subject names, witnesses, datatypes; :func:`audit.validatorstore.view_ident`),
* at most half of its subjects changed and none of its witnesses did,
* its stored top-level issues are exactly the top view's (no top-level issue
  that depends on which subjects a view holds: no subject missing from
  ``participants.tsv``, no issue reported once per data file inheriting a
  top-level file, no top-level sidecar that only some subjects use), and
  the top view's result is at hand.

Then the shard is two results for the merge: the stored one without the
changed subjects (:func:`without`: their counts taken off, their examples
dropped; its top-level issues are the top view's, which is what the rest of
the shard reports on its own, since each of those rules can only report less
for fewer data files) and a fresh validation of the changed subjects, with
witnesses for the datatypes they lack. The merge treats them as two shards,
which it already does exactly (``tests/audit/test_validatorshards.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from audit.validatoroutput import CodeSummary
from audit.validatorshards import (
    ANY_SHARD_CODES,
    ShardResult,
    codes_from_parts,
    merge_summaries,
    parts_of,
    top_counter,
    top_key,
)

__all__ = ["changed_subjects", "combine", "fits", "patchable", "without"]


def changed_subjects(subjects: Sequence[str], witnesses: Sequence[str], stored: Mapping[str, str],
                     now: Mapping[str, str]) -> list[str] | None:
    """The shard's subjects whose digest changed, or ``None`` when a witness changed (no patch then).

    >>> changed_subjects(["sub-1", "sub-2"], [], {"sub-1": "a", "sub-2": "b"}, {"sub-1": "a", "sub-2": "c"})
    ['sub-2']
    >>> changed_subjects(["sub-1"], ["sub-9"], {"sub-1": "a", "sub-9": "w"}, {"sub-1": "a", "sub-9": "v"}) is None
    True
    """
    if any(stored.get(w) != now.get(w) for w in witnesses):
        return None
    return [s for s in subjects if stored.get(s) != now.get(s)]


def patchable(stored: ShardResult, top: ShardResult, changed: Collection[str]) -> bool:
    """Whether ``stored`` may be kept for its unchanged subjects, before the changed ones are validated
    (the first half of the rule in the module's docstring; :func:`fits` is the second)."""
    if stored.failure is not None or top.failure is not None or not changed:
        return False
    if len(changed) * 2 > len(stored.subjects) or not set(changed) <= set(stored.subjects):
        return False
    if not (stored.parts or stored.packed) and any(s.count for s in stored.codes.values()):
        return False  # stored before per-subject counts were kept
    mine, theirs = top_counter(stored.top_issues), top_counter(top.top_issues)
    if any(k[0] in ANY_SHARD_CODES for k in mine):
        return False  # a subject of the shard missing from participants.tsv, micr data: subject-dependent
    return all(k in theirs and n <= theirs[k] for k, n in mine.items())  # nothing summed over data files


def fits(stored: ShardResult, fresh: Sequence[ShardResult], top: ShardResult) -> bool:
    """Whether the changed subjects' fresh result agrees with ``stored`` on every top-level issue the
    shard did not report as often as the top view (an unused top-level sidecar, no subject folders):
    the shard's unchanged subjects are then known to keep it so, whatever the changed ones do.

    Otherwise (or when the changed subjects' run failed or was split) the shard is validated whole.
    """
    if len(fresh) != 1 or fresh[0].failure is not None:
        return False
    mine, theirs, now = top_counter(stored.top_issues), top_counter(top.top_issues), top_counter(fresh[0].top_issues)
    return all(now[k] == mine[k] for k, n in theirs.items() if k[0] not in ANY_SHARD_CODES and mine[k] < n)


def without(stored: ShardResult, drop: Collection[str]) -> ShardResult:
    """``stored`` less the subjects ``drop``: their issues taken off by the per-subject counts.

    Counts, severities, sub-codes and subjects are exact; examples are the
    stored ones outside the dropped subjects' folders.

    >>> r = ShardResult(subjects=("sub-1", "sub-2"), parts={("sub-1", "X", "warning", "k"): 2,
    ...                                                      ("sub-2", "X", "warning", None): 1})
    >>> s = without(r, {"sub-2"}).codes["X"]
    >>> (s.count, s.subcodes, sorted(s.subjects))
    (2, {'k': 2}, ['sub-1'])
    """
    gone = set(drop)
    parts = {k: n for k, n in parts_of(stored).items() if k[0] not in gone}
    return ShardResult(subjects=tuple(x for x in stored.subjects if x not in gone), top=False, witnesses=(),
                       codes=codes_from_parts(parts, stored.codes), top_issues=list(stored.top_issues),
                       messages=dict(stored.messages), summary=dict(stored.summary), parts=parts)


def combine(kept: ShardResult, fresh: ShardResult, top: ShardResult, order: Sequence[str]) -> ShardResult | None:
    """One result for the whole shard, to store (``None`` when the changed subjects ran with witnesses:
    the shard is patched again from the older result next time).

    Its top-level issues are what the whole shard reports: the fresh run's
    for rules about existence among subjects and per inheriting data file
    (the kept subjects report none, :func:`patchable`), and for the top
    level's own rules the fewer of the kept and the fresh counts.
    """
    if fresh.failure is not None or fresh.witnesses:
        return None
    mine, theirs, now = top_counter(kept.top_issues), top_counter(top.top_issues), top_counter(fresh.top_issues)
    example = {top_key(i): i for i in (*kept.top_issues, *fresh.top_issues)}
    issues: list[dict[str, Any]] = []
    for key, issue in example.items():
        n = min(mine[key], now[key]) if key in theirs and key[0] not in ANY_SHARD_CODES else now[key]
        issues += [issue] * n
    codes: dict[str, CodeSummary] = {}
    for part in (kept, fresh):
        for code, s in part.codes.items():
            if code not in codes:
                codes[code] = CodeSummary(code, s.severity, message=s.message)
            merge_summaries(codes[code], s)
    parts: dict[tuple[str, str, str, str | None], int] = dict(parts_of(kept))
    for k, n in parts_of(fresh).items():
        parts[k] = parts.get(k, 0) + n
    messages: dict[str, Any] = {**kept.messages, **fresh.messages}
    return ShardResult(subjects=tuple(order), codes=codes, top_issues=issues, messages=messages,
                       summary=dict(kept.summary), seconds=fresh.seconds, parts=parts)
