"""The summary a person reads on a terminal: the verdict line, findings, notes, skipped checks, readiness.

Everything here works on the result document (the JSON result as a dict)
and returns lines; :func:`print_lines` prints them, in colour only when the
stream is a terminal (never in a CI log, a pipe or a file, and never with
``NO_COLOR`` set). Lists are capped ("... and N more") and long messages
wrapped under their finding; absolute paths under the working directory are
shown relative to it. :func:`verdict_line` is the one place the verdict is
worded (``-q`` prints it alone).

>>> plural(1, "error"), plural(2, "participant"), plural(0, "note")
('1 error', '2 participants', '0 notes')
>>> verdict_line({"status": "pass", "counts": {"error": 0, "warning": 1, "info": 2}, "dataset": {"name": "ds"}})
'PASS: 0 errors, 1 warning, 2 notes (ds)'
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from audit.coverage import readiness_line
from audit.coverage import verdict_line as verdict_word
from audit.progress import reporting

__all__ = ["Line", "plural", "verdict_line", "summary_lines", "print_lines", "use_colour", "shorten_paths",
           "wrap", "cap", "hints", "working", "interactive", "MAX_NOTES", "MAX_FINDINGS"]

MAX_NOTES = 5  # info findings shown; the rest are counted
MAX_FINDINGS = 30  # error and warning findings shown
MAX_LINES_PER_MESSAGE = 4
_IRREGULAR = {"analysis": "analyses"}

Line = tuple[str, str]  # (style, text); style is a rich style name or ""

_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan", "pass": "bold green", "fail": "bold red",
           "skipped": "dim", "waived": "magenta", "muted": "dim"}


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 error``, ``2 errors``; ``many`` for an irregular plural."""
    return f"{n} {one if n == 1 else (many or _IRREGULAR.get(one) or one + 's')}"


def verdict_line(doc: Mapping[str, Any]) -> str:
    """``PASS: 0 errors, 2 warnings, 6 notes; readiness B1, 80.0/100 over 12 of 14 items (ds)``: the one wording.

    ``PASS (limited: ...)`` when the result's coverage is incomplete (:func:`audit.coverage.verdict_line`).
    """
    counts = dict(doc.get("counts") or {})
    if not counts:
        counts = {s: sum(1 for f in doc.get("findings") or [] if f.get("severity") == s)
                  for s in ("error", "warning", "info")}
    verdict = verdict_word(str(doc.get("status")), doc.get("coverage"))  # "PASS (limited: ...)" when incomplete
    ready = readiness_line(doc.get("readiness"))
    dataset = doc.get("dataset") or {}
    return (f"{verdict}: {plural(int(counts.get('error', 0)), 'error')}, "
            f"{plural(int(counts.get('warning', 0)), 'warning')}, {plural(int(counts.get('info', 0)), 'note')}"
            + (f"; {ready}" if ready else "") + (f" ({dataset['name']})" if dataset.get("name") else ""))


def shorten_paths(text: str, cwd: str | None = None) -> str:
    """Absolute paths under the working directory, relative to it (``/home/me/ds/sub-01`` -> ``ds/sub-01``)."""
    base = (cwd if cwd is not None else os.getcwd()).rstrip(os.sep)
    if len(base) <= 1:
        return text
    return re.sub(re.escape(base) + r"/(?=\S)", "", text)


def wrap(text: str, width: int, indent: str, *, max_lines: int = MAX_LINES_PER_MESSAGE) -> list[str]:
    """``text`` wrapped to ``width`` under ``indent``; at most ``max_lines`` lines, the last ending in ``…``."""
    text = re.sub(r"\.\.\. and \d+ more", lambda m: m.group(0).replace(" ", "\xa0"), text)  # kept on one line
    lines = [line.replace("\xa0", " ") for line in textwrap.wrap(
        text, width=max(width - len(indent), 20), break_long_words=True, break_on_hyphens=False)] or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(width - len(indent) - 2, 10)] + " …"
    return [indent + line for line in lines]


def cap(items: Sequence[str], n: int) -> str:
    """``a, b, c ... and 4 more``."""
    shown = ", ".join(items[:n])
    return shown + (f" ... and {len(items) - n} more" if len(items) > n else "")


def _finding_lines(f: Mapping[str, Any], width: int, cwd: str | None) -> list[Line]:
    sev = str(f.get("severity", ""))
    head = f"  {sev:<7} {f.get('check', ''):<28} "
    body = shorten_paths(str(f.get("message", "")), cwd)
    if len(head) + len(body) <= width:
        return [(_STYLES.get(sev, ""), head + body)]
    first, *rest = wrap(body, width, " " * len(head), max_lines={"error": 8, "info": 3}.get(sev, MAX_LINES_PER_MESSAGE))
    return [(_STYLES.get(sev, ""), head + first.lstrip())] + [("", line) for line in rest]


def summary_lines(doc: Mapping[str, Any], *, width: int = 100, quiet: bool = False,
                  cwd: str | None = None) -> list[Line]:
    """The lines of the terminal summary: verdict, errors and warnings, notes (capped), skipped, waivers, readiness."""
    style = _STYLES["pass" if doc.get("status") == "pass" else "fail"]
    if quiet:  # -q: the verdict line alone, whole (a script may read it)
        return [(style, verdict_line(doc))]
    line = verdict_line(doc)
    out: list[Line] = []
    if len(line) > width:  # the verdict wrapped by words, readiness kept whole on a line of its own
        head, sep, ready = line.partition("; readiness ")
        first, *rest = wrap(head, width, "", max_lines=4)
        out = [(style, first)] + [(style, "  " + ln.lstrip()) for ln in rest]
        if sep:
            out.append((style, "  readiness " + ready))
    else:
        out = [(style, line)]
    findings = [f for f in doc.get("findings") or [] if isinstance(f, Mapping)]
    loud = [f for f in findings if f.get("severity") in ("error", "warning")]
    for f in loud[:MAX_FINDINGS]:
        out += _finding_lines(f, width, cwd)
    if len(loud) > MAX_FINDINGS:
        out.append(("muted", f"  ... and {plural(len(loud) - MAX_FINDINGS, 'more finding')} (see the report)"))
    notes = [f for f in findings if f.get("severity") == "info"]
    for f in notes[:MAX_NOTES]:
        out += _finding_lines(f, width, cwd)
    if len(notes) > MAX_NOTES:
        out.append(("muted", f"  ... and {plural(len(notes) - MAX_NOTES, 'more note')} (see the report)"))
    out += _skipped_lines(doc.get("skipped") or [], width)
    for w in doc.get("waivers") or []:
        who = cap(list(w.get("subjects") or []), 5) or "whole check"
        until = f" (until {w['expires']})" if w.get("expires") else ""
        text = f"  {w.get('status', 'waived'):<7} {w.get('check', ''):<28} {who}: {w.get('reason', '')}{until}"
        out += [("waived", line) for line in wrap(text, width, "", max_lines=3)]
    out += [("muted", line) for hint in hints(doc) for line in wrap("hint: " + hint, width, "  ", max_lines=3)]
    readiness = doc.get("readiness") or {}
    if readiness.get("level"):
        score = f", score {readiness.get('score', 0):.1f}/100" if readiness["level"] != "unrated" else ""
        out.append(("", f"  readiness {readiness['level']} ({readiness.get('level_name', '')}){score}"))
        for step in list(readiness.get("next_steps") or [])[:3]:
            out += [("muted", line) for line in wrap(f"next: {step}", width, "    ", max_lines=2)]
    return out


def hints(doc: Mapping[str, Any]) -> list[str]:
    """What to try next when the findings say the images are placeholders or absent (bids-examples, DataLad).

    >>> hints({"findings": [{"check": "bids.invalid", "message": "EMPTY_FILE: 80 issues"}]})[0][:38]
    'images are empty placeholders (as in b'
    """
    found = [f for f in doc.get("findings") or [] if isinstance(f, Mapping)]
    out = []
    empty = any(f.get("check") == "bids.invalid" and "EMPTY_FILE" in str(f.get("message", "")) for f in found)
    absent = any(f.get("check") == "quality.absent_images" for f in found)
    if empty:
        out.append("images are empty placeholders (as in bids-examples)? Give --ignore-nifti-headers and the "
                   "validator config that ignores EMPTY_FILE, e.g. --validator-config "
                   "bids-examples/default-config.json")
    if absent:
        out.append("image content is absent (a DataLad/git-annex clone): 'datalad get' the images, or audit the "
                   "metadata alone with --ignore-nifti-headers")
    return out


def _skipped_lines(skipped: Iterable[Mapping[str, Any]], width: int) -> list[Line]:
    """Skipped checks grouped by reason: one line (wrapped) per reason, not one per check."""
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(str(s.get("reason", "")), []).append(str(s.get("check", "")))
    out: list[Line] = []
    for reason, checks in by_reason.items():
        if len(checks) == 1:
            text = f"  skipped {checks[0]:<28} {reason}"
        else:
            text = f"  skipped {plural(len(checks), 'check')} ({reason}): {cap(checks, 8)}"
        first, *rest = wrap(text.strip(), width, "          ", max_lines=3)
        out += [("skipped", "  " + first.lstrip())] + [("skipped", line) for line in rest]
    return out


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set or ``TERM=dumb``, never in CI."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb" or os.environ.get("CI"):
        return bool(os.environ.get("FORCE_COLOR")) and not os.environ.get("NO_COLOR")
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def interactive(stream: IO[str] | None = None) -> bool:
    """A person watches ``stream`` (default stderr): a terminal, not CI, not ``TERM=dumb``."""
    stream = stream if stream is not None else sys.stderr
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_width(stream: IO[str], default: int = 100) -> int:
    """The stream's width on a terminal (at least 60), ``default`` elsewhere (``COLUMNS`` wins)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return max(int(os.environ["COLUMNS"]), 60)
    try:
        if stream.isatty():
            return max(os.get_terminal_size(stream.fileno()).columns, 60)
    except (AttributeError, ValueError, OSError):
        pass
    return default


def print_lines(lines: Iterable[Line], stream: IO[str] | None = None) -> None:
    """Print ``lines``: styled with rich on a terminal, plain text elsewhere."""
    stream = stream if stream is not None else sys.stdout
    lines = list(lines)
    if not use_colour(stream):
        stream.write("".join(text + "\n" for _, text in lines))
        stream.flush()
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=True)
    for style, text in lines:
        console.print(Text(text, style=_STYLES.get(style, style) or ""))


@contextmanager
def working(description: str, *, enabled: bool = True) -> Iterator[None]:
    """Progress on stderr while long work runs (a bar for the image pass, a spinner with the elapsed time for the
    validator), only where a person watches a terminal: the library reports through :mod:`audit.progress`."""
    if not (enabled and interactive()):
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def show(what: str, done: int, total: int | None) -> None:
            # a stage with a known size (the image pass) is a bar; one without (the validator), a spinner
            bar.update(task, description=f"{description}: {what}", completed=done, total=total)

        with reporting(show):
            yield


def default_stem(doc: Mapping[str, Any], command: str, out_dir: Path) -> str:
    """``<dataset>-<command>``: the default output name; another dataset of the same name gets a short hash.

    The name is the dataset folder's (or, for split files alone, their
    folder's); when ``out_dir`` already holds a result of that name for a
    different dataset path, the path's hash is added, so that one dataset's
    run never overwrites another's.
    """
    import hashlib
    import json

    dataset = doc.get("dataset") or {}
    where = str(dataset.get("path") or "")
    if not where:
        files = list((doc.get("splits") or {}).get("files") or [])
        where = str(Path(files[0]).resolve().parent) if files else ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(where).name).strip("._") or "result"
    stem = f"{name}-{command}"
    previous = out_dir / f"{stem}.json"
    if previous.is_file():
        try:
            old = json.loads(previous.read_text(encoding="utf-8"))
            old_ds = old.get("dataset") or {}
            old_where = str(old_ds.get("path") or "")
            if not old_where:
                files = list((old.get("splits") or {}).get("files") or [])
                old_where = str(Path(files[0]).resolve().parent) if files else ""
        except (OSError, ValueError, AttributeError):
            old_where = ""
        if old_where != where:
            stem = f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:8]}-{command}"
    return stem
