"""The model folder's HTML training report (``report.html``): one self-contained page.

Jinja2 with autoescape on (participant ids, label values and paths are
untrusted); inline CSS and an inline SVG learning curve, no script, no
external request. Written by ``train`` when the run completes; this module
does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from audit.bidsindex import read_json
from audit.fsutil import atomic_write_text

__all__ = ["render_training_report", "write_report", "curve_svg"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bidsaudit training report: {{ name }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}code{background:#f6f6f6;padding:0 .2em}.muted{color:#666}
</style></head><body>
<h1>Training report</h1>
<p><b>{{ cfg.task }}</b> with <b>{{ cfg.model }}</b> on <code>{{ meta.dataset.name }}</code>,
status <b>{{ meta.status }}</b>, device {{ meta.device }}{% if meta.distributed %}
({{ meta.distributed.world_size }} processes, {{ meta.distributed.backend }}){% endif %}.</p>
<h2>Gate</h2>
<table>
<tr><th>certificate</th><td><code>{{ gate.certificate }}</code></td></tr>
<tr><th>certificate sha256</th><td><code>{{ gate.certificate_sha256 }}</code></td></tr>
<tr><th>dataset fingerprint</th><td><code>{{ gate.dataset_fingerprint }}</code></td></tr>
<tr><th>split fingerprint</th><td><code>{{ gate.split_fingerprint }}</code></td></tr>
<tr><th>signed</th><td>{{ "yes" if gate.signed else "no" }}</td></tr>
</table>
<h2>Results (mean ± sd over {{ n_runs }} run(s))</h2>
{% for split, metrics in summary.items() %}
<h3>{{ split }}</h3>
<table><tr><th>metric</th><th>mean</th><th>sd</th><th>n</th></tr>
{% for k, m in metrics.items() %}<tr><td>{{ k }}</td><td>{{ fmt(m.mean) }}</td><td>{{ fmt(m.sd) }}</td><td>{{ m.n }}</td></tr>
{% endfor %}</table>
{% endfor %}
{% if curve %}
<h2>Learning curve</h2>
<p>Validation {{ curve.metric }} against the number of training participants
(nested{% if curve.stratified_on %}, stratified on {{ curve.stratified_on }}{% endif %}; mean ± sd over folds and seeds).</p>
{{ svg }}
<table><tr><th>fraction</th><th>training participants</th><th>mean</th><th>sd</th><th>min</th><th>max</th><th>runs</th></tr>
{% for r in curve.summary %}<tr><td>{{ r.fraction }}</td><td>{{ r.n_train_participants|join(", ") }}</td>
<td>{{ fmt(r.mean) }}</td><td>{{ fmt(r.sd) }}</td><td>{{ fmt(r.min) }}</td><td>{{ fmt(r.max) }}</td><td>{{ r.n }}</td></tr>
{% endfor %}</table>
{% endif %}
{% if meta.transfer %}
<h2>Transfer learning</h2>
<p>Started from <code>{{ meta.transfer.from }}</code> ({{ meta.transfer.participants }} participants, none in this
split's evaluation sets); frozen: {{ meta.transfer.freeze }}; transferred-part learning rate:
{{ meta.transfer.transfer_lr if meta.transfer.transfer_lr is not none else cfg.lr }}.</p>
{% endif %}
<h2>Settings</h2>
<table>{% for k, v in cfg_items %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if notes %}<h2>Notes</h2><ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<p class="muted">bidsaudit {{ meta.tool.version }}</p>
</body></html>
"""


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def curve_svg(summary: Sequence[Mapping[str, Any]], metric: str, *, width: int = 480, height: int = 280) -> str:
    """An inline SVG: mean validation metric (± sd bars) against training participants. Numbers only go in."""
    pts = [(max(r["n_train_participants"] or [0]), r["mean"], r.get("sd") or 0.0) for r in summary
           if r.get("mean") is not None]
    if not pts:
        return "<p>No validation values to plot.</p>"
    ml, mr, mt, mb = 50, 15, 15, 40
    xs = [p[0] for p in pts]
    lo = min(p[1] - p[2] for p in pts)
    hi = max(p[1] + p[2] for p in pts)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = 0, max(xs)

    def X(v: float) -> float:
        return ml + (v - x0) / max(x1 - x0, 1e-9) * (width - ml - mr)

    def Y(v: float) -> float:
        return height - mb - (v - lo) / (hi - lo) * (height - mt - mb)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="learning curve">',
             f'<line x1="{ml}" y1="{height - mb}" x2="{width - mr}" y2="{height - mb}" stroke="#444"/>',
             f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{height - mb}" stroke="#444"/>',
             f'<text x="{(width + ml) / 2:.0f}" y="{height - 8}" text-anchor="middle" font-size="12">'
             'training participants</text>',
             f'<text x="12" y="{(height - mb + mt) / 2:.0f}" font-size="12" transform="rotate(-90 12 '
             f'{(height - mb + mt) / 2:.0f})" text-anchor="middle">{_escape(metric)}</text>',
             f'<text x="{ml - 4}" y="{Y(hi) + 4:.1f}" text-anchor="end" font-size="10">{hi:.3g}</text>',
             f'<text x="{ml - 4}" y="{Y(lo) + 4:.1f}" text-anchor="end" font-size="10">{lo:.3g}</text>']
    path = " ".join(f"{'M' if i == 0 else 'L'}{X(x):.1f},{Y(m):.1f}" for i, (x, m, _) in enumerate(pts))
    parts.append(f'<path d="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for x, m, sd in pts:
        parts.append(f'<line x1="{X(x):.1f}" y1="{Y(m - sd):.1f}" x2="{X(x):.1f}" y2="{Y(m + sd):.1f}" '
                     'stroke="#1f77b4"/>')
        parts.append(f'<circle cx="{X(x):.1f}" cy="{Y(m):.1f}" r="3.5" fill="#1f77b4"/>')
        parts.append(f'<text x="{X(x):.1f}" y="{height - mb + 14}" text-anchor="middle" font-size="10">{x}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _escape(s: str) -> str:
    from markupsafe import escape

    return str(escape(s))


def render_training_report(meta: Mapping[str, Any], curve: Mapping[str, Any] | None = None) -> str:
    from jinja2 import ChainableUndefined, Environment, select_autoescape
    from markupsafe import Markup

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    cfg = dict(meta.get("config") or {})
    summary = dict((meta.get("summary") or {}).get("over_runs") or {})
    return env.from_string(_TEMPLATE).render(
        meta=meta, cfg=cfg, cfg_items=sorted(cfg.items()), gate=meta.get("gate") or {}, summary=summary,
        n_runs=(meta.get("summary") or {}).get("n_runs"), curve=curve, notes=meta.get("notes") or [],
        name=(meta.get("dataset") or {}).get("name", ""), fmt=_fmt,
        svg=Markup(curve_svg(curve["summary"], curve["metric"])) if curve else "")


def write_report(maps: Any) -> Any:
    """Write ``report.html`` into the model folder (atomically); returns its path."""
    path = maps.root / "learning_curve.json"
    curve = read_json(path) if path.is_file() else None
    return atomic_write_text(maps.root / "report.html", render_training_report(maps.meta, curve))
