"""``--format github``: findings as GitHub Actions workflow commands (annotations).

Each finding becomes ``::error``, ``::warning`` or ``::notice`` (for
``info``) with ``file=`` (relative to the working directory, the repository
checkout in CI), ``line=`` when known and ``title=`` (the check id), followed
by the message. A finding whose split rows lie in several files (a
participant in ``train.tsv`` and ``test.tsv``) gets one annotation per split
file, at most :data:`MAX_FILES`; a finding about dataset files (443 absent
images) gets one, on the first file; a finding that names no file is placed
as in SARIF (:meth:`audit.outputs.locations.Resolver.place`).

Everything put in a command comes from the dataset (participant ids, file
names, sidecar values) and is escaped the way GitHub's toolkit does it: in
the message ``%`` -> ``%25``, CR -> ``%0D``, LF -> ``%0A``; in properties
also ``:`` -> ``%3A`` and ``,`` -> ``%2C``. So no value can end a command
early, add a property or start a new command on a line of its own.

Checks that were skipped (no validator run, images absent, no ``--group``)
become ``::notice`` lines without a file, so a CI log says what was *not*
checked. ``info`` findings (summaries such as "no label shift found") are
left out unless ``info=True`` (then ``::notice`` too); they are in the
summary printed after the annotations. GitHub shows at most 10 annotations
of each kind per step; errors come first here.

When ``$GITHUB_STEP_SUMMARY`` is set (inside a workflow), the CLI also
appends :func:`step_summary` to it: the verdict and a table of the error and
warning findings, every value escaped for Markdown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from audit.outputs.locations import Resolver, group_by_file

__all__ = ["annotations", "escape_data", "escape_property", "step_summary", "markdown_text", "COMMANDS"]

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}
MAX_FILES = 5


def escape_data(value: Any) -> str:
    """A workflow command's message, escaped (GitHub toolkit ``escapeData``)."""
    return str(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: Any) -> str:
    """A workflow command's property value, escaped (GitHub toolkit ``escapeProperty``)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, **props: Any) -> str:
    shown = ",".join(f"{k}={escape_property(v)}" for k, v in props.items() if v not in (None, ""))
    return f"::{kind}{' ' + shown if shown else ''}::{escape_data(message)}"


def annotations(result: Mapping[str, Any], *, root: str | os.PathLike[str] | None = None,
                cwd: str | os.PathLike[str] | None = None, info: bool = False, skipped: bool = True) -> list[str]:
    """The workflow-command lines for a JSON result (a dict), errors first."""
    dataset = result.get("dataset") or {}
    resolver = Resolver(dataset.get("path") if isinstance(dataset, Mapping) else None, root, cwd)
    lines: list[str] = []
    for f in result.get("findings") or []:
        kind = COMMANDS.get(str(f.get("severity")), "warning")
        if kind == "notice" and not info:
            continue
        message = " ".join(str(f.get("message") or "").split())
        title = f"bidsaudit {f.get('check')}"
        places = group_by_file(resolver.place(f, result))
        # split rows: one annotation per split file (the leak is between them); dataset files: the first only
        places = places[:MAX_FILES] if places and places[0].root == "cwd" else places[:1]
        if not places:
            lines.append(_command(kind, message, title=title))
            continue
        for p in places:
            lines.append(_command(kind, message, file=p.path, line=p.line, title=title))
    if skipped:
        for s in result.get("skipped") or []:
            lines.append(_command("notice", f"{s.get('check')} not run: {s.get('reason')}",
                                  title=f"bidsaudit skipped {s.get('check')}"))
    return lines


_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")
MAX_ROWS = 50


def markdown_text(value: Any) -> str:
    """Untrusted text for a Markdown table cell: one line, every ASCII punctuation backslash-escaped.

    CommonMark takes a backslash-escaped punctuation character literally, so no
    value can open a link, an image, raw HTML, emphasis or a new table cell.
    """
    return _MD_PUNCT.sub(r"\\\1", " ".join(str(value).split()))


def step_summary(result: Mapping[str, Any]) -> str:
    """A Markdown summary for ``$GITHUB_STEP_SUMMARY``: verdict, counts, the error and warning findings."""
    counts = {"error": 0, "warning": 0, "info": 0}
    for f in result.get("findings") or []:
        counts[str(f.get("severity"))] = counts.get(str(f.get("severity")), 0) + 1
    status = str(result.get("status") or "")
    dataset = result.get("dataset") or {}
    name = f" — {markdown_text(dataset.get('name'))}" if isinstance(dataset, Mapping) and dataset.get("name") else ""
    lines = [f"### bidsaudit {markdown_text(result.get('command') or '')}: "
             f"{'✅ pass' if status == 'pass' else '❌ fail'}{name}", "",
             f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes", ""]
    coverage = result.get("coverage")
    if status == "pass" and isinstance(coverage, Mapping) and not coverage.get("complete", True):
        lines += ["**Limited pass**, not checked: "
                  + "; ".join(markdown_text(x) for x in coverage.get("limits") or []), ""]
    shown = [f for f in result.get("findings") or [] if f.get("severity") in ("error", "warning")]
    if shown:
        lines += ["| severity | check | finding |", "| --- | --- | --- |"]
        lines += [f"| {markdown_text(f.get('severity'))} | {markdown_text(f.get('check'))} | "
                  f"{markdown_text(f.get('message'))} |" for f in shown[:MAX_ROWS]]
        if len(shown) > MAX_ROWS:
            lines.append(f"\n… and {len(shown) - MAX_ROWS} more (see the JSON result)")
        lines.append("")
    skipped = result.get("skipped") or []
    if skipped:
        lines.append("Not run: " + "; ".join(f"{markdown_text(s.get('check'))} ({markdown_text(s.get('reason'))})"
                                             for s in skipped))
        lines.append("")
    readiness = result.get("readiness") or {}
    if isinstance(readiness, Mapping) and readiness.get("level"):
        lines.append(f"Readiness {markdown_text(readiness['level'])}, score {markdown_text(readiness.get('score'))}")
        lines.append("")
    return "\n".join(lines) + "\n"
