"""The library's lower floors do not pull in the application floor (train, reports, typer, fastapi) or torch."""

import json
import subprocess
import sys

APPLICATION = ("train", "reports", "typer", "fastapi", "torch")


def test_checks_and_api_import_no_application_module():
    code = (
        "import json, sys\n"
        "import audit.checks, audit.api\n"
        f"names = {APPLICATION!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in names)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_service_does_not_import_the_cli():
    code = (
        "import sys\n"
        "import audit.service.app, audit.service.worker, audit.service.warmup\n"
        "print('audit.cli' in sys.modules, 'typer' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]
