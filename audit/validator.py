"""The official BIDS validator, run as a subprocess, its every issue kept.

:func:`run_validator` runs ``bids-validator-deno`` (the official validator,
shipped as a PyPI wheel) and aggregates what it reports by issue code: count,
severity, and up to :data:`MAX_EXAMPLES` examples (file, sub-code, message).
Nothing it reports is lost: every code comes out with its count.

Where the validator alone is not right, bidsaudit corrects it and says so in
:attr:`ValidatorRun.corrections`:

* The validator reads only the first 1,000 rows of a TSV by default, so at
  5,000 subjects it reports false ``PARTICIPANT_ID_MISMATCH`` errors; it is
  always run with ``--max-rows -1`` (every row).
* With millions of warnings (20,000 subjects with sparse sidecars) it dies
  while writing its JSON output and gives no result at all. bidsaudit then
  re-runs it with its text output, which the validator itself aggregates by
  code (examples plus "N more files with the same issue"), and parses that
  stream line by line into the same per-code counts.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import BidsauditError, InputError
from audit.findings import Finding, finding

__all__ = ["CodeSummary", "ValidatorRun", "ValidatorError", "run_validator", "validator_findings",
           "summarise_issues", "validator_command"]

MAX_EXAMPLES = 10
ERROR_EXIT = 16  # the validator's exit status when the dataset has errors


class ValidatorError(BidsauditError):
    """The official validator could not be run or gave no result."""


@dataclass
class CodeSummary:
    """Every issue of one code, aggregated."""

    code: str
    severity: str  # "error" | "warning" | "ignore"
    count: int = 0
    message: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)
    subcodes: dict[str, int] = field(default_factory=dict)

    def add(self, location: str | None, subcode: str | None = None, detail: str | None = None, n: int = 1) -> None:
        self.count += n
        if subcode:
            self.subcodes[subcode] = self.subcodes.get(subcode, 0) + n
        if location is not None and len(self.examples) < MAX_EXAMPLES:
            ex: dict[str, Any] = {"file": location}
            if subcode:
                ex["subcode"] = subcode
            if detail:
                ex["detail"] = detail[:500]
            self.examples.append(ex)


@dataclass(frozen=True)
class ValidatorRun:
    """What the official validator said, aggregated by code."""

    version: str
    exit_code: int
    seconds: float
    codes: Mapping[str, CodeSummary]
    corrections: tuple[str, ...] = ()
    output_format: str = "json"
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return sorted(c for c, s in self.codes.items() if s.severity == "error")

    @property
    def warnings(self) -> list[str]:
        return sorted(c for c, s in self.codes.items() if s.severity == "warning")

    @property
    def valid(self) -> bool:
        return not self.errors


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


#: Above this many files, go straight to the text output: the JSON output of a large dataset
#: with sparse sidecars (millions of warnings) fails after minutes of work.
TEXT_FIRST_FILES = 100_000


def run_validator(dataset: Path, *, ignore_nifti_headers: bool = False, config: Path | None = None,
                  timeout: float | None = None, n_files: int | None = None) -> ValidatorRun:
    """Run the official validator on ``dataset`` and aggregate its issues by code.

    ``n_files`` (the index's file count, when known) above :data:`TEXT_FIRST_FILES`
    skips the JSON attempt and parses the validator's aggregated text output.

    Raises
    ------
    InputError
        ``config`` is not a readable JSON file.
    ValidatorError
        The validator is missing, timed out, or gave no usable output in any format.
    """
    if config is not None:
        from audit.bidsindex import read_json

        if not Path(config).is_file():
            raise InputError(config, "no such file", field="--validator-config",
                             expected="the validator's JSON config file")
        read_json(Path(config))  # malformed JSON -> InputError with line and column
    cmd = validator_command()
    args = [str(dataset), "--max-rows", "-1", "--no-color"]
    if ignore_nifti_headers:
        args.append("--ignoreNiftiHeaders")
    if config is not None:
        args += ["--config", str(config)]
    corrections = ["read every TSV row (--max-rows -1); the validator's default of 1,000 rows reports false "
                   "PARTICIPANT_ID_MISMATCH errors on large datasets"]
    env = dict(os.environ, NO_COLOR="1")
    t0 = time.perf_counter()
    if n_files is not None and n_files > TEXT_FIRST_FILES:
        corrections.append(f"{n_files} files: the validator's aggregated text output was parsed (its JSON output "
                           "fails on millions of warnings)")
        return _run_text(cmd, args, env, timeout, t0, corrections, reason=None)
    with tempfile.TemporaryDirectory(prefix="bidsaudit-validator-") as tmp:
        out = Path(tmp) / "result.json"
        try:
            proc = subprocess.run([*cmd, *args, "--format", "json", "--outfile", str(out)], capture_output=True,
                                  text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise ValidatorError(f"the official BIDS validator did not finish within {timeout:.0f} s") from None
        except OSError as err:
            raise ValidatorError(f"cannot run the official BIDS validator: {err}") from None
        data = _load_json(out) if proc.returncode in (0, ERROR_EXIT) else None
        if data is not None:
            codes = summarise_issues(data.get("issues", {}).get("issues", []),
                                     data.get("issues", {}).get("codeMessages", {}))
            return ValidatorRun(version=_version(cmd), exit_code=proc.returncode,
                                seconds=time.perf_counter() - t0, codes=codes, corrections=tuple(corrections),
                                summary=_small_summary(data.get("summary", {})))
        reason = _first_line(proc.stderr) or f"exit status {proc.returncode}"
    # JSON output failed (e.g. millions of warnings): the text output is aggregated by the validator itself.
    corrections.append(f"the validator's JSON output failed ({reason}); its text output, which it aggregates "
                       "by code, was parsed instead")
    return _run_text(cmd, args, env, timeout, t0, corrections, reason=reason)


def _run_text(cmd: list[str], args: list[str], env: dict[str, str], timeout: float | None, t0: float,
              corrections: list[str], *, reason: str | None) -> ValidatorRun:
    with subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, bufsize=1 << 16) as text_proc:
        try:
            assert text_proc.stdout is not None and text_proc.stderr is not None
            codes = parse_text_output(text_proc.stdout)  # streamed: the output is never held whole
            stderr = text_proc.stderr.read()
            rc = text_proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            text_proc.kill()
            raise ValidatorError(f"the official BIDS validator did not finish within {timeout:.0f} s") from None
    if rc not in (0, ERROR_EXIT) or (not codes and rc != 0):
        before = f"{reason}; " if reason else ""
        raise ValidatorError(f"the official BIDS validator gave no result: {before}"
                             f"text output: {_first_line(stderr) or f'exit status {rc}'}")
    return ValidatorRun(version=_version(cmd), exit_code=rc, seconds=time.perf_counter() - t0, codes=codes,
                        corrections=tuple(corrections), output_format="text")


@functools.cache
def _version_cached(cmd: tuple[str, ...]) -> str:
    """The validator's version, from its package metadata (its ``--version`` prints a git describe)."""
    from importlib import metadata

    try:
        return "bids-validator-deno " + metadata.version("bids-validator-deno")
    except metadata.PackageNotFoundError:
        return "bids-validator (" + " ".join(cmd) + ")"


def _version(cmd: list[str]) -> str:
    return _version_cached(tuple(cmd))


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return ""


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _small_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("totalFiles", "size", "dataTypes", "modalities", "schemaVersion")
    return {k: summary[k] for k in keep if k in summary}


def summarise_issues(issues: Iterable[Mapping[str, Any]], messages: Mapping[str, str] | None = None
                     ) -> dict[str, CodeSummary]:
    """Aggregate the validator's JSON issues by code (every issue counted once)."""
    codes: dict[str, CodeSummary] = {}
    for issue in issues:
        code = str(issue.get("code", "UNKNOWN"))
        severity = str(issue.get("severity", "warning"))
        summary = codes.get(code)
        if summary is None:
            summary = codes[code] = CodeSummary(code, severity, message=(messages or {}).get(code, "").strip())
        elif severity == "error":
            summary.severity = "error"
        detail = issue.get("issueMessage")
        summary.add(issue.get("location"), issue.get("subCode"), str(detail) if detail else None)
    return codes


_HEAD = re.compile(r"^\s*\[(ERROR|WARNING)\]\s+([A-Z0-9_]+)\s*(.*)$")
_MORE = re.compile(r"^\s*(\d+) more files? with the same issue")
_FILE = re.compile(r"^\t\t(/\S.*?)(?: - .*)?$")
_SUB = re.compile(r"^\t\t([A-Za-z0-9_]+)\s*$")


def parse_text_output(lines: Iterable[str]) -> dict[str, CodeSummary]:
    """Parse the validator's text output (aggregated by code) into per-code counts."""
    codes: dict[str, CodeSummary] = {}
    current: CodeSummary | None = None
    subcode: str | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        m = _HEAD.match(line)
        if m:
            _at_least_one(current)
            sev, code, msg = m.groups()
            current = codes.setdefault(code, CodeSummary(code, sev.lower(), message=msg.strip()))
            subcode = None
            continue
        if current is None:
            continue
        m = _MORE.match(line)
        if m:
            current.add(None, subcode, n=int(m.group(1)))
            continue
        m = _FILE.match(line)
        if m:
            current.add(m.group(1), subcode)
            continue
        m = _SUB.match(line)
        if m:
            subcode = m.group(1)
    _at_least_one(current)
    return codes


def _at_least_one(summary: CodeSummary | None) -> None:
    """A code the text output names without listing files still occurred once."""
    if summary is not None and summary.count == 0:
        summary.count = 1


def validator_findings(run: ValidatorRun) -> list[Finding]:
    """One ``bids.invalid`` finding per error code, one ``bids.warning`` per warning code."""
    out: list[Finding] = []
    for code, s in sorted(run.codes.items()):
        if s.severity not in ("error", "warning"):
            continue  # codes the user's validator config ignores
        subjects = sorted({_subject_of(e["file"]) for e in s.examples if _subject_of(e["file"])})
        files = "" if not s.examples else f" (first: {s.examples[0]['file']})"
        noun = "issue" if s.count == 1 else "issues"
        message = f"{code}: {s.count} {noun}{files}" + (f" — {_short(s.message)}" if s.message else "")
        out.append(finding(
            message, subjects=subjects, severity="error" if s.severity == "error" else "warning",
            evidence={"code": code, "count": s.count, "examples": s.examples, "subcodes": s.subcodes,
                      "validator_version": run.version, "validator_message": s.message,
                      "corrections": list(run.corrections)},
        ))
    return out


def ignored_counts(run: ValidatorRun) -> dict[str, int]:
    """Codes the validator's config ignored, with their counts."""
    return {c: s.count for c, s in sorted(run.codes.items()) if s.severity == "ignore"}


def _subject_of(path: str) -> str | None:
    part = path.lstrip("/").split("/", 1)[0]
    return part if part.startswith("sub-") else None


def _short(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= 160 else first[:157] + "..."

