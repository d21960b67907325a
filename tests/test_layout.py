"""The layout rules of the re-layout ("One house"), checked on the source of audit/, train/, reports/ and schemas/.

Read from the AST (no module is imported, except by the doctest test):

* no import cycle among project modules, function-local imports counted;
* imports point down the layer table (:data:`LAYERS`, the table of the
  issue), and a few pairs are forbidden outright (:data:`FORBIDDEN`);
* project modules are imported at module level, except the pairs in
  :data:`LAZY_ALLOWED`, whose target pulls a heavy third-party module
  (:data:`HEAVY`) at import;
* no module over :data:`MAX_LINES` lines; each has a docstring whose first
  line is one sentence;
* every module whose docstrings hold ``>>>`` has its doctests run.

Imports under ``if TYPE_CHECKING:`` are type-only and never run: they are
left out of every rule. Each failure lists every violation, grouped by module.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audit", "train", "reports", "schemas")
MAX_LINES = 600

# The layer table, low to high. A module is placed by the longest entry that is its name or a package above it.
# train/ and reports/ sit beside the api, under the application floor: only L5 imports them.
LAYERS: dict[str, tuple[str, float]] = {
    **{m: ("L0", 0) for m in ("audit", "audit.errors", "audit.values", "audit.fsutil", "audit.findings",
                              "audit.bidsschema", "audit.catalogue", "audit.progress", "schemas")},
    **{m: ("L1", 1) for m in ("audit.hashing", "audit.config", "audit.bidsindex", "audit.validator", "audit.scanner",
                              "audit.hashcache", "audit.stats", "audit.images", "audit.splits", "audit.expectations",
                              "audit.configcheck", "audit.predictors", "audit.validatoroutput", "audit.validatorshards",
                              "audit.validatorstore", "audit.validatorsharded", "audit.validatorpatch", "audit.effects",
                              "audit.auc", "audit.decisions")},
    **{m: ("L2", 2) for m in ("audit.context", "audit.checks", "audit.runner", "audit.result", "audit.policy",
                              "audit.readiness", "audit.rubric", "audit.certificate", "audit.display",
                              "audit.disjointness", "audit.coverage")},
    "audit.outputs": ("L3", 3),
    "audit.api": ("L4", 4),
    "train": ("train", 4.5),
    "reports": ("reports", 4.5),
    **{m: ("L5", 5) for m in ("audit.cli", "audit.clibase", "audit.clitrain", "audit.clioutput", "audit.precommit", "audit.demo", "audit.synthetic", "audit.service")},
}

# (importer, imported) packages that never import one another, whatever their layers say.
FORBIDDEN = (
    ("reports", "audit"),  # the renderer reads a result document, nothing else
    ("reports", "train"),
    ("train", "reports"),
)

# Third-party modules that are slow or optional at import: a project module that pulls one may be imported
# inside a function. (pandas, scipy, sklearn, nibabel, jinja2, pandera are lazily imported *by the modules
# that use them*: a project module that uses them is still imported at module level.)
HEAVY = ("torch", "monai", "fastapi", "starlette", "uvicorn", "great_expectations", "dask", "distributed", "onnx",
         "onnxruntime")

# (importer, imported) pairs allowed inside functions: an entry names a module or a package above it.
# The program's entry point imports the library inside its commands: typer builds every command (and --help)
# when audit.cli is imported, and the whole library is ~120 modules plus numpy (0.45 s of CPU against 0.1 s).
# These three modules alone (audit.cli registers the commands of clitrain and shares clibase); their imports are still edges of the graph (cycles and layers are checked on them).
ENTRY_POINT = ("audit.cli", "audit.clibase", "audit.clitrain")

LAZY_ALLOWED = (
    ("audit.cli", "train"),  # torch
    ("audit.clitrain", "train"),  # torch
    ("audit.cli", "audit.service"),  # fastapi, uvicorn
    ("audit.demo", "train"),  # torch
    ("audit.service", "train"),  # torch (the service's model gate)
    ("train", "train"),  # torch: train's own light modules (the gate, the MAPS folder) load without it
    ("audit.service", "audit.service"),  # fastapi: the service's settings, store and OpenAPI dump load without it
)

# Optional extras: a module whose import fails on one of these has its doctests skipped, saying why.
OPTIONAL = ("torch", "monai", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "multipart",
            "great_expectations", "onnx", "onnxruntime")


@dataclass(frozen=True)
class Edge:
    importer: str
    target: str
    line: int
    local: bool  # inside a function (runs on call, not on import)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every importable module of the project packages (folders without ``__init__.py``, such as alembic's
    migrations and the templates, are not packages and are left out)."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if all((d / "__init__.py").is_file() for d in path.parents if ROOT in d.parents):
                out[_module_name(path)] = path
    return out


@lru_cache(maxsize=None)
def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(body: Iterable[ast.stmt], local: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements that run, with whether they run on import or on a call (TYPE_CHECKING blocks skipped)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, local
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(node.orelse, local)
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if not isinstance(children, list):
                continue
            inner = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for child in children:
                if isinstance(child, (ast.ExceptHandler,)) or type(child).__name__ == "match_case":
                    yield from _imports(child.body, inner)
                elif isinstance(child, ast.stmt):
                    yield from _imports([child], inner)


def _project_module(dotted: str) -> str | None:
    """The longest project module that ``dotted`` names or lies in."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules():
            return candidate
    return None


def _third_party(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    return [node.module.split(".")[0]] if node.module and not node.level else []


@lru_cache(maxsize=1)
def edges() -> tuple[Edge, ...]:
    out = []
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, local in _imports(tree(name).body, False):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_project_module(a.name) for a in node.names if a.name.split(".")[0] in PACKAGES]
            else:
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules() else _project_module(base))
            for target in targets:
                if target is not None and target != name:
                    out.append(Edge(name, target, node.lineno, local))
    return tuple(dict.fromkeys(out))  # `from a import b, c` of one module is one edge


def _within(name: str, entry: str) -> bool:
    return name == entry or name.startswith(entry + ".")


def layer_of(name: str) -> tuple[str, float] | None:
    """The layer of a module: its own row, else its package's row (the ``audit`` row is the package's
    ``__init__`` only: a module of audit/ that no row names has no layer)."""
    entries = [e for e in LAYERS if (name == e if e == "audit" else _within(name, e))]
    return LAYERS[max(entries, key=len)] if entries else None


def _grouped(violations: Iterable[tuple[str, str]]) -> str:
    by_module: dict[str, list[str]] = defaultdict(list)
    for module, what in violations:
        by_module[module].append(what)
    return "\n".join(f"{m}:\n" + "\n".join(f"    {w}" for w in ws) for m, ws in sorted(by_module.items()))


def _where(edge: Edge) -> str:
    return f"line {edge.line}: imports {edge.target}" + (" (inside a function)" if edge.local else "")


# (a) imports


def test_the_layout_is_read():
    """The rules below look at something: the packages are found and imports are seen."""
    assert {"audit.cli", "audit.api", "reports.render", "schemas"} <= set(modules())
    assert any(e.importer == "audit.cli" and e.target == "audit.api" for e in edges())


def test_every_module_has_a_layer():
    missing = [(m, "is in no row of the layer table (tests/test_layout.py LAYERS)") for m in modules()
               if layer_of(m) is None]
    assert not missing, "modules outside the layer table:\n" + _grouped(missing)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges():
        graph[e.importer].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(modules()):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycle():
    violations = []
    cycles = _cycles()
    for k, component in enumerate(cycles, 1):
        members = set(component)
        for e in edges():
            if e.importer in members and e.target in members:
                violations.append((e.importer, f"{_where(e)}  [cycle {k}]"))
    names = "\n".join(f"  cycle {k}: {', '.join(c)}" for k, c in enumerate(cycles, 1))
    assert not violations, f"import cycles:\n{names}\nthe imports inside them:\n" + _grouped(violations)


def test_imports_point_down():
    violations = []
    for e in edges():
        low, high = layer_of(e.importer), layer_of(e.target)
        if low is None or high is None:
            continue  # test_every_module_has_a_layer says so
        if high[1] > low[1]:
            violations.append((e.importer, f"{_where(e)}: {low[0]} imports {high[0]}"))
        for importer, imported in FORBIDDEN:
            if _within(e.importer, importer) and _within(e.target, imported):
                violations.append((e.importer, f"{_where(e)}: {importer} never imports {imported}"))
    assert not violations, "imports that point up the layer table or are forbidden:\n" + _grouped(violations)


@lru_cache(maxsize=1)
def heavy_modules() -> dict[str, str]:
    """Project modules that pull a heavy third-party module on import (directly or through module-level project
    imports, their packages' ``__init__`` included), with the heavy module's name."""
    direct: dict[str, str] = {}
    graph: dict[str, set[str]] = defaultdict(set)
    for name in modules():
        for node, local in _imports(tree(name).body, False):
            if not local:
                hit = [m for m in _third_party(node) if m in HEAVY]
                if hit:
                    direct.setdefault(name, hit[0])
        parts = name.split(".")
        graph[name] |= {".".join(parts[:i]) for i in range(1, len(parts))} & set(modules())
    for e in edges():
        if not e.local:
            graph[e.importer].add(e.target)
    heavy = dict(direct)
    changed = True
    while changed:
        changed = False
        for name in modules():
            if name in heavy:
                continue
            via = next((t for t in sorted(graph[name]) if t in heavy), None)
            if via is not None:
                heavy[name] = heavy[via]
                changed = True
    return heavy


def test_project_imports_are_at_module_level():
    violations = []
    for e in edges():
        if not e.local or e.importer in ENTRY_POINT:
            continue
        allowed = any(_within(e.importer, a) and _within(e.target, b) for a, b in LAZY_ALLOWED)
        if not allowed:
            violations.append((e.importer, _where(e) + ": import it at module level (or under TYPE_CHECKING)"))
        elif e.target not in heavy_modules():
            violations.append((e.importer, _where(e) + f": allowed lazily, but {e.target} pulls none of "
                               f"{', '.join(HEAVY)}: import it at module level"))
    assert not violations, "function-local project imports:\n" + _grouped(violations)


# (b) size and docstrings


def test_no_module_over_the_line_limit():
    violations = []
    for name, path in modules().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            violations.append((name, f"{n} lines (at most {MAX_LINES})"))
    assert not violations, "modules over the line limit:\n" + _grouped(violations)


_TWO_SENTENCES = re.compile(r"[.!?]\s+[A-Z]")


def docstring_problem(doc: str | None) -> str | None:
    """What is wrong with a module docstring's first line, or None.

    >>> docstring_problem("Render a result into one HTML page.\\n\\nMore here.") is None
    True
    >>> docstring_problem("Render a result into\\none HTML page.")
    'the first line runs on into the second (one sentence, then a blank line)'
    >>> docstring_problem("Renders. Also checks.")
    'the first line holds more than one sentence'
    """
    if not doc or not doc.strip():
        return "no docstring"
    lines = doc.strip().splitlines()
    first = lines[0].strip()
    if len(lines) > 1 and lines[1].strip():
        return "the first line runs on into the second (one sentence, then a blank line)"
    if not first.endswith((".", "!", "?")):
        return "the first line is not a sentence (it does not end with a full stop)"
    if _TWO_SENTENCES.search(first[:-1]):
        return "the first line holds more than one sentence"
    return None


def test_every_module_has_a_one_sentence_docstring():
    violations = []
    for name in modules():
        problem = docstring_problem(ast.get_docstring(tree(name), clean=True))
        if problem:
            violations.append((name, problem))
    assert not violations, "module docstrings:\n" + _grouped(violations)


# (c) doctests


def _has_examples(name: str) -> bool:
    for node in ast.walk(tree(name)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and ">>>" in doc:
                return True
    return False


WITH_EXAMPLES = sorted(m for m in modules() if _has_examples(m))


def test_doctests_are_found():
    assert WITH_EXAMPLES, "no module with '>>>' examples was found: the doctest test below would check nothing"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_doctests(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}, an optional extra that is not installed")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    tests = [t for t in finder.find(module, name) if t.examples]
    for t in tests:
        runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert tests, f"{name} has '>>>' in a docstring, but doctest found no example"
    assert result.failed == 0, "".join(report)


def test_this_file_obeys_its_docstring_rule():
    """The rule's own examples (this file is not in a project package, so test_doctests does not see them)."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for t in doctest.DocTestFinder().find(docstring_problem, "docstring_problem"):
        runner.run(t, out=report.append)
    assert runner.summarize(verbose=False).failed == 0, "".join(report)
