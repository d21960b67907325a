"""How a result shows itself in a notebook: an inline HTML summary and a table of its findings.

:class:`audit.result.Result` calls these functions for ``_repr_html_``,
``save_html`` and ``to_frame``. They read the result *document* (the dict of
:meth:`~audit.result.Result.to_dict`, the JSON result), as the report does, so
a saved result and a live one look alike.

Why here (L2, beside :mod:`audit.result`) and not in ``reports/``: the full
report is rendered by ``reports/`` (Jinja2 templates, charts), which only the
application floor (the CLI, the service, the demo) may import. A Result
(L2) that imported it would point an import up the house. So the inline
summary is built here, with :func:`html.escape` on every value and the
report's own class names and colours written *inline* (a notebook shares one
page between many outputs: a ``<style>`` block would restyle the notebook).
It is the report's summary part: the verdict banner, why the gate is closed,
the findings by severity with their evidence folded in ``<details>``. No
script, no external resource; participant ids, sidecar values and messages
are untrusted text and are escaped like the report escapes them. The full
report, with charts and pictures, stays the CLI's (``--html`` or
``bidsaudit report RESULT.json``).

>>> doc = {"status": "fail", "command": "audit", "counts": {"error": 1},
...        "findings": [{"check": "leakage.subject_overlap", "severity": "error",
...                      "message": "1 participant is in both train and test",
...                      "splits": ["train", "test"], "subjects": ["sub-<script>"],
...                      "evidence": {"count": 1}}]}
>>> page = summary_html(doc)
>>> "FAIL" in page and "sub-&lt;script&gt;" in page and "<script" not in page
True
>>> main_figures({"label": "dx", "association": {"test": "chi2", "cramers_v": 0.68, "p_value": 0.0005},
...               "thresholds": {"alpha": 0.05}, "pairs": [1, 2], "thumbnail_png": "iVBOR"})
{'label': 'dx', 'association.cramers_v': 0.68, 'association.p_value': 0.0005}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FRAME_COLUMNS", "findings_frame", "main_figures", "summary_html", "summary_page"]

#: The report's colours (reports/templates/report.html.j2, ``:root``), written inline.
COLOURS = {"error": "#b42318", "warning": "#b54708", "info": "#175cd3", "ok": "#067647", "line": "#e4e7ec",
           "muted": "#475467", "text": "#101828"}
_TITLES = (("error", "Errors"), ("warning", "Warnings"), ("info", "Notes"))
_COUNT_WORDS = (("error", "error", "errors"), ("warning", "warning", "warnings"), ("info", "note", "notes"))
#: Findings shown per severity inline (the rest are counted: a notebook cell is not the full report).
MAX_SHOWN = 50
#: Subjects shown per finding (the rest are counted), as in the report.
MAX_SUBJECTS = 40
_MAX_TEXT = 4000  # characters of one evidence value shown inline
#: The columns of :func:`findings_frame` before the evidence's main figures.
FRAME_COLUMNS = ("check", "severity", "message", "splits", "subjects", "n_subjects")


def _e(value: Any) -> str:
    """Escaped text (quotes too: the value may land in an attribute)."""
    return escape(str(value), quote=True)


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def main_figures(evidence: Any) -> dict[str, Any]:
    """The figures of a finding's evidence: its scalars, and the numbers one level down as ``key.name``.

    Statistics usually sit one level down (``association.cramers_v``,
    ``classifier.score``); the configuration (``thresholds``), descriptions
    of where a figure came from (``site_source``) and pictures are left out.
    """
    if not isinstance(evidence, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in evidence.items():
        if key in _NOT_FIGURES:
            continue
        if isinstance(value, Mapping):
            for inner, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{key}.{inner}"] = v
        elif value is not None and _is_scalar(value) and not (isinstance(value, str) and len(value) > 200):
            out[str(key)] = value
    return out


_NOT_FIGURES = frozenset({"thumbnail_png", "thresholds", "site_source"})


def _pretty(value: Any) -> str:
    def finite(v: Any) -> Any:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "n/a"
        if isinstance(v, Mapping):
            return {str(k): finite(x) for k, x in v.items() if k != "thumbnail_png"}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v if _is_scalar(v) else str(v)

    text = json.dumps(finite(value), indent=2, ensure_ascii=False, sort_keys=False)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "\n…"


def _evidence(evidence: Any) -> str:
    if not isinstance(evidence, Mapping) or not evidence:
        return ""
    rows = []
    for key, value in evidence.items():
        if key == "thumbnail_png":
            continue
        shown = (_e(_scalar(value)) if _is_scalar(value)
                 else f'<pre style="margin:0;white-space:pre-wrap;font-size:12px">{_e(_pretty(value))}</pre>')
        rows.append(f'<tr><th style="text-align:left;padding:2px 8px;color:{COLOURS["muted"]};font-weight:600">'
                    f'{_e(key)}</th><td style="text-align:left;padding:2px 8px">{shown}</td></tr>')
    return (f'<details><summary style="cursor:pointer;color:{COLOURS["info"]}">evidence</summary>'
            f'<table class="evidence" style="border-collapse:collapse">{"".join(rows)}</table></details>')


def _finding(f: Mapping[str, Any], sev: str) -> str:
    splits = list(f.get("splits") or [])
    subjects = [str(s) for s in (f.get("subjects") or [])]
    head = _e(f.get("check", "")) + (" · " + _e(" / ".join(str(s) for s in splits)) if splits else "")
    parts = [f'<div class="id" style="font-family:monospace;font-size:12px;color:{COLOURS["muted"]}">{head}</div>',
             f'<div class="msg" style="font-weight:600">{_e(f.get("message", ""))}</div>']
    if subjects:
        more = len(subjects) - MAX_SUBJECTS
        parts.append('<div class="subjects" style="font-family:monospace;font-size:12px;word-break:break-word">'
                     + _e(", ".join(subjects[:MAX_SUBJECTS])) + (f" … and {more} more" if more > 0 else "")
                     + "</div>")
    parts.append(_evidence(f.get("evidence")))
    return (f'<div class="finding {sev}" style="border:1px solid {COLOURS["line"]};border-left:5px solid '
            f'{COLOURS[sev]};border-radius:6px;padding:6px 12px;margin:6px 0">{"".join(parts)}</div>')


def _why(errors: Sequence[Mapping[str, Any]], warnings: Sequence[Mapping[str, Any]]) -> str:
    if not errors and not warnings:
        return ""
    out = [f'<div class="why" style="border:1px solid {COLOURS["line"]};border-radius:8px;padding:6px 14px;'
           'margin-top:8px">']
    if errors:
        n = len(errors)
        out.append(f'<div style="font-weight:700;margin:4px 0">Why the gate is closed: {n} error'
                   f'{"s" if n != 1 else ""}</div><ol style="margin:4px 0 6px 20px;padding:0">')
        for f in errors[:12]:
            msg = str(f.get("message", ""))
            msg = msg if len(msg) <= 220 else msg[:217] + "..."
            out.append(f'<li><code style="color:{COLOURS["error"]}">{_e(f.get("check", ""))}</code> {_e(msg)}</li>')
        out.append("</ol>")
        if n > 12:
            out.append(f'<div style="color:{COLOURS["muted"]}">… and {n - 12} more errors below.</div>')
    if warnings:
        checks = list(dict.fromkeys(str(f.get("check", "")) for f in warnings))
        listed = ", ".join(_e(c) + (f" ×{sum(1 for f in warnings if f.get('check') == c)}"
                                    if sum(1 for f in warnings if f.get("check") == c) > 1 else "")
                           for c in checks[:10])
        out.append(f'<div style="color:{COLOURS["muted"]};margin:4px 0">{len(warnings)} warning'
                   f'{"s" if len(warnings) != 1 else ""} (do not close the gate): {listed}'
                   f'{" …" if len(checks) > 10 else ""}</div>')
    out.append("</div>")
    return "".join(out)


def summary_html(doc: Mapping[str, Any]) -> str:
    """The report's summary part as one HTML fragment with inline styles (what a notebook shows)."""
    findings = [f for f in (doc.get("findings") or []) if isinstance(f, Mapping)]
    groups = {sev: [f for f in findings if f.get("severity") == sev] for sev, _ in _TITLES}
    status = "pass" if doc.get("status") == "pass" else "fail"
    counts = doc.get("counts") or {}
    dataset = doc.get("dataset") or {}
    name = dataset.get("name") if isinstance(dataset, Mapping) else None
    pills = "".join(
        f'<span class="pill {sev}" style="display:inline-block;border-radius:999px;padding:1px 10px;margin-left:4px;'
        f'font-size:13px;font-weight:600;background:#fff;color:{COLOURS[sev]}">{n} {one if n == 1 else many}</span>'
        for sev, one, many in _COUNT_WORDS for n in [int(counts.get(sev) or len(groups[sev]))])
    meta = "bidsaudit " + _e(doc.get("command") or "") + (f" · {_e(name)}" if name else "")
    banner = (f'<div class="banner {status}" role="status" style="border-radius:10px;padding:12px 18px;color:#fff;'
              f'background:{COLOURS["ok" if status == "pass" else "error"]};display:flex;justify-content:space-between;'
              f'align-items:center;flex-wrap:wrap;gap:10px"><div><div class="verdict" style="font-size:24px;'
              f'font-weight:700">{"PASS" if status == "pass" else "FAIL"}</div><div class="meta">{meta}</div></div>'
              f"<div>{pills}</div></div>")
    gate = ("No finding of severity <em>error</em>: the gate is open." if status == "pass" else
            "At least one finding of severity <em>error</em>: the gate is closed until it is fixed or waived "
            "with a written reason.")
    parts = [f'<div class="bidsaudit" style="font-family:system-ui,sans-serif;color:{COLOURS["text"]};'
             f'max-width:1000px">', banner, f'<p style="color:{COLOURS["muted"]}">{gate}</p>',
             _why(groups["error"], groups["warning"])]
    readiness = doc.get("readiness") or {}
    if isinstance(readiness, Mapping) and readiness.get("level"):
        score = readiness.get("score")
        parts.append(f'<p>Readiness: <strong>{_e(readiness["level"])}</strong> '
                     f'{_e(readiness.get("level_name") or "")}'
                     + (f", score {_e(_scalar(score))}/100" if isinstance(score, (int, float)) else "") + "</p>")
    for sev, title in _TITLES:
        items = groups[sev]
        if not items:
            continue
        parts.append(f'<div style="font-weight:700;margin-top:10px">{title} ({len(items)})</div>')
        parts.extend(_finding(f, sev) for f in items[:MAX_SHOWN])
        if len(items) > MAX_SHOWN:
            parts.append(f'<div style="color:{COLOURS["muted"]}">… and {len(items) - MAX_SHOWN} more '
                         f"{title.lower()} (see <code>to_frame()</code> or the full report)</div>")
    skipped = [s for s in (doc.get("skipped") or []) if isinstance(s, Mapping)]
    if skipped:
        parts.append(f'<details><summary style="cursor:pointer;color:{COLOURS["info"]}">{len(skipped)} checks '
                     'skipped</summary><ul>' + "".join(f"<li><code>{_e(s.get('check', ''))}</code>: "
                                                       f"{_e(s.get('reason', ''))}</li>" for s in skipped)
                     + "</ul></details>")
    parts.append("</div>")
    return "".join(parts)


def summary_page(doc: Mapping[str, Any]) -> str:
    """:func:`summary_html` as a self-contained page (no script, no external resource, same policy as the report)."""
    title = f"bidsaudit {doc.get('command') or 'result'}: {str(doc.get('status') or '').upper()}"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
            f"<title>{_e(title)}</title>\n</head>\n<body style=\"margin:24px\">\n{summary_html(doc)}\n</body>\n</html>\n")


def findings_frame(doc: Mapping[str, Any]) -> pd.DataFrame:
    """One row per finding: check, severity, message, splits, subjects, n_subjects, then the evidence's figures.

    Evidence figures (:func:`main_figures`) are columns named by their key;
    a key equal to one of :data:`FRAME_COLUMNS` is prefixed ``evidence_``.
    A figure a finding lacks is missing (``NaN``/``None``) in its row.
    """
    import pandas as pd

    rows = []
    for f in doc.get("findings") or []:
        subjects = tuple(str(s) for s in (f.get("subjects") or ()))
        row: dict[str, Any] = {"check": f.get("check"), "severity": f.get("severity"), "message": f.get("message"),
                               "splits": tuple(f.get("splits") or ()), "subjects": subjects,
                               "n_subjects": len(subjects)}
        for key, value in main_figures(f.get("evidence")).items():
            row[f"evidence_{key}" if key in FRAME_COLUMNS else key] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(FRAME_COLUMNS))
    return frame
