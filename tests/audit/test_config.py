"""bidsaudit.toml / [tool.bidsaudit]: parsing, strict validation with suggestions, search order."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.config import (
    AuditConfig,
    Waiver,
    config_from_mapping,
    find_config,
    known_check_ids,
    known_thresholds,
    load_config,
    parse_config,
)
from audit.errors import InputError

FULL = """
# a CI's configuration
[severity]
"shift.covariate" = "error"
"split.unassigned_subject" = "warning"
"shift.image" = { level = "off", reason = "images are defaced differently per site", expires = 2030-06-30 }

[thresholds."shift.covariate"]
smd_large = 0.8
[thresholds.shift]
fdr = 0.1
pairs = "all"

[columns]
label = "dx"
site = "scanner"
group = "family_id"

[[waivers]]
check = "leakage.subject_overlap"
subjects = ["03", "sub-17"]
reason = "phantom scans,   excluded at training time"
expires = 2026-01-31

[[waivers]]
check = "quality.missing_metadata"
reason = "sites are given with --site"
"""


def error_of(text: str, source: str = "bidsaudit.toml", prefix: str = "") -> InputError:
    with pytest.raises(InputError) as info:
        parse_config(text, source, prefix=prefix)
    return info.value


# --------------------------------------------------------------------------------------------------
# parsing


def test_full_config_parses():
    c = parse_config(FULL)
    assert c.severity == {"shift.covariate": "error", "split.unassigned_subject": "warning", "shift.image": "off"}
    assert c.thresholds == {"shift.covariate": {"smd_large": 0.8}, "shift": {"fdr": 0.1, "pairs": "all"}}
    assert c.columns == {"label": "dx", "site": "scanner", "group": "family_id"}
    off, subj, whole = c.waivers
    assert off == Waiver("shift.image", None, "images are defaced differently per site", dt.date(2030, 6, 30),
                         'severity."shift.image"')
    assert subj.subjects == ("sub-03", "sub-17")
    assert subj.reason == "phantom scans, excluded at training time"  # whitespace collapsed
    assert subj.expires == dt.date(2026, 1, 31) and subj.origin == "waivers[1]"
    assert whole.subjects is None and whole.expires is None and whole.origin == "waivers[2]"


def test_options_dict_is_what_runner_and_checks_read():
    d = parse_config(FULL).as_options_dict()
    assert d["severity"] == {"shift.covariate": "error", "split.unassigned_subject": "warning"}  # no "off"
    assert d["off"] == ["shift.image"]
    assert d["thresholds"]["shift.covariate"] == {"smd_large": 0.8}
    assert [w["check"] for w in d["waivers"]] == ["shift.image", "leakage.subject_overlap",
                                                  "quality.missing_metadata"]
    assert d["fingerprint"].startswith("sha256:") and len(d["fingerprint"]) == 71
    json.dumps(d, allow_nan=False)


def test_fingerprint_is_stable_and_binds_content():
    a, b = parse_config(FULL), parse_config(FULL.replace("# a CI's configuration", "# reordered comments"))
    assert a.fingerprint() == b.fingerprint() and hash(a) == hash(b)
    c = parse_config(FULL.replace("smd_large = 0.8", "smd_large = 0.81"))
    d = parse_config(FULL.replace("2026-01-31", "2026-02-01"))
    assert len({a.fingerprint(), c.fingerprint(), d.fingerprint()}) == 3
    assert AuditConfig().fingerprint() == parse_config("").fingerprint()


def test_empty_config_is_empty():
    c = parse_config("")
    assert c.empty and c.waivers == () and not c.severity
    assert c.as_options_dict()["severity"] == {}


def test_column_option_wins_over_config():
    c = parse_config(FULL)
    assert c.column("label") == "dx" and c.column("label", "diagnosis") == "diagnosis"
    assert c.column("group") == "family_id" and AuditConfig().column("site") is None


def test_threshold_tables_come_from_the_check_modules():
    known = known_thresholds()
    assert "smd_large" in known["shift.covariate"] and "fdr" in known["shift"]
    assert "v_large" in known["confound.label_site"]


def test_thresholds_of_the_previous_release_are_read_under_their_new_names():
    # the decision by effect size renamed the shift and confound thresholds (docs/effects.md); the old
    # names are read for one release, and a threshold that no longer decides anything is an error that says so
    c = parse_config('[thresholds."shift.covariate"]\nsmd = 0.3\n[thresholds."confound.label_site"]\n'
                     'cramers_v_error = 0.6\n')
    assert c.thresholds == {"shift.covariate": {"smd_moderate": 0.3}, "confound.label_site": {"v_large": 0.6}}
    with pytest.raises(InputError, match="no longer decides"):
        parse_config('[thresholds."shift.label"]\nwasserstein = 0.3\n')
    lenient = AuditConfig.from_options_dict({"thresholds": {"shift.image": {"auc": 0.8},
                                                            "shift.label": {"cramers_v": 0.2}}})
    assert lenient.thresholds == {"shift.image": {"auc_moderate": 0.8}, "shift.label": {}}
    assert lenient.ignored_overrides("shift.label") == ["shift.label.cramers_v: no longer decides (decided by effect size)"]


def test_contract_ids_are_valid_even_before_registration():
    ids = known_check_ids()
    assert {"leakage.duplicate_image", "leakage.near_duplicate_image", "shift.covariate"} <= ids
    parse_config('[severity]\n"leakage.near_duplicate_image" = "warning"\n')


def test_dates_as_text_and_single_subject_text_accepted():
    c = parse_config('[[waivers]]\ncheck = "shift.label"\nsubjects = "sub-01"\nreason = "r"\nexpires = "2025-05-01"\n')
    (w,) = c.waivers
    assert w.subjects == ("sub-01",) and w.expires == dt.date(2025, 5, 1)


def test_severity_table_can_raise_with_a_reason():
    c = parse_config('[severity]\n"shift.label" = { level = "ERROR", reason = "our protocol" }\n')
    assert c.severity == {"shift.label": "error"} and c.waivers == ()


# --------------------------------------------------------------------------------------------------
# strict validation: file, line, key path, nearest valid name


def test_typo_in_check_id_names_file_key_line_and_suggests():
    err = error_of('[severity]\n"shift.covariate" = "error"\n"leakage.subject_overlp" = "warning"\n')
    text = str(err)
    assert err.path == "bidsaudit.toml" and err.line == 3
    assert err.field == 'severity."leakage.subject_overlp"'
    assert "did you mean 'leakage.subject_overlap'?" in text
    assert text.startswith("bidsaudit.toml, line 3, ")


def test_check_id_without_its_family_suggests_it():
    assert "did you mean 'shift.covariate'?" in str(error_of('[severity]\ncovariate = "error"\n'))


def test_typo_in_waiver_check_id():
    err = error_of('[[waivers]]\ncheck = "leakage.subject_overlap"\nreason = "r"\n\n'
                   '[[waivers]]\ncheck = "quality.corupt_image"\nreason = "r"\n')
    assert err.field == "waivers[2].check" and err.line == 6
    assert "did you mean 'quality.corrupt_image'?" in str(err)


def test_typo_in_pyproject_names_the_tool_table():
    err = error_of('[project]\nname = "x"\n\n[tool.bidsaudit.severity]\n"shift.labl" = "error"\n',
                   "pyproject.toml", prefix="tool.bidsaudit")
    assert err.field == 'tool.bidsaudit.severity."shift.labl"' and err.line == 5
    assert "did you mean 'shift.label'?" in str(err)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        pytest.param('[severty]\n"shift.label" = "error"\n', "severty", "did you mean 'severity'?", id="top-key"),
        pytest.param('waiver = 1\n', "waiver", "did you mean 'waivers'?", id="top-key-singular"),
        pytest.param('[columns]\nlabell = "dx"\n', "columns.labell", "did you mean 'label'?", id="column-key"),
        pytest.param('[columns]\nlabel = ""\n', "columns.label", "not a column name", id="column-empty"),
        pytest.param('[severity]\n"shift.label" = "eror"\n', 'severity."shift.label"', "did you mean 'error'?",
                     id="severity-typo"),
        pytest.param('[severity]\n"shift.label" = 2\n', 'severity."shift.label"', "unknown severity",
                     id="severity-number"),
        pytest.param('severity = "error"\n', "severity", "not a table", id="severity-not-table"),
        pytest.param('[severity]\n"shift.image" = "off"\n', 'severity."shift.image"', "needs a written reason",
                     id="off-without-reason"),
        pytest.param('[severity]\n"shift.image" = { level = "off", reasn = "x" }\n',
                     'severity."shift.image".reasn', "did you mean 'reason'?", id="severity-table-key"),
        pytest.param('[severity]\n"shift.image" = { level = "warning", expires = 2030-01-01 }\n',
                     'severity."shift.image".expires', "only a check turned off can expire", id="expires-not-off"),
        pytest.param('[thresholds."shift.covariate"]\nsmd_larg = 0.3\n', 'thresholds."shift.covariate".smd_larg',
                     "did you mean 'smd_large'?", id="threshold-name"),
        pytest.param('[thresholds."shift.covariate"]\nsmd = "big"\n', 'thresholds."shift.covariate".smd',
                     "expected a finite number", id="threshold-type"),
        pytest.param('[thresholds."shift.covariate"]\nsmd = nan\n', 'thresholds."shift.covariate".smd',
                     "expected a finite number", id="threshold-nan"),
        pytest.param('[thresholds.shift]\nmin_subjects = 2.5\n', "thresholds.shift.min_subjects",
                     "a whole number", id="threshold-int"),
        pytest.param('[thresholds."leakage.subject_overlap"]\nx = 1\n', 'thresholds."leakage.subject_overlap"',
                     "has no configurable thresholds", id="threshold-check-without"),
        pytest.param('[thresholds."shift.covarite"]\nsmd = 1\n', 'thresholds."shift.covarite"',
                     "did you mean 'shift.covariate'?", id="threshold-check-typo"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\n', "waivers[1].reason", "reason is mandatory",
                     id="waiver-no-reason"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = "   "\n', "waivers[1].reason",
                     "reason is mandatory", id="waiver-blank-reason"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = 3\n', "waivers[1].reason",
                     "reason is mandatory", id="waiver-reason-number"),
        pytest.param('[[waivers]]\nreason = "r"\n', "waivers[1].check", "missing", id="waiver-no-check"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = "r"\nexpires = "2024-13-01"\n',
                     "waivers[1].expires", "not a date", id="waiver-bad-date"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = "r"\nexpires = 20240101\n',
                     "waivers[1].expires", "not a date", id="waiver-date-number"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = "r"\nsubject = ["01"]\n',
                     "waivers[1].subject", "did you mean 'subjects'?", id="waiver-key"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = "r"\nsubjects = []\n',
                     "waivers[1].subjects", "not a list of participants", id="waiver-no-subjects"),
        pytest.param('[[waivers]]\ncheck = "shift.label"\nreason = "r"\nsubjects = ["sub 01"]\n',
                     "waivers[1].subjects[1]", "not a participant id", id="waiver-bad-subject"),
        pytest.param('waivers = "all"\n', "waivers", "not a list of tables", id="waivers-text"),
    ],
)
def test_invalid_config_is_one_input_error(text, field, fragment):
    err = error_of(text)
    assert err.field == field, str(err)
    assert fragment in str(err)
    assert "\n" not in str(err)
    assert err.line is not None, str(err)


def test_waiver_error_points_at_its_entry():
    err = error_of('[[waivers]]\ncheck = "shift.label"\nreason = "ok"\n\n[[waivers]]\ncheck = "shift.label"\n'
                   'subjects = ["01"]\n')
    assert err.field == "waivers[2].reason" and err.line == 5


def test_toml_syntax_error_has_line_and_column():
    err = error_of('[severity]\n"shift.label" = "error"\n"shift.image" = error\n')
    assert err.line == 3 and err.column is not None
    assert "TOML syntax" in str(err) and "(at line" not in str(err)


def test_toml_error_at_end_of_file_has_a_line():
    err = error_of('[severity]\n"shift.label" = [\n')
    assert err.line is not None and "TOML syntax" in str(err)


def test_not_utf8_file(tmp_path):
    path = tmp_path / "bidsaudit.toml"
    path.write_bytes(b'[columns]\nlabel = "\xff"\n')
    with pytest.raises(InputError, match="not UTF-8") as info:
        load_config(None, None, path)
    assert info.value.line == 2


# --------------------------------------------------------------------------------------------------
# never anything but InputError


_leaf = st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.dates(), st.none())
_keys = st.sampled_from(["severity", "thresholds", "columns", "waivers", "check", "reason", "subjects",
                         "expires", "level", "label", "shift.label", "shift", "smd", "fdr", "x"])
_values = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=4))
def test_any_mapping_gives_a_config_or_an_input_error(data):
    try:
        config = config_from_mapping(data)
    except InputError as err:
        assert str(err) and "\n" not in str(err)
    else:
        json.dumps(config.as_options_dict(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_a_config_or_an_input_error(text):
    try:
        parse_config(text)
    except InputError:
        pass


# --------------------------------------------------------------------------------------------------
# where the configuration is found


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_no_config_anywhere(tmp_path):
    (tmp_path / "ds").mkdir()
    config, source = load_config(tmp_path / "ds", None)
    assert source is None and config.empty
    assert load_config(None, None) == (AuditConfig(), None)


def test_bidsaudit_toml_in_dataset_wins_over_pyproject(tmp_path):
    ds = tmp_path / "ds"
    write(ds / "pyproject.toml", '[tool.bidsaudit.columns]\nlabel = "from_pyproject"\n')
    config, source = load_config(ds, None)
    assert config.columns["label"] == "from_pyproject" and source == str(ds / "pyproject.toml")
    write(ds / "bidsaudit.toml", '[columns]\nlabel = "from_toml"\n')
    config, source = load_config(ds, None)
    assert config.columns["label"] == "from_toml" and source == str(ds / "bidsaudit.toml")


def test_pyproject_without_tool_table_is_passed_over(tmp_path):
    ds = tmp_path / "repo" / "ds"
    write(ds / "pyproject.toml", '[project]\nname = "x"\n')
    write(tmp_path / "repo" / "splits" / "train.tsv", "participant_id\nsub-01\n")
    write(tmp_path / "repo" / "bidsaudit.toml", '[columns]\nlabel = "repo"\n')
    (tmp_path / "repo" / ".git").mkdir()
    config, source = load_config(ds, tmp_path / "repo" / "splits")
    assert config.columns["label"] == "repo" and source == str((tmp_path / "repo" / "bidsaudit.toml").resolve())


def test_dataset_folder_comes_before_the_split_folders(tmp_path):
    write(tmp_path / "ds" / "bidsaudit.toml", '[columns]\nlabel = "dataset"\n')
    write(tmp_path / "splits" / "bidsaudit.toml", '[columns]\nlabel = "splits"\n')
    config, _ = load_config(tmp_path / "ds", tmp_path / "splits")
    assert config.columns["label"] == "dataset"


def test_split_search_walks_up_from_a_split_file_and_stops_at_git(tmp_path):
    outer = write(tmp_path / "bidsaudit.toml", '[columns]\nlabel = "outside"\n')
    repo = tmp_path / "repo"
    split_file = write(repo / "data" / "splits" / "all.tsv", "participant_id\tsplit\nsub-01\ttrain\n")
    write(repo / "pyproject.toml", '[tool.bidsaudit.columns]\nlabel = "repo"\n')
    config, source = load_config(None, split_file)
    assert config.columns["label"] == "repo"
    (repo / "pyproject.toml").unlink()
    config, source = load_config(None, split_file)
    assert source == str(outer.resolve())  # no .git: up to the filesystem root
    (repo / ".git").write_text("gitdir: elsewhere\n")  # a worktree's .git file also marks the root
    assert load_config(None, split_file) == (AuditConfig(), None)
    assert find_config(None, split_file) is None


def test_explicit_config_wins(tmp_path):
    write(tmp_path / "ds" / "bidsaudit.toml", '[columns]\nlabel = "dataset"\n')
    explicit = write(tmp_path / "ci.toml", '[columns]\nlabel = "ci"\n')
    config, source = load_config(tmp_path / "ds", None, explicit)
    assert config.columns["label"] == "ci" and source == str(explicit)


def test_explicit_pyproject_is_read_for_its_tool_table(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[tool.bidsaudit.columns]\nlabel = "dx"\n')
    assert load_config(None, None, path)[0].columns == {"label": "dx"}
    write(path, '[project]\nname = "x"\n')
    with pytest.raises(InputError, match=r"no \[tool.bidsaudit\] table"):
        load_config(None, None, path)


@pytest.mark.parametrize("make", [lambda p: p / "missing.toml", lambda p: p])
def test_explicit_config_must_be_a_file(tmp_path, make):
    with pytest.raises(InputError) as info:
        load_config(None, None, make(tmp_path))
    assert info.value.field == "--config"


def test_broken_config_found_by_search_names_its_file(tmp_path):
    path = write(tmp_path / "ds" / "bidsaudit.toml", '[severity]\n"leakage.subject_overlaps" = "warning"\n')
    with pytest.raises(InputError) as info:
        load_config(tmp_path / "ds", None)
    assert info.value.path == str(path) and info.value.line == 2
    assert "did you mean 'leakage.subject_overlap'?" in str(info.value)


def test_options_dict_round_trips():
    config = parse_config(FULL)
    again = AuditConfig.from_options_dict(config.as_options_dict())
    assert again == config and again.fingerprint() == config.fingerprint()
    assert AuditConfig.from_options_dict({}) == AuditConfig() == AuditConfig.from_options_dict(None)


def test_load_options_prints_nothing_and_returns_notes(tmp_path, capsys):
    from audit.config import load_options
    from audit.context import AuditOptions

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "bidsaudit.toml").write_text('[columns]\nlabel = "dx"\nsite = "scanner"\n')
    options, notes = load_options(ds, None, None, label=None, site="site", group=None)
    assert isinstance(options, AuditOptions)
    assert (options.label, options.site, options.group) == ("dx", "site", None)  # a given option wins
    assert options.config.source == str(ds / "bidsaudit.toml")
    assert notes == [f"Configuration: {ds / 'bidsaudit.toml'}"]
    assert capsys.readouterr() == ("", "")
    options, notes = load_options(None, None, None, label="diagnosis")
    assert notes == [] and options.config.source is None and options.label == "diagnosis"
