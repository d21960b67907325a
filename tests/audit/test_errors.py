"""The exception tree (exit codes on the classes) and the one 'did you mean' helper."""

import pytest

from audit import errors
from audit.errors import (
    BidsauditError,
    InputError,
    Refused,
    SplitError,
    SplitIntegrityError,
    ValidatorError,
    did_you_mean,
    nearest,
)


@pytest.mark.parametrize(("cls", "code"), [(BidsauditError, 2), (InputError, 2), (SplitError, 2),
                                           (ValidatorError, 2), (SplitIntegrityError, 2), (Refused, 1)])
def test_exit_codes_are_on_the_classes(cls, code):
    assert cls.exit_code == code
    assert issubclass(cls, BidsauditError)


def test_the_tree_is_drawn_in_the_docstring():
    for name in ("BidsauditError", "InputError", "SplitError", "ValidatorError", "SplitIntegrityError", "Refused"):
        assert name in errors.__doc__


def test_train_refusals_are_the_same_class():
    from train.gate import GateClosed, Refused as GateRefused
    from train.predict import LeakageRefused

    assert GateRefused is Refused and issubclass(GateClosed, Refused) and issubclass(LeakageRefused, Refused)
    assert GateClosed("gate closed", ["a", "b"]).exit_code == 1


def test_refused_lists_problems():
    err = Refused("gate closed", [f"p{i}" for i in range(25)])
    assert str(err).startswith("gate closed: p0; p1") and str(err).endswith("; and 5 more")


@pytest.mark.parametrize(("word", "choices", "expected"), [
    ("diagnsis", ["age", "diagnosis"], "diagnosis"),     # closest spelling
    ("ID", ["id", "age"], "id"),                         # letter case only
    ("covariate", ["shift.covariate", "shift.label"], "shift.covariate"),  # family left out
    ("zzz", ["age", "sex"], None),
])
def test_nearest(word, choices, expected):
    assert nearest(word, choices) == expected


def test_did_you_mean_formats_the_hint():
    assert did_you_mean("diagnsis", ["diagnosis"]) == " (did you mean 'diagnosis'?)"
    assert did_you_mean("zzz", ["age"]) == ""
