"""Structure-aware fuzzing of every text parser: only a result or a BidsauditError (exit 2), never a crash.

The targets, seeds and mutations are in ``bench/_parserfuzz.py``; ``bench/bench_fuzz.py`` runs the long
campaign. A refusal names the file it refuses.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench._parserfuzz import TARGETS, mutate, run_one
from tests.builders import invoke, make_bids

SHORT = settings(max_examples=25, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))


def _check(target, rng, folder: Path) -> None:
    data = mutate(rng, rng.choice(target.seeds))
    outcome, _, detail = run_one(target, data, folder)
    assert outcome != "crash", f"{target.name} crashed on {data[:300]!r}:\n{detail}"
    if outcome == "refused" and target.filename.endswith(("toml", "certificate.json", "suite.json")):
        assert Path(target.filename).name in detail, detail  # the message names the file


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_seeds_are_valid(tmp_path, target):
    for seed in target.seeds:
        outcome, _, detail = run_one(target, seed, tmp_path / "x")
        assert outcome == "ok", detail


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@SHORT
@given(rng=st.randoms(use_true_random=False))
def test_parser_never_crashes(tmp_path, target, rng):
    _check(target, rng, tmp_path / "x")


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@LONG
@given(rng=st.randoms(use_true_random=False))
def test_parser_never_crashes_long(tmp_path, target, rng):
    _check(target, rng, tmp_path / "x")


# ---------------------------------------------------------------- regressions found by the campaign
def test_participants_row_with_more_fields_than_the_header_is_a_finding(tmp_path):
    # was: pandas took the extra fields as a row index; quality.participants_table crashed (ValueError: int())
    root = make_bids(tmp_path / "ds")
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t60\tF\tCN\nsub-02\t61\nsub-03\t62\n")
    r = invoke("validate", root, "--no-validator", "--json", tmp_path / "r.json")
    assert r.exit_code == 1, r.output
    import json

    found = json.loads((tmp_path / "r.json").read_text())["findings"]
    [f] = [f for f in found if f["check"] == "quality.participants_table"]
    assert "line 2" in f["message"] and "4 fields, the header has 2" in f["message"], f["message"]


def test_split_id_ending_in_a_nul_is_refused_with_its_line(tmp_path):
    # was: IndexError (numpy's comparison drops trailing NULs, so the bad value's row was not found)
    from audit.errors import InputError
    from audit.splits.readers import read_splits

    f = tmp_path / "splits.csv"
    f.write_bytes(b"participant_id,split\nsub-01\x00,train\nsub-02,test\n")
    with pytest.raises(InputError, match="line 2"):
        read_splits(f)


def test_a_parser_campaign_is_reproducible():
    a = [mutate(random.Random(3), TARGETS[0].seeds[0]) for _ in range(3)]
    assert a[0] == a[1] == a[2]
