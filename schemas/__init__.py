"""Schemas: pandera models of the tables bidsaudit reads, JSON Schemas of what it writes.

This package imports nothing from the rest of bidsaudit.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["json_schema"]


@cache
def json_schema(name: str) -> dict[str, Any]:
    """Load a JSON Schema shipped in this package (``"result"``, ``"certificate"``)."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
