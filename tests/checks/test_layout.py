"""The check package's layout: families independent, imports light, shared data computed once."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from audit.config import AuditConfig
from audit.context import AuditContext, AuditOptions

CHECKS = Path(__file__).resolve().parents[2] / "audit" / "checks"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_the_late_family_registers_last():
    # quality.unreadable_file reports what the other checks met while reading lazily: it must run after them
    from audit.checks.registry import all_checks

    families = [spec.family + "." + spec.func.__module__.rsplit(".", 1)[-1] for spec in all_checks().values()]
    assert families[-1] == "quality.late" and all(f != "quality.late" for f in families[:-1]), families


def test_no_check_family_imports_another():
    families = {p.stem for p in CHECKS.glob("*.py") if "\n@check(" in p.read_text()}
    assert {"shift", "confound", "leakage", "split"} <= families
    for name in sorted(families):
        others = {f"audit.checks.{f}" for f in families - {name}}
        assert not (_imports(CHECKS / f"{name}.py") & others), name


def test_importing_the_checks_stays_light():
    code = ("import sys, audit.checks; print(sorted(m for m in ('train', 'reports', 'typer', 'fastapi', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_configuration_mapping_is_validated_once_into_an_audit_config():
    options = AuditOptions(config={"thresholds": {"confound.label_site": {"alpha": "often", "n_splits": 3.0},
                                                  "shift": {"fdr": 0.1, "nope": 1}}})
    assert isinstance(options.config, AuditConfig)
    assert options.config.ignored_overrides("confound.label_site") == [
        "confound.label_site.alpha: 'often' is not a number"]
    assert options.config.ignored_overrides("shift") == ["shift.nope: unknown"]
    ctx = AuditContext(options=options)
    th = ctx.thresholds("confound.label_site", {"alpha": 0.05, "n_splits": 5})
    assert th == {"alpha": 0.05, "n_splits": 3} and isinstance(th["n_splits"], int)


def test_shared_data_is_computed_once_per_audit():
    ctx = AuditContext()
    calls = []

    def compute(c: AuditContext, x: int) -> int:
        calls.append(x)
        return x * 2

    assert ctx.computed(compute, 2) is None
    assert ctx.once(compute, 2) == 4 and ctx.once(compute, 2) == 4 and ctx.once(compute, 3) == 6
    assert calls == [2, 3] and ctx.computed(compute, 2) == 4
