"""The official validator run on shards of subjects in parallel, merged into the result of one run.

A shard is a *view* of the dataset: a scratch folder holding a symbolic link
to every top-level entry of the dataset (files, ``phenotype/``,
``derivatives/``...) and to the ``sub-*`` folders of a subset of the subjects.
Nothing is copied; the validator follows the links and reports the same paths
(``/sub-01/anat/...``) as on the dataset itself. Besides the shards one more
view is validated, the *top view*: the top-level entries and no subject.

Merging is exact (:func:`merge`): an issue located in a subject's folder
comes from the one shard that holds that subject (and that alone: the
validator's rules for a file look at its folder and the top level only). An
issue located at the top level is decided by the rule it comes from, in one
of three ways. A rule over the top level alone is reported alike by every
view. A rule that asks whether something exists among the subjects is reported
by a single run when any shard reports it (a subject folder missing from
``participants.tsv``, micro-imaging data without ``samples.tsv``:
:data:`ANY_SHARD_CODES`), or when every shard and the top view report it (a
top-level sidecar that no data file uses); a rule reported once per data file
that inherits a top-level file (the top view, with no data file, does not
report it) is summed over the shards. Rules for a subject's files that look at
the whole dataset's datatypes (``B0FieldSource`` is recommended when any
subject has ``fmap``) see them through *witness* subjects, linked into a shard
that lacks a datatype and whose own issues are dropped (their share of the
summed top-level issues is taken off with a run of the witnesses alone).
``tests/audit/test_validatorshards.py`` checks the merge against a single run
on every bids-examples dataset and on synthetic trees with planted errors.

Each shard's validator runs with its JSON output (a shard's issues stay far
below the 1.2 million at which that output fails), in a memory budget
(``DENO_V8_FLAGS=--max-old-space-size``). A shard that runs out of memory is
split in two and each half retried; a shard the validator fails on otherwise
is retried alone, then split; a single subject that still fails becomes a
``VALIDATOR_SHARD_FAILED`` error naming it and the validator's message, and the
other shards' results stand. Shards run in local threads (each waits on its own
validator process) or, given a Dask scheduler, on the cluster's workers (which
must see the dataset at the same path). With a :class:`ShardStore`, shards whose
files did not change are not validated again (:mod:`audit.validatorstore`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import InputError
from audit.validatoroutput import (
    MAX_EXAMPLES,
    CodeSummary,
    iter_json_issues,
    summarise_issues,
)

__all__ = [
    "FAILED_CODE",
    "ShardOptions",
    "ShardResult",
    "codes_from_parts",
    "pack_parts",
    "parts_of",
    "unpack_parts",
    "dask_runner",
    "dataset_subjects",
    "failed_summary",
    "local_runner",
    "make_view",
    "merge",
    "merge_summaries",
    "plan_shards",
    "View",
    "run_shard",
    "run_views",
    "top_counter",
    "top_key",
]

#: The code of a shard the validator gave no result for (a ``bids.invalid`` finding).
FAILED_CODE = "VALIDATOR_SHARD_FAILED"
_ERROR_EXIT = 16
_OOM = re.compile(r"heap limit|out of memory|allocation failed", re.I)


@dataclass(frozen=True)
class ShardOptions:
    """How every shard's validator runs (plain data, sent to Dask workers)."""

    command: tuple[str, ...]
    ignore_nifti_headers: bool = False
    config: str | None = None
    max_rows: int | None = None
    memory_mib: int | None = None  # the V8 heap of one validator process
    timeout: float | None = None  # seconds for one shard
    keep_issues: bool = False  # keep every issue (tests compare them file for file)


@dataclass
class ShardResult:
    """One view's validation: the subjects' issues aggregated, the top-level issues one by one."""

    subjects: tuple[str, ...]
    top: bool = False  # the top view
    witnesses: tuple[str, ...] = ()  # subjects linked only so that the view has every datatype; dropped
    codes: dict[str, CodeSummary] = field(default_factory=dict)  # issues inside the subjects' folders
    top_issues: list[dict[str, Any]] = field(default_factory=list)  # issues elsewhere
    messages: dict[str, str] = field(default_factory=dict)  # codeMessages
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    failure: str | None = None  # why the validator gave no result
    out_of_memory: bool = False
    issues: list[dict[str, Any]] | None = None  # every subject-level issue (keep_issues)
    runs: int = 1  # validator processes this result took (retries and splits included)
    #: issues inside the subjects' folders counted per (subject, code, severity, sub-code): what lets a
    #: stored shard be re-validated for its changed subjects only (:mod:`audit.validatorpatch`)
    parts: dict[tuple[str, str, str, str | None], int] = field(default_factory=dict)
    packed: bytes = b""  # the same counts packed (:func:`pack_parts`), as a fresh run keeps them: small in memory


def pack_parts(parts: Mapping[tuple[str, str, str, str | None], int]) -> bytes:
    """Per-subject counts as compressed JSON rows (a shard of 1,000 subjects: tens of KB instead of MBs of tuples).

    >>> unpack_parts(pack_parts({("sub-1", "X", "warning", None): 2}))
    {('sub-1', 'X', 'warning', None): 2}
    """
    rows = [[*k, n] for k, n in parts.items()]
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode("utf-8"), 3) if rows else b""


def unpack_parts(blob: bytes) -> dict[tuple[str, str, str, str | None], int]:
    """The counts of :func:`pack_parts` (malformed data raises ``ValueError``, ``zlib.error`` or ``TypeError``)."""
    if not blob:
        return {}
    return {(r[0], r[1], r[2], r[3]): int(r[4]) for r in json.loads(zlib.decompress(blob))}


def parts_of(result: ShardResult) -> dict[tuple[str, str, str, str | None], int]:
    """``result``'s per-subject counts, packed or not."""
    return result.parts or unpack_parts(result.packed)


# ------------------------------------------------------------------------------------------ planning
def dataset_subjects(dataset: Path) -> list[str]:
    """The ``sub-*`` folders at the top of ``dataset``, sorted."""
    with os.scandir(dataset) as it:
        return sorted(e.name for e in it if e.name.startswith("sub-") and e.is_dir())


def plan_shards(subjects: Sequence[str], shard_size: int) -> list[tuple[str, ...]]:
    """Consecutive runs of ``shard_size`` subjects in sorted order (stable: editing one subject
    changes one shard; new subjects at the end of the order change only the last ones).

    >>> plan_shards(["sub-1", "sub-2", "sub-3"], 2)
    [('sub-1', 'sub-2'), ('sub-3',)]
    """
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    ordered = sorted(subjects)
    return [tuple(ordered[i:i + shard_size]) for i in range(0, len(ordered), shard_size)]


def make_view(dataset: Path, dest: Path, subjects: Iterable[str], *, top: bool = False) -> Path:
    """Fill ``dest`` with links to the top-level entries of ``dataset`` and its ``subjects``' folders.

    ``top=True``: no subject at all (the top view).

    >>> import tempfile; d = Path(tempfile.mkdtemp()); (d / "ds" / "sub-1").mkdir(parents=True)
    >>> (d / "ds" / "sub-2").mkdir(); (d / "ds" / "README").write_text("x")
    1
    >>> sorted(p.name for p in make_view(d / "ds", d / "view", ["sub-2"]).iterdir())
    ['README', 'sub-2']
    """
    dataset = Path(dataset).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with os.scandir(dataset) as it:
        for entry in it:
            if not (entry.name.startswith("sub-") and entry.is_dir()):
                os.symlink(entry.path, dest / entry.name)
    for sub in () if top else subjects:
        os.symlink(dataset / sub, dest / sub)
    return dest


# ------------------------------------------------------------------------------------------- running
def _in_subject(location: Any) -> str | None:
    if not isinstance(location, str):
        return None
    part = location.lstrip("/").split("/", 1)[0]
    return part if part.startswith("sub-") and "/" in location.lstrip("/") else None


def run_shard(dataset: str, subjects: Sequence[str], options: ShardOptions, top: bool = False,
              witnesses: Sequence[str] = ()) -> ShardResult:
    """Validate one view of ``dataset`` (a plain function: it runs in a thread or on a Dask worker).

    ``witnesses`` are linked too and their folders' issues dropped.
    """
    import subprocess

    t0 = time.perf_counter()
    result = ShardResult(subjects=tuple(subjects), top=top, witnesses=tuple(witnesses))
    dropped = set(witnesses)
    with tempfile.TemporaryDirectory(prefix="bidsaudit-shard-") as tmp:
        view = make_view(Path(dataset), Path(tmp) / "view", [*subjects, *witnesses], top=top)
        out, err = Path(tmp) / "out.json", Path(tmp) / "stderr.txt"
        argv = [*options.command, str(view), "--no-color", "--format", "json", "--outfile", str(out)]
        if options.max_rows is not None:
            argv += ["--max-rows", str(options.max_rows)]
        if options.ignore_nifti_headers:
            argv.append("--ignoreNiftiHeaders")
        if options.config:
            argv += ["--config", options.config]
        env = dict(os.environ, NO_COLOR="1")
        env.pop("FORCE_COLOR", None)
        if options.memory_mib:
            env["DENO_V8_FLAGS"] = f"--max-old-space-size={int(options.memory_mib)}"
        try:
            with open(err, "wb") as fh:
                proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=fh, stdin=subprocess.DEVNULL,
                                      env=env, timeout=options.timeout, check=False)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            result.failure = f"did not finish in {options.timeout:.0f} s"
            result.seconds = time.perf_counter() - t0
            return result
        except OSError as exc:
            result.failure = f"cannot run the validator: {exc}"
            result.seconds = time.perf_counter() - t0
            return result
        stderr = err.read_bytes()[-20_000:].decode("utf-8", "replace")
        if rc not in (0, _ERROR_EXIT) or not out.is_file():
            result.failure = _why(stderr, rc)
            result.out_of_memory = bool(_OOM.search(stderr)) or rc in (-signal.SIGKILL, 137)
            result.seconds = time.perf_counter() - t0
            return result
        tail: dict[str, Any] = {}
        inner: list[dict[str, Any]] = []  # the subjects' issues kept whole: the examples (every one with keep_issues)
        parts: Counter[tuple[str, str, str, str | None]] = Counter()
        shown: Counter[tuple[str, str]] = Counter()
        try:
            with open(out, encoding="utf-8") as fh:
                for issue in iter_json_issues(fh, tail):
                    sub = _in_subject(issue.get("location"))
                    if sub is None:
                        result.top_issues.append(_slim(issue))
                        continue
                    if sub in dropped:
                        continue
                    code, sev = str(issue.get("code") or "UNKNOWN"), str(issue.get("severity") or "error")
                    parts[(sub, code, sev, issue.get("subCode") or None)] += 1
                    if options.keep_issues or shown[(code, sev)] < MAX_EXAMPLES:
                        shown[(code, sev)] += 1
                        inner.append(_slim(issue))
        except ValueError as exc:
            result.failure = f"unreadable JSON output ({exc})"
            result.seconds = time.perf_counter() - t0
            return result
        if options.keep_issues:
            result.issues = list(inner)
        result.codes = codes_from_parts(parts, summarise_issues(inner))
        result.packed = pack_parts(parts)  # kept packed: 100 shards of tuples would hold about 1 GiB
        result.messages = {k: str(v).strip() for k, v in (tail.get("codeMessages") or {}).items()}
        summary = tail.get("summary") or {}
        result.summary = {k: summary[k] for k in ("totalFiles", "size", "dataTypes", "modalities", "schemaVersion")
                          if k in summary}
    result.seconds = time.perf_counter() - t0
    return result


def _slim(issue: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("code", "subCode", "severity", "location", "issueMessage", "line", "character", "rule", "suggestion")
    return {k: issue[k] for k in keep if issue.get(k) is not None}


def codes_from_parts(parts: Mapping[tuple[str, str, str, str | None], int], examples: Mapping[str, CodeSummary]
                     ) -> dict[str, CodeSummary]:
    """Per-code summaries counted from per-(subject, code, severity, sub-code) counts, with the examples
    (and messages) of ``examples`` (summaries of some of the same issues: those whose files are in ``parts``'
    subjects are kept).

    >>> s = codes_from_parts({("sub-1", "X", "warning", "k"): 2, ("sub-2", "X", "error", None): 1}, {})["X"]
    >>> (s.count, s.severity, s.severities, s.subcodes, sorted(s.subjects))
    (3, 'error', {'warning': 2, 'error': 1}, {'k': 2}, ['sub-1', 'sub-2'])
    """
    codes: dict[str, CodeSummary] = {}
    for (sub, code, sev, subcode), n in parts.items():
        s = codes.get(code)
        if s is None:
            old = examples.get(code)
            s = codes[code] = CodeSummary(code, sev, message=old.message if old else "")
        s.add(None, subcode, n=n, severity=sev)  # counts only: no location, so no example
        s.subjects.add(sub)
    for code, s in codes.items():
        old = examples.get(code)
        for ex in old.examples if old else []:
            where = str(ex.get("file") or "").lstrip("/").split("/", 1)[0]
            sev = ex.get("severity", s.severity)
            if where in s.subjects and s._room(sev):
                s.examples.append(ex)
                s._shown[sev] = s._shown.get(sev, 0) + 1
    return codes


def _absorb(codes: dict[str, CodeSummary], issues: list[dict[str, Any]]) -> None:
    for code, s in summarise_issues(issues).items():
        if code in codes:
            merge_summaries(codes[code], s)
        else:
            codes[code] = s


def _why(stderr: str, rc: int) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    key = next((ln for ln in lines if re.search(r"Error\b|error:|heap limit|out of memory|panicked", ln)),
               lines[0] if lines else "")
    return f"exit status {rc}" + (f": {key[:300]}" if key else "")


def merge_summaries(into: CodeSummary, other: CodeSummary) -> None:
    """Add ``other``'s issues of one code to ``into`` (counts exact; examples up to :data:`MAX_EXAMPLES`)."""
    into.count += other.count
    for sev, n in other.severities.items():
        into.severities[sev] = into.severities.get(sev, 0) + n
    for sub, n in other.subcodes.items():
        into.subcodes[sub] = into.subcodes.get(sub, 0) + n
    into.subjects |= other.subjects
    into.subjects_complete = into.subjects_complete and other.subjects_complete
    into.message = into.message or other.message
    rank = {"error": 0, "warning": 1, "ignore": 2}
    if rank.get(other.severity, 0) < rank.get(into.severity, 0):
        into.severity = other.severity
    for ex in other.examples:
        sev = ex.get("severity", other.severity)
        if into._room(sev):
            into.examples.append(ex)
            into._shown[sev] = into._shown.get(sev, 0) + 1


# ------------------------------------------------------------------------------------------- merging
def _top_key(issue: Mapping[str, Any]) -> tuple[Any, ...]:
    return (issue.get("code"), issue.get("subCode"), issue.get("severity"), issue.get("location"),
            issue.get("line"), issue.get("character"))


def top_key(issue: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a top-level issue: code, sub-code, severity, location, line, character."""
    return _top_key(issue)


def top_counter(issues: Iterable[Mapping[str, Any]]) -> Counter[tuple[Any, ...]]:
    """How many times each top-level issue (code, sub-code, severity, location, line, character) occurs."""
    return Counter(_top_key(i) for i in issues)


def merge(top: ShardResult, shards: Sequence[ShardResult], alone: Mapping[tuple[str, ...], ShardResult] | None = None
          ) -> tuple[dict[str, CodeSummary], list[dict[str, Any]]]:
    """The per-code summaries of a single run, from the top view and the shards (see the module's docstring).

    ``alone`` maps each shard's witnesses to the result of a view of those
    witnesses alone (their own share of the per-file top-level issues is taken
    off the shard's). Returns the summaries and the kept top-level issues.
    """
    codes: dict[str, CodeSummary] = {}
    for shard in shards:
        for code, s in shard.codes.items():
            if code in codes:
                merge_summaries(codes[code], s)
            else:
                codes[code] = _copy(s)
    kept = _top_level(top, [s for s in shards if s.failure is None], alone or {})
    if kept:
        _absorb(codes, kept)
    messages: dict[str, str] = {}
    for r in (top, *shards):
        for k, v in r.messages.items():
            messages.setdefault(k, v)
    for code, s in codes.items():
        s.message = s.message or messages.get(code, "")
    return codes, kept


#: Top-level codes reported when any subject has something: a subject folder missing from
#: ``participants.tsv`` (``sub_dirs`` within ``participant_id``), ``"micr" in dataset.modalities``.
ANY_SHARD_CODES = frozenset({"PARTICIPANT_ID_MISMATCH", "SAMPLES_TSV_MISSING"})


def _top_level(top: ShardResult, shards: Sequence[ShardResult], alone: Mapping[tuple[str, ...], ShardResult]
               ) -> list[dict[str, Any]]:
    """The top-level issues of a single run.

    Per issue (code, sub-code, severity, location, line, character): the largest shard count for
    :data:`ANY_SHARD_CODES`; otherwise, when the top view reports it, the
    smallest count of the top view and every shard (a rule over the top level
    is reported alike everywhere; one that asks whether any subject uses a
    top-level file holds only where every shard says so); when the top view
    does not, the sum over the shards (an issue of a top-level sidecar reported
    once per data file that inherits it: the top view has no data files).
    """
    t = Counter(_top_key(i) for i in top.top_issues)
    per_shard = [Counter(_top_key(i) for i in s.top_issues) for s in shards]
    own_share = [Counter(_top_key(i) for i in alone[s.witnesses].top_issues) if s.witnesses and s.witnesses in alone
                 else Counter() for s in shards]
    examples: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in (top, *shards):
        for issue in r.top_issues:
            examples.setdefault(_top_key(issue), issue)
    out: list[dict[str, Any]] = []
    for key, issue in examples.items():
        code = key[0]
        if code in ANY_SHARD_CODES:
            n = max((c.get(key, 0) for c in per_shard), default=t.get(key, 0))
        elif t.get(key, 0):
            n = min([t[key], *(c.get(key, 0) for c in per_shard)])
        else:
            n = sum(max(c.get(key, 0) - w.get(key, 0), 0) for c, w in zip(per_shard, own_share))
        own = [i for i in top.top_issues if _top_key(i) == key] if key in t else []
        out += (own * n)[:n] if own and len(own) >= n else [issue] * n
    return out


def _copy(s: CodeSummary) -> CodeSummary:
    out = CodeSummary(s.code, s.severity, message=s.message, subjects_complete=s.subjects_complete)
    merge_summaries(out, s)
    out.count = s.count
    return out


# ----------------------------------------------------------------------------------- scheduling
@dataclass(frozen=True)
class View:
    """What one validator run sees: ``subjects`` (none linked when ``top``) and ``witnesses``."""

    subjects: tuple[str, ...]
    top: bool = False
    witnesses: tuple[str, ...] = ()


Runner = Callable[[Sequence[View]], list[ShardResult]]


def local_runner(dataset: Path, options: ShardOptions, jobs: int) -> Runner:
    """Run views in ``jobs`` threads, each waiting on its validator process."""

    def one(v: View) -> ShardResult:
        return run_shard(str(dataset), v.subjects, options, v.top, v.witnesses)

    def run(batch: Sequence[View]) -> list[ShardResult]:
        if jobs <= 1 or len(batch) == 1:
            return [one(v) for v in batch]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(one, batch))
    return run


def dask_runner(dataset: Path, options: ShardOptions, scheduler: Any) -> tuple[Runner, Callable[[], None]]:
    """Run views as tasks on a Dask cluster (an address or a ``Client``); also returns the closer."""
    try:
        from dask.distributed import Client
    except ImportError as err:  # pragma: no cover - dask is a dependency
        raise InputError(None, f"--scheduler needs dask.distributed ({err})", field="--scheduler") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout=30) if own else scheduler  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise InputError(None, f"cannot reach the Dask scheduler at {scheduler!r} ({err})",
                         field="--scheduler", expected="a reachable address such as tcp://host:8786") from None

    def run(batch: Sequence[View]) -> list[ShardResult]:
        futures = [client.submit(run_shard, str(dataset), list(v.subjects), options, v.top, list(v.witnesses),
                                 pure=False) for v in batch]
        out = []
        for fut, v in zip(futures, batch):
            try:
                out.append(fut.result())
            except Exception as err:  # a lost worker: the shard has no result and is retried
                out.append(ShardResult(subjects=v.subjects, top=v.top, witnesses=v.witnesses,
                                       failure=f"the Dask worker running it failed ({type(err).__name__}: {err})"))
        return out

    return run, (client.close if own else (lambda: None))


def run_views(views: Sequence[View], runner: Runner, witness_for: Callable[[Sequence[str]], tuple[str, ...]], *,
              max_retries: int = 64) -> tuple[list[list[ShardResult]], int]:
    """Validate ``views`` with ``runner``: per view, the results that cover it; and the number of retries.

    A view's results are its own when it succeeded. A shard the validator
    fails on is retried alone (one that ran out of memory is split at once);
    one that fails again is split in halves (each with its own witnesses),
    down to single subjects, at most ``max_retries`` validator runs in all;
    what still fails stays a failed result (:func:`failed_summary`). The top
    view is not retried.
    """
    first = runner(views) if views else []
    out: list[list[ShardResult]] = [[r] if r.failure is None or r.top else [] for r in first]
    pending = [(i, r) for i, r in enumerate(first) if r.failure is not None and not r.top]
    retries = 0
    while pending:
        alone: list[tuple[int, View]] = []
        halves: list[tuple[int, View]] = []
        for i, failed in pending:
            if failed.runs == 1 and not failed.out_of_memory:
                alone.append((i, View(failed.subjects, witnesses=failed.witnesses)))  # a crash: once more, alone
            elif len(failed.subjects) > 1:
                cut = len(failed.subjects) // 2
                halves += [(i, View(h, witnesses=witness_for(h))) for h in (failed.subjects[:cut],
                                                                             failed.subjects[cut:])]
            else:
                out[i].append(failed)  # one subject that fails: reported
        if retries + len(alone) + len(halves) > max_retries:
            for i, failed in pending:
                if not any(r is failed for r in out[i]):
                    out[i].append(failed)
            break
        retries += len(alone) + len(halves)
        again = [runner([v])[0] for _, v in alone] + (runner([v for _, v in halves]) if halves else [])
        pending = []
        for (i, _), r in zip([*alone, *halves], again):
            r.runs = 2
            if r.failure is None:
                out[i].append(r)
            else:
                pending.append((i, r))
    return out, retries


def failed_summary(failed: Sequence[ShardResult]) -> CodeSummary | None:
    """One ``VALIDATOR_SHARD_FAILED`` error per failed shard, naming its subjects and the validator's message."""
    if not failed:
        return None
    s = CodeSummary(FAILED_CODE, "error", message="The official validator gave no result for these subjects "
                    "(each shard was retried alone and split); their files were not validated.")
    for r in failed:
        first, last = r.subjects[0], r.subjects[-1]
        name = first if len(r.subjects) == 1 else f"{first}..{last} ({len(r.subjects)} subjects)"
        s.add(f"/{first}/", None, f"shard {name}: {r.failure}")
        s.subjects.update(r.subjects)
    return s
