"""JUnit XML: one test case per check, failures carrying the messages, parseable whatever the input."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.outputs.junit import checks_of_result, junit_xml


def F(check: str, severity: str, message: str = "m", subjects=(), splits=()) -> dict:
    return {"check": check, "severity": severity, "message": message, "splits": list(splits),
            "subjects": list(subjects), "evidence": {}}


RESULT = {
    "schema_version": "1",
    "tool": {"name": "bidsaudit", "version": "0.1"},
    "command": "audit",
    "status": "fail",
    "dataset": {"path": "/d", "name": "d", "fingerprint": "sha256:" + "0" * 64},
    "splits": {"format": "folder", "fingerprint": "sha256:" + "1" * 64, "sizes": {}},
    "checks": ["leakage.subject_overlap", "shift.covariate", "shift.label", "quality.missing_metadata",
               "shift.image"],
    "findings": [
        F("leakage.subject_overlap", "error", "2 participants are in both train and test", ["sub-03", "sub-17"],
          ["train", "test"]),
        F("leakage.subject_overlap", "error", "1 participant is in both validation and test", ["sub-05"]),
        F("shift.covariate", "warning", "age differs between train and test"),
        F("shift.label", "info", "label distribution compared: no shift"),
    ],
    "skipped": [{"check": "leakage.group_overlap", "reason": "no --group given"}],
    "waivers": [{"check": "shift.image", "subjects": [], "reason": "defaced per site", "expires": "2030-01-01",
                 "status": "active", "matched": 1},
                {"check": "quality.missing_metadata", "subjects": ["sub-02"], "reason": "phantom",
                 "expires": None, "status": "active", "matched": 1}],
    "readiness": {"score": 90.0, "level": "B1", "items": []},
    "reproduce": {"timings": {"total_s": 2.5}},
}


def parse(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def cases(root: ET.Element) -> dict[str, ET.Element]:
    (suite,) = root.findall("testsuite")
    return {c.get("name"): c for c in suite.findall("testcase")}


def test_shape_and_counts():
    root = parse(junit_xml(RESULT))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "bidsaudit"
    tc = cases(root)
    assert sorted(tc) == sorted(set(RESULT["checks"]) | {"leakage.group_overlap"})
    n_fail = sum(1 for c in tc.values() if c.find("failure") is not None)
    n_skip = sum(1 for c in tc.values() if c.find("skipped") is not None)
    for el in (root, suite):
        assert el.get("tests") == str(len(tc)) == "6"
        assert el.get("failures") == str(n_fail) == "1"
        assert el.get("skipped") == str(n_skip) == "2"
        assert el.get("errors") == "0" and el.get("time") == "2.500"
    assert all(c.get("classname") == "bidsaudit." + c.get("name").split(".")[0] for c in tc.values())


def test_errors_fail_with_every_message():
    failure = cases(parse(junit_xml(RESULT)))["leakage.subject_overlap"].find("failure")
    assert failure.get("type") == "error"
    assert failure.get("message") == "2 participants are in both train and test (+1 more)"
    assert "1 participant is in both validation and test" in failure.text
    assert "sub-03, sub-17" in failure.text and "train, test" in failure.text


def test_warnings_pass_with_output_unless_asked():
    tc = cases(parse(junit_xml(RESULT)))
    shift = tc["shift.covariate"]
    assert shift.find("failure") is None and shift.find("skipped") is None
    assert "age differs" in shift.find("system-out").text
    assert "no shift" in tc["shift.label"].find("system-out").text
    strict = cases(parse(junit_xml(RESULT, warnings_as_failures=True)))["shift.covariate"].find("failure")
    assert strict.get("type") == "warning" and strict.get("message") == "age differs between train and test"


def test_skipped_and_waived_checks_are_skipped_with_their_reason():
    tc = cases(parse(junit_xml(RESULT)))
    assert tc["leakage.group_overlap"].find("skipped").get("message") == "no --group given"
    assert tc["shift.image"].find("skipped").get("message") == "waived: defaced per site (until 2030-01-01)"
    meta = tc["quality.missing_metadata"]  # a subject waiver: passes, the waiver noted
    assert meta.find("skipped") is None and "phantom" in meta.find("system-out").text


def test_properties():
    root = parse(junit_xml(RESULT))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["status"] == "fail" and props["readiness.level"] == "B1" and props["readiness.score"] == "90.0"
    assert props["dataset.fingerprint"].startswith("sha256:")


def test_untrusted_characters_are_escaped():
    nasty = 'a <b> & "c" \'d\' ]]> \x00\x07\x1b \ud800 ☃ \U0001f9e0'
    result = {"command": "audit", "status": "fail", "checks": [],
              "findings": [F("quality.corrupt_image", "error", nasty, ["sub-01"]),
                           F("shift.image", "warning", nasty)],
              "skipped": [{"check": "leakage.group_overlap", "reason": nasty}]}
    text = junit_xml(result)
    tc = cases(parse(text))
    message = tc["quality.corrupt_image"].find("failure").get("message")
    assert message.startswith('a <b> & "c" \'d\' ]]> \\x00\\x07\\x1b \\ud800 ☃ \U0001f9e0')
    assert "<b>" not in text and "\x00" not in text
    assert tc["leakage.group_overlap"].find("skipped").get("message").startswith("a <b>")


def test_without_a_checks_list_the_command_decides():
    validate = {"command": "validate", "status": "pass", "findings": [], "skipped": []}
    ids = checks_of_result(validate)
    assert "bids.invalid" in ids and "quality.corrupt_image" in ids
    assert not any(i.startswith(("leakage.", "shift.", "split.")) for i in ids)
    audit = checks_of_result({"command": "audit", "findings": [], "skipped": []})
    assert "leakage.subject_overlap" in audit and "shift.covariate" in audit


def test_a_real_result(tmp_path):
    from audit.api import validate_dataset
    from audit.context import AuditOptions
    from tests.builders import make_bids

    root = make_bids(tmp_path / "ds")
    data = validate_dataset(root, AuditOptions(run_validator=False)).to_dict()
    suite = parse(junit_xml(data)).find("testsuite")
    tc = cases(parse(junit_xml(data)))
    assert "bids.invalid" in tc and tc["bids.invalid"].find("skipped") is not None  # validator not run
    assert suite.get("failures") == str(sum(1 for c in tc.values() if c.find("failure") is not None))
    assert data["status"] != "pass" or suite.get("failures") == "0"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["quality.corrupt_image", "shift.label", "leakage.subject_overlap"]),
                          st.sampled_from(["error", "warning", "info"]), st.text(max_size=40)), max_size=6),
       st.text(max_size=20))
def test_any_messages_give_parseable_xml_with_consistent_counts(findings, reason):
    result = {"command": "audit", "findings": [F(c, s, m) for c, s, m in findings],
              "skipped": [{"check": "leakage.group_overlap", "reason": reason}], "checks": ["shift.covariate"]}
    root = parse(junit_xml(result))
    tc = cases(root)
    errors = {c for c, s, _ in findings if s == "error"}
    assert {n for n, c in tc.items() if c.find("failure") is not None} == errors
    assert root.get("failures") == str(len(errors)) and root.get("tests") == str(len(tc))


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -1, "x", True])
def test_bad_timings_give_time_zero(value):
    root = parse(junit_xml({"findings": [], "skipped": [], "checks": [], "reproduce": {"timings": {"total_s": value}}}))
    assert root.get("time") == "0"


def test_readiness_command_lists_the_confound_check_but_no_split_check():
    ids = checks_of_result({"command": "readiness", "findings": [], "skipped": []})
    assert "confound.label_site" in ids and "bids.invalid" in ids
    assert not any(i.startswith(("leakage.", "shift.", "split.")) for i in ids)
