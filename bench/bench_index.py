"""Benchmark: :func:`audit.bidsindex.index_dataset` against a floor and the field's BIDS indexers.

The issue's goals for a tree of 20,000 subjects (2 sessions x T1w + bold +
sidecars, zero-byte images, 160,004 files): the index within 3x of a *floor*
that walks the tree and reads every sidecar JSON, at least 5x faster than
bids2table and 50x faster than pybids, peak memory under 1 GiB, and a cost that
grows linearly with the number of files (shown at 1k, 5k and 20k subjects).

Tools (``--baselines``, any subset, in this order in the table):

``floor``
    ``os.scandir`` walk of the whole tree plus ``json.load`` of every ``.json``.
``scandir``
    The bare ``os.scandir`` walk (a lower bound no index can beat).
``bidsaudit``
    ``index_dataset(root)`` and ``len(index.rows)``.
``bidsaudit+sidecars``
    The same, then ``index.sidecar(path)`` for every image (the inheritance
    principle resolved and every sidecar JSON read, as pybids does when it
    indexes metadata). Comes with ``bidsaudit``; name it alone to run it alone.
``bids2table``
    ``bids2table.index_dataset(root)`` (an Arrow table of entities and paths).
``ancpbids``
    ``ancpbids.load_dataset(root)``.
``pybids``
    ``bids.BIDSLayout(root, validate=False)`` (metadata indexed, its default).

Each measurement runs in a fresh process (this file, ``--child TOOL ROOT``),
reaped with :func:`os.wait4`, so the peak RSS is that process's own. The
seconds are those of the indexing call inside the child (imports and interpreter
start excluded; the child's whole wall time is in the JSON as ``wall_s``). With
``--repeat N`` the tools take turns N times at each size; the table gives the
median seconds and the largest peak RSS. Trees are made once with
``../shared/make_synthetic_bids.py`` (zero-byte images) under ``--workdir`` and
reused; the table is also written to ``WORKDIR/bench_index.json``.

The third-party indexers are **not** dependencies of this repository and must
never become ones. Install them into a separate virtual environment and name
its interpreter with ``--baseline-python``::

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install bids2table ancpbids pybids

(measured with bids2table 2.3.1, ancpbids 0.4.10, pybids 0.22.0, pyarrow 26).
A tool that the interpreter cannot import is reported as "not installed"; one
that fails or runs past ``--timeout`` is reported as such, never a crash.

Usage::

    python bench/bench_index.py [--workdir /tmp/bidsaudit-bench] [--sizes 1000,5000,20000]
        [--baselines floor,scandir,bidsaudit,bids2table,ancpbids,pybids] [--repeat 3]
        [--baseline-python /tmp/bench-venv/bin/python] [--timeout 900]
        [--tool-sizes pybids=1000,5000] [--tool-repeat pybids=1]

This file imports only the standard library at module level, so that the
baseline interpreter can run it as a child.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/ is there already
from _trees import make_tree  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
SHARED = HERE.parent / "shared"
MAKER = SHARED / "make_synthetic_bids.py"

TOOLS = ("floor", "scandir", "bidsaudit", "bidsaudit+sidecars", "bids2table", "ancpbids", "pybids")
OURS = ("bidsaudit", "bidsaudit+sidecars")
THIRD_PARTY = ("bids2table", "ancpbids", "pybids")
GOALS = {"floor": 3.0, "bids2table": 5.0, "pybids": 50.0, "rss_mib": 1024.0}


# ----------------------------------------------------------------------------------- children
def _walk(root: str, read_json: bool) -> tuple[int, int]:
    """(files, JSON files read) of an ``os.scandir`` walk."""
    files = jsons = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                    continue
                files += 1
                if read_json and entry.name.endswith(".json"):
                    with open(entry.path, "rb") as fh:
                        json.load(fh)
                    jsons += 1
    return files, jsons


def child(tool: str, root: str) -> dict[str, Any]:
    """Run one tool once on ``root`` (in this fresh process) and say how it went."""
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    try:
        if tool in OURS:
            sys.path.insert(0, str(HERE))
            from audit.bidsindex import index_dataset
        elif tool == "bids2table":
            from bids2table import index_dataset as b2t_index
        elif tool == "ancpbids":
            import ancpbids
        elif tool == "pybids":
            from bids import BIDSLayout
    except ImportError as err:
        return {"status": "not installed", "error": str(err)}
    t1 = time.perf_counter()
    if tool == "floor":
        files, jsons = _walk(root, True)
        extra["json_read"] = jsons
    elif tool == "scandir":
        files, _ = _walk(root, False)
    elif tool in OURS:
        index = index_dataset(root)
        files = len(index.rows)
        if tool == "bidsaudit+sidecars":
            t_index = time.perf_counter() - t1
            images = index.images()
            keys = sum(len(index.sidecar(r.path)) for r in images)
            extra.update(index_s=round(t_index, 3), images=len(images), sidecar_keys=keys)
        extra["valid"] = sum(r.valid for r in index.rows)
    elif tool == "bids2table":
        files = b2t_index(root).num_rows
    elif tool == "ancpbids":
        dataset = ancpbids.load_dataset(root)
    elif tool == "pybids":
        layout = BIDSLayout(root, validate=False)
    else:
        raise SystemExit(f"unknown tool {tool!r}")
    seconds = time.perf_counter() - t1
    # counted after the clock stops: not every tool has a cheap count
    if tool == "ancpbids":
        files = sum(1 for _ in dataset.query(return_type="filename"))
    elif tool == "pybids":
        files = len(layout.get(return_type="filename"))
    return {"status": "ok", "seconds": seconds, "import_s": t1 - t0, "files": files, **extra}


# ----------------------------------------------------------------------------------- parent side
def ensure_tree(workdir: Path, n: int) -> Path:
    """The synthetic tree of ``n`` subjects, 2 sessions (made once; a half-made tree is never reused)."""
    root = workdir / f"ds{n}"
    last = root / f"sub-{n:0{max(5, len(str(n)))}d}" / "ses-02" / "func"
    if (root / "participants.tsv").is_file() and last.is_dir() and any(last.iterdir()):
        return root
    workdir.mkdir(parents=True, exist_ok=True)
    return make_tree(root, n, 2)


def run_child(python: str, tool: str, root: Path, timeout: float) -> dict[str, Any]:
    """One measurement in a fresh process: the child's report plus its wall time and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--child", tool, str(root)],
                                stdout=out, stderr=err, start_new_session=True, cwd=tempfile.gettempdir())
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    res: dict[str, Any] = {"wall_s": round(wall, 3), "rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if timed_out:
        return {**res, "status": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**res, "status": f"failed (exit {proc.returncode}): {tail[:200]}"}
    return {**res, **json.loads(lines[-1])}


def _per_tool(items: list[str], kind: type) -> dict[str, Any]:
    out = {}
    for item in items:
        tool, _, value = item.partition("=")
        if tool not in TOOLS or not value:
            raise SystemExit(f"expected TOOL=VALUE with TOOL one of {', '.join(TOOLS)}, got {item!r}")
        out[tool] = {int(v) for v in value.split(",")} if kind is set else int(value)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return dict(runs[-1])
    out = dict(ok[-1])
    out["seconds"] = round(statistics.median(r["seconds"] for r in ok), 3)
    out["seconds_all"] = [round(r["seconds"], 3) for r in ok]
    out["rss_mib"] = max(r["rss_mib"] for r in ok)
    out["wall_s"] = round(statistics.median(r["wall_s"] for r in ok), 3)
    out["import_s"] = round(statistics.median(r["import_s"] for r in ok), 3)
    if "index_s" in out:
        out["index_s"] = round(statistics.median(r["index_s"] for r in ok), 3)
    return out


def add_ratios(rows: list[dict[str, Any]]) -> None:
    by = {(r["size"], r["tool"]): r for r in rows}
    for r in rows:
        if r.get("status") != "ok":
            continue
        floor = by.get((r["size"], "floor"))
        if floor and floor.get("status") == "ok":
            r["vs_floor"] = round(r["seconds"] / floor["seconds"], 2)
        if r["tool"] in OURS:
            for other in ("bids2table", "ancpbids", "pybids"):
                o = by.get((r["size"], other))
                if o and o.get("status") == "ok":
                    r[f"speedup_vs_{other}"] = round(o["seconds"] / r["seconds"], 1)


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """One line per goal of the issue, for each bidsaudit row that has the figures."""
    lines = []
    for r in rows:
        if r["tool"] not in OURS or r.get("status") != "ok":
            continue
        parts = [f"{r['tool']} @ {r['size']}:"]
        if "vs_floor" in r:
            parts.append(f"floor x{r['vs_floor']} ({'met' if r['vs_floor'] <= GOALS['floor'] else 'MISSED'} <= 3)")
        for other in ("bids2table", "pybids"):
            if f"speedup_vs_{other}" in r:
                s = r[f"speedup_vs_{other}"]
                parts.append(f"{other} {s}x ({'met' if s >= GOALS[other] else 'MISSED'} >= {GOALS[other]:.0f})")
        parts.append(f"RSS {r['rss_mib']:.0f} MiB ({'met' if r['rss_mib'] < GOALS['rss_mib'] else 'MISSED'} < 1024)")
        lines.append(" ".join(parts))
    return lines


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'subjects':>8} {'files':>7}  {'tool':<19} {'seconds':>8} {'RSS MiB':>8} {'vs floor':>8}  {'vs b2t':>7} {'vs ancp':>7} {'vs pybids':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("status") != "ok":
            print(f"{r['size']:>8} {'':>7}  {r['tool']:<19} {r['status']}")
            continue

        def x(key: str) -> str:
            return f"{r[key]}x" if key in r else ""

        print(f"{r['size']:>8} {r['files']:>7}  {r['tool']:<19} {r['seconds']:>8.3f} {r['rss_mib']:>8.1f} "
              f"{x('vs_floor'):>8}  {x('speedup_vs_bids2table'):>7} {x('speedup_vs_ancpbids'):>7} "
              f"{x('speedup_vs_pybids'):>9}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bidsaudit-bench"))
    ap.add_argument("--sizes", default="1000,5000,20000", help="subjects per tree, comma-separated")
    ap.add_argument("--baselines", default="floor,scandir,bidsaudit,bids2table,ancpbids,pybids",
                    help=f"any of {','.join(TOOLS)} ('bidsaudit' brings 'bidsaudit+sidecars')")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and size (median seconds)")
    ap.add_argument("--baseline-python", default=None,
                    help="interpreter with bids2table/ancpbids/pybids (a separate venv; default: this one)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before one run is killed")
    ap.add_argument("--tool-sizes", action="append", default=[], metavar="TOOL=S1,S2",
                    help="run TOOL only at these sizes (e.g. pybids=1000,5000)")
    ap.add_argument("--tool-repeat", action="append", default=[], metavar="TOOL=N",
                    help="runs for TOOL instead of --repeat (e.g. pybids=1)")
    ap.add_argument("--child", nargs=2, metavar=("TOOL", "ROOT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        print(json.dumps(child(*a.child)), flush=True)
        return 0

    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    tools = [t.strip() for t in a.baselines.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown baseline {t!r} (choose from {', '.join(TOOLS)})")
    if "bidsaudit" in tools and "bidsaudit+sidecars" not in tools:
        tools.insert(tools.index("bidsaudit") + 1, "bidsaudit+sidecars")
    tools = [t for t in TOOLS if t in tools]
    tool_sizes = _per_tool(a.tool_sizes, set)
    tool_repeat = _per_tool(a.tool_repeat, int)
    if not MAKER.is_file():
        ap.error(f"{MAKER} not found (needed to make the synthetic trees)")
    py_ours = sys.executable
    py_base = a.baseline_python or sys.executable

    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} CPUs; baselines run by {py_base}", flush=True)
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for n in sizes:
        root = ensure_tree(a.workdir, n)
        todo = [t for t in tools if n in tool_sizes.get(t, {n})]
        for i in range(max([tool_repeat.get(t, a.repeat) for t in todo] or [0])):
            for t in todo:
                if i >= tool_repeat.get(t, a.repeat):
                    continue
                if i and runs[(n, t)][-1].get("status") != "ok":
                    continue  # not installed / failed / timed out once: not again
                res = run_child(py_base if t in THIRD_PARTY else py_ours, t, root, a.timeout)
                runs.setdefault((n, t), []).append(res)
                shown = f"{res['seconds']:.3f} s" if res.get("status") == "ok" else res["status"]
                print(f"#   {n:>6} {t:<19} run {i + 1}: {shown}, {res['rss_mib']:.0f} MiB", flush=True)

    rows = [{"size": n, "tool": t, **summarise(rs)} for (n, t), rs in runs.items()]
    add_ratios(rows)
    print()
    print_table(rows)
    lines = goals(rows)
    if lines:
        print()
        print("\n".join(lines))
    result = {
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "baseline_python": py_base,
        "repeat": a.repeat, "goals": GOALS, "rows": rows, "summary": lines,
    }
    a.workdir.mkdir(parents=True, exist_ok=True)
    (a.workdir / "bench_index.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n# written {a.workdir / 'bench_index.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
