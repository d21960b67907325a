"""The Python API (audit.api.validate/audit/readiness/split): the CLI's options and defaults, no printing, layouts in."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import audit.cli
from audit import api
from audit.errors import BidsauditError, InputError
from audit.result import Result
from tests.builders import make_bids

#: CLI options that choose where reports go and what is printed: the API returns a Result instead.
OUTPUT_ONLY = {"json_out", "html_out", "junit_out", "sarif_out", "fmt", "out_dir", "quiet"}
PAIRS = [(api.validate, audit.cli.validate), (api.audit, audit.cli.audit), (api.readiness, audit.cli.readiness),
         (api.split, audit.cli.split)]


def _default(param: inspect.Parameter) -> object:
    value = param.default
    return str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize(("function", "command"), PAIRS, ids=[f.__name__ for f, _ in PAIRS])
def test_every_option_of_the_command_is_a_keyword_with_the_same_default(function, command):
    cli = {n: p for n, p in inspect.signature(command).parameters.items() if n not in OUTPUT_ONLY}
    mine = inspect.signature(function).parameters
    missing = sorted(set(cli) - set(mine))
    assert not missing, f"{function.__name__} lacks the command's options {missing}"
    for name, param in cli.items():
        if name in ("dataset", "splits"):  # positional in the API (the CLI's --splits has a sentinel default)
            assert mine[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            continue
        assert mine[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert _default(mine[name]) == _default(param), f"{function.__name__}({name}=...) default differs"
    # out_dir: where a reviewer's certificate goes (the CLI's --out-dir, an output option there)
    assert set(mine) - set(cli) - {"out_dir"} == set(), "an API option the command does not have"
    if "out_dir" in mine:
        assert _default(mine["out_dir"]) == _default(inspect.signature(command).parameters["out_dir"])


@pytest.fixture
def dataset(tmp_path):
    return make_bids(tmp_path / "ds", subjects=[f"{i:02d}" for i in range(1, 13)])


def test_validate_returns_a_result_and_prints_nothing(dataset, capsys):
    result = api.validate(dataset, no_validator=True)
    assert isinstance(result, Result) and result.command == "validate"
    assert result.reproduce["options"]["run_validator"] is False
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert repr(result).startswith("<Result validate ")


def test_split_then_audit_writes_the_certificate_like_the_command(dataset, tmp_path, capsys):
    made = api.split(dataset, output=tmp_path / "splits", balance=["age", "sex"])
    split, folder, files = made  # unpacks as a tuple
    assert folder == tmp_path / "splits" and all(Path(f).is_file() for f in files)
    assert set(split.assignments.values()) == {"train", "validation", "test"}
    result = api.audit(dataset, folder, no_validator=True)
    assert result.status == "pass", result.to_frame()
    cert = Path(result.attachments["certificate"])
    assert cert == folder / "bidsaudit-certificate.json" and cert.is_file()
    again = api.audit(dataset, folder, no_validator=True, no_certificate=True)
    assert again.attachments["certificate"] is None
    assert capsys.readouterr().out == ""


def test_audit_without_a_dataset_is_a_reviewers_audit(dataset, tmp_path):
    made = api.split(dataset, output=tmp_path / "splits")
    result = api.audit(None, made.folder, no_certificate=True)
    assert result.dataset is None and any(s["reason"] == "no dataset given" for s in result.skipped)


def test_readiness_defaults_to_the_diagnosis_column(dataset):
    result = api.readiness(dataset, no_validator=True)
    assert result.command == "readiness" and result.readiness["level"]


@pytest.mark.parametrize("call", [
    pytest.param(lambda d, t: api.validate(t / "absent"), id="no such dataset"),
    pytest.param(lambda d, t: api.validate(d, validator_config=t / "nope.json"), id="validator config"),
    pytest.param(lambda d, t: api.readiness(d, label="diagnsis", no_validator=True), id="no such column"),
    pytest.param(lambda d, t: api.audit(d, t / "no-splits"), id="no split files"),
    pytest.param(lambda d, t: api.split(d, label="nope", output=t / "s"), id="split column"),
    pytest.param(lambda d, t: api.validate(42), id="not a dataset"),
])
def test_bad_input_raises_from_the_one_exception_tree(call, dataset, tmp_path):
    with pytest.raises(BidsauditError) as err:
        call(dataset, tmp_path)
    assert err.value.exit_code == 2 and str(err.value)


def test_a_layout_is_recognised_by_its_module_without_importing_pybids(dataset):
    layout_type = type("BIDSLayout", (), {"__module__": "bids.layout.layout"})
    fake = layout_type()
    fake.root = str(dataset)
    assert api.dataset_path(fake) == dataset
    other = type("Thing", (), {"__module__": "mylab.data", "root": str(dataset)})()
    with pytest.raises(InputError, match="mylab.data.Thing"):
        api.dataset_path(other)
    code = ("import sys; from audit import api; from tests.builders import make_bids; import tempfile, pathlib;"
            "d = make_bids(pathlib.Path(tempfile.mkdtemp()) / 'ds', images=False);"
            "api.validate(d, no_validator=True, ignore_nifti_headers=True); assert 'bids' not in sys.modules, 'pybids'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_a_pybids_layout_audits_its_root(dataset):
    bids = pytest.importorskip("bids", reason="pybids (the test extra) builds the layout")
    layout = bids.BIDSLayout(dataset, validate=False)
    from_layout = api.validate(layout, no_validator=True)
    from_path = api.validate(dataset, no_validator=True)
    assert from_layout.dataset == from_path.dataset
    assert [f.to_dict() for f in from_layout.findings] == [f.to_dict() for f in from_path.findings]
