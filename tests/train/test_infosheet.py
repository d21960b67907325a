"""The model info sheet: filled from the model folder only, Markdown and HTML, and what was not checked."""

from __future__ import annotations

import json

import pytest

from audit.errors import InputError
from tests.train.test_train import FAST, _base, _skip_without_torch, case  # noqa: F401  (fixtures)


@pytest.mark.torch
def test_info_sheet_states_its_sources_and_what_was_not_checked(case):
    from train.api import train_model
    from train.infosheet import info_sheet, write_info_sheet

    train_model(case / "dataset", case / "splits", case / "maps", epochs=1, permutation_test=2, echo=lambda _: None,
                **FAST)
    sections = dict(info_sheet(case / "maps"))
    assert set(sections) >= {"Not checked", "Audit"}
    every = [s for items in sections.values() for s in items]
    assert all(src == "" or (case / "maps" / src).exists() for _, src in every)  # each source is a folder file
    fp = json.loads((case / "maps" / "maps.json").read_text())["gate"]["dataset_fingerprint"]
    md = write_info_sheet(case / "maps", case / "model-info.md").read_text()
    assert fp in md and "permutation_test.json" in md and "prediction_confound.json" in md
    assert "relatedness between participants" in md  # no --group audited: said, not hidden
    html = write_info_sheet(case / "maps", case / "model-info.html").read_text()
    assert html.startswith("<!doctype html>") and "Not checked" in html

    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from audit.cli import app

    res = CliRunner().invoke(app, ["export", str(case / "maps"), "--output", str(case / "model.onnx"),
                                   "--info-sheet", str(case / "sheet.md")])
    assert res.exit_code == 0, res.output
    assert (case / "sheet.md").read_text() == md


def test_info_sheet_escapes_values_in_html():
    from train.infosheet import render_html

    page = render_html([("Data", [("site <script>alert(1)</script>", "maps.json")])])
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_info_sheet_refuses_what_is_not_a_complete_model_folder(tmp_path):
    from train.infosheet import info_sheet

    with pytest.raises(InputError, match="not a model folder"):
        info_sheet(tmp_path)
    (tmp_path / "maps.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(InputError, match="not complete"):
        info_sheet(tmp_path)
