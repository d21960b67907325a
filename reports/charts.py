"""Inline SVG charts for the HTML report, drawn on the server from the JSON result.

No JavaScript, no library, no request: each function returns a
:class:`markupsafe.Markup` ``<svg>`` element (or an empty Markup when the data
is missing or malformed: a saved result may come from anywhere). Every piece
of text that reaches the SVG (split names, levels, site names, feature
names) goes through :func:`markupsafe.escape`; numbers are formatted here and
never read "nan", "None" or "undefined".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import Any

from markupsafe import Markup, escape

__all__ = ["split_colour", "categorical_chart", "histogram_chart", "heatmap", "auc_chart", "feature_bars",
           "box_chart", "safe_chart", "effect_rows", "effect_chart", "label_mix_rows", "EFFECT_NAMES"]

PALETTE = ("#2e6fdb", "#e08a00", "#12a150", "#8e44ad", "#c0392b", "#16a2b8", "#7f8c8d", "#d35400")
NAMED = {"train": PALETTE[0], "validation": PALETTE[1], "test": PALETTE[2]}
FONT = 'font-family="system-ui, sans-serif"'
TEXT = "#344054"
GRID = "#e4e7ec"


def split_colour(name: str, order: Sequence[str]) -> str:
    base = str(name).split("/")[0]
    if base in NAMED:
        return NAMED[base]
    others = [n for n in order if str(n).split("/")[0] not in NAMED]
    i = others.index(name) if name in others else 0
    return PALETTE[3 + i % (len(PALETTE) - 3)]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def num(x: Any, digits: int = 3) -> str:
    """A number for the page: ``n/a`` for anything that is not a finite number."""
    if not _finite(x):
        return "n/a"
    x = float(x)
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def _t(text: Any, limit: int = 26) -> Markup:
    """Escaped text, shortened to ``limit`` characters (the full text goes into a <title>)."""
    s = "" if text is None else str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return escape(s)


def safe_chart(func: Callable[..., Markup]) -> Callable[..., Markup]:
    """A chart from malformed data renders as nothing rather than breaking the whole report."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Markup:
        try:
            return func(*args, **kwargs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError):
            return Markup("")

    return wrapper


def _svg(width: float, height: float, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" {FONT} font-size="12">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def _legend(splits: Sequence[str], x: float, y: float, right: float = 470) -> tuple[list[str], float]:
    """Legend entries from (x, y), wrapping at ``right``; returns them and the height used."""
    out = []
    x0, y0 = x, y
    for name in splits:
        step = 24 + 7 * min(len(str(name)), 18)
        if x > x0 and x + step > right:
            x, y = x0, y + 15
        colour = split_colour(name, splits)
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14:.1f}" y="{y:.1f}" fill="{TEXT}">{_t(name, 18)}</text>')
        x += step
    return out, y - y0 + 15


def _splits_of(block: Mapping[str, Any], splits: Sequence[str]) -> list[str]:
    counts = block["counts"]
    return [s for s in splits if s in counts]


@safe_chart
def categorical_chart(block: Mapping[str, Any], splits: Sequence[str]) -> Markup:
    """Horizontal grouped bars: for each level, the share of each split's participants (count in the label)."""
    splits = _splits_of(block, splits)
    levels = [str(v) for v in block["levels"]]
    if not splits or not levels:
        return Markup("")
    totals = {s: sum(int(c) for c in block["counts"][s]) for s in splits}
    bar, gap = 11, 10
    left, right, top = 172, 66, 26
    width = 470
    plot = width - left - right
    group = len(splits) * bar + gap
    body, used = _legend(splits, 10, 14, width)
    top = max(top, used + 12)
    height = top + group * len(levels) + 6
    for i, level in enumerate(levels):
        y0 = top + i * group
        body.append(f'<text x="{left - 8}" y="{y0 + len(splits) * bar / 2 + 4:.1f}" text-anchor="end" '
                    f'fill="{TEXT}">{_t(level, 24)}<title>{escape(level)}</title></text>')
        for j, s in enumerate(splits):
            n = int(block["counts"][s][i])
            share = n / totals[s] if totals[s] else 0.0
            y = y0 + j * bar
            w = max(share * plot, 0.5 if n else 0)
            body.append(f'<rect x="{left}" y="{y:.1f}" width="{w:.1f}" height="{bar - 2}" '
                        f'fill="{split_colour(s, splits)}"><title>{escape(s)}: {escape(level)} '
                        f'{n} of {totals[s]} ({100 * share:.0f}%)</title></rect>'
                        f'<text x="{left + w + 4:.1f}" y="{y + bar - 3:.1f}" fill="{TEXT}" font-size="10">'
                        f'{100 * share:.0f}% ({n})</text>')
    body.append(f'<line x1="{left}" x2="{left}" y1="{top - 4}" y2="{height - 4}" stroke="{GRID}"/>')
    return _svg(width, height, body, f"{block.get('name', '')} by split")


@safe_chart
def histogram_chart(block: Mapping[str, Any], splits: Sequence[str]) -> Markup:
    """One small histogram per split (shares of the split, one y scale), sharing the x axis."""
    splits = _splits_of(block, splits)
    edges = [float(e) for e in block["edges"]]
    if not splits or len(edges) < 2 or not all(math.isfinite(e) for e in edges):
        return Markup("")
    bins = len(edges) - 1
    shares = {}
    for s in splits:
        counts = [int(c) for c in block["counts"][s]][:bins]
        total = sum(counts)
        shares[s] = [c / total if total else 0.0 for c in counts]
    top_share = max((v for s in splits for v in shares[s]), default=0.0) or 1.0
    panel_w, panel_h, pad = 136, 70, 14
    per_row = 3
    rows = math.ceil(len(splits) / per_row)
    width = min(len(splits), per_row) * (panel_w + pad) + pad
    height = rows * (panel_h + 44) + 4
    body: list[str] = []
    for k, s in enumerate(splits):
        x0 = pad + (k % per_row) * (panel_w + pad)
        y0 = 18 + (k // per_row) * (panel_h + 44)
        colour = split_colour(s, splits)
        n = sum(int(c) for c in block["counts"][s])
        body.append(f'<text x="{x0}" y="{y0 - 5}" fill="{TEXT}" font-weight="600">{_t(s, 20)}'
                    f'<tspan font-weight="400" fill="#667085"> n={n}</tspan></text>')
        bw = panel_w / bins
        for i, share in enumerate(shares[s]):
            h = share / top_share * panel_h
            body.append(f'<rect x="{x0 + i * bw + 0.5:.1f}" y="{y0 + panel_h - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                        f'height="{h:.1f}" fill="{colour}"><title>{escape(s)}: {num(edges[i])} to '
                        f'{num(edges[i + 1])}: {int(block["counts"][s][i])} ({100 * share:.0f}%)</title></rect>')
        body.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{y0 + panel_h}" y2="{y0 + panel_h}" stroke="#98a2b3"/>')
        for pos, anchor, value in ((x0, "start", edges[0]), (x0 + panel_w / 2, "middle", (edges[0] + edges[-1]) / 2),
                                   (x0 + panel_w, "end", edges[-1])):
            body.append(f'<text x="{pos:.1f}" y="{y0 + panel_h + 14}" text-anchor="{anchor}" fill="#667085" '
                        f'font-size="10">{num(value)}</text>')
    return _svg(width, height, body, f"{block.get('name', '')} by split")


def _shade(excess: float) -> str:
    """White when a cell's share equals the label's share overall; red above it, blue below (full at 0.5)."""
    t = min(abs(excess) / 0.5, 1.0)
    r0, g0, b0 = (180, 35, 24) if excess > 0 else (23, 92, 211)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 + (c - 255) * t) for c in (r0, g0, b0)))


@safe_chart
def heatmap(table: Mapping[str, Any], label: str = "label") -> Markup:
    """Site x label contingency table: each cell shaded by the share of the site's participants."""
    sites = [str(s) for s in table["sites"]]
    labels = [str(v) for v in table["labels"]]
    counts = [[int(c) for c in row] for row in table["counts"]]
    if not sites or not labels or len(counts) != len(sites):
        return Markup("")
    cell_w, cell_h = max(64, min(110, 520 // max(len(labels), 1))), 30
    left, top = 190, 44
    width = max(left + cell_w * len(labels) + 110, 640)
    height = top + cell_h * len(sites) + 40
    body = [f'<text x="{left + cell_w * len(labels) / 2:.1f}" y="14" text-anchor="middle" fill="{TEXT}" '
            f'font-weight="600">{_t(label, 40)}</text>']
    for j, lab in enumerate(labels):
        body.append(f'<text x="{left + j * cell_w + cell_w / 2:.1f}" y="{top - 8}" text-anchor="middle" '
                    f'fill="{TEXT}">{_t(lab, 12)}<title>{escape(lab)}</title></text>')
    body.append(f'<text x="{left + cell_w * len(labels) + 10}" y="{top - 8}" fill="#667085">participants</text>')
    grand = sum(sum(row[: len(labels)]) for row in counts)
    overall = [sum(row[j] for row in counts if j < len(row)) / grand if grand else 0.0 for j in range(len(labels))]
    for i, (site, row) in enumerate(zip(sites, counts)):
        total = sum(row)
        y = top + i * cell_h
        body.append(f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end" fill="{TEXT}">'
                    f'{_t(site, 24)}<title>{escape(site)}</title></text>')
        for j, c in enumerate(row[: len(labels)]):
            share = c / total if total else 0.0
            excess = share - overall[j]
            fill = _shade(excess) if total else "#f2f4f7"
            ink = "#fff" if abs(excess) > 0.3 else TEXT
            body.append(f'<rect x="{left + j * cell_w}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="{fill}" stroke="{GRID}"><title>{escape(site)}, {escape(labels[j])}: {c} of {total} '
                        f'({100 * share:.0f}%; {100 * overall[j]:.0f}% overall)</title></rect>'
                        f'<text x="{left + j * cell_w + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 3:.1f}" '
                        f'text-anchor="middle" fill="{ink}">{c} · {100 * share:.0f}%</text>')
        body.append(f'<text x="{left + cell_w * len(labels) + 10}" y="{y + cell_h / 2 + 4:.1f}" '
                    f'fill="#667085">{total}</text>')
    more = table.get("sites_total")
    if _finite(more) and int(more) > len(sites):
        body.append(f'<text x="0" y="{height - 22}" fill="#667085">… and {int(more) - len(sites)} more sites '
                    "(see the JSON result)</text>")
    body.append(f'<text x="0" y="{height - 8}" fill="#667085" font-size="11">cell: participants · share of the '
                "site. Red: above the label's share overall; blue: below; white: as overall</text>")
    return _svg(width, height, body, f"{label} by site")


@safe_chart
def auc_chart(records: Sequence[Mapping[str, Any]], threshold: Any = None) -> Markup:
    """Domain-classifier ROC AUC per compared pair of splits, against chance (0.5) and the threshold."""
    rows = [r for r in records if _finite(r.get("statistic")) and len(r.get("splits") or ()) == 2]
    if not rows:
        return Markup("")
    left, right, top, bar = 200, 60, 22, 18
    width = 560
    plot = width - left - right
    height = top + len(rows) * (bar + 6) + 24

    def x(v: float) -> float:
        return left + min(max(v, 0.0), 1.0) * plot

    body = [f'<text x="0" y="{top - 10}" fill="{TEXT}" font-weight="600">domain classifier ROC AUC</text>']
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 4}" y2="{height - 18}" stroke="{GRID}"/>'
                    f'<text x="{x(v):.1f}" y="{height - 5}" text-anchor="middle" fill="#667085" '
                    f'font-size="10">{num(v)}</text>')
    body.append(f'<line x1="{x(0.5):.1f}" x2="{x(0.5):.1f}" y1="{top - 8}" y2="{height - 18}" stroke="#667085" '
                f'stroke-dasharray="3 3"/><text x="{x(0.5) + 3:.1f}" y="{top - 10}" fill="#667085" '
                'font-size="10">chance</text>')
    if _finite(threshold):
        body.append(f'<line x1="{x(float(threshold)):.1f}" x2="{x(float(threshold)):.1f}" y1="{top - 8}" '
                    f'y2="{height - 18}" stroke="#b54708" stroke-dasharray="4 2"/><text x="{x(float(threshold)) + 3:.1f}" '
                    f'y="{top - 10}" fill="#b54708" font-size="10">threshold {num(threshold)}</text>')
    for i, r in enumerate(rows):
        a, b = (str(s) for s in r["splits"])
        name = f"{a} vs {b}" + (f" (fold {r['fold']})" if r.get("fold") is not None else "")
        y = top + i * (bar + 6)
        auc = float(r["statistic"])
        colour = "#b42318" if r.get("flagged") else "#667085"
        # at or below chance the classifier cannot tell the splits apart: "no signal", not a reversed one
        chance = auc <= 0.5
        why = " (at or below chance 0.5: no signal, the splits look alike)" if chance else ""
        body.append(f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end" fill="{TEXT}">{_t(name, 30)}</text>'
                    f'<rect x="{left}" y="{y}" width="{x(auc) - left:.1f}" height="{bar}" fill="{colour}" '
                    f'opacity="{0.35 if chance else 0.85}"><title>{escape(name)}: ROC AUC {num(auc)}{why}, '
                    f'permutation p {num(r.get("p_value"))}</title></rect>'
                    f'<text x="{x(max(auc, 0.5)) + 4:.1f}" y="{y + bar - 5}" fill="{TEXT}">{num(auc, 2)}'
                    f'{" no signal" if chance else ""}</text>')
    return _svg(width, height, body, "domain classifier ROC AUC per pair of splits")


@safe_chart
def feature_bars(features: Sequence[Mapping[str, Any]], limit: int = 6) -> Markup:
    """Standardised mean difference of the image features that drive a flagged image shift."""
    rows = [f for f in features if _finite(f.get("smd"))][:limit]
    if not rows:
        return Markup("")
    left, top, bar = 200, 10, 16
    width, half = 560, 150
    mid = left + half
    lim = max(1.0, max(abs(float(f["smd"])) for f in rows))
    height = top + len(rows) * (bar + 5) + 22
    body = [f'<line x1="{mid}" x2="{mid}" y1="{top - 4}" y2="{height - 16}" stroke="#98a2b3"/>']
    for i, f in enumerate(rows):
        y = top + i * (bar + 5)
        s = float(f["smd"])
        w = abs(s) / lim * half
        x0 = mid if s >= 0 else mid - w
        body.append(f'<text x="{left - 8}" y="{y + bar - 4}" text-anchor="end" fill="{TEXT}">{_t(f.get("feature"))}</text>'
                    f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{bar}" fill="#b54708" opacity="0.8"/>'
                    f'<text x="{mid + half + 8}" y="{y + bar - 4}" fill="{TEXT}">SMD {s:+.2f}</text>')
    body.append(f'<text x="{mid}" y="{height - 3}" text-anchor="middle" fill="#667085" font-size="10">'
                "standardised mean difference (second split minus first)</text>")
    return _svg(width, height, body, "image features that differ most")


@safe_chart
def box_chart(feature: Mapping[str, Any], splits: Sequence[str]) -> Markup:
    """Box plot (min, quartiles, median, max) of one image feature per split."""
    by = feature["by_split"]
    names = [s for s in splits if s in by] + [s for s in by if s not in splits]
    stats = {s: by[s] for s in names if all(_finite(by[s].get(k)) for k in ("min", "q1", "median", "q3", "max"))}
    names = [s for s in names if s in stats]
    if not names:
        return Markup("")
    lo = min(float(stats[s]["min"]) for s in names)
    hi = max(float(stats[s]["max"]) for s in names)
    span = (hi - lo) or 1.0
    left, right, top, bar = 160, 20, 22, 16
    width = 470
    plot = width - left - right
    height = top + len(names) * (bar + 8) + 20

    def x(v: Any) -> float:
        return left + (float(v) - lo) / span * plot

    body = [f'<text x="0" y="14" fill="{TEXT}" font-weight="600">{_t(feature.get("name"), 40)}</text>']
    for i, s in enumerate(names):
        st = stats[s]
        y = top + i * (bar + 8)
        c = split_colour(s, names)
        mid = y + bar / 2
        body.append(f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" fill="{TEXT}">{_t(s, 18)} '
                    f'<tspan fill="#667085">n={num(st.get("n"))}</tspan></text>'
                    f'<line x1="{x(st["min"]):.1f}" x2="{x(st["max"]):.1f}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="{c}"/>'
                    f'<rect x="{x(st["q1"]):.1f}" y="{y}" width="{max(x(st["q3"]) - x(st["q1"]), 1):.1f}" '
                    f'height="{bar}" fill="{c}" fill-opacity="0.35" stroke="{c}"><title>{escape(s)}: min '
                    f'{num(st["min"])}, quartiles {num(st["q1"])} / {num(st["median"])} / {num(st["q3"])}, max '
                    f'{num(st["max"])}</title></rect>'
                    f'<line x1="{x(st["median"]):.1f}" x2="{x(st["median"]):.1f}" y1="{y}" y2="{y + bar}" '
                    f'stroke="{c}" stroke-width="2.5"/>')
    body.append(f'<text x="{left}" y="{height - 4}" fill="#667085" font-size="10">{num(lo)}</text>'
                f'<text x="{width - right}" y="{height - 4}" text-anchor="end" fill="#667085" font-size="10">'
                f'{num(hi)}</text>')
    return _svg(width, height, body, f"{feature.get('name', '')} by split")


#: How each kind of effect is named on the page, and its value of "no effect".
EFFECT_NAMES = {"smd": "SMD (Hedges' g)", "proportion_difference": "class-share difference",
                "cramers_v": "Cramér's V", "auc": "ROC AUC"}
_EFFECT_NULL = {"smd": 0.0, "proportion_difference": 0.0, "cramers_v": 0.0, "auc": 0.5}
_MAGNITUDE_COLOURS = {"large": "#b42318", "moderate": "#b54708", "small": "#667085", "negligible": "#98a2b3"}


def effect_rows(records: Any, limit: int = 40) -> list[dict[str, Any]]:
    """The comparisons of a finding's evidence that carry an effect size and a decision, as display rows.

    Each row: ``name`` (variable and splits), ``kind``, ``what`` (the effect's name), ``estimate``,
    ``lo``, ``hi``, ``magnitude``, ``warning``, ``uncertain``, ``bounds``, ``wording``: plain values,
    escaped by the template. Malformed records are left out.
    """
    out: list[dict[str, Any]] = []
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        return out
    for r in records:
        if not isinstance(r, Mapping):
            continue
        es, d = r.get("effect_size"), r.get("decision")
        if not isinstance(es, Mapping) or not isinstance(d, Mapping) or es.get("kind") not in EFFECT_NAMES:
            continue
        ci = es.get("ci") if isinstance(es.get("ci"), Sequence) else None
        lo, hi = (ci[0], ci[1]) if ci is not None and len(ci) == 2 and all(_finite(c) for c in ci) else (None, None)
        splits = r.get("splits") if isinstance(r.get("splits"), Sequence) else []
        name = str(r.get("variable") or ("label x site" if es["kind"] == "cramers_v" else ""))
        if len(splits) == 2:
            name += f": {splits[0]} vs {splits[1]}"
        if r.get("fold") is not None:
            name += f" (fold {r['fold']})"
        bounds = d.get("bounds") if isinstance(d.get("bounds"), Mapping) else {}
        out.append({"name": name, "kind": es["kind"], "what": EFFECT_NAMES[es["kind"]],
                    "estimate": es.get("estimate") if _finite(es.get("estimate")) else None, "lo": lo, "hi": hi,
                    "magnitude": str(d.get("magnitude") or ""), "warning": d.get("warning") is True,
                    "uncertain": d.get("uncertain") is True, "wording": str(d.get("wording") or ""),
                    "bounds": {k: float(v) for k, v in bounds.items() if _finite(v)},
                    "not_measured": es.get("not_measured")})
        if len(out) >= limit:
            break
    return out


@safe_chart
def effect_chart(records: Any, limit: int = 20) -> Markup:
    """Each comparison's effect size with its 95 % interval against the magnitude bounds (one panel per kind)."""
    rows = [r for r in effect_rows(records, limit) if r["estimate"] is not None]
    if not rows:
        return Markup("")
    left, right, bar = 230, 150, 20
    width = 640
    plot = width - left - right
    body: list[str] = []
    y = 4
    for kind in [k for k in EFFECT_NAMES if any(r["kind"] == k for r in rows)]:
        mine = [r for r in rows if r["kind"] == kind]
        bounds = mine[0]["bounds"]
        signed = kind in ("smd", "proportion_difference")
        values = [abs(v) for r in mine for v in (r["estimate"], r["lo"], r["hi"]) if _finite(v)]
        big = max([bounds.get("large", 1.0) * 1.2, *values])
        lo_axis, hi_axis = ((-big, big) if signed else (0.5, 1.0) if kind == "auc" else (0.0, max(1.0, big)))

        def x(v: float, lo_axis: float = lo_axis, hi_axis: float = hi_axis) -> float:
            return left + (min(max(v, lo_axis), hi_axis) - lo_axis) / (hi_axis - lo_axis) * plot

        top = y + 16
        height = len(mine) * (bar + 4)
        body.append(f'<text x="0" y="{y + 11}" fill="{TEXT}" font-weight="600">{escape(EFFECT_NAMES[kind])} '
                    "(95% CI)</text>")
        # the bands: negligible (white), small (light), moderate, large (darker), both sides when signed
        edges = [bounds.get("negligible"), bounds.get("moderate"), bounds.get("large")]
        shades = ("#f2f4f7", "#fef0c7", "#fee4e2")
        if all(_finite(e) for e in edges):
            for i, shade in enumerate(shades):
                a, b = float(edges[i]), float(edges[i + 1]) if i < 2 else hi_axis
                for s in ((1, -1) if signed else (1,)):
                    x1, x2 = sorted((x(s * a), x(s * b)))
                    body.append(f'<rect x="{x1:.1f}" y="{top}" width="{x2 - x1:.1f}" height="{height}" '
                                f'fill="{shade}"/>')
            for e in edges:
                for s in ((1, -1) if signed else (1,)):
                    body.append(f'<text x="{x(s * float(e)):.1f}" y="{top + height + 11}" text-anchor="middle" '
                                f'fill="#667085" font-size="10">{num(s * float(e), 2)}</text>')
        body.append(f'<line x1="{x(_EFFECT_NULL[kind]):.1f}" x2="{x(_EFFECT_NULL[kind]):.1f}" y1="{top}" '
                    f'y2="{top + height}" stroke="#667085" stroke-dasharray="3 3"/>')
        for i, r in enumerate(mine):
            cy = top + i * (bar + 4) + bar / 2
            colour = _MAGNITUDE_COLOURS.get(r["magnitude"], "#667085")
            body.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" fill="{TEXT}">'
                        f'<title>{escape(r["name"])}</title>{_t(r["name"], 34)}</text>')
            if r["lo"] is not None and r["hi"] is not None:
                body.append(f'<line x1="{x(float(r["lo"])):.1f}" x2="{x(float(r["hi"])):.1f}" y1="{cy:.1f}" '
                            f'y2="{cy:.1f}" stroke="{colour}" stroke-width="2"/>')
            body.append(f'<circle cx="{x(float(r["estimate"])):.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}">'
                        f'<title>{escape(r["wording"])}</title></circle>')
            words = r["magnitude"] + (" · warning" if r["warning"] else "")
            body.append(f'<text x="{left + plot + 8}" y="{cy + 4:.1f}" fill="{colour}">{num(r["estimate"], 2)} '
                        f'{_t(words, 20)}</text>')
        y = top + height + 20
    return _svg(width, y, body, "effect sizes with 95% confidence intervals against the magnitude bounds")


def label_mix_rows(mix: Any) -> dict[str, Any] | None:
    """A ``label_mix`` block as display rows (``None`` when malformed): each class's share per split in %.

    Returns ``{"splits": [a, b], "rows": [[class, "50 %", "90 %", "+40 points"], ...], "majority": class,
    "accuracy": ["0.5", "0.9"], "balanced": "0.5"}``; values the template escapes.
    """
    try:
        shares = mix["shares"]
        a, b = list(shares)[:2]
        rows = []
        for c in mix["classes"]:
            sa, sb = shares[a].get(c), shares[b].get(c)
            diff = f"{100 * (float(sb) - float(sa)):+.0f} points" if _finite(sa) and _finite(sb) else "n/a"
            rows.append([str(c), f"{num(100 * float(sa), 3)} %" if _finite(sa) else "n/a",
                         f"{num(100 * float(sb), 3)} %" if _finite(sb) else "n/a", diff])
        acc = mix.get("majority_accuracy") or {}
        return {"splits": [str(a), str(b)], "rows": rows, "majority": str(mix.get("majority_class", "")),
                "accuracy": [num(acc.get(a)), num(acc.get(b))], "balanced": num(mix.get("majority_balanced_accuracy"))}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
