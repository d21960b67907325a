"""audit.api's public names are pinned: adding or removing one is a decision, made here too."""

import audit.api

PUBLIC = [
    # the Python API (docs/python.md): one function per command, options as keyword arguments
    "validate",
    "audit",
    "readiness",
    "split",
    "SplitOutput",
    "dataset_path",
    # the front ends' entry points (the CLI, the service, train/)
    "AUDIT_FAMILIES",
    "VALIDATE_FAMILIES",
    "audit_splits",
    "certify",
    "dataset_block",
    "dataset_summary",
    "overlap_matrices",
    "read_pretrain",
    "readiness_dataset",
    "reproduce_block",
    "splits_block",
    "validate_dataset",
]


def test_exported_members_are_the_public_api():
    assert set(audit.api.__all__) == set(PUBLIC)
    assert len(audit.api.__all__) == len(set(audit.api.__all__)), "a name is listed twice"


def test_every_exported_member_exists():
    missing = [name for name in audit.api.__all__ if not hasattr(audit.api, name)]
    assert missing == []
