"""The service's OpenAPI schema, committed as ``schemas/openapi.json`` (a test checks it is current).

``python -m audit.service.openapi --write`` regenerates the file; without
``--write`` it prints the schema.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from audit.fsutil import atomic_write_text
from audit.service.app import create_app
from audit.service.settings import Settings

__all__ = ["generate", "COMMITTED"]

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def generate() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        schema = create_app(Settings(state_dir=Path(tmp))).openapi()
    return json.loads(json.dumps(schema))


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = dumps(generate())
    if "--write" in argv:
        atomic_write_text(COMMITTED, text)
        print(f"wrote {COMMITTED}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
