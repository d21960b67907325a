"""The official BIDS validator's output, read: its JSON (streamed) or its aggregated text, into per-code summaries.

:class:`CodeSummary` holds every issue of one code (counts per severity and
sub-code, the participants named, a few examples). :func:`read_json_output`
and :func:`iter_json_issues` read the JSON output one issue at a time, so
memory does not grow with it; :func:`parse_text_output` reads the text output,
which the validator aggregates itself and which stays small at any size.
Running the validator is :mod:`audit.validator`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CodeSummary",
    "MAX_EXAMPLES",
    "iter_json_issues",
    "parse_text_output",
    "read_json_output",
    "relabel",
    "summarise_issues",
]

#: Examples kept per code (file, sub-code, message).
MAX_EXAMPLES = 10
_SEVERITY_RANK = {"error": 0, "warning": 1, "ignore": 2}


@dataclass
class CodeSummary:
    """Every issue of one code, aggregated.

    ``count`` is the number of issues of this code, ``severities`` splits it by
    severity (``error``/``warning``, and ``ignore`` for issues the validator's
    config silenced); ``severity`` is the most severe of them. ``subjects``
    holds every participant named by an issue's file when ``subjects_complete``
    (JSON output), only those of the examples otherwise (text output).
    """

    code: str
    severity: str  # "error" | "warning" | "ignore"
    count: int = 0
    message: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)
    subcodes: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    subjects: set[str] = field(default_factory=set)
    subjects_complete: bool = True
    _shown: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def add(self, location: str | None, subcode: str | None = None, detail: str | None = None, n: int = 1,
            *, severity: str | None = None, extra: Mapping[str, Any] | None = None) -> None:
        """Count ``n`` issues (one example at most: ``location`` and its details)."""
        sev = severity or self.severity
        self.count += n
        self.severities[sev] = self.severities.get(sev, 0) + n
        if _SEVERITY_RANK.get(sev, 0) < _SEVERITY_RANK.get(self.severity, 0):
            self.severity = sev
        if subcode:
            self.subcodes[subcode] = self.subcodes.get(subcode, 0) + n
        if location:
            subject = _subject_of(location)
            if subject:
                self.subjects.add(subject)
        if (location is not None or detail) and self._room(sev):
            ex: dict[str, Any] = {"file": location, "severity": sev}
            if subcode:
                ex["subcode"] = subcode
            if detail:
                ex["message"] = detail.strip()[:500]
            for key, value in (extra or {}).items():
                if value is not None and value != "":
                    ex[key] = value
            self.examples.append(ex)
            self._shown[sev] = self._shown.get(sev, 0) + 1

    def _room(self, severity: str) -> bool:
        """Fewer than :data:`MAX_EXAMPLES` examples of ``severity`` so far."""
        return self._shown.get(severity, 0) < MAX_EXAMPLES

    def reported(self, severity: str) -> int:
        """Issues of this code with ``severity``."""
        return self.severities.get(severity, 0)


def relabel(summary: CodeSummary, old: str, new: str) -> None:
    """Issues of ``summary`` counted as ``old`` are ``new`` (the text run's moved ignore filters)."""
    n = summary.severities.pop(old, 0)
    if n:
        summary.severities[new] = summary.severities.get(new, 0) + n
    for ex in summary.examples:
        if ex.get("severity") == old:
            ex["severity"] = new
    summary._shown[new] = summary._shown.pop(old, 0) + summary._shown.get(new, 0)
    summary.severity = min(summary.severities, key=lambda s: _SEVERITY_RANK.get(s, 0), default=new)


def _subject_of(path: str) -> str | None:
    part = path.lstrip("/").split("/", 1)[0]
    return part if part.startswith("sub-") and len(part) > 4 else None


# ------------------------------------------------------------------------------------------ JSON output
_JSON_HEAD = '{"issues":{"issues":['


def iter_json_issues(fh: IO[str], tail: dict[str, Any] | None = None, chunk: int = 1 << 20
                     ) -> Iterator[dict[str, Any]]:
    """Yield the issues of the validator's JSON output one at a time, without holding the document.

    The validator writes ``{"issues":{"issues":[...],"codeMessages":{...}},"summary":{...}}``;
    the issue list is decoded object by object, the rest (small) is parsed whole into ``tail``
    (``codeMessages`` and ``summary``). Any other layout is parsed whole (correct, not streamed).
    """
    decoder = json.JSONDecoder()
    buf = fh.read(max(chunk, 4096))
    eof = not buf
    start = len(buf) - len(buf.lstrip())
    if not buf[start:].startswith(_JSON_HEAD):
        whole = json.loads(buf + fh.read())
        block = whole.get("issues") if isinstance(whole, dict) else None
        if not isinstance(block, dict) or not isinstance(block.get("issues", []), list):
            raise ValueError('the validator\'s JSON output has no {"issues": {"issues": [...]}}')
        if tail is not None:
            tail.update(codeMessages=block.get("codeMessages") or {}, summary=whole.get("summary") or {})
        yield from block.get("issues") or []
        return
    pos = start + len(_JSON_HEAD)
    after_value = False  # a "," or the closing "]" comes next
    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n":
            pos += 1
        if pos >= len(buf):
            if eof:
                raise ValueError("the validator's JSON output ends inside its issue list")
            buf, pos, eof = _more(fh, buf, pos, chunk)
            continue
        c = buf[pos]
        if c == "]":
            pos += 1
            break
        if after_value:
            if c != ",":
                raise ValueError(f"unexpected {c!r} between two issues of the validator's JSON output")
            pos, after_value = pos + 1, False
            continue
        try:
            issue, pos = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError:
            if eof:
                raise
            buf, pos, eof = _more(fh, buf, pos, chunk)  # the issue runs past the buffer
            continue
        after_value = True
        if isinstance(issue, dict):
            yield issue
        if pos > chunk:
            buf, pos = buf[pos:], 0
    rest = json.loads('{"issues":{"issues":[]' + buf[pos:] + fh.read())
    if tail is not None and isinstance(rest, dict):
        tail.update(codeMessages=(rest.get("issues") or {}).get("codeMessages") or {},
                    summary=rest.get("summary") or {})


def _more(fh: IO[str], buf: str, pos: int, chunk: int) -> tuple[str, int, bool]:
    data = fh.read(chunk)
    return buf[pos:] + data, 0, not data


def read_json_output(path: Path) -> tuple[dict[str, CodeSummary], dict[str, Any]]:
    """Aggregate a file of the validator's JSON output by code, streamed; also return its
    ``codeMessages`` and ``summary``. Malformed JSON raises :class:`ValueError`."""
    tail: dict[str, Any] = {}
    with open(path, encoding="utf-8") as fh:
        try:
            codes = summarise_issues(iter_json_issues(fh, tail))
        except json.JSONDecodeError as err:
            raise ValueError(f"malformed JSON at character {err.pos}: {err.msg}") from None
    for code, text in (tail.get("codeMessages") or {}).items():
        if code in codes and isinstance(text, str):
            codes[code].message = text.strip()
    return codes, tail


def summarise_issues(issues: Iterable[Mapping[str, Any]], messages: Mapping[str, str] | None = None
                     ) -> dict[str, CodeSummary]:
    """Aggregate the validator's JSON issues by code (every issue counted once)."""
    codes: dict[str, CodeSummary] = {}
    for issue in issues:
        code = str(issue.get("code") or "UNKNOWN")
        severity = str(issue.get("severity") or "error")  # the validator's own default
        summary = codes.get(code)
        if summary is None:
            summary = codes[code] = CodeSummary(code, severity, message=str((messages or {}).get(code, "")).strip())
        detail = issue.get("issueMessage")
        extra = None
        if summary._room(severity):
            extra = {k: issue.get(k) for k in ("line", "character", "suggestion", "rule") if issue.get(k) is not None}
        summary.add(issue.get("location"), issue.get("subCode"), str(detail) if detail else None,
                    severity=severity, extra=extra)
    return codes


# ------------------------------------------------------------------------------------------ text output
# The validator's text output (src/utils/output.ts), per severity (warnings, then errors), per code:
#   \t[WARNING] CODE code message           (the message may run over several lines)
#   \t\tSUBCODE                              (only when the code's issues have sub-codes)
#   \t\t/location - issue message            (two issues per sub-code at most; messages may span lines)
#   (blank)
#   \t\tN more files with the same issue     (when there are more than two)
#   \tPlease visit https://neurostars.org/search?q=CODE for existing conversations about this issue.
_HEAD = re.compile(r"^\t\[(ERROR|WARNING)\] (\S+)(?: (.*))?$")
_END = re.compile(r"^\tPlease visit \S*?q=(\S+) for existing conversations")
_MORE = re.compile(r"^\t\t(\d+) more files? with the same issue\s*$")


def parse_text_output(lines: Iterable[str], notes: list[str] | None = None) -> dict[str, CodeSummary]:
    """Parse the validator's text output (aggregated by code) into per-code counts.

    Each code's block is read between its ``[SEVERITY] CODE`` line and its
    ``Please visit ...?q=CODE`` line. Counts are exact: the printed issues plus
    every "N more files with the same issue". Where a block cannot be read
    unambiguously (issues with neither file nor sub-code), a line is added to
    ``notes``.
    """
    codes: dict[str, CodeSummary] = {}
    block: list[str] | None = None
    head: tuple[str, str, str] | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        m = _HEAD.match(line)
        if m:
            if block is not None and head is not None:  # a block with no closing line: keep it, say so
                _add_block(codes, head, block, notes)
                if notes is not None:
                    notes.append(f"the validator's text output for {head[1]} has no closing line")
            head, block = (m.group(1).lower(), m.group(2), (m.group(3) or "").strip()), []
            continue
        if block is None or head is None:
            continue
        m = _END.match(line)
        if m and m.group(1) == head[1]:
            _add_block(codes, head, block, notes)
            block = head = None
            continue
        if line.startswith("\t\t"):
            block.append(line[2:])
    if block is not None and head is not None:  # output cut short: keep what was read
        _add_block(codes, head, block, notes)
        if notes is not None:
            notes.append(f"the validator's text output ends inside the {head[1]} block")
    return codes


def _add_block(codes: dict[str, CodeSummary], head: tuple[str, str, str], tokens: list[str],
               notes: list[str] | None) -> None:
    severity, code, message = head
    summary = codes.get(code)
    if summary is None:
        summary = codes[code] = CodeSummary(code, severity, message=message, subjects_complete=False)
    groups, exact = _groups(tokens)
    for subcode, issues, more in groups:
        for issue in issues:
            location, detail = _split_issue(issue)
            summary.add(location, subcode, detail, severity=severity)
        if more:
            summary.add(None, subcode, None, n=more, severity=severity)
    if not groups:  # a code with no printed issue still occurred
        summary.add(None, None, None, severity=severity)
        exact = False
    if not exact and notes is not None:
        notes.append(f"{code}: the validator's text output for this code is ambiguous (issues without a file); "
                     "its count and sub-codes are read as well as the text allows")


def _groups(tokens: list[str]) -> tuple[list[tuple[str | None, list[str], int]], bool]:
    """Split a code block's ``\\t\\t`` lines into (sub-code, printed issues, N more) groups.

    The lines are sub-code headings, issues (``/file - message``, or a bare
    message when the issue names no file) and "N more" lines. The validator
    prints, per group, a heading only when the code has sub-codes (issues
    without one under ``None``), then one or two issues, then "N more" when
    there were more than two. Returns the groups and whether the reading was
    unambiguous.
    """
    kinds = ["more" if _MORE.match("\t\t" + t) else "file" if t.startswith("/") else "other" for t in tokens]
    if "other" not in kinds:  # every issue names a file and there are no sub-codes: the common case
        files = [t for t, k in zip(tokens, kinds) if k == "file"]
        return [(None, files, sum(_more_count(t) for t, k in zip(tokens, kinds) if k == "more"))], True
    groups: list[tuple[str | None, list[str], int]] = []
    exact = True
    headed = False  # the open group has a sub-code heading
    subcode: str | None = None
    issues: list[str] = []
    more = 0
    opened = False
    for i, (tok, kind) in enumerate(zip(tokens, kinds)):
        nxt = kinds[i + 1] if i + 1 < len(tokens) else None
        if kind == "more":
            more += _more_count(tok)
            continue
        if kind == "file":
            issues.append(tok)
            opened = True
            continue
        # "other": a sub-code heading, or an issue that names no file
        if not tok.strip() or nxt in (None, "more"):
            header = False  # a heading is always followed by an issue
        elif not opened:
            header = nxt == "file" or _looks_like_subcode(tok)
            # heading + bare-message issue, or two bare-message issues: told apart by their shape
            exact = exact and (nxt == "file" or _looks_like_subcode(tok) != _looks_like_subcode(tokens[i + 1]))
        elif headed and not issues:
            header = False  # right after a heading comes an issue
        elif more or len(issues) >= 2 or (headed and nxt == "file"):
            header = True  # the group is complete, or an issue cannot follow two issues
        elif not headed:
            header, exact = False, False  # no headings in this block: a stray line
        else:
            header, exact = _looks_like_subcode(tok), False
        if header:
            if opened:
                groups.append((subcode, issues, more))
            subcode = None if tok.strip() == "None" else tok
            headed, issues, more, opened = True, [], 0, True
        else:
            issues.append(tok)
            opened = True
    if opened:
        groups.append((subcode, issues, more))
    if any(extra and len(printed) != 2 for _sub, printed, extra in groups):
        exact = False
    return groups, exact


def _more_count(token: str) -> int:
    m = _MORE.match("\t\t" + token)
    return int(m.group(1)) if m else 0


def _looks_like_subcode(text: str) -> bool:
    s = text.strip()
    return bool(s) and len(s) <= 120 and not re.search(r"\s", s)


def _split_issue(text: str) -> tuple[str | None, str | None]:
    """``/location - message`` (either part may be absent) into its parts."""
    if text.startswith("/"):
        location, _, detail = text.partition(" - ")
        return location, detail or None
    return None, text or None
