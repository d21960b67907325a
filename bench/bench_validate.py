"""Benchmark: the official validator alone vs ``bidsaudit``'s use of it, at 5,000 and 20,000 subjects.

Baseline: ``bids-validator-deno DATASET --format json --ignoreNiftiHeaders``
(the validator as a user runs it). Measured: ``audit.validator.run_validator``
(every TSV row, JSON with a text-output fallback). For each it prints wall
time, peak RSS of the validator process tree, the exit status, whether a
result came out, and the error codes (a false PARTICIPANT_ID_MISMATCH at
5,000 subjects is the validator's 1,000-row default).

Usage::

    python bench/bench_validate.py --workdir /tmp/vbench --sizes 5000,20000

Trees are made once with ``../shared/make_synthetic_bids.py`` (2 sessions,
T1w + bold + sidecars, zero-byte images) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
MAKER = HERE.parent / "shared" / "make_synthetic_bids.py"


def child_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def ensure_tree(workdir: Path, n: int) -> Path:
    root = workdir / f"ds{n}"
    if not (root / "dataset_description.json").exists():
        subprocess.run([sys.executable, str(MAKER), str(root), "--subjects", str(n), "--sessions", "2"], check=True)
    return root


def bare(root: Path, out: Path) -> dict:
    from audit.validator import summarise_issues, validator_command

    out.unlink(missing_ok=True)  # never read a previous run's output
    t0 = time.perf_counter()
    proc = subprocess.run([*validator_command(), str(root), "--format", "json", "--ignoreNiftiHeaders",
                           "--outfile", str(out)], capture_output=True, text=True)
    secs = time.perf_counter() - t0
    try:
        data = json.loads(out.read_text())
        codes = summarise_issues(data["issues"]["issues"])
        errors = sorted(c for c, s in codes.items() if s.severity == "error")
        n_warn = sum(s.count for s in codes.values() if s.severity == "warning")
        result = "yes"
    except (OSError, ValueError, KeyError):
        errors, n_warn, result = [], None, "no (" + (proc.stderr.strip().splitlines() or ["?"])[-1][:80] + ")"
    return {"tool": "validator alone", "seconds": secs, "exit": proc.returncode, "result": result,
            "errors": errors, "warnings": n_warn}


def ours(root: Path) -> dict:
    from audit.validator import run_validator

    t0 = time.perf_counter()
    run = run_validator(root, ignore_nifti_headers=True)
    return {"tool": "bidsaudit", "seconds": time.perf_counter() - t0, "exit": run.exit_code,
            "result": f"yes ({run.output_format})", "errors": run.errors,
            "warnings": sum(s.count for s in run.codes.values() if s.severity == "warning")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bidsaudit-bench"))
    ap.add_argument("--sizes", default="5000,20000")
    ap.add_argument("--tools", default="bare,ours")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        root = ensure_tree(args.workdir, n)
        for tool in args.tools.split(","):
            # each measurement in a fresh process so the RSS figure is its own
            code = (f"import json,sys; sys.path.insert(0, {str(HERE)!r}); from bench.bench_validate import *; "
                    f"r = {'bare' if tool == 'bare' else 'ours'}(Path({str(root)!r})"
                    + (f", Path({str(args.workdir / 'bare.json')!r})" if tool == "bare" else "")
                    + "); r['rss_mib'] = child_rss_mib(); print(json.dumps(r))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["subjects"] = n
            rows.append(r)
            print(f"{n:>6} {r['tool']:<16} {r['seconds']:8.1f} s {r['rss_mib']:8.0f} MiB  exit {r['exit']:<3} "
                  f"result {r['result']:<28} errors {','.join(r['errors']) or '-'}  warnings {r['warnings']}",
                  flush=True)
    (args.workdir / "bench_validate.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
