"""Benchmark: the official validator alone vs ``bidsaudit``'s single and sharded runs of it, and an incremental re-run.

(a) ``bare``: ``bids-validator-deno DATASET --format json --ignoreNiftiHeaders
    [--config CFG] --outfile FILE``, the validator as its users run it (its
    default of 1,000 TSV rows).
(b) ``ours``: :func:`audit.validator.run_validator` (every row when
    participants.tsv is longer than that; JSON read as a stream, or the
    validator's aggregated text output for large datasets / when JSON fails).

(c) ``sharded``: :func:`audit.validatorsharded.validate_with_shards` (shards of
    ``--shard-size`` subjects, ``--jobs`` at once, a fresh shard store in WORKDIR).
(d) ``rerun``: the same after editing one subject's sidecar (a key added to
    one T1w JSON), with the store (c) left: only that subject is validated
    again (its shard patched, :mod:`audit.validatorpatch`). The sidecar is
    restored afterwards (so the next ``rerun`` patches it back).
(e) ``noop``: the same with nothing changed: no validator runs; the walk,
    the folder digests and the stored results.

``--shard-cost 50,250,500,1000`` measures one shard (a view of the first N
subjects of the largest tree) alone: wall and CPU seconds of the validator,
its JSON output's size, its peak RSS and bidsaudit's side of the shard
(:func:`audit.validatorshards.run_shard` with a stand-in validator that hands
back the saved output: the view's links and the parse, Python CPU), to split the
validator's cost into a fixed part per shard and a part per subject.

Times are also given as ratios to (a) measured in the same session (the
machine is shared: contention hits every row alike). Each measurement runs in a fresh Python process; the table gives wall seconds,
the CPU seconds of the validator processes (``RUSAGE_CHILDREN``, all of them
together) and of the Python side, the peak RSS of the validator process and of
the Python side (``RUSAGE_SELF``, which includes reading the validator's
output), the exit status, and whether the result is correct.

Correct means: the error and warning codes, and every code's count, equal the
expected ones. The expectation does not come from the validator at that size
(it has none to give at 20,000): the synthetic trees repeat the same files per
subject and session, so the counts are extrapolated exactly from the
validator's JSON output on trees of 2 and 3 subjects (count = base + per-subject
* N), which is small enough for the validator to get right.

Usage::

    python bench/bench_validate.py [--workdir /tmp/bidsaudit-bench] [--sizes 5000,20000] [--sessions 2]
                                   [--tools bare,ours,sharded,noop,rerun] [--config FILE|none]
                                   [--shard-cost 50,250,500,1000]

Trees are made once with ``../shared/make_synthetic_bids.py`` (zero-byte
images, so ``--ignoreNiftiHeaders``) and reused. The config defaults to
bids-examples' ``default-config.json`` (ignores ``EMPTY_FILE``, as the official
bids-examples runs do). Results are also written to WORKDIR/bench_validate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/ is there already
from _trees import make_tree  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
SHARED = (Path(os.environ["BIDSAUDIT_SHARED_DATA"]).parent if os.environ.get("BIDSAUDIT_SHARED_DATA")
          else HERE.parent / "shared")  # a worktree elsewhere: the shared data folder names it
MAKER = SHARED / "make_synthetic_bids.py"
DEFAULT_CONFIG = SHARED / "data" / "bids-examples" / "default-config.json"

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def ensure_tree(workdir: Path, n: int, sessions: int) -> Path:
    """The synthetic tree of ``n`` subjects (made once; a half-made tree is never reused)."""
    root = workdir / (f"ds{n}" if sessions == 2 else f"ds{n}-ses{sessions}")
    last = root / f"sub-{n:0{max(5, len(str(n)))}d}" / f"ses-{sessions:02d}"
    if (root / "participants.tsv").is_file() and last.is_dir():
        return root
    return make_tree(root, n, sessions, maker=MAKER)


# ----------------------------------------------------------------------------------- measurements
def measure_bare(root: Path, config: Path | None) -> dict[str, Any]:
    from audit.validator import read_json_output, validator_command

    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [*validator_command(), str(root), "--format", "json", "--ignoreNiftiHeaders", "--outfile", str(out)]
        if config:
            cmd += ["--config", str(config)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        result: dict[str, Any] = {"tool": "validator alone", "seconds": secs, "exit": proc.returncode}
        try:
            codes, _tail = read_json_output(out)
        except (OSError, ValueError):
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            why = next((ln for ln in lines if "Error" in ln), lines[0] if lines else f"exit {proc.returncode}")
            result.update(result=None, failure=why[:160])
        else:
            result.update(result={c: {s: n for s, n in sm.severities.items()} for c, sm in codes.items()},
                          output="json")
    return result


def measure_ours(root: Path, config: Path | None) -> dict[str, Any]:
    from audit.validator import run_validator

    t0 = time.perf_counter()
    run = run_validator(root, ignore_nifti_headers=True, config=config)
    return {"tool": "bidsaudit", "seconds": time.perf_counter() - t0, "exit": run.exit_code,
            "result": {c: dict(s.severities) for c, s in run.codes.items()}, "output": run.output_format,
            "max_rows": run.max_rows, "corrections": list(run.corrections)}


def measure_sharded(root: Path, config: Path | None, *, rerun: bool = False, edit: bool = True) -> dict[str, Any]:
    from audit.hashing import HashCache
    from audit.validatorsharded import DEFAULT_SHARD_SIZE, validate_with_shards
    from audit.validatorstore import ShardStore

    size = int(os.environ.get("BENCH_SHARD_SIZE") or DEFAULT_SHARD_SIZE)
    jobs = int(os.environ.get("BENCH_JOBS") or os.cpu_count() or 1)
    state = Path(os.environ["BENCH_STORE"]) / root.name
    if not rerun and state.exists():
        import shutil

        shutil.rmtree(state)
    edited = None
    if rerun and edit:
        first = sorted(p for p in root.iterdir() if p.name.startswith("sub-"))[len(list(root.glob("sub-*"))) // 2]
        edited = next(first.rglob("*_T1w.json"))
        original = edited.read_bytes()
        data = json.loads(original)
        data["BenchEdited"] = str(time.time_ns())  # new content each time: no stored result fits it
        edited.write_text(json.dumps(data))
    try:
        t0 = time.perf_counter()
        run = validate_with_shards(root, ignore_nifti_headers=True, config=config, shard_size=size, jobs=jobs,
                                   store=ShardStore(state), cache=HashCache(state))
        secs = time.perf_counter() - t0
    finally:
        if edited is not None:
            edited.write_bytes(original)
    name = ("rerun (1 edit)" if edited is not None else "rerun (no edit)") if rerun else f"sharded {size}x{jobs}"
    return {"tool": name, "seconds": secs, "exit": run.exit_code,
            "result": {c: dict(s.severities) for c, s in run.codes.items()}, "output": run.output_format,
            "sharding": dict(run.sharding), "edited": str(edited) if edited else None}


def shard_cost(root: Path, config: Path | None, sizes: list[int]) -> list[dict[str, Any]]:
    """One shard of the first N subjects of ``root`` (N = 0: the top view), each in its own validator run."""
    from audit.validator import rows_option, validator_command
    from audit.validatorshards import (
        ShardOptions,
        dataset_subjects,
        make_view,
        run_shard,
    )

    subjects = dataset_subjects(root)
    max_rows, _ = rows_option(root)
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-shard-") as tmp:
            view = make_view(root, Path(tmp) / "view", subjects[:n], top=n == 0)
            out = Path(tmp) / "out.json"
            cmd = [*validator_command(), str(view), "--no-color", "--format", "json", "--outfile", str(out),
                   "--ignoreNiftiHeaders", *(["--max-rows", str(max_rows)] if max_rows is not None else []),
                   *(["--config", str(config)] if config else [])]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=False)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            # our side alone: run_shard with a "validator" that hands back the saved output
            fake = Path(tmp) / "fake.sh"
            fake.write_text(f'#!/bin/sh\nwhile [ "$1" != "--outfile" ]; do shift; done\ncp "{out}" "$2"\n')
            fake.chmod(0o755)
            t1 = time.process_time()
            got = run_shard(str(root), subjects[:n], ShardOptions(command=(str(fake),)), top=n == 0)
            parse = time.process_time() - t1
            rows.append({"subjects": n, "wall_s": wall, "validator_cpu_s": cpu, "output_mb": out.stat().st_size / 1e6,
                         "issues": sum(s.count for s in got.codes.values()) + len(got.top_issues),
                         "parse_cpu_s": parse, "validator_rss_mib": after.ru_maxrss / 1024})
            print(f"# shard of {n:>6} subjects: wall {wall:6.2f} s, validator CPU {cpu:6.2f} s, output "
                  f"{rows[-1]['output_mb']:6.1f} MB ({rows[-1]['issues']:,} issues), our parse {parse:5.2f} s CPU, "
                  f"peak RSS so far {rows[-1]['validator_rss_mib']:.0f} MiB", flush=True)
    if len(rows) >= 3:
        import numpy as np

        pts = [r for r in rows if r["subjects"] > 0]
        slope, fixed = np.polyfit([r["subjects"] for r in pts], [r["validator_cpu_s"] for r in pts], 1)
        print(f"# validator CPU per shard ~ {fixed:.2f} s + {slope * 1000:.2f} ms per subject (least squares over "
              f"{len(pts)} shard sizes)", flush=True)
    return rows


def _child(tool: str, root: Path, config: Path | None) -> None:
    if tool in ("sharded", "rerun", "noop"):
        r = measure_sharded(root, config, rerun=tool != "sharded", edit=tool == "rerun")
    else:
        r = (measure_bare if tool == "bare" else measure_ours)(root, config)
    children, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    r["validator_rss_mib"] = children.ru_maxrss / 1024
    r["python_rss_mib"] = me.ru_maxrss / 1024
    r["validator_cpu_s"] = children.ru_utime + children.ru_stime
    r["python_cpu_s"] = me.ru_utime + me.ru_stime
    print(json.dumps(r))


def measure(tool: str, root: Path, config: Path | None) -> dict[str, Any]:
    """One measurement in a fresh process, so that its peak RSS figures are its own."""
    cmd = [sys.executable, __file__, "--_child", tool, str(root), "--config", str(config) if config else "none"]
    env = dict(os.environ, NO_COLOR="1", BENCH_STORE=str(root.parent / "shard-stores"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"tool": tool, "seconds": float("nan"), "exit": None, "result": None, "failure": tail[0][:160],
                "validator_rss_mib": float("nan"), "python_rss_mib": float("nan"), "validator_cpu_s": float("nan"),
                "python_cpu_s": float("nan")}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------------------------- expectation
def expected_counts(workdir: Path, sessions: int, config: Path | None, n: int) -> dict[str, dict[str, int]]:
    """Per code and severity, extrapolated from 2- and 3-subject trees (count = base + per-subject * n)."""
    small: dict[int, dict[str, dict[str, int]]] = {}
    for k in (2, 3):
        r = measure_bare(ensure_tree(workdir, k, sessions), config)
        if r["result"] is None:
            raise SystemExit(f"the validator failed on the {k}-subject tree: {r.get('failure')}")
        small[k] = r["result"]
    out: dict[str, dict[str, int]] = {}
    for code in set(small[2]) | set(small[3]):
        for sev in set(small[2].get(code, {})) | set(small[3].get(code, {})):
            c2, c3 = small[2].get(code, {}).get(sev, 0), small[3].get(code, {}).get(sev, 0)
            count = c2 + (c3 - c2) * (n - 2)
            if count:
                out.setdefault(code, {})[sev] = count
    return out


def verdict(r: dict[str, Any], expected: dict[str, dict[str, int]]) -> str:
    if r["result"] is None:
        return "NO RESULT: " + str(r.get("failure", "?"))
    got = {c: {s: n for s, n in sev.items() if n} for c, sev in r["result"].items()}
    if got == expected:
        return "correct"
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    wrong = sorted(c for c in set(got) & set(expected) if got[c] != expected[c])
    parts = ([f"false {','.join(extra)}"] if extra else []) + ([f"missing {','.join(missing)}"] if missing else []) \
        + ([f"miscounted {','.join(wrong)}"] if wrong else [])
    return "WRONG: " + "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bidsaudit-bench"))
    ap.add_argument("--sizes", default="5000,20000")
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--tools", default="bare,ours,sharded,rerun")
    ap.add_argument("--shard-size", type=int, default=0, help="subjects per shard (default: bidsaudit's)")
    ap.add_argument("--jobs", type=int, default=0, help="shards at once (default: all cores)")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else "none")
    ap.add_argument("--shard-cost", default="", help="measure one shard of these sizes (of the largest tree) alone")
    ap.add_argument("--_child", nargs=2, metavar=("TOOL", "DATASET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    config = None if args.config == "none" else Path(args.config)
    if args.shard_size:
        os.environ["BENCH_SHARD_SIZE"] = str(args.shard_size)
    if args.jobs:
        os.environ["BENCH_JOBS"] = str(args.jobs)
    if args._child:
        _child(args._child[0], Path(args._child[1]), config)
        return
    if not MAKER.is_file():
        raise SystemExit(f"{MAKER} not found (the ../shared folder is absent)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    from audit.validator import _version, validator_command

    print(f"# {_version(validator_command())}; config: {config or 'none'}; {os.cpu_count()} CPUs", flush=True)
    rows: list[dict[str, Any]] = []
    if args.shard_cost:
        largest = ensure_tree(args.workdir, max(int(s) for s in args.sizes.split(",")), args.sessions)
        rows += shard_cost(largest, config, [int(s) for s in args.shard_cost.split(",")])
    print(f"{'subjects':>8} {'files':>7}  {'tool':<16} {'seconds':>8} {'x bare':>7} {'val. CPU':>9} {'py CPU':>7} "
          f"{'validator RSS':>14} {'python RSS':>11}  {'exit':>4}  {'output':<6}  result", flush=True)
    for n in [int(s) for s in args.sizes.split(",")]:
        root = ensure_tree(args.workdir, n, args.sessions)
        expected = expected_counts(args.workdir, args.sessions, config, n)
        files = 4 + 4 * n * args.sessions
        bare_s = float("nan")
        for tool in args.tools.split(","):
            r = measure(tool, root, config)
            r.update(subjects=n, files=files, verdict=verdict(r, expected))
            if tool == "bare":
                bare_s = r["seconds"]
            r["x_bare"] = r["seconds"] / bare_s if bare_s == bare_s and bare_s > 0 else float("nan")
            if r.get("sharding"):
                sh = r["sharding"]
                r["verdict"] += (f" ({sh['validated_shards']}/{sh['shards']} shards, {sh['validated_subjects']} "
                                 f"subjects validated)")
            rows.append(r)
            print(f"{n:>8} {files:>7}  {r['tool']:<16} {r['seconds']:>8.1f} {r['x_bare']:>7.2f} "
                  f"{r['validator_cpu_s']:>9.1f} {r['python_cpu_s']:>7.1f} {r['validator_rss_mib']:>10.0f} MiB "
                  f"{r['python_rss_mib']:>7.0f} MiB  {r['exit'] if r['exit'] is not None else '-':>4}  "
                  f"{r.get('output', '-'):<6}  {r['verdict']}", flush=True)
        print(f"#   expected at {n}: " + ", ".join(f"{c} {s}" for c, s in sorted(expected.items())), flush=True)
    (args.workdir / "bench_validate.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
