"""Detection power and false-alarm rate of the effect-size rules of :mod:`audit.decisions`, by simulation.

No BIDS files: participants are drawn as tables (label, sex, age, site) and
image feature vectors, split 70/15/15 (train/validation/test, the
validation and test splits each of ``n_eval`` participants), and every
decision is taken exactly as the shift and confound checks will take it
after integration (``docs/effects-plan.md``):

family (one weighted Benjamini-Hochberg family of 11 tests: every decision of the audit)
    for each of train-validation and train-test:
    ``shift.label`` (the label's class shares; Fisher / chi-square /
    permutation chi-square p from :func:`audit.stats.association_test`),
    ``shift.covariate`` on age (Hedges' g; Mann-Whitney p from
    :func:`audit.stats.mann_whitney`) and on sex (class shares),
    ``shift.acquisition`` on site (class shares), ``shift.image`` (a
    5-fold ridge domain classifier on 20 image features, the production
    solver :func:`audit.predictors.ridge_oof`; out-of-fold ROC AUC with its
    calibrated Mann-Whitney p, :func:`audit.auc.domain_auc`);
``confound.label_site``
    Cramér's V of the site x label table of the whole dataset, its
    association test's p in the same family (``--confound-family own``: a
    family of its own, which lets the null alarm rate reach 5.6 % at 10
    evaluation participants).

Each effect goes through :func:`audit.decisions.decide` with the family's
adjusted p-value (:func:`audit.decisions.family_adjust`: weighted
Benjamini-Hochberg, the catalogue's weights per kind of effect) and the
test's raw p-value; an audit alarms when any decision is a warning.

Population (one population: the null)
    site uniform over three; label and sex 50/50, independent; age
    N(70, 7); image features: 20 features with a common factor (every pair
    correlated 0.3) plus a fixed scanner offset per site and feature (SD
    0.3: a scanner signature, so that a site-mix shift is also a small
    image shift, as in real data).

Planted effects (in the test split only; validation stays null)
    label        the test split holds exactly round(n (50 % + d)) of one class (a split maker's
                 choice of counts: "a 90/10 test split" is 18 and 2 of 20); train is sampled
    covariate    the test split's ages + delta SD
    acquisition  the test split's site counts in proportion (1/3 + d, 1/3 - d/2, 1/3 - d/2),
                 exactly as for the label
    image        5 of the 20 features + delta SD in the test split
                 (the optimal linear classifier's AUC is printed beside it)
    confound     P(label | site) = 50 % + (a, 0, -a) for the whole dataset,
                 population Cramér's V = a * sqrt(8/3)
Detection: the scenario's check warns on train vs test (the confound: on
the dataset). The dataset has ``n_eval / 0.15`` participants.

Usage::

    .venv/bin/python bench/sim_power.py                 # about 2 minutes on one core
    .venv/bin/python bench/sim_power.py --quick         # seconds (the test suite runs this)
    .venv/bin/python bench/sim_power.py --out power.json --null-audits 1000 --audits 200
    .venv/bin/python bench/sim_power.py --large --null-audits 0 --audits 400 --n-eval 20   # the goal's cells
    .venv/bin/python bench/sim_power.py --weight smd=3 --fdr 0.03 --alpha-large 0.005   # rule variants

Reproducible: every draw is seeded (``--seed``), BLAS runs on one thread, and
the JSON holds no timing (printed only), so the same arguments write the same
file byte for byte.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small matrices: threads only contend (10x slower on shared cores)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import auc, decisions, effects  # noqa: E402
from audit.predictors import ridge_oof, stratified_folds  # noqa: E402
from audit.stats import association_test, mann_whitney  # noqa: E402

FRACTIONS = (0.70, 0.15, 0.15)
N_EVAL = (10, 20, 50, 200)
N_FEATURES = 20
N_SHIFTED = 5
RHO = 0.3
SITE_EFFECT = 0.3
N_SITES = 3
AGE_MEAN, AGE_SD = 70.0, 7.0
RIDGE_ALPHA = 10.0
N_SPLITS = 5
N_PERMUTATIONS = 2000  # permutation chi-square (small expected counts), as shift.* uses
#: Label permutations that calibrate the domain classifier's p-value (production default 200; the
#: mean and SD of the null AUC are all that is estimated, so 100 is enough here and halves the time).
IMAGE_PERMUTATIONS = 100
#: False: the raw analytic Mann-Whitney p of the pooled out-of-fold scores (--raw-auc-p), to show why not.
CALIBRATE = True
#: The confound's p-value joins the shift family's Benjamini-Hochberg adjustment (one family of decisions per
#: audit); False (--confound-family own): the confound is a family of its own (p_adjusted = p).
CONFOUND_IN_FAMILY = True
AGE_TEST = "mw"
CONFOUND_CODES = np.array([1.0, 0.0, -1.0])

#: Planted effect sizes per scenario (the population value, in the scenario's own unit).
GRID: dict[str, tuple[float, ...]] = {
    "label": (0.05, 0.10, 0.15, 0.25, 0.40),
    "covariate": (0.2, 0.35, 0.5, 1.0, 1.5),
    "acquisition": (0.05, 0.10, 0.15, 0.25, 0.40, 0.60),  # 0.60: nearly all the test split from one site
    "image": (0.1, 0.25, 0.5, 1.0, 2.0),
    "confound": (0.1, 0.2, 0.3, 0.5, 0.7),
}
QUICK_GRID: dict[str, tuple[float, ...]] = {
    "label": (0.40,), "covariate": (1.5,), "acquisition": (0.40,), "image": (2.0,), "confound": (0.7,),
}
#: The large effects of the goal (issue 11: found in at least 90 % of audits at 20 evaluation participants).
LARGE_GRID: dict[str, tuple[float, ...]] = {
    "label": (0.40,), "covariate": (1.0,), "acquisition": (0.40,), "image": (1.0,), "confound": (0.5,),
}
UNITS = {"label": "share difference", "covariate": "SMD of age", "acquisition": "site share difference",
         "image": "feature SMD (5 of 20)", "confound": "Cramér's V"}
#: What each scenario's effect is judged as (the kind of :mod:`audit.effects`).
KIND = {"label": "proportion_difference", "covariate": "smd", "acquisition": "proportion_difference",
        "image": "auc", "confound": "cramers_v"}
#: The kind of effect of each variable of an audit (its weight in the family: :func:`audit.decisions.family_adjust`).
KIND_OF = {"label": "proportion_difference", "sex": "proportion_difference", "site": "proportion_difference",
           "age": "smd", "image": "auc", "label x site": "label_site"}
#: The family weights (the catalogue's; ``--weight KIND=W`` for tuning runs).
WEIGHTS: dict[str, float] = dict(decisions.WEIGHTS)
#: The check and variable whose warning on train vs test is the detection.
TARGET = {"label": ("shift.label", "label"), "covariate": ("shift.covariate", "age"),
          "acquisition": ("shift.acquisition", "site"), "image": ("shift.image", "image"),
          "confound": ("confound.label_site", "label x site")}


# --------------------------------------------------------------------------- population
@dataclass
class Sample:
    label: np.ndarray  # int 0/1
    sex: np.ndarray    # int 0/1
    age: np.ndarray
    site: np.ndarray   # int 0..2
    X: np.ndarray      # n x N_FEATURES

    def __len__(self) -> int:
        return int(self.label.size)

    def take(self, idx: np.ndarray) -> Sample:
        return Sample(self.label[idx], self.sex[idx], self.age[idx], self.site[idx], self.X[idx])


def exact_counts(n: int, shares: Sequence[float]) -> np.ndarray:
    """``n`` split over categories in proportion to ``shares`` (largest remainders), as a split maker would."""
    raw = np.asarray(shares, dtype=float) / float(np.sum(shares)) * n
    counts = np.floor(raw).astype(np.int64)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    return counts


def draw(rng: np.random.Generator, n: int, offsets: np.ndarray, *, label_share: float | None = None,
         site_shares: Sequence[float] | None = None, age_shift: float = 0.0, image_shift: float = 0.0,
         confound: float = 0.0) -> Sample:
    """``n`` participants of the population, optionally shifted (shifts in the scenario's units).

    ``label_share`` and ``site_shares`` fix the split's mix exactly (a biased split is made by
    choosing counts: "a 90/10 test split" is 18 and 2 of 20); without them the mix is sampled.
    """
    if site_shares is None:
        site = rng.choice(N_SITES, size=n)
    else:
        site = rng.permutation(np.repeat(np.arange(N_SITES), exact_counts(n, site_shares)))
    if label_share is None:
        label = (rng.random(n) < 0.5 + confound * CONFOUND_CODES[site]).astype(np.int64)
    else:
        label = rng.permutation(np.repeat([1, 0], exact_counts(n, (label_share, 1 - label_share))))
    sex = (rng.random(n) < 0.5).astype(np.int64)
    age = rng.normal(AGE_MEAN, AGE_SD, n) + age_shift * AGE_SD
    factor = rng.normal(size=(n, 1))
    X = math.sqrt(RHO) * factor + math.sqrt(1 - RHO) * rng.normal(size=(n, N_FEATURES)) + offsets[site]
    X[:, :N_SHIFTED] += image_shift
    return Sample(label, sex, age, site, X)


def optimal_auc(delta: float, offsets: np.ndarray) -> float:
    """The AUC of the best linear classifier for the image shift ``delta`` (population covariance)."""
    from scipy.stats import norm

    cov = RHO * np.ones((N_FEATURES, N_FEATURES)) + (1 - RHO) * np.eye(N_FEATURES)
    cov += np.cov(offsets.T, bias=True)  # sites are equally likely
    mu = np.zeros(N_FEATURES)
    mu[:N_SHIFTED] = delta
    maha = math.sqrt(float(mu @ np.linalg.solve(cov, mu)))
    return float(norm.cdf(maha / math.sqrt(2)))


def shifted_test(scenario: str, size: float) -> dict[str, Any]:
    """Keyword arguments of :func:`draw` for a test split with the planted effect."""
    if scenario == "label":
        return {"label_share": 0.5 + size}
    if scenario == "covariate":
        return {"age_shift": size}
    if scenario == "acquisition":
        return {"site_shares": (1 / 3 + size, 1 / 3 - size / 2, 1 / 3 - size / 2)}
    if scenario == "image":
        return {"image_shift": size}
    return {}


def dataset(rng: np.random.Generator, n_eval: int, offsets: np.ndarray, scenario: str | None = None,
            size: float = 0.0) -> dict[str, Sample]:
    """train / validation / test samples; the planted effect in the test split (confound: everywhere)."""
    n_total = int(round(n_eval / FRACTIONS[2]))
    n_train = n_total - 2 * n_eval
    common: dict[str, Any] = {}
    if scenario == "confound":
        common = {"confound": size / math.sqrt(8 / 3)}
    pool = draw(rng, n_train + n_eval, offsets, **common)
    test_kw = dict(common)
    if scenario is not None:
        test_kw.update(shifted_test(scenario, size))
    test = draw(rng, n_eval, offsets, **test_kw)
    return {"train": pool.take(np.arange(n_train)), "validation": pool.take(np.arange(n_train, n_train + n_eval)),
            "test": test}


# --------------------------------------------------------------------------- one audit
def _table(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    return np.stack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])


def _oof_auc(xa: np.ndarray, xb: np.ndarray, seed: int) -> effects.Effect:
    """The domain classifier's out-of-fold AUC (:func:`audit.auc.domain_auc`), or the raw analytic p."""
    if not CALIBRATE:
        X = np.vstack([xa, xb])
        y = np.r_[np.zeros(len(xa), dtype=np.int64), np.ones(len(xb), dtype=np.int64)]
        folds = stratified_folds(y, int(min(N_SPLITS, len(xa), len(xb))), seed)
        scores = ridge_oof(X, np.where(y == 1, 1.0, -1.0)[:, None], folds, RIDGE_ALPHA)[:, 0]
        return auc.auc_effect(scores[y == 1], scores[y == 0])
    return auc.domain_auc(np.vstack([xa, xb]), np.r_[np.zeros(len(xa), bool), np.ones(len(xb), bool)],
                              n_splits=N_SPLITS, alpha=RIDGE_ALPHA, n_permutations=IMAGE_PERMUTATIONS, seed=seed)


def _tests(a: Sample, b: Sample, seed: int, need_effects: set[str] | None) -> list[dict[str, Any]]:
    """The five comparisons of one pair: p-values always, effects for the variables in ``need_effects``."""
    out: list[dict[str, Any]] = []
    want = (lambda v: True) if need_effects is None else (lambda v: v in need_effects)
    for var, check, k, xa, xb in (("label", "shift.label", 2, a.label, b.label),
                                  ("sex", "shift.covariate", 2, a.sex, b.sex),
                                  ("site", "shift.acquisition", N_SITES, a.site, b.site)):
        t = _table(xa, xb, k)
        p = association_test(t, n_permutations=N_PERMUTATIONS, seed=seed).p_value
        eff = effects.proportion_difference(t) if want(var) else None
        out.append({"check": check, "variable": var, "p": p, "effect": eff})
    if AGE_TEST == "t":
        from scipy.stats import ttest_ind
        p_age = float(ttest_ind(a.age, b.age).pvalue)
    else:
        _u, p_age = mann_whitney(a.age, b.age)
    out.append({"check": "shift.covariate", "variable": "age", "p": p_age,
                "effect": effects.hedges_g(a.age, b.age) if want("age") else None})
    img = _oof_auc(a.X, b.X, seed)
    out.append({"check": "shift.image", "variable": "image", "p": img.p_value, "effect": img})
    return out


def audit(data: Mapping[str, Sample], rules: Mapping[str, Any], seed: int,
          need: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every decision of one audit: ``[{check, variable, pair, decision}]`` (``need``: only those, as (var, pair))."""
    records: list[dict[str, Any]] = []
    for pair in ("validation", "test"):
        need_effects = None if need is None else {v for v, pr in need if pr == pair}
        for r in _tests(data["train"], data[pair], seed, need_effects):
            r["pair"] = pair
            records.append(r)
    everyone = np.concatenate([data[s].site for s in ("train", "validation", "test")])
    labels = np.concatenate([data[s].label for s in ("train", "validation", "test")])
    t = np.zeros((N_SITES, 2), dtype=np.int64)
    np.add.at(t, (everyone, labels), 1)
    p = association_test(t, n_permutations=N_PERMUTATIONS, seed=seed).p_value
    want_confound = need is None or ("label x site", "dataset") in need
    records.append({"check": "confound.label_site", "variable": "label x site", "pair": "dataset", "p": p,
                    "effect": effects.cramers_v(t, names=("site", "label")) if want_confound else None})
    # one family of decisions per audit (shift tests and the confound), unless --confound-family own
    in_family = records if CONFOUND_IN_FAMILY else records[:-1]
    adjusted = decisions.family_adjust([r["p"] for r in in_family], [KIND_OF[r["variable"]] for r in in_family],
                                       WEIGHTS)
    if not CONFOUND_IN_FAMILY:
        adjusted.append(p)
    out = []
    for r, q in zip(records, adjusted):
        if r["effect"] is None or (need is not None and (r["variable"], r["pair"]) not in need):
            continue
        d = decisions.decide(r["effect"], q, p_value=r["p"], rules=rules)
        out.append({"check": r["check"], "variable": r["variable"], "pair": r["pair"], "decision": d})
    return out


# --------------------------------------------------------------------------- experiments
def wilson(k: int, n: int) -> tuple[float, float]:
    lo, hi = effects.wilson_interval(k, n)
    return round(lo, 4), round(hi, 4)


def null_rate(n_eval: int, audits: int, rules: Mapping[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, SITE_EFFECT, (N_SITES, N_FEATURES))
    alarms = 0
    by_check: Counter[str] = Counter()
    by_magnitude: Counter[str] = Counter()
    for i in range(audits):
        decisions = audit(dataset(rng, n_eval, offsets), rules, seed + i)
        hit = [d for d in decisions if d["decision"].warning]
        alarms += bool(hit)
        for d in hit:
            by_check[f"{d['check']}:{d['variable']}"] += 1
            by_magnitude[d["decision"].magnitude] += 1
    return {"n_eval": n_eval, "audits": audits, "alarms": alarms, "rate": round(alarms / audits, 4),
            "ci95": wilson(alarms, audits), "warnings_by_test": dict(by_check),
            "warnings_by_magnitude": dict(by_magnitude)}


def power(scenario: str, size: float, n_eval: int, audits: int, rules: Mapping[str, Any],
          seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, SITE_EFFECT, (N_SITES, N_FEATURES))
    check, variable = TARGET[scenario]
    pair = "dataset" if scenario == "confound" else "test"
    found = 0
    magnitudes: Counter[str] = Counter()
    estimates = []
    for i in range(audits):
        decisions = audit(dataset(rng, n_eval, offsets, scenario, size), rules, seed + i,
                          need={(variable, pair)})
        d = next(x["decision"] for x in decisions if x["variable"] == variable and x["pair"] == pair)
        found += d.warning
        magnitudes[d.magnitude + (" (warning)" if d.warning else "")] += 1
        if d.estimate is not None:
            estimates.append(abs(d.estimate) if KIND[scenario] in ("smd", "proportion_difference") else d.estimate)
    return {"scenario": scenario, "size": size, "n_eval": n_eval, "audits": audits, "detected": found,
            "rate": round(found / audits, 4), "ci95": wilson(found, audits), "magnitudes": dict(magnitudes),
            "median_estimate": round(float(np.median(estimates)), 4) if estimates else None}


def parse_rules(args: argparse.Namespace) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    if args.fdr is not None:
        rules["fdr"] = args.fdr
    if args.alpha_large is not None:
        rules["alpha_large"] = args.alpha_large
    if args.ci_evidence is not None:
        rules["ci_evidence"] = args.ci_evidence
    return rules


def apply_bounds(overrides: Sequence[str]) -> None:
    """``kind.bound=value`` overrides of :data:`audit.decisions.RULES` (for tuning runs)."""
    for item in overrides:
        key, _, value = item.partition("=")
        kind, _, bound = key.partition(".")
        if kind not in decisions.RULES or bound not in decisions.RULES[kind]:
            raise SystemExit(f"--bound {item!r}: expected KIND.BOUND=VALUE with KIND in {', '.join(decisions.KINDS)}")
        decisions.RULES[kind][bound] = float(value)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few audits of the largest effects at 10 and 20")
    ap.add_argument("--large", action="store_true", help="only the goal's large effects (label 0.40, age SMD 1.0, "
                    "site 0.40, image 1.0, confound V 0.5)")
    ap.add_argument("--null-audits", type=int, default=None, help="null audits per evaluation size (default 400)")
    ap.add_argument("--audits", type=int, default=None, help="audits per planted effect and size (default 40)")
    ap.add_argument("--n-eval", default=None, help="evaluation split sizes, comma separated (default 10,20,50,200)")
    ap.add_argument("--scenarios", default=",".join(GRID), help="comma separated subset of " + ", ".join(GRID))
    ap.add_argument("--fdr", type=float, default=None)
    ap.add_argument("--alpha-large", type=float, default=None)
    ap.add_argument("--ci-evidence", choices=("without_p", "always", "never"), default=None)
    ap.add_argument("--confound-family", choices=("audit", "own"), default="audit",
                    help="confound.label_site's p in the audit's BH family (default) or alone")
    ap.add_argument("--raw-auc-p", action="store_true",
                    help="shift.image on the uncalibrated analytic p of pooled out-of-fold scores")
    ap.add_argument("--bound", action="append", default=[], help="KIND.BOUND=VALUE, e.g. auc.large=0.85")
    ap.add_argument("--weight", action="append", default=[], help="KIND=W, a family weight, e.g. smd=2")
    ap.add_argument("--age-test", choices=("mw", "t"), default="mw")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    global CALIBRATE, CONFOUND_IN_FAMILY, AGE_TEST
    AGE_TEST = args.age_test
    CALIBRATE = not args.raw_auc_p
    CONFOUND_IN_FAMILY = args.confound_family == "audit"
    apply_bounds(args.bound)
    for item in args.weight:
        kind, _, value = item.partition("=")
        if kind not in WEIGHTS:
            raise SystemExit(f"--weight {item!r}: expected KIND=W with KIND in {', '.join(WEIGHTS)}")
        WEIGHTS[kind] = float(value)
    rules = parse_rules(args)
    n_evals = tuple(int(x) for x in args.n_eval.split(",")) if args.n_eval else ((10, 20) if args.quick else N_EVAL)
    null_n = args.null_audits if args.null_audits is not None else (40 if args.quick else 400)
    power_n = args.audits if args.audits is not None else (20 if args.quick else 40)
    grid = QUICK_GRID if args.quick else LARGE_GRID if args.large else GRID
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    rng = np.random.default_rng(args.seed)
    offsets = rng.normal(0.0, SITE_EFFECT, (N_SITES, N_FEATURES))

    print(f"rules: {json.dumps(decisions.RULES)}; evidence: {json.dumps({**decisions.EVIDENCE, **rules})}; "
          f"family weights: {json.dumps(WEIGHTS)}")
    print(f"\nnull: random 70/15/15 splits of one population; an audit alarms on any shift.* or "
          f"confound.label_site warning ({null_n} audits per size)")
    nulls = []
    for n_eval in n_evals if null_n > 0 else ():
        r = null_rate(n_eval, null_n, rules, args.seed + n_eval)
        nulls.append(r)
        print(f"  n_eval {n_eval:>4}: {100 * r['rate']:5.1f} % of audits alarm (95% CI {100 * r['ci95'][0]:.1f}-"
              f"{100 * r['ci95'][1]:.1f}); warnings by test {r['warnings_by_test']}")

    print(f"\ndetection rate of the planted effect by its check on train vs test ({power_n} audits per cell)")
    head = f"  {'scenario':<12} {'effect':<38}" + "".join(f"{'n=' + str(n):>9}" for n in n_evals)
    print(head)
    powers = []
    for scenario in scenarios:
        for size in grid[scenario]:
            shown = f"{UNITS[scenario]} {size:g}"
            if scenario == "image":
                shown += f" (AUC* {optimal_auc(size, offsets):.2f})"
            cells = []
            for n_eval in n_evals:
                r = power(scenario, size, n_eval, power_n, rules, args.seed + 7919 * n_eval + int(1000 * size))
                powers.append(r)
                cells.append(f"{100 * r['rate']:8.0f}%")
            print(f"  {scenario:<12} {shown:<38}" + "".join(cells), flush=True)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    print(f"\n{seconds:.0f} s ({cpu:.0f} s of CPU)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "rules": decisions.RULES, "evidence": {**decisions.EVIDENCE, **rules}, "weights": WEIGHTS,
            "n_eval": list(n_evals),
            "fractions": FRACTIONS, "null": nulls, "power": powers, "grid": {s: grid[s] for s in scenarios},
            "units": UNITS, "image_optimal_auc": {str(s): round(optimal_auc(s, offsets), 4) for s in grid["image"]},
            "seed": args.seed, "quick": args.quick,
            "image_p": "permutation moments" if CALIBRATE else "raw analytic (pooled out-of-fold)",
            "confound_family": args.confound_family,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
