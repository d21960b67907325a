"""The model info sheet: what a trained model's claims rest on, filled only from its model folder and certificate.

``bidsaudit export MAPS --output model.onnx --info-sheet model-info.md``
writes it as Markdown (``.html``: the same sheet as a self-contained page,
every value escaped). Its sections follow the model info sheet of Kapoor and
Narayanan (2023, *Patterns* 4:100804: clean train/test separation, no
illegitimate features, a test set from the distribution of interest) and the
data and evaluation items of TRIPOD+AI (Collins et al. 2024, *BMJ*
385:e078378: data source, participants, outcome, sample size, evaluation
with uncertainty). Each statement names the file it comes from; what no file
in the folder shows is listed under "Not checked".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audit.bidsindex import read_json
from audit.errors import InputError
from audit.fsutil import atomic_write_text

__all__ = ["info_sheet", "render_html", "render_markdown", "write_info_sheet"]

Section = tuple[str, list[tuple[str, str]]]  # (title, [(statement, source file)])


def _read(root: Path, name: str) -> Any:
    path = root / name
    return read_json(path) if path.is_file() else None


def _f(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _participants(root: Path) -> dict[str, set[str]]:
    path = root / "train+validation.tsv"
    out: dict[str, set[str]] = {}
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                out.setdefault(row.get("split") or "?", set()).add(row.get("participant_id") or "")
    return out


def info_sheet(maps_dir: str | Path) -> list[Section]:
    """The sheet's sections for the complete model folder ``maps_dir``."""
    root = Path(maps_dir)
    meta = _read(root, "maps.json")
    if not isinstance(meta, dict):
        raise InputError(root, "no maps.json: not a model folder", expected="a folder written by 'bidsaudit train'")
    if meta.get("status") != "complete":
        raise InputError(root / "maps.json", f"the training run is {meta.get('status')}, not complete",
                         expected="a complete model folder")
    cert = _read(root, "bidsaudit-certificate.json") or {}
    cfg = meta.get("config") or {}
    gate = meta.get("gate") or {}
    perm = _read(root, "permutation_test.json")
    confound = _read(root, "prediction_confound.json")
    sites = _read(root, "site_results.json")
    summary = (meta.get("summary") or {}).get("over_runs") or {}
    seen = _participants(root)
    not_checked: list[tuple[str, str]] = []
    M, C = "maps.json", "bidsaudit-certificate.json"

    data = [(f"Dataset: {(meta.get('dataset') or {}).get('name')}, fingerprint {gate.get('dataset_fingerprint')}", M),
            (f"{len((cert.get('dataset') or {}).get('files') or {})} dataset files bound by content hash", C),
            (f"Participants seen in training: {len(seen.get('train', ()))}; in validation: "
             f"{len(seen.get('validation', ()))}; in pretraining: {len(seen.get('pretrain', ()))}",
             "train+validation.tsv"),
            (f"Task {cfg.get('task')}, outcome column '{cfg.get('label')}', images of suffix {cfg.get('suffix')}", M)]
    if sites and sites.get("per_site"):
        names = sorted({s for by in sites["per_site"].values() for s in by})
        data.append((f"Sites of the evaluated images ({sites.get('source')}): {', '.join(names)}", "site_results.json"))
    else:
        not_checked.append(("sites of the participants (no site_results.json)", ""))
    notes = meta.get("notes") or []
    data += [(f"Note: {n}", M) for n in notes]

    opts = gate.get("audited_options") or {}
    split = [(f"Split files: {(meta.get('splits') or {}).get('format')} format, fingerprint "
              f"{gate.get('split_fingerprint')}; {len(meta.get('folds') or [0])} fold(s): "
              f"{', '.join(map(str, meta.get('folds') or [0]))}", M),
             ("Participant-level separation: the audit certified the split (no participant, session, duplicate "
              "or near-duplicate image shared between splits, among its checks) and the trainer refused any "
              "participant in two splits of a fold at start", C),
             (f"Groups kept together: {opts.get('group') or 'none given (--group)'}; site column: "
              f"{opts.get('site') or 'none given (sidecars used)'}; pretraining source: "
              f"{opts.get('pretrain') or 'none'}", C),
             (f"Preprocessing fitted on each fold's training participants only (norm={cfg.get('norm')}, "
              f"resize={cfg.get('resize')}; split-*/seed-*/preprocessing.json)", M)]
    if not opts.get("group"):
        not_checked.append(("relatedness between participants (no --group was audited)", ""))

    counts = cert.get("counts") or {}
    audit = [(f"The audit passed (status {cert.get('status')}), certificate created {cert.get('created')} by "
              f"bidsaudit {(cert.get('tool') or {}).get('version')}; signed: {bool(cert.get('signature'))}", C),
             (f"Findings at certification: {counts.get('error', 0)} error, {counts.get('warning', 0)} warning, "
              f"{counts.get('info', 0)} info", C),
             (f"The gate verified dataset and split files against it ({gate.get('verify')} mode) before training", M)]
    not_checked.append(("the verdict of each audit check by name (the certificate keeps the status and the "
                        "counts; the audit's JSON result holds each check)", ""))

    leak: list[tuple[str, str]] = []
    if perm:
        leak.append((f"Permutation test: {perm.get('n_permutations')} shuffled-label runs; "
                     + ("LEAKING (leakage.pipeline): " + ", ".join(perm.get("leaking_splits") or [])
                        if perm.get("leaking") else "no leak found"), "permutation_test.json"))
        for s, d in (perm.get("splits") or {}).items():
            v = d.get("verdict") or {}
            leak.append((f"{s}: real {perm.get('metric')} {_f(d.get('real'))}, shuffled {_f(v.get('mean'))} ± "
                         f"{_f(v.get('sd'))} (chance {_f(perm.get('chance'))}), p = {_f(d.get('p_value'))}",
                         "permutation_test.json"))
    else:
        not_checked.append(("leaks inside the pipeline (no permutation test: train --permutation-test N)", ""))
    if confound:
        if confound.get("p_value") is None:
            leak.append((f"Prediction-site test not run: {confound.get('reason')}", "prediction_confound.json"))
        else:
            leak.append((f"Predictions vs site given the label: partial R² {_f(confound.get('partial_r2'))}, "
                         f"p = {_f(confound.get('p_value'))} over {confound.get('n')} participants — "
                         + ("site-driven" if confound.get("site_driven") else "no site dependence found"),
                         "prediction_confound.json"))
    else:
        not_checked.append(("whether predictions depend on the site (no prediction_confound.json)", ""))

    evaluation: list[tuple[str, str]] = []
    for s, ms in summary.items():
        main = [k for k in ("balanced_accuracy", "roc_auc", "accuracy", "mae", "r2", "dice", "mse") if k in ms]
        evaluation.append((f"{s}: " + ", ".join(f"{k} {_f(ms[k].get('mean'))}"
                                                + (f" ± {_f(ms[k].get('sd'))}" if ms[k].get("sd") is not None else "")
                                                for k in main) + f" (mean over {next(iter(ms.values())).get('n')} "
                           "run(s); per-run 95% participant bootstrap CIs in summary.tsv)", M))
    if sites:
        for s, by in (sites.get("per_site") or {}).items():
            for site, d in by.items():
                metric = "balanced_accuracy" if "balanced_accuracy" in d.get("metrics", {}) else "mae"
                m = (d.get("metrics") or {}).get(metric) or {}
                evaluation.append((f"{s} at {site}: {metric} {_f(m.get('value'))} [{_f(m.get('ci_low'))}, "
                                   f"{_f(m.get('ci_high'))}], {d.get('n_participants')} participants",
                                   "site_results.json"))
        if sites.get("leave_site_out"):
            evaluation.append(("Leave-one-site-out folds: " + ", ".join(sites["leave_site_out"]), "site_results.json"))
        else:
            not_checked.append(("performance on an unseen site (the folds do not hold out one site each: "
                                "split --leave-site-out)", ""))
    if "test" not in summary:
        not_checked.append(("performance on an independent test split (there is none)", ""))
    not_checked += [("external validation on another dataset", ""), ("calibration of the predicted probabilities", ""),
                    ("temporal leakage (no acquisition dates are read)", ""),
                    ("fairness across sex and age groups", "")]
    return [("Data (TRIPOD+AI: source, participants, outcome)", data),
            ("Train/test separation (model info sheet: clean separation)", split),
            ("Audit", audit),
            ("Leakage and illegitimate features (model info sheet)", leak),
            ("Evaluation (TRIPOD+AI: performance with uncertainty)", evaluation),
            ("Not checked", not_checked)]


def render_markdown(sections: Sequence[Section], title: str = "Model info sheet") -> str:
    """The sheet as Markdown; each statement ends with its source file."""
    out = [f"# {title}", "", "Every statement below comes from a file of the model folder, named after it.", ""]
    for name, items in sections:
        out += [f"## {name}", ""]
        out += [f"- {text}" + (f" (`{src}`)" if src else "") for text, src in items] or ["- (nothing recorded)"]
        out.append("")
    return "\n".join(out)


def render_html(sections: Sequence[Section], title: str = "Model info sheet") -> str:
    """The sheet as one self-contained page (every value escaped)."""
    from markupsafe import escape

    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>", str(escape(title)),
             "</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:900px;margin:2em auto;color:#101828}"
             "h2{border-bottom:1px solid #eaecf0}code{color:#475467}</style></head><body><h1>", str(escape(title)),
             "</h1><p>Every statement below comes from a file of the model folder, named after it.</p>"]
    for name, items in sections:
        parts.append(f"<h2>{escape(name)}</h2><ul>")
        parts += [f"<li>{escape(text)}" + (f" <code>{escape(src)}</code>" if src else "") + "</li>"
                  for text, src in items]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def write_info_sheet(maps_dir: str | Path, path: str | Path) -> Path:
    """Write the sheet to ``path`` (``.html``: a page; anything else: Markdown), atomically."""
    path = Path(path)
    sections = info_sheet(maps_dir)
    text = render_html(sections) if path.suffix.lower() in (".html", ".htm") else render_markdown(sections)
    return atomic_write_text(path, text)


