"""docs/python.md is code: its examples run here, as doctests (the Markdown fences are dropped first)."""

import doctest
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"


def test_python_api_page_examples_run():
    pytest.importorskip("bids", reason="the page's layout example needs pybids (the test extra)")
    text = "\n".join(line for line in DOC.read_text(encoding="utf-8").splitlines()
                     if not line.strip().startswith("```"))
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, "docs/python.md", str(DOC), 0)
    assert len(test.examples) > 20, "the page lost its examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.summarize(verbose=False).failed == 0, "".join(report)
