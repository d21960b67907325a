"""The HTML report: self-contained and escaped."""

from __future__ import annotations

import re

from reports.render import render_report

PAYLOAD = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def result_with(value: str) -> dict:
    return {
        "schema_version": "1", "tool": {"name": "bidsaudit", "version": "0"}, "command": "validate",
        "dataset": {"path": value, "name": value, "fingerprint": "sha256:" + "0" * 64},
        "splits": None, "status": "fail", "counts": {"error": 1, "warning": 0, "info": 0},
        "findings": [{"check": "quality.participants_table", "severity": "error", "message": value,
                      "splits": [value], "subjects": [f"sub-{value}"], "evidence": {value: value, "list": [value]}}],
        "readiness": None, "skipped": [{"check": "leakage.subject_overlap", "reason": value}],
        "summary": {"subjects": 1, "scanners": {value: 1}, "datatypes": {value: 1}, "participant_columns": [value]},
        "reproduce": {"command_line": value},
    }


def test_untrusted_values_are_escaped():
    html = render_report(result_with(PAYLOAD))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"<[^>]+\sonerror=", html)


def test_report_is_self_contained():
    html = render_report(result_with("x"))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html
    assert "FAIL" in html


def test_no_nan_or_undefined_shown():
    data = result_with("x")
    data["findings"][0]["evidence"] = {"p": float("nan"), "v": None}
    html = render_report(data)
    assert "nan" not in html.lower().replace("nano", "") and "undefined" not in html and "None" not in html


# ------------------------------------------------------------------ charts
def _dist(value: str) -> dict:
    return {
        "splits": ["train", value],
        "variables": [
            {"name": value, "role": "label", "kind": "categorical", "levels": [value, "CN"],
             "counts": {"train": [3, 4], value: [1, 2]}, "missing": {"train": 0, value: 1}},
            {"name": "age", "role": "covariate", "kind": "continuous", "edges": [50.0, 60.0, 70.0],
             "counts": {"train": [3, 4], value: [0, 0]}, "missing": {"train": 0, value: 3}},
        ],
        "image_features": {"suffix": value, "features": [
            {"name": value, "by_split": {"train": {"n": 7, "min": 0.0, "q1": 1.0, "median": 2.0, "q3": 3.0,
                                                   "max": 4.0}}}]},
    }


def _with_charts(value: str) -> dict:
    data = result_with(value)
    data["splits"] = {"format": "folder", "fingerprint": "sha256:" + "1" * 64, "sizes": {"train": 7, value: 3},
                      "distributions": _dist(value)}
    data["findings"] += [
        {"check": "confound.label_site", "severity": "error", "message": "label follows site", "splits": [],
         "subjects": [], "evidence": {"label": value, "table": {"sites": [value, "B"], "labels": [value, "CN"],
                                                                "counts": [[9, 1], [1, 9]], "sites_total": 2}}},
        {"check": "shift.image", "severity": "info", "message": "image shift", "splits": ["train", value],
         "subjects": [], "evidence": {"tests": [{"splits": ["train", value], "statistic": 0.8, "p_value": 0.01,
                                                 "flagged": True}],
                                      "thresholds": {"shift.image": {"auc": 0.7}}}},
    ]
    return data


def test_charts_are_inline_svg_with_escaped_text():
    html = render_report(_with_charts(PAYLOAD))
    assert html.count("<svg") >= 5  # label bars, age histogram, feature box, heat map, AUC
    assert "<script" not in html and "<img" not in html
    assert not re.search(r"<[^>]+\sonerror=", html)
    assert "&lt;script&gt;" in html
    assert "http://www.w3.org/2000/svg" in html  # the namespace only: never fetched
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_heat_map_shows_the_counts_and_the_confounded_cells():
    from reports.charts import heatmap

    svg = str(heatmap({"sites": ["A", "B"], "labels": ["AD", "CN"], "counts": [[9, 1], [1, 9]]}, "diagnosis"))
    assert svg.startswith("<svg") and "9 · 90%" in svg and "1 · 10%" in svg
    balanced = str(heatmap({"sites": ["A", "B"], "labels": ["AD", "CN"], "counts": [[5, 5], [5, 5]]}))
    assert "#ffffff" in balanced  # no excess over the overall share: white
    assert "#ffffff" not in svg


def test_malformed_chart_blocks_render_nothing_and_no_nan():
    data = _with_charts("x")
    dist = data["splits"]["distributions"]
    dist["variables"].append({"name": "bad", "kind": "continuous", "edges": [float("nan"), 1.0], "counts": {}})
    dist["variables"].append({"name": "worse", "kind": "categorical", "levels": None, "counts": None})
    dist["image_features"]["features"].append({"name": "f", "by_split": {"train": {"n": 1, "min": None}}})
    data["findings"][1]["evidence"]["table"] = {"sites": ["a"], "labels": ["b"], "counts": "oops"}
    data["findings"][2]["evidence"]["tests"] = [{"splits": ["a"], "statistic": float("nan")}]
    html = render_report(data)
    text = re.sub(r"<[^>]+>", " ", html)
    assert "nan" not in text.lower().replace("nano", "") and "undefined" not in text and "None" not in text


def _audit_result(tmp_path, **make):
    from audit.api import audit_splits
    from audit.context import AuditOptions
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset

    ds, sp = tmp_path / "ds", tmp_path / "splits"
    make_dataset(ds, n_subjects=make.pop("n_subjects", 18), seed=make.pop("seed", 4), **make)
    split_dataset(ds, SplitPlan(label="diagnosis", seed=0), sp, layout="folder")
    return ds, sp, lambda: audit_splits(ds, sp, AuditOptions(label="diagnosis", run_validator=False, workers=1))


def test_confounded_audit_carries_distributions_and_the_report_redraws_them(tmp_path):
    import json

    import jsonschema
    from typer.testing import CliRunner

    from audit.cli import app
    from schemas import json_schema

    _ds, _sp, run = _audit_result(tmp_path, confounded=True, n_subjects=24)
    result = run()
    data = result.to_dict()
    jsonschema.validate(data, json_schema("result"))
    assert data["status"] == "fail"
    dist = data["splits"]["distributions"]
    assert dist["splits"] == ["train", "validation", "test"]
    by = {v["name"]: v for v in dist["variables"]}
    assert by["diagnosis"]["role"] == "label" and by["age"]["kind"] == "continuous" and by["sex"]["levels"] == ["F", "M"]
    assert sum(sum(c) for c in by["diagnosis"]["counts"].values()) == 24
    assert dist["image_features"]["features"]
    saved = tmp_path / "r.json"
    saved.write_text(result.to_json())
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(saved), "--output", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert html == render_report(json.loads(saved.read_text()))
    assert html.count("<svg") >= 6 and "share of the site" in html  # the heat map is drawn
    assert html.index("Why the gate is closed") < html.index("confound.label_site") < html.index("Who is in each split")


def _edit_tsv(path, edit) -> None:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, line.split("\t"))) for line in lines[1:] if line.strip()]
    for row in rows:
        edit(row)
    path.write_text("\n".join(["\t".join(head)] + ["\t".join(r[c] for c in head) for r in rows]) + "\n")


def test_missing_ages_and_one_class_label_show_no_nan(tmp_path):
    ds, sp, run = _audit_result(tmp_path)
    no_age = {f"sub-{i:03d}" for i in range(1, 19, 3)}

    def edit(row):
        if "diagnosis" in row:
            row["diagnosis"] = "CN"  # one class
        if "age" in row and row["participant_id"] in no_age:
            row["age"] = "n/a"

    for f in (ds / "participants.tsv", *sorted(sp.glob("*.tsv"))):
        _edit_tsv(f, edit)
    data = run().to_dict()
    by = {v["name"]: v for v in data["splits"]["distributions"]["variables"]}
    assert by["diagnosis"]["levels"] == ["CN"]
    assert sum(by["age"]["missing"].values()) == 6
    html = render_report(data)
    text = re.sub(r"<[^>]+>", " ", html)
    for word in ("NaN", "nan ", "undefined", "None", "null"):
        assert word not in text, word
    assert "no value:" in text


def test_duplicate_finding_shows_both_middle_slices(tmp_path):
    import base64
    import struct
    import zlib

    _ds, sp, run = _audit_result(tmp_path, n_subjects=24, seed=2, duplicate_of={"sub-021": "sub-004"})
    # put the copy and its source on different sides
    for name in ("train", "validation", "test"):
        f = sp / f"{name}.tsv"
        lines = f.read_text().splitlines()
        keep = [r for r in lines[1:] if not r.startswith(("sub-004\t", "sub-021\t"))]
        moved = [r for r in lines[1:] if r.startswith(("sub-004\t", "sub-021\t"))]
        f.write_text("\n".join([lines[0], *keep]) + "\n")
        if moved:
            header = lines[0]
    train, test = sp / "train.tsv", sp / "test.tsv"
    cols = header.split("\t")
    blank = "\t".join("n/a" if c != "participant_id" else "{}" for c in cols)
    train.write_text(train.read_text() + blank.format("sub-004") + "\n")
    test.write_text(test.read_text() + blank.format("sub-021") + "\n")
    data = run().to_dict()
    (dup,) = [f for f in data["findings"] if f["check"] == "leakage.duplicate_image"]
    pair = dup["evidence"]["pairs"][0]
    for side in ("a", "b"):
        png = base64.b64decode(pair[side]["thumbnail_png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (64, 64)
        idat = png[png.index(b"IDAT") + 4: png.index(b"IEND") - 8]
        raw = zlib.decompress(idat)
        assert len(raw) == 64 * 65 and len(set(raw)) > 10  # a picture, not a blank square
    assert pair["a"]["thumbnail_png"] == pair["b"]["thumbnail_png"]  # identical voxels, identical pictures
    html = render_report(data)
    assert html.count('src="data:image/png;base64,iVBORw0KGgo') == 2
    assert "thumbnail_png" not in html  # shown as pictures, not as base64 text in the evidence


def test_only_png_base64_becomes_an_image():
    data = result_with("x")
    data["findings"][0].update(check="leakage.duplicate_image", evidence={"pairs": [
        {"a": {"split": "train", "participant_id": "sub-1", "path": "p", "thumbnail_png": 'javascript:alert(1)"'},
         "b": {"split": "test", "participant_id": "sub-2", "path": "q", "thumbnail_png": "iVBORw0KGgo+/=="}}]})
    html = render_report(data)
    assert "javascript:" not in html
    assert html.count("<img") == 1 and 'src="data:image/png;base64,iVBORw0KGgo+/=="' in html


def test_k_fold_layout_charts_its_first_fold_view(tmp_path):
    import jsonschema

    from audit.api import audit_splits
    from audit.context import AuditOptions
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset
    from schemas import json_schema

    ds, sp = tmp_path / "ds", tmp_path / "splits"
    make_dataset(ds, n_subjects=18, seed=5)
    split_dataset(ds, SplitPlan(label="diagnosis", seed=0, folds=3), sp, layout="clinicadl")
    data = audit_splits(ds, sp, AuditOptions(label="diagnosis", run_validator=False, workers=1)).to_dict()
    jsonschema.validate(data, json_schema("result"))
    dist = data["splits"]["distributions"]
    assert dist["splits"] == ["train/fold-0", "validation/fold-0", "test"]
    assert (dist["fold"], dist["folds"]) == (0, 3)
    label = next(v for v in dist["variables"] if v["role"] == "label")
    assert {k: sum(c) for k, c in label["counts"].items()} == {
        k: data["splits"]["sizes"][k] for k in ("train/fold-0", "validation/fold-0", "test")}
    assert "Shown: fold 0 of the 3 folds" in render_report(data)


def test_feature_bars_and_wrapped_legend():
    from reports.charts import categorical_chart, feature_bars

    svg = str(feature_bars([{"feature": "<b>x</b>", "smd": 1.5}, {"feature": "y", "smd": -0.4},
                            {"feature": "z", "smd": None}]))
    assert "SMD +1.50" in svg and "SMD -0.40" in svg and "&lt;b&gt;" in svg and svg.count("<rect") == 2
    names = [f"split-{i}" for i in range(9)]
    block = {"levels": ["a", "b"], "counts": {n: [1, 2] for n in names}}
    svg = str(categorical_chart(block, names))
    xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="10"', svg)]
    assert len(xs) == 9 and max(xs) < 470  # legend wrapped inside the chart


def test_near_duplicate_finding_shows_both_middle_slices(tmp_path):
    import shutil

    import nibabel as nib
    import numpy as np

    from audit.api import audit_splits
    from audit.context import AuditOptions
    from audit.synthetic import make_dataset

    ds, sp = tmp_path / "ds", tmp_path / "splits"
    make_dataset(ds, n_subjects=16, seed=4, session_fraction=0.0)
    src = ds / "sub-003" / "anat" / "sub-003_T1w.nii.gz"
    img = nib.load(src)
    data = np.asarray(img.dataobj, dtype=np.float32)
    noisy = data + np.random.default_rng(0).normal(0, 0.02 * float(data.std()), data.shape).astype(np.float32)
    (ds / "sub-099" / "anat").mkdir(parents=True)
    nib.save(nib.Nifti1Image(noisy, img.affine), ds / "sub-099" / "anat" / "sub-099_T1w.nii.gz")
    shutil.copyfile(src.with_name("sub-003_T1w.json"), ds / "sub-099" / "anat" / "sub-099_T1w.json")
    tsv = ds / "participants.tsv"
    rows = tsv.read_text().splitlines()
    head = rows[0].split("\t")
    copy = dict(zip(head, next(r for r in rows if r.startswith("sub-003\t")).split("\t")))
    copy["participant_id"] = "sub-099"
    tsv.write_text("\n".join([*rows, "\t".join(copy[c] for c in head)]) + "\n")
    sp.mkdir()
    others = [f"sub-{i:03d}" for i in range(1, 17) if i != 3]
    (sp / "train.tsv").write_text("participant_id\n" + "\n".join(["sub-003", *others[:10]]) + "\n")
    (sp / "test.tsv").write_text("participant_id\n" + "\n".join(["sub-099", *others[10:]]) + "\n")
    data = audit_splits(ds, sp, AuditOptions(label="diagnosis", run_validator=False, workers=1)).to_dict()
    (near,) = [f for f in data["findings"] if f["check"] == "leakage.near_duplicate_image"]
    pair = near["evidence"]["pairs"][0]
    assert {pair["a"]["participant_id"], pair["b"]["participant_id"]} == {"sub-003", "sub-099"}
    assert pair["a"]["thumbnail_png"] != pair["b"]["thumbnail_png"]  # noised: similar, not identical
    html = render_report(data)
    assert html.count('src="data:image/png;base64,iVBORw0KGgo') == 2 and "similarity 0.9" in html
