"""The official BIDS validator, run as a subprocess, its every issue kept.

:func:`run_validator` runs ``bids-validator-deno`` (the official validator,
shipped as a PyPI wheel) and aggregates what it reports by issue code: a count
per severity, the sub-codes, the participants concerned and up to
:data:`MAX_EXAMPLES` examples (file, sub-code, message). Nothing it reports is
lost: every code comes out with its count, and :func:`validator_findings` turns
each code into one ``bids.invalid`` (error) or ``bids.warning`` finding.

Where the validator alone is not right, bidsaudit corrects it and says so in
:attr:`ValidatorRun.corrections`:

* **Row limit.** The validator reads at most ``--max-rows`` (default 1,000)
  rows of every TSV, and its ``PARTICIPANT_ID_MISMATCH`` rule compares the
  subject folders with the *rows it read* of ``participants.tsv``: above 1,000
  participants it reports a false error. When ``participants.tsv``,
  ``samples.tsv`` or a ``phenotype/*.tsv`` has more than 1,000 rows, the
  validator is run with ``--max-rows -1`` (every row). Below that the
  validator's default is kept, so small datasets get exactly the official
  verdict. (``-1`` rather than the row count: the validator pre-allocates
  ``max-rows`` slots per column of every TSV it opens, which at tens of
  thousands of rows costs more memory than reading every row does.)
* **Millions of issues.** The validator builds its whole JSON output as one
  string (``JSON.stringify``); V8 caps a string at 2**29 - 24 characters
  (about 512 MiB), so beyond roughly 1.2 million issues (about 430 bytes each:
  20,000 subjects with sparse sidecars give 1.76 million warnings) it dies with
  ``RangeError: Invalid string length`` after the whole validation and gives no
  result. Its text output is aggregated by the validator itself (per code and
  sub-code: two examples and "N more files with the same issue"), so it stays
  small at any size; bidsaudit parses it into the same per-code counts. Large
  datasets (more than :data:`TEXT_FIRST_FILES` files) go to the text output
  directly; otherwise JSON is tried first and the text output is the fallback.
* **Memory.** The JSON output (190 MB at 5,000 subjects) is read as a stream,
  one issue at a time, so bidsaudit's own memory does not grow with it.

Reading the two outputs is :mod:`audit.validatoroutput` (its names are
importable from here too).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.bidsindex import read_json
from audit.errors import InputError, ValidatorError
from audit.findings import Finding, finding
from audit.progress import stage
from audit.validatoroutput import (
    MAX_EXAMPLES,
    CodeSummary,
    iter_json_issues,
    parse_text_output,
    read_json_output,
    summarise_issues,
)
from audit.validatoroutput import (
    relabel as _relabel,  # the text run moves ignore filters: their issues are relabelled
)

__all__ = [
    "CodeSummary",
    "ValidatorRun",
    "ValidatorError",
    "run_validator",
    "validator_findings",
    "summarise_issues",
    "parse_text_output",
    "iter_json_issues",
    "read_json_output",
    "validator_command",
    "dataset_table_rows",
    "rows_option",
    "ignored_counts",
    "MAX_EXAMPLES",
]

#: The validator's exit status when the dataset has errors.
ERROR_EXIT = 16
#: The validator's own ``--max-rows`` default.
VALIDATOR_DEFAULT_MAX_ROWS = 1000
#: Above this many files the validator's text output is parsed straight away: its JSON output
#: fails beyond about 1.2 million issues, i.e. 25 issues per file at 50,000 files, and a failed
#: JSON attempt costs a whole validation.
TEXT_FIRST_FILES = 50_000


@dataclass(frozen=True)
class ValidatorRun:
    """What the official validator said, aggregated by code (plain data)."""

    version: str
    exit_code: int
    seconds: float
    codes: Mapping[str, CodeSummary]
    corrections: tuple[str, ...] = ()
    output_format: str = "json"  # "json" | "text": which of the validator's outputs was read
    summary: Mapping[str, Any] = field(default_factory=dict)
    max_rows: int = VALIDATOR_DEFAULT_MAX_ROWS
    command: tuple[str, ...] = ()
    sharding: Mapping[str, Any] = field(default_factory=dict)  # how a sharded run went (audit.validatorsharded)

    @property
    def errors(self) -> list[str]:
        """Codes with at least one error."""
        return sorted(c for c, s in self.codes.items() if s.reported("error"))

    @property
    def warnings(self) -> list[str]:
        """Codes with at least one warning."""
        return sorted(c for c, s in self.codes.items() if s.reported("warning"))

    @property
    def ignored(self) -> list[str]:
        """Codes with issues the validator's config ignored."""
        return sorted(c for c, s in self.codes.items() if s.reported("ignore"))

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def derived_exit_code(self) -> int:
        """1 when any issue is an error, else 0 (the validator's own 16 means errors)."""
        return 1 if self.errors else 0

    def total(self, severity: str) -> int:
        return sum(s.reported(severity) for s in self.codes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
            "output_format": self.output_format, "max_rows": self.max_rows, "corrections": list(self.corrections),
            "codes": {c: {"severity": s.severity, "count": s.count, "severities": dict(s.severities),
                          "subcodes": dict(s.subcodes), "examples": list(s.examples)}
                      for c, s in sorted(self.codes.items())},
            **({"sharding": dict(self.sharding)} if self.sharding else {}),
        }


# ---------------------------------------------------------------------------------------------- running
def validator_command() -> list[str]:
    """The validator's command line (the console script beside this Python, else on PATH)."""
    here = Path(sys.executable).parent / "bids-validator-deno"
    if here.exists():
        return [str(here)]
    found = shutil.which("bids-validator-deno")
    if found:
        return [found]
    raise ValidatorError("the official BIDS validator (bids-validator-deno) is not installed: "
                         "pip install bids-validator-deno, or pass --no-validator")


def dataset_table_rows(dataset: Path) -> dict[str, int]:
    """Rows of the dataset-level tables whose row count grows with the cohort.

    ``participants.tsv``, ``samples.tsv`` and ``phenotype/*.tsv``: the ones the
    validator's cross-file rules compare with the whole dataset. Lines after the
    header are counted (an upper bound of the validator's rows).
    """
    candidates = [dataset / "participants.tsv", dataset / "samples.tsv"]
    pheno = dataset / "phenotype"
    if pheno.is_dir():
        candidates += sorted(p for p in pheno.iterdir() if p.suffix == ".tsv")
    out = {}
    for path in candidates:
        n = _count_lines(path)
        if n is not None:
            out[path.relative_to(dataset).as_posix()] = max(n - 1, 0)
    return out


def _count_lines(path: Path) -> int | None:
    try:
        with open(path, "rb") as fh:
            n, last = 0, b"\n"
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    return n + (last != b"\n")


def _check_config(config: Path) -> None:
    """The validator's config must be a JSON object of ``ignore``/``warning``/``error`` filter lists."""
    if not Path(config).is_file():
        raise InputError(config, "no such file", field="--validator-config",
                         expected="the validator's JSON config file")
    data = read_json(Path(config))  # malformed JSON -> InputError with line and column
    if not isinstance(data, dict):
        raise InputError(config, field="--validator-config", expected='a JSON object such as '
                         '{"ignore": [{"code": "EMPTY_FILE"}]}', got=type(data).__name__)
    for level in ("ignore", "warning", "error"):
        filters = data.get(level, [])
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            raise InputError(config, field=level, expected='a list of issue filters such as [{"code": "EMPTY_FILE"}]',
                             got=json.dumps(filters)[:80])


def _count_files(dataset: Path, stop: int) -> int:
    """Files under ``dataset``, counting stops above ``stop``."""
    n = 0
    stack = [dataset]
    while stack and n <= stop:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name not in (".git", ".datalad"):
                            stack.append(Path(entry.path))
                    else:
                        n += 1
        except OSError:
            continue
    return n


def run_validator(dataset: Path, *, ignore_nifti_headers: bool = False, config: Path | None = None,
                  timeout: float | None = None, n_files: int | None = None, output: str = "auto",
                  max_rows: int | None = None) -> ValidatorRun:
    """Run the official validator on ``dataset`` and aggregate its issues by code.

    Parameters
    ----------
    ignore_nifti_headers, config
        Passed to the validator as ``--ignoreNiftiHeaders`` and ``--config``.
    timeout
        Seconds for the whole call (every attempt together).
    n_files
        The dataset's file count when known (counted otherwise); above
        :data:`TEXT_FIRST_FILES` the aggregated text output is read directly.
    output
        ``"auto"`` (JSON, text when large or when JSON fails), ``"json"`` or ``"text"``.
    max_rows
        The validator's ``--max-rows``; ``None`` chooses: every row when a
        dataset-level table is longer than the validator's 1,000-row default.

    Raises
    ------
    InputError
        ``dataset`` is not a folder, or ``config`` is not a readable validator config.
    ValidatorError
        The validator is missing, timed out, or gave no usable output.
    """
    with stage("running the official BIDS validator"):  # its run shows no progress of its own: elapsed time
        return _run_validator(dataset, ignore_nifti_headers=ignore_nifti_headers, config=config, timeout=timeout,
                              n_files=n_files, output=output, max_rows=max_rows)


def _run_validator(dataset: Path, *, ignore_nifti_headers: bool, config: Path | None, timeout: float | None,
                   n_files: int | None, output: str, max_rows: int | None) -> ValidatorRun:
    if output not in ("auto", "json", "text"):
        raise ValueError(f"output must be auto, json or text, not {output!r}")
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InputError(dataset, "no such folder", expected="a BIDS dataset folder")
    if config is not None:
        _check_config(Path(config))
    cmd = validator_command()
    corrections: list[str] = []
    if max_rows is None:
        max_rows, corrections = rows_option(dataset)
    args = [str(dataset), "--no-color"]
    if max_rows is not None:
        args += ["--max-rows", str(max_rows)]
    if ignore_nifti_headers:
        args.append("--ignoreNiftiHeaders")
    env = dict(os.environ, NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    t0 = time.perf_counter()
    deadline = None if timeout is None else t0 + timeout
    used_rows = VALIDATOR_DEFAULT_MAX_ROWS if max_rows is None else max_rows
    version = _version(cmd)

    if output == "auto":
        if n_files is None:
            n_files = _count_files(dataset, TEXT_FIRST_FILES)
        if n_files > TEXT_FIRST_FILES:
            output = "text"
            corrections.append(
                f"more than {TEXT_FIRST_FILES:,} files: the validator's text output (which it aggregates by code) "
                "was read, because its JSON output fails beyond about 1.2 million issues")
    with tempfile.TemporaryDirectory(prefix="bidsaudit-validator-") as tmp:
        reason = None
        if output in ("auto", "json"):
            out = Path(tmp) / "result.json"
            full = [*cmd, *args, *(["--config", str(config)] if config else []), "--format", "json",
                    "--outfile", str(out)]
            rc, stderr = _call(full, env, deadline, Path(tmp) / "stderr.txt")
            if rc in (0, ERROR_EXIT) and out.is_file():
                try:
                    codes, tail = read_json_output(out)
                except ValueError as err:
                    reason = f"unreadable JSON output ({err})"
                else:
                    return ValidatorRun(exit_code=rc, seconds=time.perf_counter() - t0, codes=codes,
                                        corrections=tuple(corrections), output_format="json",
                                        summary=_small_summary(tail.get("summary", {})),
                                        command=tuple(full[len(cmd):]), version=version, max_rows=used_rows)
            else:
                reason = _failure(stderr, rc)
            if output == "json":
                raise ValidatorError(f"the official BIDS validator gave no result: {reason}")
            corrections.append(f"the validator's JSON output failed ({reason}); its text output, which it "
                               "aggregates by code, was read instead")
        stdout_path = Path(tmp) / "stdout.txt"
        text_config, shown_ignored, note = _text_config(config, Path(tmp))
        if note:
            corrections.append(note)
        args += ["--config", str(text_config)] if text_config else []
        rc, stderr = _call([*cmd, *args], env, deadline, Path(tmp) / "stderr.txt", stdout=stdout_path)
        with open(stdout_path, encoding="utf-8", errors="replace") as fh:
            notes: list[str] = []
            codes = parse_text_output(fh, notes=notes)
        corrections += notes
        for code in shown_ignored & codes.keys():
            _relabel(codes[code], "warning", "ignore")
        if config is not None and text_config != config:
            args[-1] = str(config)  # the command as the user would repeat it
        clean = not codes and _says_compatible(stdout_path)
    if (rc not in (0, ERROR_EXIT) or (rc == ERROR_EXIT and not any(s.reported("error") for s in codes.values()))
            or (not codes and not clean)):
        before = f"JSON output: {reason}; " if reason else ""
        raise ValidatorError(f"the official BIDS validator gave no result: {before}"
                             f"text output: {_failure(stderr, rc)}")
    return ValidatorRun(exit_code=rc, seconds=time.perf_counter() - t0, codes=codes, corrections=tuple(corrections),
                        output_format="text", command=tuple(args), version=version, max_rows=used_rows)


def _text_config(config: Path | None, tmp: Path) -> tuple[Path | None, set[str], str | None]:
    """The config for a text-output run, in which the codes the user's config ignores stay countable.

    The text output shows only warnings and errors. A code ignored by a
    code-only filter (``{"code": "EMPTY_FILE"}``), and named by no ``warning``
    or ``error`` filter, is moved to the ``warning`` level for this run, so its
    issues are printed and counted, then labelled ``ignore`` again. Returns the
    config to pass, the codes moved, and a note when some ignored issues
    cannot be counted (filters on files or sub-codes).
    """
    if config is None:
        return None, set(), None
    data = json.loads(Path(config).read_text(encoding="utf-8-sig"))
    others = [f for level in ("warning", "error") for f in data.get(level, [])]
    if any("code" not in f for f in others):
        named: set[str] | None = None  # a filter without a code may touch any code: move none
    else:
        named = {str(f["code"]) for f in others}
    moved: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for f in data.get("ignore", []):
        movable = named is not None and set(f) == {"code"} and str(f["code"]) not in named
        (moved if movable else kept).append(f)
    note = None
    if kept:
        note = ("the validator's text output omits issues its config ignores; those of "
                + ", ".join(json.dumps(f, sort_keys=True) for f in kept[:5])
                + (" ..." if len(kept) > 5 else "") + " are not counted")
    if not moved:
        return config, set(), note
    path = tmp / "text-config.json"
    path.write_text(json.dumps({**data, "ignore": kept, "warning": [*data.get("warning", []), *moved]}))
    return path, {str(f["code"]) for f in moved}, note


def _says_compatible(stdout: Path) -> bool:
    """The text output says the dataset has no issue at all."""
    with open(stdout, encoding="utf-8", errors="replace") as fh:
        return any("appears to be BIDS compatible" in line for line in fh)


def _call(argv: list[str], env: dict[str, str], deadline: float | None, stderr_path: Path,
          stdout: Path | None = None) -> tuple[int, str]:
    """Run the validator with its output in files (no pipe to fill); return exit status and stderr."""
    remaining = None if deadline is None else max(deadline - time.perf_counter(), 0.001)
    try:
        with open(stderr_path, "wb") as err, open(stdout or os.devnull, "wb") as out:
            proc = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                  timeout=remaining, check=False)
    except subprocess.TimeoutExpired:
        raise ValidatorError("the official BIDS validator did not finish in time "
                             f"({remaining:.0f} s left of the time limit)") from None
    except OSError as exc:
        raise ValidatorError(f"cannot run the official BIDS validator: {exc}") from None
    with open(stderr_path, "rb") as fh:
        fh.seek(max(os.fstat(fh.fileno()).st_size - 20_000, 0))
        return proc.returncode, fh.read().decode("utf-8", "replace")


def _failure(stderr: str, rc: int) -> str:
    """One line that says why the validator failed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    key = next((ln for ln in lines if re.search(r"Error\b|error:|heap limit|out of memory", ln)),
               lines[0] if lines else f"exit status {rc}")
    if re.search(r"heap limit|out of memory", stderr, re.I):
        key += " (the validator ran out of memory; DENO_V8_FLAGS=--max-old-space-size=MiB raises its limit)"
    return f"exit status {rc}: {key[:300]}"


@functools.cache
def _version_cached(cmd: tuple[str, ...]) -> str:
    """The validator's version from its package metadata (its ``--version`` prints the git describe of
    the current directory, not its own version)."""
    from importlib import metadata

    try:
        return "bids-validator-deno " + metadata.version("bids-validator-deno")
    except metadata.PackageNotFoundError:
        return "bids-validator (" + " ".join(cmd) + ")"


def _version(cmd: list[str]) -> str:
    return _version_cached(tuple(cmd))


def _small_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("totalFiles", "size", "dataTypes", "modalities", "schemaVersion")
    out = {k: summary[k] for k in keep if k in summary}
    if isinstance(summary.get("subjects"), list):
        out["subjects"] = len(summary["subjects"])
    return out


# ------------------------------------------------------------------------------------------- findings
def validator_findings(run: ValidatorRun) -> list[Finding]:
    """One ``bids.invalid`` finding per error code, one ``bids.warning`` per warning code.

    A code whose issues are partly errors and partly warnings (the validator's
    config can do that) gives both. Codes the config ignores give none (they are
    counted in :func:`ignored_counts`). The sum of the findings' counts is the
    number of issues the validator reported as errors or warnings.
    """
    out: list[Finding] = []
    for code, s in sorted(run.codes.items()):
        for severity in ("error", "warning"):
            count = s.reported(severity)
            if not count:
                continue
            examples = [e for e in s.examples if e.get("severity") == severity]
            noun = "issue" if count == 1 else "issues"
            first = f" (first: {examples[0]['file']})" if examples and examples[0].get("file") else ""
            message = f"{code}: {count:,} {noun}{first}" + (f" — {_short(s.message)}" if s.message else "")
            evidence: dict[str, Any] = {
                "code": code, "count": count, "examples": examples[:MAX_EXAMPLES], "subcodes": dict(s.subcodes),
                "files": [e["file"] for e in examples if e.get("file")],
                "n_subjects": len(s.subjects), "subjects_complete": s.subjects_complete,
                "validator_version": run.version, "validator_message": s.message,
                "validator_output": run.output_format, "max_rows": run.max_rows,
                "corrections": list(run.corrections),
            }
            if run.sharding:
                evidence["sharding"] = dict(run.sharding)
            if len(s.severities) > 1:
                evidence["severities"] = dict(s.severities)
            out.append(finding(message, subjects=sorted(s.subjects), severity=severity, evidence=evidence))
    return out


def ignored_counts(run: ValidatorRun) -> dict[str, int]:
    """Codes the validator's config ignored, with their counts."""
    return {c: s.reported("ignore") for c, s in sorted(run.codes.items()) if s.reported("ignore")}


def _short(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= 160 else first[:157] + "..."


def rows_option(dataset: Path) -> tuple[int | None, list[str]]:
    """``--max-rows`` for the validator (-1 when a table is longer than its default) and the note that says why."""
    rows = dataset_table_rows(dataset)
    longest = max(rows.items(), key=lambda kv: kv[1], default=("", 0))
    if longest[1] <= VALIDATOR_DEFAULT_MAX_ROWS:
        return None, []
    return -1, [f"{longest[0]} has {longest[1]:,} rows, more than the validator's default of "
                f"{VALIDATOR_DEFAULT_MAX_ROWS:,}: run with --max-rows -1 so that every row is read (with its "
                "default it reports false PARTICIPANT_ID_MISMATCH errors for the participants past row 1,000)"]
