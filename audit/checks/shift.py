"""shift.* checks: do the splits come from the same population, scanners and images?

What is compared
    Each split against the training split, in every fold view
    (train/validation, train/test; a k-fold layout's shared test set against
    each fold's train), one value per participant. The training split is
    what the model learnt from, so a shift relative to it is what changes
    its measured performance; leaving out validation/test also keeps the
    number of tests, and so the multiplicity penalty, down
    (``pairs = "all"`` compares every pair; a layout without a split
    named train always does):

    * ``shift.label``: the label column (``--label``, or ``diagnosis``);
    * ``shift.covariate``: every other participant column (participants.tsv
      when a dataset is given, else the columns the split files carry: a
      reviewer holding only the split files gets this check too), minus
      identifiers, the site and group columns;
    * ``shift.acquisition``: the site/scanner identity (:mod:`audit.scanner`:
      ``--site`` or the sidecars) and the protocol of each participant's
      reference image (the most common suffix, e.g. T1w): field strength,
      TR, TE, TI, flip angle (sidecars) and voxel size (image headers,
      from the one image pass). A protocol field or site column is tested
      only when the scanner identity does not determine it already (in most
      datasets TR is a property of the scanner, and testing it again would
      only add tests);
    * ``shift.image``: per-image features (:func:`image_features`: intensity
      statistics, MRIQC-style SNR, CNR, CJV and foreground volume, histogram
      and thumbnail components) of each participant's reference image,
      through a domain classifier; a finding names the features that differ
      most (standardised mean difference) with their permutation importance
      (the cross-validated AUC lost when the feature is shuffled).

Tests and effect sizes (:mod:`audit.stats`)
    Continuous variables (numbers with more than ten distinct values):
    Mann-Whitney U (Kolmogorov-Smirnov as an option and always in evidence),
    standardised mean difference (pooled SD) and Wasserstein distance over
    the pooled SD. Categorical: Fisher's exact test (2x2), chi-square or a
    permutation chi-square (small expected counts), Cramér's V (bias
    corrected) and the largest standardised difference of a level's
    proportion (which, unlike V, does not shrink when one split is small).
    Images: a cross-validated linear domain classifier's ROC AUC with a
    permutation p-value.

A finding needs both significance and a large effect
    The p-values of every shift test of the audit (all four checks, all
    folds and pairs) are adjusted together (Benjamini-Hochberg); a
    comparison is flagged when its adjusted p-value is at most ``fdr``
    *and* its effect reaches the check's threshold (:data:`THRESHOLDS`). With
    50,000 participants trivial differences are significant but small; with
    20, large differences are noise and not significant. Measured by
    ``bench/sim_false_alarms.py``: on random 70/15/15 splits of one
    population, fewer than 5 % of audits get any ``shift.*`` warning.

Equivalence
    For users who must *show* balance rather than fail to show imbalance,
    every comparison also carries a TOST equivalence p-value that the
    standardised difference lies inside ``±equivalence_margin``
    (``balanced: true`` when it is below ``equivalence_alpha``); each
    check's summary (severity info) lists them.

Values
    ``"89+"``/``">89"`` are read as 89 (censored, counted in evidence),
    ``"26-30"`` as 28 (binned); a column with a few non-numeric cells in
    numbers is compared on its numbers and the others are reported (info);
    a column that mixes numbers and text, or looks like an identifier
    (nearly one value per participant) is not tested, and the summary says
    why. Fewer than ``min_subjects`` values on a side: the pair is not
    tested (summary says so).

Thresholds are read from ``config["thresholds"][check_id]`` over the
defaults below (``config["thresholds"]["shift"]`` for the shared ones).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding
from audit.values import NUMERIC_COLUMNS

if TYPE_CHECKING:
    import numpy as np

#: Default thresholds. Override any of them in ``bidsaudit.toml``:
#: ``[thresholds."shift.covariate"] smd = 0.3``.
THRESHOLDS: dict[str, dict[str, Any]] = {
    # shared by every shift.* check: the one multiple-testing family of the audit
    "shift": {
        # Benjamini-Hochberg false discovery rate over every shift test of the audit. When nothing differs,
        # BH at q bounds the chance of any false discovery by q, and with 300 participants (where the effect
        # thresholds rarely bind) the measured per-audit rate sits at q itself (5.2 % of 1,000 audits at
        # q = 0.05): 0.025 keeps false alarms well under 5 % (bench/sim_false_alarms.py).
        "fdr": 0.025,
        "min_subjects": 3,        # a side with fewer values is not tested
        "max_levels": 20,         # a text column with more levels is an identifier / free text, not tested
        "equivalence_alpha": 0.05,
        "n_permutations": 2000,   # permutation chi-square for small expected counts
        "seed": 0,
        # "train": each split against the training split (what the model learnt from; the most power);
        # "all": every pair of splits. Without a split named train, every pair.
        "pairs": "train",
    },
    # prevalence shift: Cohen's "small-to-medium" standardised difference; Deepchecks' label drift limit for V
    "shift.label": {"smd": 0.25, "cramers_v": 0.15, "wasserstein": 0.3, "equivalence_margin": 0.25},
    # Stuart (2010): |SMD| > 0.25 is an imbalance worth reporting; Deepchecks' V limit 0.2
    "shift.covariate": {"smd": 0.25, "cramers_v": 0.2, "wasserstein": 0.3, "equivalence_margin": 0.25,
                        "test": "mann-whitney"},
    "shift.acquisition": {"smd": 0.25, "cramers_v": 0.2, "wasserstein": 0.3, "equivalence_margin": 0.25},
    # Deepchecks' domain-classifier drift limit 0.25 is AUC 0.625; 0.7 (drift 0.4) for small test sets
    "shift.image": {"auc": 0.7, "n_permutations": 200, "n_splits": 5, "ridge_alpha": 10.0, "top_features": 3},
}

#: Columns that are never covariates (identifiers, split bookkeeping).
NOT_COVARIATES = frozenset({"participant_id", "session_id", "split", "fold", "label", "file", "line"})
#: Numbers with at most this many distinct values are categories (0/1 codes, field strength).
MAX_DISCRETE = 10
MAX_TESTS_LISTED = 500
MAX_EXAMPLES = 5


# --------------------------------------------------------------------------- configuration
def configured(ctx: AuditContext, key: str, defaults: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``defaults`` with the overrides of ``config["thresholds"][key]``; also the overrides ignored (wrong type)."""
    values = dict(defaults)
    ignored: list[str] = []
    table = ctx.options.config.get("thresholds", {}) if isinstance(ctx.options.config, Mapping) else {}
    over = table.get(key, {}) if isinstance(table, Mapping) else {}
    if not isinstance(over, Mapping):
        return values, [f"{key}: not a table"]
    for k, v in over.items():
        if k not in defaults:
            ignored.append(f"{key}.{k}: unknown")
            continue
        d = defaults[k]
        if isinstance(d, str):
            ok = isinstance(v, str)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        if ok:
            values[k] = type(d)(v) if isinstance(d, (int, float)) and not isinstance(d, bool) else v
        else:
            ignored.append(f"{key}.{k}: {v!r} is not a {'string' if isinstance(d, str) else 'number'}")
    return values, ignored


def _seed(base: int, *parts: Any) -> int:
    return (base + zlib.crc32("|".join(map(str, parts)).encode())) % (2**31 - 1)


# --------------------------------------------------------------------------- variables
@dataclass
class Variable:
    """One thing compared between splits: one value per participant."""

    check: str
    name: str
    kind: str  # "continuous" | "categorical" | "skipped"
    values: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "source": self.source, "participants": len(self.values)}
        if self.notes:
            out["notes"] = self.notes
        if self.reason:
            out["not_tested"] = self.reason
        return out


def make_variable(check_id: str, name: str, raw: Mapping[str, str], *, source: str, max_levels: int,
                  categorical: bool = False) -> Variable:
    """Decide how to compare a column (continuous, categorical, or not at all) and parse its values."""
    from audit.scanner import normalise_key
    from audit.stats import is_missing, parse_number

    present = {p: v for p, v in raw.items() if not is_missing(v)}
    var = Variable(check_id, name, "skipped", source=source)
    if not present:
        var.reason = "no values"
        return var
    parsed = {p: parse_number(v) for p, v in present.items()}
    numbers = {p: x for p, (x, _how) in parsed.items() if x is not None}
    text = sorted({present[p] for p, (x, _h) in parsed.items() if x is None})
    frac = len(numbers) / len(present)
    distinct = len(set(numbers.values()))
    numeric_name = name.lower() in NUMERIC_COLUMNS
    if not categorical and (frac >= 0.9 or (numeric_name and frac >= 0.5)) and (distinct > MAX_DISCRETE
                                                                                  or (numeric_name and distinct > 2)):
        var.kind = "continuous"
        var.values = numbers
        hows = Counter(h for _x, h in parsed.values() if h in ("censored", "range"))
        if hows.get("censored"):
            var.notes["censored"] = hows["censored"]
            var.notes["censored_examples"] = sorted({present[p] for p, (_x, h) in parsed.items()
                                                     if h == "censored"})[:MAX_EXAMPLES]
        if hows.get("range"):
            var.notes["binned"] = hows["range"]
        if text:
            var.notes["non_numeric"] = len(present) - len(numbers)
            var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    if not categorical and frac >= 0.9:
        # few distinct numbers: categories ("1" and "1.0" are one level)
        var.kind = "categorical"
        var.values = {p: f"{x:g}" for p, x in numbers.items()}
        if text:
            var.notes["non_numeric"] = len(present) - len(numbers)
            var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    if not categorical and numeric_name and 0 < frac < 0.5:
        # "age" holding "62", "sixty", "70s", "abc": neither numbers to compare nor honest categories
        var.reason = (f"should hold numbers but {len(present) - len(numbers)} of {len(present)} values are not "
                      "numbers (e.g. " + ", ".join(repr(t) for t in text[:3]) + ")")
        var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    if not categorical and 0.1 < frac < 0.9 and distinct > MAX_DISCRETE:
        var.reason = (f"mixes numbers ({len(numbers)}) and text ({len(present) - len(numbers)}, e.g. "
                      + ", ".join(repr(t) for t in text[:3]) + ")")
        var.notes["non_numeric_examples"] = text[:MAX_EXAMPLES]
        return var
    keyed: dict[str, str] = {}
    spell: dict[str, Counter[str]] = defaultdict(Counter)
    for p, v in present.items():
        k = normalise_key(v) or v
        keyed[p] = k
        spell[k][v] += 1
    shown = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in spell.items()}
    levels = len(shown)
    if levels > max_levels or (levels > 2 and levels > 0.5 * len(present) and not categorical):
        var.reason = f"{levels} distinct values for {len(present)} participants: an identifier or free text"
        return var
    var.kind = "categorical"
    var.values = {p: shown[k] for p, k in keyed.items()}
    merged = {shown[k]: sorted(c) for k, c in spell.items() if len(c) > 1}
    if merged:
        var.notes["spellings_merged"] = merged
    return var


def _label_variables(ctx: AuditContext, th: Mapping[str, Any]) -> list[Variable]:
    from audit.scanner import participant_values

    column = ctx.label_column
    if not column:
        return []
    raw = participant_values(ctx, column, label=True)
    return [make_variable("shift.label", column, raw, source=_source(ctx, column), max_levels=th["max_levels"])]


def _source(ctx: AuditContext, column: str) -> str:
    if ctx.index is not None and ctx.index.participants is not None and column in ctx.index.participants.columns:
        return "participants.tsv"
    return "split files"


def excluded_columns(ctx: AuditContext) -> set[str]:
    """Columns that are not covariates: ids, the label, site and group (the report's charts use it too)."""
    from audit.scanner import SITE_COLUMNS

    out = set(NOT_COVARIATES) | set(SITE_COLUMNS)
    for c in (ctx.label_column, ctx.options.site, ctx.options.group):
        if c:
            out.add(c)
    if ctx.splits is not None:
        out |= {t.label_column for t in ctx.splits.tables if t.label_column}
    return out


def _covariate_variables(ctx: AuditContext, th: Mapping[str, Any]) -> list[Variable]:
    from audit.scanner import participant_values

    columns: list[str] = []
    if ctx.index is not None and ctx.index.participants is not None:
        columns += [c for c in ctx.index.participants.columns]
    if ctx.splits is not None:
        for t in ctx.splits.tables:
            columns += [c for c in t.columns if c not in columns]
    skip = excluded_columns(ctx)
    out = []
    for c in columns:
        if c in skip or c.lower() in skip:
            continue
        out.append(make_variable("shift.covariate", c, participant_values(ctx, c), source=_source(ctx, c),
                                 max_levels=th["max_levels"]))
    return out


def _determined_by(values: Mapping[str, Any], by: Mapping[str, Any]) -> bool:
    """Every group of ``by`` has at most one value of ``values`` (on participants that have both)."""
    seen: dict[Any, set[Any]] = defaultdict(set)
    for p, v in values.items():
        if p in by:
            seen[by[p]].add(v)
    return bool(seen) and all(len(s) <= 1 for s in seen.values())


def _acquisition_variables(ctx: AuditContext, th: Mapping[str, Any]) -> tuple[list[Variable], dict[str, Any]]:
    from audit.scanner import SITE_COLUMNS, participant_values, protocol_values, scanner_identity

    ident = scanner_identity(ctx)
    info: dict[str, Any] = {"site_source": ident.evidence()}
    out: list[Variable] = []
    if ident.by_subject:
        name = "site" if ident.source != "sidecars" else "scanner"
        var = make_variable("shift.acquisition", name, dict(ident.by_subject), source=ident.describe(),
                            max_levels=10**6, categorical=True)
        out.append(var)
    candidates: list[Variable] = []
    for column in SITE_COLUMNS:
        if column == ident.column:
            continue
        raw = participant_values(ctx, column)
        if raw:
            candidates.append(make_variable("shift.acquisition", column, raw, source=_source(ctx, column),
                                            max_levels=10**6, categorical=True))
    if ctx.index is not None:
        zooms = None
        if ctx.missing("images") is None:
            zooms = {s.path: s.zooms for s in ctx.image_summaries() if s.ok and s.zooms}
        suffix, fields, converted = protocol_values(ctx.index, zooms)
        info["protocol_suffix"] = suffix
        if converted:
            info["protocol_converted_from_ms"] = converted
        for f, raw in fields.items():
            candidates.append(make_variable("shift.acquisition", f, raw, source=f"sidecars ({suffix})"
                                            if f != "VoxelSize" else f"image headers ({suffix})",
                                            max_levels=th["max_levels"]))
    kept: list[Variable] = [v for v in out if v.kind != "skipped"]
    redundant = []
    for var in candidates:
        if var.kind == "skipped":
            out.append(var)
            continue
        if any(_determined_by(var.values, k.values) for k in kept):
            redundant.append(var.name)
            continue
        kept.append(var)
        out.append(var)
    if redundant:
        info["determined_by_scanner"] = redundant
    return out, info


# --------------------------------------------------------------------------- comparisons
def _describe_continuous(x: Sequence[float]) -> dict[str, Any]:
    import numpy as np

    from audit.stats import finite

    a = np.asarray(x, dtype=float)
    return {"n": int(a.size), "mean": finite(a.mean(), 4), "sd": finite(a.std(ddof=1), 4) if a.size > 1 else None,
            "median": finite(np.median(a), 4), "min": finite(a.min(), 4), "max": finite(a.max(), 4)}


def _compare(var: Variable, a: str, b: str, va: list[Any], vb: list[Any], th: Mapping[str, Any],
             shared: Mapping[str, Any], seed: int) -> dict[str, Any]:
    from audit.stats import (
        association_test,
        contingency,
        finite,
        ks_test,
        mann_whitney,
        proportion_smd,
        smd,
        tost_proportions,
        tost_smd,
        wasserstein,
    )

    rec: dict[str, Any] = {"check": var.check, "variable": var.name, "kind": var.kind, "splits": [a, b],
                           "n": [len(va), len(vb)]}
    margin = th["equivalence_margin"]
    if var.kind == "continuous":
        u, p_mw = mann_whitney(va, vb)
        d, p_ks = ks_test(va, vb)
        use_ks = str(th.get("test", "mann-whitney")).lower() in ("ks", "kolmogorov-smirnov")
        rec.update(test="kolmogorov_smirnov" if use_ks else "mann_whitney",
                   statistic=d if use_ks else u, p_value=p_ks if use_ks else p_mw,
                   other_tests={"kolmogorov_smirnov": {"statistic": d, "p_value": p_ks}}
                   if not use_ks else {"mann_whitney": {"statistic": u, "p_value": p_mw}})
        s = smd(va, vb)
        w = wasserstein(va, vb)
        rec["effect"] = {"smd": s, "wasserstein_std": w}
        rec["large"] = (s is not None and abs(s) >= th["smd"]) or (w is not None and w >= th["wasserstein"])
        rec["equivalence_p"] = tost_smd(va, vb, margin)
        rec["describe"] = {a: _describe_continuous(va), b: _describe_continuous(vb)}
    else:
        rows = [a] * len(va) + [b] * len(vb)
        table, row_levels, levels = contingency(rows, list(va) + list(vb))
        if row_levels != [a, b]:  # contingency sorts the rows
            table = table[::-1]
        assoc = association_test(table, n_permutations=int(shared["n_permutations"]), seed=seed)
        ps = proportion_smd(table)
        rec.update(test=assoc.test, statistic=assoc.statistic, p_value=assoc.p_value)
        rec["effect"] = {"cramers_v": assoc.cramers_v, "proportion_smd": ps}
        rec["large"] = ((ps is not None and ps >= th["smd"])
                        or (assoc.cramers_v is not None and assoc.cramers_v >= th["cramers_v"]))
        rec["equivalence_p"] = tost_proportions(table, margin) if len(levels) > 1 else None
        rec["describe"] = {"levels": [str(v) for v in levels], "counts": {a: table[0].tolist(), b: table[1].tolist()},
                           "proportions": {a: [finite(c / max(len(va), 1), 4) for c in table[0]],
                                           b: [finite(c / max(len(vb), 1), 4) for c in table[1]]}}
        if len(levels) < 2:
            rec["p_value"] = None  # one level on both sides: nothing can differ
            rec["equivalence_p"] = None
            rec["note"] = "a single value on both sides"
    rec["balanced"] = rec.get("equivalence_p") is not None and rec["equivalence_p"] <= shared["equivalence_alpha"]
    return rec


# --------------------------------------------------------------------------- image features
IMAGE_FEATURES: tuple[str, ...] = (
    "intensity_scale",     # log10 of the median foreground intensity (scanner gain, unless images are normalised)
    "low_over_median",     # p01 / p50 inside the foreground: dark tissue contrast
    "high_over_median",    # p99 / p50 inside the foreground: bright tissue contrast, bright artefacts
    "mean_over_median",    # whole-volume mean / foreground median: background share and level
    "coefficient_of_variation",  # std / mean of the whole volume
    "foreground_fraction",  # share of voxels in the (above-mean) foreground: head size / field of view
    "nonzero_fraction",    # zeroed background (defacing, masking, skull stripping)
    "voxel_volume",        # log10 of the voxel volume (mm^3)
    "field_of_view",       # log10 of the imaged volume (mm^3)
    # MRIQC-style quality metrics of the one decode (audit.images.features), all scale-free but the volume
    "snr",                 # log10 of mean / SD of the Otsu foreground (MRIQC snr)
    "snr_dietrich",        # log10 of the foreground mean over the air-background SD (MRIQC snr_dietrich)
    "cnr",                 # contrast-to-noise of the two Otsu classes of the foreground (MRIQC cnr)
    "cjv",                 # coefficient of joint variation of those classes (MRIQC cjv)
    "foreground_volume",   # log10 of the Otsu foreground volume (mL): head size, field of view, defacing
    "fg_p05_over_median",  # robust percentiles of the Otsu foreground over its median
    "fg_p95_over_median",
    "fg_iqr_over_median",  # (p75 - p25) / p50: spread of the tissue intensities
    "bright_class_fraction",  # share of the foreground in the bright Otsu class (white matter on a T1w)
)
N_THUMBNAIL_COMPONENTS = 5
#: Principal components of the 32-bin foreground histograms (the shape of the contrast) used as features.
N_HISTOGRAM_COMPONENTS = 3


def image_features(ctx: AuditContext) -> dict[str, Any]:
    """Per-participant image features from the one image pass (computed once per audit, in ``ctx.cache``).

    Returns ``{"suffix", "names", "by_subject": {participant: vector}, "excluded": {...}}``. The
    reference image of a participant is its first image of the dataset's most common suffix. Features
    are :data:`IMAGE_FEATURES` (header facts, intensity statistics and the MRIQC-style quality metrics
    of :mod:`audit.images.features`: SNR, CNR, CJV, Otsu-foreground percentiles and volume) plus the
    first principal components of the 16^3 thumbnails (the coarse anatomy and contrast layout) and of
    the 32-bin foreground histograms (the shape of the contrast); PCA over every participant, no
    split used.
    """
    hit = ctx.cache.get("image_features")
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    import numpy as np

    from audit.scanner import reference_images

    assert ctx.index is not None
    suffix, ref = reference_images(ctx.index)
    summaries = ctx.image_summaries().by_path()
    rows: dict[str, list[float]] = {}
    with_thumb: dict[str, Any] = {}
    hists: dict[str, Any] = {}
    excluded: Counter[str] = Counter()
    for sub, path in sorted(ref.items()):
        s = summaries.get(path)
        if s is None:
            excluded["content absent"] += 1
            continue
        if not s.ok:
            excluded[s.status] += 1
            continue

        def ratio(x: float | None, y: float | None) -> float:
            return float(x) / float(y) if x is not None and y not in (None, 0) else math.nan

        def log10(x: float | None) -> float:
            return math.log10(x) if x is not None and x > 0 else math.nan

        zooms = list(s.zooms or [])[:3]
        vox = float(np.prod(zooms)) if len(zooms) == 3 else None
        shape = list(s.spatial_shape or [])
        fov = vox * float(np.prod(shape)) if vox is not None and len(shape) == 3 else None
        q = s.iqm or {}

        def num(x: Any) -> float:
            return float(x) if x is not None else math.nan

        iqr = (q["fg_p75"] - q["fg_p25"]) if q.get("fg_p75") is not None and q.get("fg_p25") is not None else None
        rows[sub] = [log10(s.p50), ratio(s.p01, s.p50), ratio(s.p99, s.p50), ratio(s.mean, s.p50),
                     ratio(s.std, s.mean), s.foreground_fraction if s.foreground_fraction is not None else math.nan,
                     s.nonzero_fraction if s.nonzero_fraction is not None else math.nan, log10(vox), log10(fov),
                     log10(q.get("snr")), log10(q.get("snr_dietrich")), num(q.get("cnr")), num(q.get("cjv")),
                     log10(q.get("fg_volume_ml")), ratio(q.get("fg_p05"), q.get("fg_p50")),
                     ratio(q.get("fg_p95"), q.get("fg_p50")), ratio(iqr, q.get("fg_p50")),
                     num(q.get("high_fraction"))]
        if s.thumbnail:
            with_thumb[sub] = s
        if q.get("histogram"):
            hists[sub] = np.asarray(q["histogram"], dtype=np.float64)
    names = list(IMAGE_FEATURES)
    by_subject = {p: np.asarray(v, dtype=float) for p, v in rows.items()}
    for prefix, pcs in (("thumbnail", _thumbnail_components(with_thumb)),
                        ("histogram", _components(hists, N_HISTOGRAM_COMPONENTS))):
        if pcs:
            k = len(next(iter(pcs.values())))
            names += [f"{prefix}_pc{i + 1}" for i in range(k)]
            for p in by_subject:
                by_subject[p] = np.concatenate([by_subject[p], pcs.get(p, np.full(k, np.nan))])
    out = {"suffix": suffix, "names": names, "by_subject": by_subject, "excluded": dict(excluded)}
    ctx.cache["image_features"] = out
    return out


#: The thumbnail components are fitted on at most this many thumbnails (a seeded sample), then every
#: thumbnail is projected one at a time: memory stays small on a 50,000-image dataset.
PCA_SAMPLE = 2000


def _components(vectors: Mapping[str, Any], k_max: int) -> dict[str, Any]:
    """First ``k_max`` principal-component scores of equal-length finite vectors (seeded sample fit)."""
    import numpy as np

    subs = sorted(p for p, v in vectors.items() if np.isfinite(v).all())
    if len(subs) < 4:
        return {}
    size = Counter(len(vectors[p]) for p in subs).most_common(1)[0][0]
    subs = [p for p in subs if len(vectors[p]) == size]
    if len(subs) < 4:
        return {}
    rng = np.random.default_rng(0)
    sample = subs if len(subs) <= PCA_SAMPLE else [subs[i] for i in sorted(rng.choice(len(subs), PCA_SAMPLE,
                                                                                        replace=False))]
    m = np.stack([vectors[p] for p in sample])
    mean = m.mean(0)
    k = min(k_max, len(sample) - 1)
    _u, _sv, vt = np.linalg.svd(m - mean, full_matrices=False)
    basis = vt[:k]
    return {p: basis @ (vectors[p] - mean) for p in subs}


def _thumbnail_components(summaries: Mapping[str, Any]) -> dict[str, Any]:
    """First :data:`N_THUMBNAIL_COMPONENTS` principal-component scores of each participant's thumbnail."""
    import numpy as np

    def vector(s: Any) -> Any:
        v = s.thumbnail_vector().astype(np.float64)
        return v if v.size and np.isfinite(v).all() else None

    subs = sorted(summaries)
    if len(subs) < 4:
        return {}
    sizes = Counter(len(summaries[p].thumbnail) for p in subs)
    size = sizes.most_common(1)[0][0]
    subs = [p for p in subs if len(summaries[p].thumbnail) == size]
    rng = np.random.default_rng(0)
    sample = subs if len(subs) <= PCA_SAMPLE else [subs[i] for i in sorted(rng.choice(len(subs), PCA_SAMPLE,
                                                                                        replace=False))]
    vecs = [(p, vector(summaries[p])) for p in sample]
    vecs = [(p, v) for p, v in vecs if v is not None]
    if len(vecs) < 4:
        return {}
    m = np.stack([v for _, v in vecs])
    mean = m.mean(0)
    k = min(N_THUMBNAIL_COMPONENTS, len(vecs) - 1)
    _u, _sv, vt = np.linalg.svd(m - mean, full_matrices=False)
    basis = vt[:k]
    out = {}
    for p in subs:
        v = vector(summaries[p])
        if v is not None:
            out[p] = basis @ (v - mean)
    return out


def _image_compare(ctx: AuditContext, a: str, b: str, sa: frozenset[str], sb: frozenset[str],
                   th: Mapping[str, Any], shared: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    import numpy as np

    from audit.stats import domain_classifier, smd

    feats = image_features(ctx)
    by = feats["by_subject"]
    both = sa & sb
    pa = sorted(p for p in sa - both if p in by)
    pb = sorted(p for p in sb - both if p in by)
    rec: dict[str, Any] = {"check": "shift.image", "variable": "image features", "kind": "image",
                           "splits": [a, b], "n": [len(pa), len(pb)], "reference_suffix": feats["suffix"]}
    if len(pa) < shared["min_subjects"] or len(pb) < shared["min_subjects"]:
        return None
    X = np.stack([by[p] for p in pa + pb])
    y = [0] * len(pa) + [1] * len(pb)
    res = domain_classifier(X, y, feature_names=feats["names"], n_splits=int(th["n_splits"]),
                            n_permutations=int(th["n_permutations"]), seed=seed, alpha=float(th["ridge_alpha"]))
    auc = res["score"]
    rec.update(test="permutation (domain classifier)", statistic=auc, p_value=res["p_value"])
    rec["effect"] = {"auc": auc, "drift": None if auc is None else round(max(2 * auc - 1, 0.0), 6)}
    rec["large"] = auc is not None and auc >= th["auc"]
    rec["classifier"] = {k: res[k] for k in ("classifier", "n_splits", "n_permutations")}
    names = feats["names"]
    importance = (_permutation_importance(X, y, names, res["features"], auc, th, seed)
                  if rec["large"] else {})
    drivers = []
    for j, name in enumerate(names):
        if name not in res["features"]:
            continue
        col_a, col_b = X[: len(pa), j], X[len(pa):, j]
        drivers.append({"feature": name, "smd": smd(col_a[np.isfinite(col_a)], col_b[np.isfinite(col_b)]),
                        "coefficient": res["coefficients"].get(name), "auc_drop": importance.get(name)})
    # ranked by |SMD|: how far apart the splits are on each feature alone. The permutation importance
    # (auc_drop) is kept beside it but not used to rank: correlated features (SNR, CNR, CJV, histogram
    # components) share their information, so shuffling one of them costs the classifier little.
    drivers.sort(key=lambda d: -abs(d["smd"] or 0.0))
    rec["features_ranked_by"] = "|smd|"
    rec["features"] = drivers
    rec["equivalence_p"] = None
    rec["balanced"] = False
    return rec


#: Shuffles of each feature column for its permutation importance.
IMPORTANCE_REPEATS = 3


def _permutation_importance(X: Any, y: list[int], names: list[str], used: list[str], observed: float | None,
                            th: Mapping[str, Any], seed: int) -> dict[str, float | None]:
    """Drop of the cross-validated ROC AUC when one feature's values are shuffled (same folds, seeded).

    The classic permutation importance (Breiman 2001; scikit-learn's
    ``permutation_importance``), measured out of fold: the AUC the
    classifier loses without that feature's information. Features the
    classifier dropped (constant) are left out.
    """
    import numpy as np

    from audit.stats import domain_classifier, finite

    if observed is None:
        return {}
    rng = np.random.default_rng(seed + 7)
    out: dict[str, float | None] = {}
    for j, name in enumerate(names):
        if name not in used:
            continue
        scores = []
        for _ in range(IMPORTANCE_REPEATS):
            Xp = X.copy()
            Xp[:, j] = Xp[rng.permutation(Xp.shape[0]), j]
            r = domain_classifier(Xp, y, feature_names=names, n_splits=int(th["n_splits"]), n_permutations=0,
                                  seed=seed, alpha=float(th["ridge_alpha"]))
            if r["score"] is not None:
                scores.append(float(r["score"]))
        out[name] = finite(observed - float(np.mean(scores)), 4) if scores else None
    return out


# --------------------------------------------------------------------------- the family
@dataclass
class ShiftFamily:
    """Every shift test of the audit, adjusted together."""

    records: list[dict[str, Any]]
    variables: list[Variable]
    untested: list[dict[str, Any]]
    thresholds: dict[str, dict[str, Any]]
    ignored_config: list[str]
    info: dict[str, Any]
    pairs: int

    def of(self, check_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["check"] == check_id]


def _pairs(names: list[str], mode: str) -> list[tuple[str, str]]:
    """The pairs of splits compared: each against ``train`` (``mode == "train"`` and a train split), else all."""
    if mode.lower() == "train" and "train" in names:
        return [("train", n) for n in names if n != "train"]
    return list(combinations(names, 2))


def shift_family(ctx: AuditContext) -> ShiftFamily:
    """Compute (once per audit) every shift comparison and adjust their p-values together."""
    hit = ctx.cache.get("shift_family")
    if isinstance(hit, ShiftFamily):
        return hit
    from audit.stats import benjamini_hochberg

    th: dict[str, dict[str, Any]] = {}
    ignored: list[str] = []
    for key, defaults in THRESHOLDS.items():
        th[key], bad = configured(ctx, key, defaults)
        ignored += bad
    shared = th["shift"]
    assert ctx.splits is not None
    variables = _label_variables(ctx, shared) + _covariate_variables(ctx, shared)
    acq, info = _acquisition_variables(ctx, shared)
    variables += acq
    images = ctx.index is not None and ctx.missing("images") is None
    records: list[dict[str, Any]] = []
    untested: list[dict[str, Any]] = []
    done: set[tuple[int, int]] = set()
    pairs = 0
    min_n = int(shared["min_subjects"])
    for fold, tables in ctx.splits.views():
        for a, b in _pairs(list(tables), str(shared["pairs"])):
            ta, tb = tables[a], tables[b]
            if (id(ta), id(tb)) in done:
                continue
            done.add((id(ta), id(tb)))
            pairs += 1
            sa, sb = ta.subjects(), tb.subjects()
            where = {} if fold is None else {"fold": fold}
            for var in variables:
                if var.kind == "skipped":
                    continue
                va = [var.values[p] for p in sorted(sa) if p in var.values]
                vb = [var.values[p] for p in sorted(sb) if p in var.values]
                if len(va) < min_n or len(vb) < min_n:
                    untested.append({"check": var.check, "variable": var.name, "splits": [a, b], **where,
                                     "n": [len(va), len(vb)],
                                     "reason": f"fewer than {min_n} participants with a value on a side"})
                    continue
                rec = _compare(var, a, b, va, vb, th[var.check], shared,
                               _seed(int(shared["seed"]), fold, a, b, var.check, var.name))
                rec.update(where)
                records.append(rec)
            if images:
                rec = _image_compare(ctx, a, b, sa, sb, th["shift.image"], shared,
                                     _seed(int(shared["seed"]), fold, a, b, "image"))
                if rec is None:
                    untested.append({"check": "shift.image", "variable": "image features", "splits": [a, b], **where,
                                     "reason": f"fewer than {min_n} participants with a readable reference image "
                                               "on a side"})
                else:
                    rec.update(where)
                    records.append(rec)
    adjusted = benjamini_hochberg([r.get("p_value") for r in records])
    q = float(shared["fdr"])
    for r, p in zip(records, adjusted):
        r["p_adjusted"] = p
        r["significant"] = p is not None and p <= q
        r["effect_large"] = bool(r.pop("large", False))
        r["flagged"] = r["significant"] and r["effect_large"]
    fam = ShiftFamily(records, variables, untested, th, ignored, info, pairs)
    ctx.cache["shift_family"] = fam
    return fam


# --------------------------------------------------------------------------- wording
def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    if x != 0 and abs(x) < 10 ** -nd:
        return f"{x:.1g}"
    return f"{x:.{nd}f}"


def _p(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}".rstrip("0").rstrip(".") if x < 0.1 else f"{x:.2f}"


def _pair(r: Mapping[str, Any]) -> str:
    a, b = r["splits"]
    return f"{a} and {b}" + (f" (fold {r['fold']})" if r.get("fold") is not None else "")


_TEST_NAMES = {"fisher_exact": "Fisher's exact", "chi_square": "chi-square",
               "permutation_chi_square": "permutation chi-square", "mann_whitney": "Mann-Whitney",
               "kolmogorov_smirnov": "Kolmogorov-Smirnov", "permutation (domain classifier)": "permutation"}


def _stat_words(r: Mapping[str, Any]) -> str:
    return (f"{_TEST_NAMES.get(r['test'], r['test'])} p={_p(r['p_value'])}, "
            f"Benjamini-Hochberg adjusted {_p(r['p_adjusted'])}")


def _what_differs(r: Mapping[str, Any], what: str) -> str:
    a, b = r["splits"]
    if r["kind"] == "continuous":
        da, db = r["describe"][a], r["describe"][b]
        s = r["effect"]["smd"] or 0.0
        word = ("older" if s > 0 else "younger") if r["variable"].lower().startswith("age") else \
            ("higher" if s > 0 else "lower")
        return (f"{what} differs between {_pair(r)}: {b} is {word} (mean {_fmt(db['mean'])} vs {_fmt(da['mean'])}, "
                f"SMD {s:+.2f}, Wasserstein/SD {_fmt(r['effect']['wasserstein_std'])}; {_stat_words(r)})")
    d = r["describe"]
    pa, pb = d["proportions"][a], d["proportions"][b]
    j = max(range(len(d["levels"])), key=lambda i: abs((pa[i] or 0) - (pb[i] or 0)))
    return (f"{what} differs between {_pair(r)}: {d['levels'][j]} is {100 * (pa[j] or 0):.0f}% of {a} and "
            f"{100 * (pb[j] or 0):.0f}% of {b} (standardised difference {_fmt(r['effect']['proportion_smd'])}, "
            f"Cramér's V {_fmt(r['effect']['cramers_v'])}; {_stat_words(r)})")


def _thresholds_evidence(fam: ShiftFamily, check_id: str) -> dict[str, Any]:
    out = {"shared": fam.thresholds["shift"], check_id: fam.thresholds[check_id]}
    if fam.ignored_config:
        out["ignored_overrides"] = fam.ignored_config
    return out


def _emit(ctx: AuditContext, check_id: str, what: str) -> Iterator[Finding]:
    fam = shift_family(ctx)
    records = fam.of(check_id)
    variables = [v for v in fam.variables if v.check == check_id]
    flagged: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["flagged"]:
            flagged[(r["variable"], *r["splits"])].append(r)
    for (name, a, b), rs in sorted(flagged.items()):
        worst = max(rs, key=lambda r: abs(_effect_value(r)))
        label = what.format(name=name)
        message = _what_differs(worst, label)
        if len(rs) > 1:
            message += f"; in {len(rs)} folds"
        yield finding(message, splits=(a, b), evidence={
            "variable": name, "kind": worst["kind"], "folds": [r.get("fold") for r in rs],
            "worst": worst, "tests": rs, "thresholds": _thresholds_evidence(fam, check_id),
            "tests_in_family": len(fam.records),
            **({"site_source": fam.info.get("site_source")} if check_id == "shift.acquisition" else {}),
        })
    for v in variables:
        if v.kind != "skipped" and v.notes.get("non_numeric"):
            yield finding(
                f"{v.name}: {v.notes['non_numeric']} values are not numbers ("
                + ", ".join(repr(x) for x in v.notes["non_numeric_examples"][:3])
                + f"); compared on the {len(v.values)} numeric values",
                severity="info", evidence={"variable": v.name, **v.summary()})
    yield _summary(fam, check_id, records, variables)


def _effect_value(r: Mapping[str, Any]) -> float:
    e = r.get("effect") or {}
    for k in ("smd", "proportion_smd", "auc"):
        if e.get(k) is not None:
            return float(e[k])
    return 0.0


def _detectable(fam: ShiftFamily, records: list[dict[str, Any]]) -> tuple[float, int, str] | None:
    """The smallest standardised shift detectable with 80 % power in the least powered comparison.

    Normal approximation for a two-sample comparison at the Bonferroni level
    ``fdr / m`` (``m`` tests in the family; BH is at least that lenient):
    ``(z(1 - fdr / 2m) + z(0.8)) * sqrt(1/n_a + 1/n_b)``. Returns
    ``(smd, participants in the smaller split, its name)``.
    """
    from statistics import NormalDist

    pairs = [(r["n"][0], r["n"][1], r["splits"][1]) for r in records
             if r.get("kind") in ("continuous", "categorical") and min(r["n"]) > 0]
    if not pairs:
        return None
    m = max(1, len(fam.records))
    z = NormalDist().inv_cdf(1 - float(fam.thresholds["shift"]["fdr"]) / (2 * m)) + NormalDist().inv_cdf(0.8)
    na, nb, name = max(pairs, key=lambda t: 1 / t[0] + 1 / t[1])
    return round(z * math.sqrt(1 / na + 1 / nb), 2), min(na, nb), name


def _summary(fam: ShiftFamily, check_id: str, records: list[dict[str, Any]], variables: list[Variable]) -> Finding:
    tested = sorted({r["variable"] for r in records})
    skipped = {v.name: v.reason for v in variables if v.kind == "skipped"}
    untested = [u for u in fam.untested if u["check"] == check_id]
    n_flag = sum(r["flagged"] for r in records)
    n_bal = sum(bool(r.get("balanced")) for r in records)
    noun = {"shift.label": "label", "shift.covariate": "covariate", "shift.acquisition": "acquisition",
            "shift.image": "image"}[check_id]
    if not records:
        if fam.pairs == 0:
            message = f"{noun} shift not measured: fewer than two splits to compare"
        elif skipped and not untested:
            message = f"{noun} shift not measured: " + "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        elif untested:
            message = f"{noun} shift not measured: too few participants with a value on a side " + \
                      ", ".join(sorted({' vs '.join(u['splits']) for u in untested}))
        else:
            message = f"{noun} shift not measured: nothing to compare"
    else:
        names = ", ".join(tested[:8]) + (f" and {len(tested) - 8} more" if len(tested) > 8 else "")
        head = (f"{noun} shift flagged in {n_flag} of {len(records)} comparisons" if n_flag
                else f"no {noun} shift found in {len(records)} comparisons")
        message = f"{head} ({names}; false discovery rate {fam.thresholds['shift']['fdr']:g})"
        if check_id != "shift.image":
            margin = fam.thresholds[check_id]["equivalence_margin"]
            message += f"; balance within ±{margin:g} SD shown by equivalence test for {n_bal} of {len(records)}"
            mde = _detectable(fam, records)
            if mde is not None and not n_flag and mde[0] > 2 * margin:
                message += (f"; with {mde[1]} participants in {mde[2]} only shifts of about {mde[0]:.1f} SD or more "
                            "can be detected (80 % power)")
        single = sorted({r["variable"] for r in records if r.get("note") == "a single value on both sides"})
        if single:
            message += "; a single value in every split (nothing can differ): " + ", ".join(single)
        if untested:
            message += f"; {len(untested)} not tested (too few participants on a side)"
        if skipped:
            message += "; not compared: " + "; ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
    mde = _detectable(fam, records)
    evidence: dict[str, Any] = {
        "comparisons": len(records), "flagged": n_flag, "balanced": n_bal,
        "detectable_smd": None if mde is None else {"smd": mde[0], "split": mde[2], "participants": mde[1],
                                                    "power": 0.8},
        "tests_in_family": len(fam.records),
        "variables": {v.name: v.summary() for v in variables},
        "tests": records[:MAX_TESTS_LISTED], "tests_listed": min(len(records), MAX_TESTS_LISTED),
        "untested": untested[:MAX_TESTS_LISTED], "thresholds": _thresholds_evidence(fam, check_id),
    }
    if check_id == "shift.acquisition":
        evidence.update(fam.info)
    return finding(message, severity="info", splits=tuple(sorted({s for r in records for s in r["splits"]})),
                   evidence=evidence)


# --------------------------------------------------------------------------- checks
@check("shift.label", default="warning", needs={"splits", "label"})
def label_shift(ctx: AuditContext) -> Iterator[Finding]:
    """The label distribution differs between splits (prevalence shift)."""
    yield from _emit(ctx, "shift.label", "the distribution of {name}")


@check("shift.covariate", default="warning", needs={"splits"})
def covariate_shift(ctx: AuditContext) -> Iterator[Finding]:
    """A participant variable (age, sex, ...) differs between splits (population shift)."""
    yield from _emit(ctx, "shift.covariate", "{name}")


@check("shift.acquisition", default="warning", needs={"splits"})
def acquisition_shift(ctx: AuditContext) -> Iterator[Finding]:
    """The site, scanner or protocol mix differs between splits (acquisition shift)."""
    fam = shift_family(ctx)
    if not any(v.check == "shift.acquisition" for v in fam.variables):
        src = fam.info.get("site_source", {})
        yield finding(
            "acquisition shift not measured: no site or scanner information (no --site column, no scanner "
            "fields in sidecars, no site column)", severity="info", evidence={"site_source": src})
        return
    yield from _emit(ctx, "shift.acquisition", "the {name} mix")


@check("shift.image", default="warning", needs={"splits", "images"})
def image_shift(ctx: AuditContext) -> Iterator[Finding]:
    """Image content differs between splits (a classifier tells them apart)."""
    fam = shift_family(ctx)
    th = fam.thresholds["shift.image"]
    k = int(th["top_features"])
    for r in fam.of("shift.image"):
        if not r["flagged"]:
            continue
        top = r["features"][:k]
        named = ", ".join(f"{d['feature']} (" + (f"AUC drop {d['auc_drop']:.2f}, " if d.get("auc_drop") is not None
                                                  else "") + f"SMD {d['smd']:+.2f})"
                          for d in top if d["smd"] is not None)
        yield finding(
            f"a classifier tells {_pair(r)} apart from image features: ROC AUC {_fmt(r['statistic'])} "
            f"(permutation p={_p(r['p_value'])}, adjusted {_p(r['p_adjusted'])}); driven by {named}",
            splits=tuple(r["splits"]),
            evidence={**r, "thresholds": _thresholds_evidence(fam, "shift.image"),
                      "tests_in_family": len(fam.records)})
    feats = image_features(ctx) if ctx.index is not None else {}
    summary = _summary(fam, "shift.image", fam.of("shift.image"), [])
    ev = dict(summary.evidence)
    ev["features"] = feats.get("names", [])
    ev["reference_suffix"] = feats.get("suffix")
    ev["images_excluded"] = feats.get("excluded", {})
    yield finding(summary.message, severity="info", splits=summary.splits, evidence=ev)
