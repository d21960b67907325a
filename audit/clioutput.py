"""What a command of the CLI leaves behind: the JSON result and HTML report (written atomically), the summary it prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from audit.fsutil import atomic_write_text
from audit.outputs.github import annotations, step_summary
from audit.outputs.junit import junit_xml
from audit.outputs.sarif import sarif_json
from audit.outputs.terminal import default_stem, print_lines, summary_lines, terminal_width
from audit.result import Result
from reports import render as html_report  # looked up at call time: tests replace render_report

__all__ = ["emit", "print_summary"]


def emit(result: Result, *, json_out: str | None, html_out: Path | None, out_dir: Path, stem: str,
         quiet: bool = False, junit_out: Path | None = None, sarif_out: Path | None = None,
         fmt: str = "text") -> None:
    """Write the JSON result and the HTML report (atomically) and print a summary.

    ``--format github`` prints GitHub Actions annotations before the summary
    (on stderr when ``--json -`` holds stdout); ``--sarif`` and the annotations
    give paths relative to the working directory (the repository checkout in CI).
    """

    if json_out is None and html_out is None:  # <dataset>-<command>: another dataset's results stay
        stem = default_stem(result.to_dict(), stem, out_dir)
        json_out = str(out_dir / f"{stem}.json")
        html_out = out_dir / f"{stem}.html"
    written = []
    if json_out == "-":
        sys.stdout.write(result.to_json())
    elif json_out:
        written.append(("JSON result", atomic_write_text(json_out, result.to_json())))
    if html_out:
        page = html_report.render_report(result.to_dict())
        written.append(("HTML report", atomic_write_text(html_out, page)))
    if junit_out:
        written.append(("JUnit XML", atomic_write_text(junit_out, junit_xml(result.to_dict()))))
    if sarif_out:
        written.append(("SARIF", atomic_write_text(sarif_out, sarif_json(result.to_dict(),
                                                                          exit_code=result.exit_code))))
    if fmt == "github":
        for line in annotations(result.to_dict()):
            typer.echo(line, err=json_out == "-")
        _append_step_summary(result)
    if json_out == "-":
        return
    print_summary(result, quiet=quiet)
    for what, path in written if not quiet else ():
        typer.echo(f"{what}: {path}")


def _append_step_summary(result: Result) -> None:
    """Inside a GitHub workflow, add the Markdown summary to the job's summary page."""

    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as fh:  # appended, as GitHub asks: the runner reads it at step end
            fh.write(step_summary(result.to_dict()))
    except OSError as err:
        typer.echo(f"bidsaudit: warning: could not write the step summary {target}: {err}", err=True)


def print_summary(result: Result, *, quiet: bool = False) -> None:
    """The terminal summary (:mod:`audit.outputs.terminal`): colour on a terminal only; ``-q``: the verdict line."""

    print_lines(summary_lines(result.to_dict(), quiet=quiet, width=terminal_width(sys.stdout)), sys.stdout)
