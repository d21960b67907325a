"""The official validator: same verdicts and codes as its own runs, every issue counted.

Tests that run the real validator need ``../shared`` (the bids-examples and the
official results) and ``bids-validator-deno``; they skip with the reason
otherwise. The unit tests of the JSON/text conversion need neither.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

import audit.validator as v
from audit.errors import InputError
from audit.validator import (
    MAX_EXAMPLES,
    CodeSummary,
    ValidatorError,
    ValidatorRun,
    iter_json_issues,
    parse_text_output,
    read_json_output,
    run_validator,
    summarise_issues,
    validator_findings,
)
from tests.builders import SHARED_DATA

SHARED = SHARED_DATA.parent
EXAMPLES = SHARED_DATA / "bids-examples"
OFFICIAL = SHARED_DATA / "bids-examples-official.tsv"
CONFIG = EXAMPLES / "default-config.json"
ROWS = list(csv.DictReader(OFFICIAL.read_text().splitlines(), delimiter="\t")) if OFFICIAL.is_file() else []


def _has_validator() -> bool:
    try:
        v.validator_command()
    except ValidatorError:
        return False
    return True


needs_shared = pytest.mark.skipif(not ROWS, reason=f"{OFFICIAL} not found (the ../shared folder is absent)")
needs_validator = pytest.mark.skipif(not _has_validator(), reason="bids-validator-deno is not installed")


def codes(cell: str) -> set[str]:
    return set() if cell.strip() in ("-", "") else set(cell.split(","))


# ------------------------------------------------------------------ the real validator, the official results
@needs_shared
@needs_validator
@pytest.mark.parametrize("row", ROWS, ids=[r["dataset"] for r in ROWS])
def test_same_codes_and_verdict_as_the_official_run(row):
    ds = EXAMPLES / row["dataset"]
    ignore = row["ignoreNiftiHeaders"] == "yes"
    run = run_validator(ds, ignore_nifti_headers=ignore, config=CONFIG)
    assert run.output_format == "json" and run.max_rows == 1000  # small datasets: the validator's own settings
    assert set(run.errors) == codes(row["error_codes"])
    assert set(run.warnings) == codes(row["warning_codes"])
    assert run.derived_exit_code == (1 if int(row["exit_code"]) == 16 else 0)
    assert run.exit_code == int(row["exit_code"])
    assert (run.total("warning"), run.total("ignore")) == (int(row["n_warnings"]), int(row["n_ignored"]))

    findings = validator_findings(run)
    assert {f.evidence["code"] for f in findings if f.severity == "error"} == codes(row["error_codes"])
    assert {f.evidence["code"] for f in findings if f.severity == "warning"} == codes(row["warning_codes"])
    assert sum(f.evidence["count"] for f in findings) == run.total("error") + run.total("warning")

    # the text output (read at scale, where the JSON output fails) gives the same codes, counts and
    # sub-codes, the config's ignored codes included
    text = run_validator(ds, ignore_nifti_headers=ignore, config=CONFIG, output="text")
    assert text.output_format == "text" and not text.corrections
    assert {c: (s.severities, s.subcodes) for c, s in text.codes.items()} == {
        c: (s.severities, s.subcodes) for c, s in run.codes.items()}
    assert text.exit_code == run.exit_code


@needs_shared
@needs_validator
def test_large_datasets_go_straight_to_the_text_output(monkeypatch):
    monkeypatch.setattr(v, "TEXT_FIRST_FILES", 10)
    ds = EXAMPLES / "ds001"
    text = run_validator(ds, ignore_nifti_headers=True, config=CONFIG, n_files=135)
    assert text.output_format == "text" and any("text output" in c for c in text.corrections)
    json_run = run_validator(ds, ignore_nifti_headers=True, config=CONFIG, n_files=5)
    assert json_run.output_format == "json"
    assert {c: s.severities for c, s in text.codes.items()} == {c: s.severities for c, s in json_run.codes.items()}
    assert text.ignored == json_run.ignored == ["EMPTY_FILE"]


@needs_shared
@needs_validator
def test_long_participants_table_reads_every_row(tmp_path):
    """The 5,000-subject false error in small: the dataset's subjects listed past row 1,000."""
    ds = tmp_path / "ds"
    shutil.copytree(EXAMPLES / "ds001", ds)
    header, *rows = (ds / "participants.tsv").read_text().splitlines()
    others = [f"sub-x{i:04d}" + "\tn/a" * header.count("\t") for i in range(1200)]  # listed, no folder: allowed
    (ds / "participants.tsv").write_text("\n".join([header, *others, *rows]) + "\n")
    bare = run_validator(ds, ignore_nifti_headers=True, config=CONFIG, max_rows=1000)
    assert bare.errors == ["PARTICIPANT_ID_MISMATCH"]  # the validator's default: false
    run = run_validator(ds, ignore_nifti_headers=True, config=CONFIG)
    assert run.max_rows == -1 and any("--max-rows -1" in c and "participants.tsv has 1,216 rows" in c
                                      for c in run.corrections)
    assert run.valid and set(run.warnings) == set(bare.warnings)


# ---------------------------------------------------------------------------- JSON output -> findings
def _doc(issues, messages=None):
    return {"issues": {"issues": issues, "codeMessages": messages or {}},
            "summary": {"totalFiles": 3, "subjects": ["01", "02"], "schemaVersion": "1.2.7"}}


ISSUES = (
    [{"code": "SIDECAR_KEY_RECOMMENDED", "subCode": "Manufacturer" if i % 3 else "DeviceSerialNumber",
      "severity": "warning", "location": f"/sub-{i:03d}/anat/sub-{i:03d}_T1w.nii.gz",
      "issueMessage": "Field description: x\n", "rule": "rules.sidecars.mri.MRIHardware"} for i in range(37)]
    + [{"code": "EMPTY_FILE", "severity": "error", "location": f"/sub-{i:03d}/anat/sub-{i:03d}_T1w.nii.gz"}
       for i in range(4)]
    + [{"code": "TSV_EQUAL_ROWS", "severity": "error", "location": "/participants.tsv", "line": 7},
       {"code": "TOO_FEW_AUTHORS", "severity": "warning", "location": "/dataset_description.json"},
       {"code": "README_FILE_SMALL", "severity": "ignore", "location": "/README"},
       # one code, two severities (a config can raise some of a code's issues to errors)
       {"code": "JSON_KEY_RECOMMENDED", "severity": "warning", "subCode": "Funding",
        "location": "/dataset_description.json"},
       {"code": "JSON_KEY_RECOMMENDED", "severity": "error", "subCode": "License", "location": "/dataset_description.json"},
       {"code": "HED_ERROR", "severity": "error", "subCode": "SCHEMA_LOAD_FAILED", "issueMessage": "no schema"}]
)


def test_json_output_to_one_finding_per_code_and_severity_none_lost(tmp_path):
    out = tmp_path / "result.json"
    out.write_text(json.dumps(_doc(ISSUES, {"EMPTY_FILE": "Empty files ...\n"}), separators=(",", ":")))
    summary, tail = read_json_output(out)
    assert tail["summary"]["totalFiles"] == 3
    assert {c: s.count for c, s in summary.items()} == {
        "SIDECAR_KEY_RECOMMENDED": 37, "EMPTY_FILE": 4, "TSV_EQUAL_ROWS": 1, "TOO_FEW_AUTHORS": 1,
        "README_FILE_SMALL": 1, "JSON_KEY_RECOMMENDED": 2, "HED_ERROR": 1}
    assert summary["SIDECAR_KEY_RECOMMENDED"].subcodes == {"Manufacturer": 24, "DeviceSerialNumber": 13}
    assert summary["EMPTY_FILE"].message == "Empty files ..."

    run = ValidatorRun(version="bids-validator-deno 3.0.2", exit_code=16, seconds=0.1, codes=summary)
    assert run.errors == ["EMPTY_FILE", "HED_ERROR", "JSON_KEY_RECOMMENDED", "TSV_EQUAL_ROWS"]
    assert run.warnings == ["JSON_KEY_RECOMMENDED", "SIDECAR_KEY_RECOMMENDED", "TOO_FEW_AUTHORS"]
    assert run.ignored == ["README_FILE_SMALL"] and run.derived_exit_code == 1
    findings = validator_findings(run)
    pairs = [(f.severity, f.evidence["code"]) for f in findings]
    assert len(pairs) == len(set(pairs)) == 7  # one per code and severity; the ignored code gives none
    # no issue lost: every error and warning is counted in exactly one finding
    assert sum(f.evidence["count"] for f in findings) == sum(i["severity"] != "ignore" for i in ISSUES)
    by = {(f.severity, f.evidence["code"]): f for f in findings}
    side = by["warning", "SIDECAR_KEY_RECOMMENDED"]
    assert side.evidence["count"] == 37 and len(side.evidence["examples"]) == MAX_EXAMPLES
    assert side.evidence["examples"][0] == {
        "file": "/sub-000/anat/sub-000_T1w.nii.gz", "severity": "warning", "subcode": "DeviceSerialNumber",
        "message": "Field description: x", "rule": "rules.sidecars.mri.MRIHardware"}
    assert len(side.subjects) == 37 and side.evidence["subjects_complete"]  # every subject, not the examples'
    assert side.message.startswith("SIDECAR_KEY_RECOMMENDED: 37 issues (first: /sub-000/")
    assert by["error", "EMPTY_FILE"].subjects == ("sub-000", "sub-001", "sub-002", "sub-003")
    assert by["error", "TSV_EQUAL_ROWS"].evidence["examples"][0]["line"] == 7
    assert by["error", "JSON_KEY_RECOMMENDED"].evidence["count"] == 1
    assert by["error", "JSON_KEY_RECOMMENDED"].evidence["examples"][0]["subcode"] == "License"
    assert by["warning", "JSON_KEY_RECOMMENDED"].evidence["examples"][0]["subcode"] == "Funding"
    assert by["error", "HED_ERROR"].evidence["examples"] == [
        {"file": None, "severity": "error", "subcode": "SCHEMA_LOAD_FAILED", "message": "no schema"}]
    for f in findings:
        assert f.evidence["validator_version"] == "bids-validator-deno 3.0.2"
        assert f.evidence["code"] in f.message
        json.dumps(f.to_dict())  # plain data


@pytest.mark.parametrize("chunk", [1, 5, 64, 333, 1 << 20])
def test_json_output_is_streamed_across_any_buffer_boundary(chunk):
    doc = _doc(ISSUES, {"EMPTY_FILE": "e"})
    text = json.dumps(doc, separators=(",", ":"))
    tail: dict = {}
    assert list(iter_json_issues(io.StringIO(text), tail, chunk=chunk)) == ISSUES
    assert tail == {"codeMessages": {"EMPTY_FILE": "e"}, "summary": doc["summary"]}
    # any other layout (pretty-printed, other key order) is still read, whole
    pretty = json.dumps({"summary": doc["summary"], "issues": doc["issues"]}, indent=2)
    assert list(iter_json_issues(io.StringIO(pretty), {}, chunk=chunk)) == ISSUES
    assert list(iter_json_issues(io.StringIO('{"issues":{"issues":[]},"summary":{}}'), {}, chunk=chunk)) == []


def test_truncated_json_output_is_an_error(tmp_path):
    out = tmp_path / "result.json"
    out.write_text(json.dumps(_doc(ISSUES))[:5000])
    with pytest.raises(ValueError):
        read_json_output(out)


def test_code_summary_caps_examples_per_severity():
    s = CodeSummary("X", "warning")
    for i in range(100):
        s.add(f"/sub-{i}/f", severity="warning")
    s.add("/sub-0/g", severity="error")
    assert (s.count, s.severity, s.severities) == (101, "error", {"warning": 100, "error": 1})
    assert len(s.examples) == MAX_EXAMPLES + 1 and s.examples[-1]["severity"] == "error"
    assert len(s.subjects) == 100
    assert summarise_issues([{"code": "Y"}])["Y"].severity == "error"  # the validator's default severity


# ---------------------------------------------------------------------------------------- text output
TEXT = ("""\
\t[WARNING] SIDECAR_KEY_RECOMMENDED A data file's JSON sidecar is missing a key listed as recommended.
\t\tManufacturer
\t\t/sub-04/anat/sub-04_T1w.nii.gz - Field description: Manufacturer of the equipment
that produced the measurements.

\t\t/sub-05/anat/sub-05_T1w.nii.gz - Field description: Manufacturer of the equipment
that produced the measurements.


\t\t78 more files with the same issue

\t\tpanas_inspired\x20
\t\t/participants.tsv - Columns not defined

\t\tvigilance_nyc-q
\t\t/participants.tsv

\tPlease visit https://neurostars.org/search?q=SIDECAR_KEY_RECOMMENDED for existing conversations about this issue.

\t[WARNING] TOO_FEW_AUTHORS The dataset_description.json should have more authors.
\t\t/dataset_description.json

\tPlease visit https://neurostars.org/search?q=TOO_FEW_AUTHORS for existing conversations about this issue.

\t[ERROR] EMPTY_FILE Empty files not allowed.
\t\t/sub-01/anat/sub-01_T1w.nii.gz
\t\t/sub-02/anat/sub-02_T1w.nii.gz

\t\t19998 more files with the same issue

\tPlease visit https://neurostars.org/search?q=EMPTY_FILE for existing conversations about this issue.

\t[ERROR] HED_ERROR The validation on this HED string returned an error.
\t\tSCHEMA_LOAD_FAILED
\t\tERROR: [SCHEMA_LOAD_FAILED] Could not load HED schema - "fetch failed".

\tPlease visit https://neurostars.org/search?q=HED_ERROR for existing conversations about this issue.

\t[ERROR] SUBJECT_FOLDERS There are no subject directories (labeled "sub-*") in the root of this BIDS dataset.
\t\t
\t\t

\t\t3 more files with the same issue

\tPlease visit https://neurostars.org/search?q=SUBJECT_FOLDERS for existing conversations about this issue.


          Summary:                         Available Tasks:        Available Modalities:
          30 Files, 149 kB                 FacePerception          EEG
""")


def test_text_output_parsed_into_exact_counts_and_subcodes():
    notes: list[str] = []
    parsed = parse_text_output(io.StringIO(TEXT), notes=notes)
    assert {c: (s.severity, s.count) for c, s in parsed.items()} == {
        "SIDECAR_KEY_RECOMMENDED": ("warning", 82), "TOO_FEW_AUTHORS": ("warning", 1),
        "EMPTY_FILE": ("error", 20000), "HED_ERROR": ("error", 1), "SUBJECT_FOLDERS": ("error", 5)}
    assert parsed["SIDECAR_KEY_RECOMMENDED"].subcodes == {"Manufacturer": 80, "panas_inspired ": 1,
                                                          "vigilance_nyc-q": 1}
    assert parsed["HED_ERROR"].subcodes == {"SCHEMA_LOAD_FAILED": 1}
    assert parsed["HED_ERROR"].examples[0]["message"].startswith("ERROR: [SCHEMA_LOAD_FAILED]")
    assert parsed["EMPTY_FILE"].examples[1]["file"] == "/sub-02/anat/sub-02_T1w.nii.gz"
    assert parsed["EMPTY_FILE"].subjects == {"sub-01", "sub-02"} and not parsed["EMPTY_FILE"].subjects_complete
    assert notes == []
    assert parse_text_output(io.StringIO("This dataset appears to be BIDS compatible.\n")) == {}


def test_text_run_keeps_ignored_codes_countable(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"ignore": [{"code": "EMPTY_FILE"}, {"code": "X"}, {"location": "/derivatives/**"}],
                               "error": [{"code": "X"}]}))
    path, moved, note = v._text_config(cfg, tmp_path)
    assert moved == {"EMPTY_FILE"} and path != cfg
    assert json.loads(path.read_text()) == {"ignore": [{"code": "X"}, {"location": "/derivatives/**"}],
                                            "error": [{"code": "X"}], "warning": [{"code": "EMPTY_FILE"}]}
    assert note and "/derivatives/**" in note
    cfg.write_text(json.dumps({"ignore": [{"code": "EMPTY_FILE"}], "warning": [{"location": "/README"}]}))
    path, moved, note = v._text_config(cfg, tmp_path)  # a code-less filter may touch any code: none moved
    assert (path, moved) == (cfg, set()) and note and "EMPTY_FILE" in note and "not counted" in note
    parsed = parse_text_output(io.StringIO(TEXT))
    v._relabel(parsed["TOO_FEW_AUTHORS"], "warning", "ignore")
    assert parsed["TOO_FEW_AUTHORS"].severities == {"ignore": 1} and parsed["TOO_FEW_AUTHORS"].severity == "ignore"
    assert parsed["TOO_FEW_AUTHORS"].examples[0]["severity"] == "ignore"


# ------------------------------------------------------- failures, with a stand-in for the validator
FAKE = """\
import json, sys, time
args = sys.argv[1:]
mode = {mode!r}
if mode == "sleep":
    time.sleep(30)
if "--format" in args:
    if mode in ("crash", "garbage"):
        sys.stderr.write("error: Uncaught (in promise) RangeError: Invalid string length\\n"
                         "    at JSON.stringify (<anonymous>)\\n")
        sys.exit(1)
    out = args[args.index("--outfile") + 1]
    open(out, "w").write(json.dumps({{"issues": {{"issues": [{{"code": "EMPTY_FILE", "severity": "error",
        "location": "/sub-01/a.nii.gz"}}], "codeMessages": {{}}}}, "summary": {{}}}}))
    sys.exit(16)
if mode == "garbage":
    print("Segmentation fault"); sys.exit(16)
print({text!r})
sys.exit(16)
"""


def _fake(monkeypatch, tmp_path, mode):
    script = tmp_path / "fake_validator.py"
    script.write_text(FAKE.format(mode=mode, text=TEXT))
    monkeypatch.setattr(v, "validator_command", lambda: [sys.executable, str(script)])
    (tmp_path / "ds").mkdir(exist_ok=True)
    return tmp_path / "ds"


def test_json_crash_falls_back_to_the_text_output(monkeypatch, tmp_path):
    # what happens at 20,000 subjects: JSON.stringify of 1.76 million issues passes V8's string limit
    ds = _fake(monkeypatch, tmp_path, "crash")
    run = run_validator(ds)
    assert run.output_format == "text" and run.exit_code == 16
    assert run.errors == ["EMPTY_FILE", "HED_ERROR", "SUBJECT_FOLDERS"]
    assert run.codes["EMPTY_FILE"].count == 20000
    assert any("Invalid string length" in c for c in run.corrections)
    with pytest.raises(ValidatorError, match="Invalid string length"):
        run_validator(ds, output="json")


def test_unusable_output_is_a_clean_error(monkeypatch, tmp_path):
    ds = _fake(monkeypatch, tmp_path, "garbage")
    with pytest.raises(ValidatorError, match="gave no result.*Invalid string length"):
        run_validator(ds)


def test_timeout_is_a_clean_error(monkeypatch, tmp_path):
    ds = _fake(monkeypatch, tmp_path, "sleep")
    with pytest.raises(ValidatorError, match="did not finish in time"):
        run_validator(ds, timeout=1)


def test_missing_validator_is_a_clean_error(monkeypatch, tmp_path):
    monkeypatch.setattr(v.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(v.shutil, "which", lambda _name: None)
    with pytest.raises(ValidatorError, match="not installed"):
        v.validator_command()
    monkeypatch.setattr(v, "validator_command", lambda: [str(tmp_path / "no-such-validator")])
    with pytest.raises(ValidatorError, match="cannot run"):
        run_validator(tmp_path)


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        run_validator(tmp_path / "nope")
    bad = tmp_path / "cfg.json"
    bad.write_text("{oops")
    with pytest.raises(InputError, match="cfg.json, line 1, column 2"):
        run_validator(tmp_path, config=bad)
    bad.write_text('{"ignore": "EMPTY_FILE"}')
    with pytest.raises(InputError, match="ignore: expected a list of issue filters"):
        run_validator(tmp_path, config=bad)
    with pytest.raises(InputError, match="no such file"):
        run_validator(tmp_path, config=tmp_path / "missing.json")


def test_missing_dataset_path_gives_no_traceback(tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    res = CliRunner().invoke(app, ["validate", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert (tmp_path / "nope").name in res.output


# ---------------------------------------------------------------------------------- 5,000 subjects
@pytest.mark.slow
@needs_shared
@needs_validator
def test_5000_subjects_no_false_participant_mismatch(tmp_path):
    out = tmp_path / "big"
    subprocess.run([sys.executable, str(SHARED / "make_synthetic_bids.py"), str(out), "--subjects", "5000",
                    "--sessions", "1"], check=True, capture_output=True)
    # the validator as its users run it (1,000 rows) reports a false error ...
    bare = run_validator(out, ignore_nifti_headers=True, config=CONFIG, max_rows=1000)
    assert bare.errors == ["PARTICIPANT_ID_MISMATCH"]
    # ... which reading every row removes; nothing else changes
    run = run_validator(out, ignore_nifti_headers=True, config=CONFIG)
    assert run.max_rows == -1 and run.valid, run.errors
    assert {c: s.count for c, s in run.codes.items()} == {
        c: s.count for c, s in bare.codes.items() if c != "PARTICIPANT_ID_MISMATCH"}
