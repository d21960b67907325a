"""False-alarm rate and detection power of the shift.* and confound.* checks, by simulation.

False alarms: random subject-level 70/15/15 splits of one population, so
every difference between splits is chance; an audit "alarms" when it has at
least one ``shift.*`` or ``confound.*`` finding of severity warning (or
error): the whole family of effect-size decisions. The target is at most
5 % of audits (``--families shift`` counts the shift checks alone).

Populations
    demo   the synthetic BIDS dataset (``audit.synthetic.make_dataset``,
           60 subjects, three sites, diagnosis balanced within sites), audited
           as ``bidsaudit audit DATASET --splits ...`` does: covariates from
           participants.tsv, scanner identity from the sidecars, protocol
           fields, and (``--images``) shift.image on the one image pass;
    large  2,000 participants drawn from the same generative model (site
           uniform over three, diagnosis 50/50 within site, sex balanced,
           age ~ N(70, 7) + 3 for AD, clipped to 55-86), audited from the
           split files alone (age, sex, diagnosis, site columns; --site site);
    medium the same with 300 participants (a 45-subject test set), to show
           where detection of a moderate shift becomes reliable.

Detection power (the same audits with a real shift planted)
    older     the test participants' ages + 5 years (shift.covariate on age);
    older10   + 10 years (what a 9-subject test set can show);
    one_site  the test set drawn from siteA only (shift.acquisition);
    prevalence the test set drawn 80 % AD against 50 % (shift.label);
    image_one_site (demo, --images) the test set from siteA only: shift.image.

Usage::

    .venv/bin/python bench/sim_false_alarms.py            # 1000 (500) null splits, 200 per shift scenario
    .venv/bin/python bench/sim_false_alarms.py --images   # also shift.image on the demo dataset
    .venv/bin/python bench/sim_false_alarms.py --n-null 200 --quick
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.context import AuditContext, AuditOptions  # noqa: E402
from audit.runner import run_checks  # noqa: E402
from audit.splits import SplitRow, SplitSet, SplitTable  # noqa: E402

FRACTIONS = (0.70, 0.15, 0.15)
NAMES = ("train", "validation", "test")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def split_set(assign: Mapping[str, Sequence[str]], columns: Mapping[str, Mapping[str, str]] | None = None,
              label: str = "diagnosis") -> SplitSet:
    """In-memory split tables (optionally carrying participant columns, as a reviewer's split files do)."""
    tables = []
    for name in NAMES:
        rows = []
        for i, p in enumerate(assign[name]):
            extra = {c: vals[p] for c, vals in (columns or {}).items() if p in vals}
            rows.append(SplitRow(p, None, extra.get(label), f"{name}.tsv", i + 2, MappingProxyType(extra)))
        cols = ["participant_id", *(columns or {})]
        tables.append(SplitTable(name, None, f"{name}.tsv", rows, columns=cols,
                                 label_column=label if columns and label in columns else None))
    return SplitSet(format="folder", root="", files=tuple(t.path for t in tables), tables=tuple(tables))


def random_split(rng: np.random.Generator, pids: Sequence[str], test_pool: Sequence[str] | None = None,
                 test_weights: np.ndarray | None = None) -> dict[str, list[str]]:
    """70/15/15 subject-level split; the test set optionally drawn from ``test_pool`` (with weights)."""
    n = len(pids)
    n_test = int(round(FRACTIONS[2] * n))
    n_val = int(round(FRACTIONS[1] * n))
    pool = list(test_pool) if test_pool is not None else list(pids)
    p = None if test_weights is None else test_weights / test_weights.sum()
    test = list(rng.choice(pool, size=n_test, replace=False, p=p))
    chosen = set(test)
    rest = [x for x in pids if x not in chosen]
    rest = list(rng.permutation(rest))
    return {"test": test, "validation": rest[:n_val], "train": rest[n_val:]}


#: The check families run and counted (``--families``).
FAMILIES: tuple[str, ...] = ("confound", "shift")


def alarming(f: Any) -> bool:
    """A warning or error of a counted family."""
    return f.check.split(".")[0] in FAMILIES and f.severity in ("warning", "error")


def warned(findings: Sequence[Any], check_id: str | None = None, variable: str | None = None) -> bool:
    for f in findings:
        if not alarming(f):
            continue
        if check_id is not None and f.check != check_id:
            continue
        if variable is not None and f.evidence.get("variable") != variable:
            continue
        return True
    return False


# --------------------------------------------------------------------------- populations
def large_population(n: int = 2000, seed: int = 123) -> dict[str, dict[str, str]]:
    """Participant columns drawn from the generative model of audit.synthetic (participants only)."""
    rng = np.random.default_rng(seed)
    sites = ("siteA", "siteB", "siteC")
    site_idx = rng.permutation(np.arange(n) % len(sites))
    ad = np.zeros(n, bool)
    for k in range(len(sites)):
        members = np.flatnonzero(site_idx == k)
        n_ad = len(members) // 2 + int(len(members) % 2 and rng.random() < 0.5)
        ad[rng.permutation(members)[:n_ad]] = True
    sex = rng.permutation(np.arange(n) % 2)
    age = np.clip(rng.normal(70.0, 7.0, n) + 3.0 * ad, 55.0, 86.0)
    width = len(str(n))
    pids = [f"sub-{i + 1:0{width}d}" for i in range(n)]
    return {
        "age": {p: f"{a:.1f}" for p, a in zip(pids, age)},
        "sex": {p: "MF"[s] for p, s in zip(pids, sex)},
        "diagnosis": {p: ("AD" if x else "CN") for p, x in zip(pids, ad)},
        "site": {p: sites[s] for p, s in zip(pids, site_idx)},
    }


class Population:
    """A population and how to audit one split of it."""

    def __init__(self, name: str, columns: dict[str, dict[str, str]], index: Any = None,
                 summaries: Any = None, images: bool = False) -> None:
        self.name = name
        self.columns = columns
        self.index = index
        self.summaries = summaries
        self.images = images
        self.pids = sorted(columns["diagnosis"])

    def audit(self, assign: Mapping[str, Sequence[str]], columns: Mapping[str, Mapping[str, str]] | None = None,
              reviewer: bool | None = None) -> list[Any]:
        """Run the shift checks; ``reviewer``: split files with columns, no dataset."""
        if reviewer is None:
            reviewer = self.index is None
        if reviewer:
            cols = columns or self.columns
            ctx = AuditContext(options=AuditOptions(label="diagnosis", site="site", check_images=False),
                               splits=split_set(assign, cols))
        else:
            ctx = AuditContext(options=AuditOptions(label="diagnosis", check_images=self.images, workers=1),
                               index=self.index, splits=split_set(assign))
            if self.summaries is not None:
                ctx.images = self.summaries
        findings, _skipped = run_checks(ctx, FAMILIES)
        return findings


def demo_population(folder: Path, n_subjects: int, images: bool) -> Population:
    from audit.bidsindex import index_dataset
    from audit.synthetic import make_dataset

    make_dataset(folder, n_subjects=n_subjects, seed=0, confounded=False)
    index = index_dataset(folder)
    table = index.participants
    assert table is not None
    columns = {c: dict(zip(table["participant_id"], table[c])) for c in ("age", "sex", "diagnosis", "site")}
    summaries = None
    if images:
        from audit.images.summary import summarise_images

        summaries = summarise_images(index, workers=1)
    return Population("demo", columns, index=index, summaries=summaries, images=images)


# --------------------------------------------------------------------------- scenarios
def false_alarms(pop: Population, n: int, seed: int, reviewer: bool | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    alarms = 0
    by_check: Counter[str] = Counter()
    t0 = time.perf_counter()
    for _ in range(n):
        findings = pop.audit(random_split(rng, pop.pids), reviewer=reviewer)
        hit = [f for f in findings if alarming(f)]
        alarms += bool(hit)
        for c in {f.check for f in hit}:
            by_check[c] += 1
    lo, hi = wilson(alarms, n)
    return {"audits": n, "alarms": alarms, "rate": alarms / n, "ci95": (lo, hi), "by_check": dict(by_check),
            "seconds_per_audit": (time.perf_counter() - t0) / n}


def power(pop: Population, n: int, seed: int, scenario: str) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    hits = 0
    t0 = time.perf_counter()
    for _ in range(n):
        columns = pop.columns
        reviewer: bool | None = True
        if scenario in ("older", "older10"):
            years = 5 if scenario == "older" else 10
            assign = random_split(rng, pop.pids)
            test = set(assign["test"])
            age = {p: (f"{float(a) + years:.1f}" if p in test else a) for p, a in columns["age"].items()}
            columns = {**columns, "age": age}
            ok: Callable[[list[Any]], bool] = lambda fs: warned(fs, "shift.covariate", "age")  # noqa: E731
        elif scenario == "one_site":
            pool = [p for p in pop.pids if columns["site"][p] == "siteA"]
            assign = random_split(rng, pop.pids, test_pool=pool)
            ok = lambda fs: warned(fs, "shift.acquisition")  # noqa: E731
        elif scenario == "prevalence":
            counts = Counter(columns["diagnosis"][p] for p in pop.pids)
            w = np.array([(0.8 if columns["diagnosis"][p] == "AD" else 0.2) / counts[columns["diagnosis"][p]]
                          for p in pop.pids])
            assign = random_split(rng, pop.pids, test_weights=w)
            ok = lambda fs: warned(fs, "shift.label")  # noqa: E731
        elif scenario == "image_one_site":
            pool = [p for p in pop.pids if columns["site"][p] == "siteA"]
            assign = random_split(rng, pop.pids, test_pool=pool)
            reviewer = False
            ok = lambda fs: warned(fs, "shift.image")  # noqa: E731
        else:
            raise ValueError(scenario)
        findings = pop.audit(assign, columns, reviewer=reviewer)
        hits += ok(findings)
    lo, hi = wilson(hits, n)
    return {"audits": n, "detected": hits, "power": hits / n, "ci95": (lo, hi),
            "seconds_per_audit": (time.perf_counter() - t0) / n}


def show(title: str, r: Mapping[str, Any], key: str) -> None:
    lo, hi = r["ci95"]
    extra = f"  by check: {r['by_check']}" if r.get("by_check") else ""
    print(f"{title:<52} {r[key]:6.1%}  (95% CI {lo:.1%}-{hi:.1%}, {r['audits']} audits, "
          f"{r['seconds_per_audit'] * 1000:.0f} ms/audit){extra}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    global FAMILIES
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n-null", type=int, default=1000,
                    help="random splits per population for the false-alarm rate (default 1000)")
    ap.add_argument("--n-null-dataset", type=int, default=500,
                    help="random splits for the demo audited with its dataset (slower; default 500)")
    ap.add_argument("--n", type=int, default=200, help="splits per population and shift scenario (default 200)")
    ap.add_argument("--demo-subjects", type=int, default=60)
    ap.add_argument("--medium-subjects", type=int, default=300)
    ap.add_argument("--large-subjects", type=int, default=2000)
    ap.add_argument("--images", action="store_true", help="also shift.image on the demo dataset")
    ap.add_argument("--quick", action="store_true", help="false alarms only")
    ap.add_argument("--power-only", action="store_true", help="detection power only")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help="check families run and counted (default confound,shift)")
    args = ap.parse_args(argv)
    FAMILIES = tuple(x.strip() for x in args.families.split(",") if x.strip())
    os.environ.setdefault("BIDSAUDIT_CACHE_DIR", tempfile.mkdtemp(prefix="bidsaudit-sim-cache-"))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_population(Path(tmp) / "demo", args.demo_subjects, args.images)
        medium = Population("medium", large_population(args.medium_subjects, seed=args.seed + 1))
        large = Population("large", large_population(args.large_subjects, seed=args.seed))
        if not args.power_only:
            print(f"false alarms: audits with >= 1 {'/'.join(f + '.*' for f in FAMILIES)} warning or error on random "
                  "70/15/15 splits (target <= 5 %)")
            show(f"demo ({args.demo_subjects} subjects, dataset mode"
                 + (", with shift.image)" if args.images else ")"),
                 false_alarms(demo, args.n_null_dataset, args.seed), "rate")
            show(f"demo ({args.demo_subjects} subjects, split files only)",
                 false_alarms(demo, args.n_null, args.seed + 1, reviewer=True), "rate")
            show(f"medium ({args.medium_subjects} participants, split files only)",
                 false_alarms(medium, args.n_null, args.seed + 2), "rate")
            show(f"large ({args.large_subjects} participants, split files only)",
                 false_alarms(large, args.n_null, args.seed + 3), "rate")
        if not args.quick:
            print("detection power: audits with the expected warning")
            for scenario, words in (("older", "test 5 years older -> shift.covariate age"),
                                    ("older10", "test 10 years older -> shift.covariate age"),
                                    ("one_site", "test from one site -> shift.acquisition"),
                                    ("prevalence", "test 80 % AD (vs 50 %) -> shift.label")):
                for pop in (demo, medium, large):
                    show(f"{pop.name}: {words}", power(pop, args.n, args.seed + 10, scenario), "power")
            if args.images:
                show("demo: test from one site -> shift.image",
                     power(demo, args.n, args.seed + 20, "image_one_site"), "power")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
