"""The training report's proof sections: the shuffled-label null, the prediction-site test, per-site results.

:func:`proofs_document` reads ``permutation_test.json``, ``site_results.json``
and ``prediction_confound.json`` from the model folder (whatever is there);
:func:`null_svg` draws the null distribution as an inline SVG histogram in the
training report's style (numbers and escaped labels only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.bidsindex import read_json
from audit.errors import InputError

__all__ = ["null_svg", "proofs_document"]

_BLUE, _RED, _GREY = "#175cd3", "#b42318", "#475467"


def _escape(s: str) -> str:
    from markupsafe import escape

    return str(escape(s))


def null_svg(null: Sequence[float], real: float | None, chance: float, *, metric: str, split: str,
             width: int = 500, height: int = 220) -> str:
    """A histogram of the shuffled-label scores, the chance level (dashed) and the real model's score (red).

    >>> svg = null_svg([0.4, 0.5, 0.55, 0.6], 0.9, 0.5, metric="balanced_accuracy", split="<v>")
    >>> svg.count('class="bar"'), 'class="real"' in svg, "&lt;v&gt;" in svg
    (4, True, True)
    """
    vals = [float(v) for v in null if v is not None and math.isfinite(v)]
    if not vals:
        return '<p class="empty">No shuffled-label scores to plot.</p>'
    ml, mr, mt, mb = 40, 14, 26, 36
    marks = vals + [chance] + ([real] if real is not None and math.isfinite(real) else [])
    lo, hi = min(min(marks), 0.0), max(max(marks), 1.0 if metric == "balanced_accuracy" else max(marks))
    if hi - lo < 1e-9:
        hi = lo + 1
    bins = 20
    counts = [0] * bins
    for v in vals:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    top = max(counts)

    def X(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * (width - ml - mr)

    bw = (width - ml - mr) / bins
    out = [f'<svg class="chart null-distribution" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="shuffled-label {_escape(metric)} on '
           f'{_escape(split)}">',
           f'<line x1="{ml}" y1="{height - mb}" x2="{width - mr}" y2="{height - mb}" stroke="#98a2b3"/>',
           f'<text x="{(width + ml) / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="11">'
           f'{_escape(metric)} on {_escape(split)}</text>',
           f'<text x="{ml}" y="{height - mb + 14}" text-anchor="middle" font-size="10">{lo:.3g}</text>',
           f'<text x="{width - mr}" y="{height - mb + 14}" text-anchor="middle" font-size="10">{hi:.3g}</text>']
    for i, c in enumerate(counts):
        if c:
            h = c / top * (height - mt - mb)
            out.append(f'<rect class="bar" x="{ml + i * bw + 1:.1f}" y="{height - mb - h:.1f}" width="{bw - 2:.1f}" '
                       f'height="{h:.1f}" fill="{_BLUE}" opacity="0.75"><title>{c} shuffled run(s)</title></rect>')
    out.append(f'<line class="chance" x1="{X(chance):.1f}" y1="{mt}" x2="{X(chance):.1f}" y2="{height - mb}" '
               f'stroke="{_GREY}" stroke-dasharray="4 3"><title>chance {chance:.3g}</title></line>')
    out.append(f'<text x="{X(chance):.1f}" y="{mt - 6}" text-anchor="middle" font-size="10">chance</text>')
    if real is not None and math.isfinite(real):
        out.append(f'<line class="real" x1="{X(real):.1f}" y1="{mt}" x2="{X(real):.1f}" y2="{height - mb}" '
                   f'stroke="{_RED}" stroke-width="2.5"><title>real model {real:.3g}</title></line>')
        out.append(f'<text x="{X(real):.1f}" y="{mt - 16}" text-anchor="middle" font-size="10" fill="{_RED}">'
                   f'real {real:.3g}</text>')
    out.append("</svg>")
    return "".join(out)


def _read(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else None
    except (OSError, ValueError, InputError):  # a damaged file: the report leaves its section out
        return None


def proofs_document(root: Path) -> dict[str, Any]:
    """What the proof sections show, from the model folder ``root``; charts as SVG strings."""
    from markupsafe import Markup

    perm = _read(root / "permutation_test.json")
    charts = []
    if isinstance(perm, dict):
        for split, d in (perm.get("splits") or {}).items():
            charts.append({"split": split, "d": d, "svg": Markup(null_svg(
                d.get("null") or [], d.get("real"), float(perm.get("chance") or 0), metric=str(perm.get("metric")),
                split=str(split)))})
    sites = _read(root / "site_results.json")
    confound = _read(root / "prediction_confound.json")
    return {"permutation": perm if isinstance(perm, dict) else None, "null_charts": charts,
            "sites": sites if isinstance(sites, dict) else None,
            "confound": confound if isinstance(confound, Mapping) else None}
