"""The model folder's HTML training report (``report.html``): one self-contained page in the audit report's style.

:func:`training_document` gathers what the page shows from the model
folder (``maps.json``, ``summary.json``, each run's ``metrics.tsv`` and
predictions); :func:`render_training_report` renders it with
``train/templates/report.html.j2``, whose styles are the audit report's own
(a test keeps every rule of it in ``reports/templates/report.html.j2``).
Jinja2 with autoescape on (participant ids, label values and paths are
untrusted); inline CSS and inline SVG charts, no script, no external
request. Written by ``train`` when the run completes; this module does not
import torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.bidsindex import read_json
from audit.fsutil import atomic_write_text
from train.config import MAIN_METRIC
from train.maps import read_tsv
from train.reportproofs import proofs_document

__all__ = ["render_training_report", "write_report", "curve_svg", "epoch_svg", "training_document",
           "collapsed_predictions"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_RUN_CHARTS = 10
_BLUE, _ORANGE, _GREEN = "#175cd3", "#b54708", "#067647"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v == "nan":
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _escape(s: str) -> str:
    from markupsafe import escape

    return str(escape(s))


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

    parts = [f'<svg class="chart learning-curve" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img" aria-label="learning curve">',
             f'<line x1="{ml}" y1="{height - mb}" x2="{width - mr}" y2="{height - mb}" stroke="#444"/>',
             f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{height - mb}" stroke="#444"/>',
             f'<text x="{(width + ml) / 2:.0f}" y="{height - 8}" text-anchor="middle" font-size="12">'
             'training participants</text>',
             f'<text x="12" y="{(height - mb + mt) / 2:.0f}" font-size="12" transform="rotate(-90 12 '
             f'{(height - mb + mt) / 2:.0f})" text-anchor="middle">{_escape(metric)}</text>',
             f'<text x="{ml - 4}" y="{Y(hi) + 4:.1f}" text-anchor="end" font-size="10">{hi:.3g}</text>',
             f'<text x="{ml - 4}" y="{Y(lo) + 4:.1f}" text-anchor="end" font-size="10">{lo:.3g}</text>']
    path = " ".join(f"{'M' if i == 0 else 'L'}{X(x):.1f},{Y(m):.1f}" for i, (x, m, _) in enumerate(pts))
    parts.append(f'<path d="{path}" fill="none" stroke="{_BLUE}" stroke-width="2"/>')
    for x, m, sd in pts:
        parts.append(f'<line x1="{X(x):.1f}" y1="{Y(m - sd):.1f}" x2="{X(x):.1f}" y2="{Y(m + sd):.1f}" '
                     f'stroke="{_BLUE}"/>')
        parts.append(f'<circle cx="{X(x):.1f}" cy="{Y(m):.1f}" r="3.5" fill="{_BLUE}"/>')
        parts.append(f'<text x="{X(x):.1f}" y="{height - mb + 14}" text-anchor="middle" font-size="10">{x}</text>')
    parts.append("</svg>")
    return "".join(parts)


def epoch_svg(history: Sequence[Mapping[str, Any]], series: Sequence[tuple[str, str]], *, title: str,
              mark_epoch: int | None = None, width: int = 500, height: int = 240) -> str:
    """An inline SVG of per-epoch values: one line per ``(column, label)`` of ``series``, a dashed line at
    ``mark_epoch`` (the checkpoint the numbers come from). Only numbers and escaped labels go in.

    >>> svg = epoch_svg([{"epoch": "1", "train_loss": "0.7"}, {"epoch": "2", "train_loss": "0.5"}],
    ...                 [("train_loss", "train loss")], title="loss", mark_epoch=2)
    >>> svg.count("<path"), 'class="checkpoint"' in svg
    (1, True)
    """
    lines = []
    for i, (col, label) in enumerate(series):
        pts = [(e, v) for e, v in ((_num(r.get("epoch")), _num(r.get(col))) for r in history)
               if e is not None and v is not None]
        if pts:
            lines.append((label, (_BLUE, _ORANGE, _GREEN)[i % 3], pts))
    if not lines:
        return '<p class="empty">No per-epoch values to plot.</p>'
    ml, mr, mt, mb = 52, 14, 26, 36
    e_hi = max(max(e for e, _ in pts) for _, _, pts in lines)
    lo = min(min(v for _, v in pts) for _, _, pts in lines)
    hi = max(max(v for _, v in pts) for _, _, pts in lines)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5

    def X(e: float) -> float:
        return ml + (e - 1) / max(e_hi - 1, 1) * (width - ml - mr)

    def Y(v: float) -> float:
        return height - mb - (v - lo) / (hi - lo) * (height - mt - mb)

    out = [f'<svg class="chart epoch-curve" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{_escape(title)} per epoch">',
           f'<line x1="{ml}" y1="{height - mb}" x2="{width - mr}" y2="{height - mb}" stroke="#98a2b3"/>',
           f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{height - mb}" stroke="#98a2b3"/>',
           f'<text x="{(width + ml) / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="11">epoch</text>',
           f'<text x="{ml - 4}" y="{Y(hi) + 4:.1f}" text-anchor="end" font-size="10">{hi:.3g}</text>',
           f'<text x="{ml - 4}" y="{Y(lo) + 4:.1f}" text-anchor="end" font-size="10">{lo:.3g}</text>',
           f'<text x="{ml}" y="{height - mb + 14}" text-anchor="middle" font-size="10">1</text>',
           f'<text x="{X(e_hi):.1f}" y="{height - mb + 14}" text-anchor="middle" font-size="10">{e_hi:.0f}</text>']
    if mark_epoch is not None and 1 <= mark_epoch <= e_hi:
        out.append(f'<line class="checkpoint" x1="{X(mark_epoch):.1f}" y1="{mt}" x2="{X(mark_epoch):.1f}" '
                   f'y2="{height - mb}" stroke="#475467" stroke-dasharray="4 3"><title>checkpoint: epoch '
                   f'{mark_epoch}</title></line>')
    x_legend = ml
    for label, colour, pts in lines:
        path = " ".join(f"{'M' if i == 0 else 'L'}{X(e):.1f},{Y(v):.1f}" for i, (e, v) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"><title>{_escape(label)}'
                   '</title></path>')
        out += [f'<circle cx="{X(e):.1f}" cy="{Y(v):.1f}" r="2.5" fill="{colour}"/>' for e, v in pts]
        out.append(f'<rect x="{x_legend}" y="8" width="12" height="3" fill="{colour}"/>'
                   f'<text x="{x_legend + 16}" y="13" font-size="11">{_escape(label)}</text>')
        x_legend += 24 + 7 * len(label)
    out.append("</svg>")
    return "".join(out)


def collapsed_predictions(path: Path) -> str | None:
    """The one class every image of a predictions TSV was given, when there are two images or more (else None)."""
    try:
        rows = read_tsv(path)
    except (OSError, ValueError):
        return None
    predicted = {r.get("predicted_label") for r in rows}
    if len(rows) >= 2 and len(predicted) == 1 and None not in predicted:
        return str(predicted.pop())
    return None


def training_document(maps: Any) -> dict[str, Any]:
    """What the report shows, read from the model folder ``maps`` (a :class:`train.maps.MapsFolder`)."""
    meta = dict(maps.meta)
    cfg = dict(meta.get("config") or {})
    task = str(cfg.get("task") or "classification")
    metric, direction = MAIN_METRIC.get(task, ("loss", "min"))
    selection = "loss" if cfg.get("selection", "loss") == "loss" else metric
    summary_path = maps.root / "summary.json"
    runs = list((read_json(summary_path) if summary_path.is_file() else {}).get("runs") or [])
    warnings: list[str] = []
    for r in runs:
        run_dir = maps.run_dir(r["fold"], r["seed"])
        mpath = run_dir / "metrics.tsv"
        r["history"] = read_tsv(mpath) if mpath.is_file() else []
        r["checkpoint_epoch"] = r.get("best_loss_epoch" if selection == "loss" else "best_metric_epoch")
        if task == "classification":
            for split in (r.get("metrics") or {}):
                one = collapsed_predictions(run_dir / "predictions" / f"{split}_best-{selection}.tsv")
                if one is not None:
                    warnings.append(f"fold {r['fold']} seed {r['seed']}: every {split} image is predicted "
                                    f"'{one}' — the model collapsed to one class, and its {split} metrics say "
                                    "nothing about the data (try a higher --lr, more --epochs, or check the "
                                    "label balance)")
    folds, seeds = list(meta.get("folds") or [0]), list(meta.get("seeds") or [cfg.get("seed", 0)])
    return {"meta": meta, "config": cfg, "task": task, "metric": metric, "direction": direction,
            "selection": selection, "runs": runs, "warnings": warnings, "folds": folds, "seeds": seeds,
            "proofs": proofs_document(maps.root)}


def _settings(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The settings with the values the run used (``folds``: the folds trained, not the option's ``None``)."""
    cfg, meta = dict(doc.get("config") or {}), doc.get("meta") or {}
    folds = list(doc.get("folds") or [])
    shown = {**cfg, "folds": (f"{len(folds)} (k-fold: " + ", ".join(map(str, folds)) + ")") if len(folds) > 1
             else "1 (one train/validation/test split)",
             "seeds": ", ".join(map(str, doc.get("seeds") or [])),
             "selection": f"best-{doc.get('selection')} (" + ("lowest validation loss" if doc.get("selection") ==
                                                              "loss" else "best validation " + str(doc.get("metric")))
             + ")", "device": meta.get("device"), "threads": meta.get("threads")}
    if cfg.get("transfer_from") is None:
        for k in ("transfer_from", "freeze", "transfer_lr"):
            shown.pop(k, None)
    if not cfg.get("learning_curve"):
        shown.pop("learning_curve", None)
    if cfg.get("mode") != "patch":
        shown.pop("patch_size", None), shown.pop("patch_stride", None)
    if cfg.get("mode") != "slice":
        shown.pop("slice_axis", None), shown.pop("slice_discard", None)
    return [(k, "default (chosen from the images)" if v is None and k == "shape" else _fmt(v))
            for k, v in sorted(shown.items()) if v is not None or k == "shape"]


def render_training_report(meta: Mapping[str, Any], curve: Mapping[str, Any] | None = None,
                           doc: Mapping[str, Any] | None = None) -> str:
    """The page for a model folder's ``meta`` (``maps.json``), learning ``curve`` and ``doc`` (runs, warnings)."""
    from jinja2 import ChainableUndefined, Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    doc = dict(doc or {"meta": meta, "config": meta.get("config") or {}, "runs": [], "warnings": []})
    doc.setdefault("meta", meta)
    cfg = dict(meta.get("config") or {})
    task = str(cfg.get("task") or "classification")
    metric = doc.get("metric") or MAIN_METRIC.get(task, ("loss", "min"))[0]
    summary = dict((meta.get("summary") or {}).get("over_runs") or {})
    runs = list(doc.get("runs") or [])
    charts = []
    for r in runs[:MAX_RUN_CHARTS]:
        hist = r.get("history") or []
        has_val = bool(hist) and "validation_loss" in hist[0]
        loss = epoch_svg(hist, [("train_loss", "train loss")] + ([("validation_loss", "validation loss")]
                                                                 if has_val else []),
                         title="loss", mark_epoch=r.get("checkpoint_epoch"))
        score = epoch_svg(hist, [(f"validation_{metric}", f"validation {metric}")], title=metric,
                          mark_epoch=r.get("checkpoint_epoch")) if has_val else ""
        charts.append({"run": r, "loss": Markup(loss), "metric": Markup(score)})
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(
        default=True, default_for_string=True), undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(
        meta=meta, cfg=cfg, doc=doc, runs=runs, charts=charts, more_runs=max(len(runs) - MAX_RUN_CHARTS, 0),
        metric=metric, selection=doc.get("selection") or cfg.get("selection") or "loss",
        settings=_settings({**doc, "config": cfg, "folds": doc.get("folds") or meta.get("folds") or [0],
                            "seeds": doc.get("seeds") or meta.get("seeds") or [0]}),
        gate=meta.get("gate") or {}, summary=summary, n_runs=(meta.get("summary") or {}).get("n_runs"),
        curve=curve, notes=meta.get("notes") or [], warnings=doc.get("warnings") or [],
        name=(meta.get("dataset") or {}).get("name", ""), fmt=_fmt,
        svg=Markup(curve_svg(curve["summary"], curve["metric"])) if curve else "",
        proofs=doc.get("proofs") or {}, findings=meta.get("findings") or [])


def write_report(maps: Any) -> Any:
    """Write ``report.html`` into the model folder (atomically); returns its path."""
    path = maps.root / "learning_curve.json"
    curve = read_json(path) if path.is_file() else None
    return atomic_write_text(maps.root / "report.html",
                             render_training_report(maps.meta, curve, training_document(maps)))
