"""Severity overrides and waivers applied to findings (audit.policy)."""

from __future__ import annotations

import datetime as dt

from audit.config import parse_config
from audit.context import AuditContext, AuditOptions
from audit.findings import Finding, finding
from audit.policy import apply_policy
from audit.runner import run_checks
from audit.splits import SplitRow, SplitSet, SplitTable

TODAY = dt.date(2025, 6, 1)
DEFAULTS = {"shift.covariate": "warning", "leakage.subject_overlap": "error", "shift.image": "warning",
            "confound.label_site": "error", "quality.missing_metadata": "warning"}


def F(check: str, severity: str, message: str = "m", subjects: tuple[str, ...] = ()) -> Finding:
    return finding(message, subjects=subjects, evidence={"n": 1}).stamped(check, severity)  # type: ignore[arg-type]


def apply(findings, text, today=TODAY):
    return apply_policy(findings, parse_config(text), today, defaults=DEFAULTS)


def test_empty_config_changes_nothing():
    found = [F("shift.covariate", "warning"), F("leakage.subject_overlap", "error", subjects=("sub-01",))]
    kept, waivers = apply(found, "")
    assert kept == found and waivers == []


def test_severity_override_raises_a_warning_to_an_error():
    found = [F("shift.covariate", "warning", "age differs"), F("shift.image", "warning")]
    kept, waivers = apply(found, '[severity]\n"shift.covariate" = "error"\n')
    assert [(f.check, f.severity) for f in kept] == [("shift.covariate", "error"), ("shift.image", "warning")]
    assert waivers == []


def test_override_leaves_deliberate_side_notes_alone():
    found = [F("confound.label_site", "error"), F("confound.label_site", "info", "figures")]
    kept, _ = apply(found, '[severity]\n"confound.label_site" = "warning"\n')
    assert [f.severity for f in kept] == ["warning", "info"]


def test_override_is_idempotent_with_the_runner():
    found = [F("shift.covariate", "error")]  # the runner already stamped the override
    kept, _ = apply(found, '[severity]\n"shift.covariate" = "error"\n')
    assert kept == found


def test_off_drops_the_check_and_records_its_reason():
    found = [F("shift.image", "warning", "a classifier tells train from test"), F("shift.covariate", "warning")]
    kept, waivers = apply(found, '[severity]\n"shift.image" = { level = "off", reason = "defaced per site" }\n')
    assert [f.check for f in kept] == ["shift.covariate"]
    (w,) = waivers
    assert w["check"] == "shift.image" and w["reason"] == "defaced per site" and w["subjects"] == []
    assert w["status"] == "active" and w["matched"] == 1 and w["origin"] == 'severity."shift.image"'
    assert w["silenced"][0]["message"] == "a classifier tells train from test"


def test_whole_check_waiver():
    found = [F("leakage.subject_overlap", "error", subjects=("sub-01",)), F("shift.covariate", "warning")]
    kept, (w,) = apply(found, '[[waivers]]\ncheck = "leakage.subject_overlap"\nreason = "known twins"\n')
    assert [f.check for f in kept] == ["shift.covariate"]
    assert w["matched"] == 1 and len(w["silenced"]) == 1


def test_subject_waiver_moves_a_finding_whose_subjects_are_all_waived():
    found = [F("leakage.subject_overlap", "error", "2 in both", ("sub-03", "sub-17"))]
    kept, (w,) = apply(found, '[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["03", "17"]\n'
                              'reason = "phantoms"\n')
    assert kept == []
    assert w["subjects"] == ["sub-03", "sub-17"] and w["matched"] == 1 and w["silenced"][0]["message"] == "2 in both"


def test_subject_waiver_narrows_a_partly_waived_finding():
    found = [F("leakage.subject_overlap", "error", "3 in both", ("sub-01", "sub-03", "sub-17"))]
    kept, (w,) = apply(found, '[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["sub-03", "sub-17"]\n'
                              'reason = "phantoms"\n')
    (f,) = kept
    assert f.subjects == ("sub-01",) and f.severity == "error"
    assert f.message == "3 in both [2 waived: sub-03, sub-17]"
    assert f.evidence["waived_subjects"] == ["sub-03", "sub-17"] and f.evidence["n"] == 1
    assert w["silenced"] == [] and w["narrowed"] == [{"message": "3 in both", "subjects": ["sub-03", "sub-17"]}]


def test_two_subject_waivers_together_cover_a_finding():
    found = [F("leakage.subject_overlap", "error", "2 in both", ("sub-03", "sub-17"))]
    text = ('[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["03"]\nreason = "a"\n'
            '[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["17"]\nreason = "b"\n')
    kept, (a, b) = apply(found, text)
    assert kept == [] and a["matched"] == b["matched"] == 1
    assert len(a["silenced"]) + len(b["silenced"]) == 1  # listed once


def test_subject_waiver_never_removes_a_finding_without_subjects():
    found = [F("leakage.subject_overlap", "error", "no names")]
    kept, (w,) = apply(found, '[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["03"]\nreason = "r"\n')
    assert kept == found and w["matched"] == 0


def test_waiver_of_another_check_or_subject_does_nothing():
    found = [F("leakage.subject_overlap", "error", subjects=("sub-01",))]
    kept, (a, b) = apply(found, '[[waivers]]\ncheck = "shift.covariate"\nreason = "r"\n'
                                '[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["02"]\nreason = "r"\n')
    assert kept == found and a["matched"] == b["matched"] == 0  # unused waivers are still listed


def test_expired_waiver_is_ignored_and_reported_as_expired():
    found = [F("leakage.subject_overlap", "error", subjects=("sub-03",))]
    text = '[[waivers]]\ncheck = "leakage.subject_overlap"\nreason = "until the rescan"\nexpires = 2025-05-31\n'
    kept, (w,) = apply(found, text)
    assert kept == found
    assert w["status"] == "expired" and w["expires"] == "2025-05-31" and w["matched"] == 1 and w["silenced"] == []


def test_waiver_holds_through_its_expiry_day():
    found = [F("leakage.subject_overlap", "error", subjects=("sub-03",))]
    text = '[[waivers]]\ncheck = "leakage.subject_overlap"\nreason = "r"\nexpires = 2025-06-01\n'
    kept, (w,) = apply(found, text, today=dt.date(2025, 6, 1))
    assert kept == [] and w["status"] == "active"
    kept, (w,) = apply(found, text, today=dt.date(2025, 6, 2))
    assert kept == found and w["status"] == "expired"


def test_expired_off_brings_the_check_back_at_its_default():
    found = [F("shift.image", "warning")]
    kept, (w,) = apply(found, '[severity]\n"shift.image" = { level = "off", reason = "r", expires = 2020-01-01 }\n')
    assert kept == found and w["status"] == "expired"


def test_waiver_records_are_json_ready():
    import json

    found = [F("leakage.subject_overlap", "error", subjects=("sub-01", "sub-02"))]
    _, waivers = apply(found, '[[waivers]]\ncheck = "leakage.subject_overlap"\nsubjects = ["01"]\nreason = "r"\n')
    json.dumps(waivers, allow_nan=False)


def test_runner_and_policy_together_on_a_real_check():
    """The runner stamps the configured severity; the policy then waives one participant."""
    def row(pid: str, path: str, line: int) -> SplitRow:
        return SplitRow(f"sub-{pid}", None, None, path, line)

    train = SplitTable("train", None, "train.tsv", [row("01", "train.tsv", 2), row("02", "train.tsv", 3)])
    val = SplitTable("validation", None, "validation.tsv", [row("03", "validation.tsv", 2)])
    splits = SplitSet(format="folder", root="", files=("train.tsv", "validation.tsv"), tables=(train, val))
    config = parse_config('[severity]\n"leakage.no_test_split" = "error"\n')
    ctx = AuditContext(options=AuditOptions(config=config.as_options_dict()), splits=splits)
    findings, _ = run_checks(ctx, ("leakage.no_test_split",))
    assert findings and all(f.severity == "error" for f in findings)
    kept, _ = apply_policy(findings, config, TODAY)
    assert kept == findings

    config = parse_config('[[waivers]]\ncheck = "leakage.no_test_split"\nreason = "the test set is held by the '
                          'challenge organisers"\n')
    kept, (w,) = apply_policy(findings, config, TODAY)
    assert kept == [] and w["matched"] == len(findings)
