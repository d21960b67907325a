"""Render a result document (the JSON result as a dict) into one self-contained HTML page.

Jinja2 with autoescape on: every value that reaches the page (participant
ids, TSV cells, sidecar strings, file names) is escaped. The page has inline
CSS only: no script, no external request, opens from disk.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from reports import charts

__all__ = ["render_report"]

_SEVERITY_TITLES = {"error": "Errors", "warning": "Warnings", "info": "Notes"}


def _env():  # type: ignore[no-untyped-def]
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=ChainableUndefined,  # a saved result may lack optional blocks: render nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = lambda v: json.dumps(_finite_only(v), indent=2, ensure_ascii=False, sort_keys=True,
                                                 default=str)
    env.filters["scalar"] = _scalar
    env.filters["png_uri"] = _png_uri
    env.filters["without_pictures"] = _without_pictures
    env.tests["mapping"] = lambda v: isinstance(v, Mapping)
    env.globals.update(
        categorical_chart=charts.categorical_chart, histogram_chart=charts.histogram_chart,
        heatmap=charts.heatmap, auc_chart=charts.auc_chart, feature_bars=charts.feature_bars,
        box_chart=charts.box_chart, split_colour=charts.split_colour, num=charts.num,
        effect_chart=charts.effect_chart, effect_rows=charts.effect_rows, label_mix_rows=charts.label_mix_rows,
    )
    env.tests["scalar"] = lambda v: v is None or isinstance(v, (str, int, float, bool))
    return env


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:.4g}"
    return str(value)


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _png_uri(value: Any) -> str:
    """A ``data:image/png`` URI for base64 PNG text from a result (empty when it is anything else)."""
    if isinstance(value, str) and len(value) < 200_000 and _BASE64.fullmatch(value) and value.startswith("iVBORw0KGgo"):
        return "data:image/png;base64," + value
    return ""


def _finite_only(value: Any) -> Any:
    """Missing and non-finite values shown as ``n/a`` (not as JSON's null or NaN) in evidence dumps."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, Mapping):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(v) for v in value]
    return value


def _without_pictures(value: Any) -> Any:
    """Evidence without its base64 pictures (shown as images, not as text)."""
    if isinstance(value, Mapping):
        return {k: _without_pictures(v) for k, v in value.items() if k != "thumbnail_png"}
    if isinstance(value, list):
        return [_without_pictures(v) for v in value]
    return value


def render_report(result: Mapping[str, Any]) -> str:
    """Return the HTML page for ``result`` (a dict shaped like the JSON result)."""
    findings = list(result.get("findings") or [])
    groups = [(sev, _SEVERITY_TITLES[sev], [f for f in findings if f.get("severity") == sev])
              for sev in ("error", "warning", "info")]
    template = _env().get_template("report.html.j2")
    return template.render(
        r=result,
        groups=groups,
        counts=result.get("counts") or {s: len(g) for s, _, g in groups},
        summary=result.get("summary") or {},
        dataset=result.get("dataset") or {},
        splits=result.get("splits") or {},
        readiness=result.get("readiness") or {},
        reproduce=result.get("reproduce") or {},
        skipped=result.get("skipped") or [],
    )
