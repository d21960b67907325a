"""What every command of the ``bidsaudit`` command line shares: option types, bad input as exit 2, the busy spinner.

Part of the program's entry point (with :mod:`audit.cli` and
:mod:`audit.clitrain`): it imports the library inside its functions so that
``bidsaudit --help`` loads typer and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from audit.config import AuditOptions

__all__ = ["OutputFormat", "busy", "configured", "reported_errors", "suite_paths"]

JsonOpt = Annotated[Optional[str], typer.Option("--json", help="Write the JSON result here ('-' for stdout).")]
HtmlOpt = Annotated[Optional[Path], typer.Option("--html", help="Write the HTML report here.")]
OutDirOpt = Annotated[
    Path, typer.Option("--out-dir", help="Where the JSON result and HTML report go when --json/--html are not given.")
]
IgnoreHeadersOpt = Annotated[
    bool,
    typer.Option("--ignore-nifti-headers", help="Images are placeholders: do not read their content "
                 "(passed to the validator as --ignoreNiftiHeaders)."),
]
ValidatorConfigOpt = Annotated[
    Optional[Path], typer.Option("--validator-config", help="The official validator's JSON config (ignored codes).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
ShardSizeOpt = Annotated[Optional[int], typer.Option("--shard-size", min=0, help="Subjects per validator shard "
                                                     "(0: one validator run; default: shards of 1,000 above "
                                                     "1,000 subjects).")]
JobsOpt = Annotated[Optional[int], typer.Option("--jobs", min=1, help="Validator shards at once (default: all "
                                                "cores).")]
ValidatorMemoryOpt = Annotated[Optional[int], typer.Option("--validator-memory", min=64, help="Heap limit of one "
                                                           "shard's validator, MiB (default 1024); a shard over "
                                                           "it is split and retried.")]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="A bidsaudit.toml (or pyproject.toml with [tool.bidsaudit]); "
                                 "default: found beside the dataset or above the split files.")]
ExpectationsOpt = Annotated[
    Optional[list[Path]], typer.Option("--expectations", metavar="SUITE.json",
                                       help="A Great Expectations suite (JSON) to run on the participants or "
                                       "images table (meta.bidsaudit.table); repeatable. Needs the "
                                       "'expectations' extra.")]
JunitOpt = Annotated[Optional[Path], typer.Option("--junit", help="Write a JUnit XML report (one test case per "
                                                  "check) for CI systems.")]
SarifOpt = Annotated[Optional[Path], typer.Option("--sarif", help="Write a SARIF 2.1.0 log (for code-scanning "
                                                  "views); file paths relative to the working directory.")]


class OutputFormat(str, Enum):
    text = "text"
    github = "github"


FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="text: the summary; github: GitHub Actions "
                                                 "annotations (::error file=...,line=...::) before the summary.",
                                                 case_sensitive=False)]


def configured(dataset: Path | None, splits: Path | None, config_path: Path | None, *, quiet: bool = False,
               **kwargs: object) -> AuditOptions:
    """The command's options with the configuration file applied; says on stderr which file was read (not with -q)."""
    from audit.config import load_options

    options, notes = load_options(dataset, splits, config_path, **kwargs)
    for note in notes if not quiet else ():
        typer.echo(note, err=True)
    return options


def suite_paths(expectations: list[Path] | None) -> tuple[str, ...]:
    """Read and check the --expectations suites now (exit 2 before any work on a bad one)."""
    from audit.expectations import load_suites

    if not expectations:
        return ()
    load_suites(expectations)
    return tuple(str(p) for p in expectations)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn bad input into one line on stderr and exit code 2; never a traceback."""
    from audit.errors import BidsauditError, missing_extra

    try:
        yield
    except typer.Exit:
        raise
    except BidsauditError as err:
        code = err.exit_code  # 2: could not run; 1: the tool ran and refuses (a closed gate, a leak)
        typer.echo(f"bidsaudit: {'refused' if code == 1 else 'error'}: {err}", err=True)
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        typer.echo("bidsaudit: interrupted; nothing was left half-written", err=True)
        raise typer.Exit(130) from None
    except RecursionError:
        typer.echo("bidsaudit: error: input nested too deeply (a symbolic-link loop?)", err=True)
        raise typer.Exit(2) from None
    except Exception as err:  # last resort: one line, exit 2, traceback only on request
        missing = missing_extra(err) if isinstance(err, ModuleNotFoundError) else None
        if missing is not None:  # an optional dependency is missing: name the extra that installs it
            typer.echo(f"bidsaudit: error: {missing}", err=True)
            raise typer.Exit(2) from None
        if isinstance(err, OSError) and err.filename:  # a full disk, a quota...: the file and why
            typer.echo(f"bidsaudit: error: {err.filename}: {err.strerror or err}", err=True)
            raise typer.Exit(2) from None
        if os.environ.get("BIDSAUDIT_DEBUG"):
            raise
        typer.echo(f"bidsaudit: internal error: {type(err).__name__}: {err} "
                   "(set BIDSAUDIT_DEBUG=1 for a traceback, and please report it)", err=True)
        raise typer.Exit(2) from None


def busy(description: str, *, quiet: bool, json_out: str | None, fmt: OutputFormat):  # type: ignore[no-untyped-def]
    """A spinner with elapsed time on a watched terminal; never with -q, --json -, --format github or in CI."""
    from audit.outputs.terminal import working

    return working(description, enabled=not quiet and json_out != "-" and fmt == OutputFormat.text)
