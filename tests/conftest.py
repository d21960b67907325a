import os

import pytest

from tests.builders import SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own hash cache folder (no state leaks between tests)."""
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (the ../shared folder is absent)")
    return SHARED_DATA


def pytest_report_header(config):
    return f"shared data: {'present' if SHARED_DATA.is_dir() else 'absent'}; cpus: {os.cpu_count()}"
