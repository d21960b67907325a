"""Fuzzing campaigns with figures: inputs tried, disagreements, crashes and hangs per parser.

* **NIfTI, differential** (``bench/_niftifuzz.py``): generated and mutated
  NIfTI-1/-2 files decoded by :func:`audit.images.decode.decode_nifti` and by
  nibabel; counted: both read the same (array bit for bit, scaling, affine),
  both refuse, bidsaudit refuses on purpose (a policy code), disagreements,
  crashes (an exception other than a refusal out of ``summarise_file``'s
  decoding), hangs (over ``--limit`` seconds).
* **NIfTI, coverage-guided** (``--atheris N``, when atheris is installed):
  libFuzzer mutates raw bytes starting from a corpus of generated files; the
  property is the same: the decoding step of ``summarise_file`` returns a
  status, never raises.
* **Every other parser** (``bench/_parserfuzz.py``): split files of every
  format, participants.tsv, sidecar JSON, bidsaudit.toml, certificates,
  expectation suites; counted: accepted, refused (exit 2), crashes, hangs.

Usage::

    .venv/bin/python bench/bench_fuzz.py [--nifti 5000] [--parsers 1000] [--atheris 20000] [--limit 5]

Prints one table; exit code 1 when anything disagreed, crashed or hung.
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._niftifuzz import compare, make_case  # noqa: E402
from bench._parserfuzz import TARGETS, mutate, run_one  # noqa: E402


def nifti_campaign(n: int, limit: float, seed: int = 0) -> dict[str, object]:
    from audit.images.decode import BadImage
    from audit.images.imagefile import _decode

    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = {}
    slowest = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for i in range(n):
            case = make_case(random.Random(seed * 10**9 + i))
            t0 = time.perf_counter()
            try:
                out = compare(case, folder)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        _decode(case.raw, {})
                except BadImage:
                    pass
            except Exception as err:  # noqa: BLE001
                counts["crashes"] += 1
                examples.setdefault("crash", case.recipe + [repr(err)])
                continue
            dt = time.perf_counter() - t0
            slowest = max(slowest, dt)
            if dt > limit:
                counts["hangs"] += 1
            if not out.agree:
                counts["disagreements"] += 1
                examples.setdefault(out.why, case.recipe)
            elif out.why == "both refuse":
                counts["both refuse"] += 1
            elif out.why == "policy refusal":
                counts[f"policy refusal ({out.ours})"] += 1
            else:
                counts["same array"] += 1
    return {"tried": n, "counts": counts, "slowest": slowest, "examples": examples}


def parser_campaign(n: int, limit: float, seed: int = 0) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for target in TARGETS:
            rng = random.Random(seed)
            counts: collections.Counter[str] = collections.Counter()
            slowest = 0.0
            example = None
            for _ in range(n):
                data = mutate(rng, rng.choice(target.seeds))
                outcome, dt, detail = run_one(target, data, Path(folder) / "x")
                counts[outcome] += 1
                slowest = max(slowest, dt)
                if dt > limit:
                    counts["hang"] += 1
                if outcome == "crash" and example is None:
                    example = (data[:200], detail.strip().splitlines()[-1])
            rows.append({"parser": target.name, "tried": n, "counts": counts, "slowest": slowest,
                         "example": example})
    return rows


ATHERIS_HARNESS = '''
import sys, warnings, logging
sys.path.insert(0, {root!r})
import atheris
with atheris.instrument_imports():
    from audit.images.decode import BadImage, decode_nifti
    from audit.images.imagefile import _decode
logging.disable(logging.CRITICAL)

def one(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _decode(data, {{}})
        except BadImage:
            pass

atheris.Setup(sys.argv, one)
atheris.Fuzz()
'''


def atheris_campaign(n: int, seed: int = 0) -> dict[str, object]:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {"skipped": "atheris is not installed (pip install atheris)"}
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus"
        corpus.mkdir()
        for i in range(64):
            case = make_case(random.Random(10**6 + i))
            (corpus / f"seed{i:03d}").write_bytes(case.raw)
        harness = Path(folder) / "harness.py"
        harness.write_text(ATHERIS_HARNESS.format(root=str(ROOT)))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(harness), f"-runs={n}", f"-seed={seed + 1}", "-max_len=65536",
                               "-timeout=10", "-rss_limit_mb=4096", str(corpus)],
                              capture_output=True, text=True, cwd=folder)
        wall = time.perf_counter() - t0
    tail = proc.stderr.strip().splitlines()
    done = [ln for ln in tail if ln.startswith("Done ")]
    cov = [ln for ln in tail if " cov: " in ln]
    return {"runs": n, "exit": proc.returncode, "wall_s": wall, "done": done[-1] if done else "",
            "coverage": cov[-1].split(" exec/s")[0] if cov else "",
            "crash": "\n".join(tail[-25:]) if proc.returncode != 0 else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nifti", type=int, default=5000, help="generated NIfTI inputs (differential)")
    ap.add_argument("--parsers", type=int, default=1000, help="mutated inputs per other parser")
    ap.add_argument("--atheris", type=int, default=0, help="libFuzzer runs over raw NIfTI bytes (0: none)")
    ap.add_argument("--limit", type=float, default=5.0, help="seconds after which one input counts as a hang")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    bad = 0
    t0 = time.perf_counter()
    if args.nifti:
        r = nifti_campaign(args.nifti, args.limit, args.seed)
        c = r["counts"]
        print(f"NIfTI decoder vs nibabel: {r['tried']} inputs in {time.perf_counter() - t0:.0f} s; "
              f"slowest {r['slowest']:.2f} s")
        for k, v in sorted(c.items()):
            print(f"  {k:40s} {v:6d}")
        print(f"  {'disagreements':40s} {c['disagreements']:6d}\n  {'crashes':40s} {c['crashes']:6d}\n"
              f"  {'hangs':40s} {c['hangs']:6d}")
        for why, recipe in r["examples"].items():
            print(f"    e.g. {why}: {recipe}")
        bad += c["disagreements"] + c["crashes"] + c["hangs"]
    if args.atheris:
        a = atheris_campaign(args.atheris, args.seed)
        if "skipped" in a:
            print(f"atheris: {a['skipped']}")
        else:
            print(f"atheris (raw NIfTI bytes -> summarise_file's decoding): {a['runs']} runs in {a['wall_s']:.0f} s, "
                  f"exit {a['exit']}; {a['coverage']}; {a['done']}")
            if a["crash"]:
                print(a["crash"])
                bad += 1
    if args.parsers:
        print(f"\n{'parser':34s} {'tried':>6s} {'accepted':>8s} {'refused':>8s} {'crashes':>8s} {'hangs':>6s} "
              f"{'slowest':>8s}")
        for row in parser_campaign(args.parsers, args.limit, args.seed):
            c = row["counts"]
            print(f"{row['parser']:34s} {row['tried']:6d} {c['ok']:8d} {c['refused']:8d} {c['crash']:8d} "
                  f"{c['hang']:6d} {row['slowest']:7.2f}s")
            if row["example"]:
                print(f"    e.g. {row['example']}")
            bad += c["crash"] + c["hang"]
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {'FAILURES' if bad else 'no disagreement, crash or hang'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
