"""The layout rules of docs/architecture.md, checked: `python -m scripts.check_layout` prints
every breach and exits 1, or exits 0 (tests/tooling/test_check_layout.py runs it on the repository).

- No Python file over `MAX_FILE_LINES` lines, tests included.
- No function over `MAX_FUNCTION_LINES` lines, but in tests and the dashboards' rows
  (`LONG_FUNCTIONS_ALLOWED`).
- No import cycle between the package's modules. Every import counts, inside functions and
  under `TYPE_CHECKING` too, and importing `a.b.c` imports the packages `a.b` above it (for a
  module outside them).
- A room imports only the rooms below it in `ROOMS` (and itself), but for the imports the
  data flow needs, listed in `UPWARD_IMPORTS`.
- No two modules of the package with the same name, but for the kinds' packages under
  `probes/`, which mirror each other on purpose (`probes/postgres/probe.py`,
  `probes/redis/probe.py`).
- No test module imports another: what tests share lives in a support module
  (`tests/*_support.py`, `tests/exporter_process.py`, `tests/conftest.py`).
- Every module the docs name exists: a `name.py`, `room/name.py` or
  `resilience_exporter.room.name` between backticks in README.md and docs/ (bench/results/
  holds dated lab notes and is left alone).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

PACKAGE = "resilience_exporter"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
# A test tells one story; a dashboard's row is a declaration, a list of panels.
LONG_FUNCTIONS_ALLOWED = ("tests/", "grafana/boards/")
# The package's rooms and top-level modules, lowest first (docs/architecture.md).
ROOMS = (
    "reasons", "classify", "configuration", "metrics", "instrument", "probing", "probes", "web",
    "logs", "cli", "metricsdoc", "__main__",
)  # fmt: skip
# The loader asks the registry for the model of the kind a target names.
UPWARD_IMPORTS = frozenset({("configuration.loader", "probing.registry")})
_DOC_SKIP = ("bench/results/",)
_TEST_IMPORT = re.compile(r"^\s*(?:from|import) (test_\w+)", re.M)
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_PY_PATH = re.compile(r"(?<![\w/.<>-])([\w/.-]+\.py)\b")
_DOTTED = re.compile(rf"\b({PACKAGE}(?:\.\w+)+)")


def tracked_files(root: Path) -> list[str]:
    """The repository's files (git's index), or every file under `root` outside git."""
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        return [name for name in out.splitlines() if (root / name).exists()]
    except (OSError, subprocess.CalledProcessError):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def long_files(root: Path, files: Iterable[str]) -> Iterator[str]:
    for name in files:
        if not name.endswith(".py"):
            continue
        lines = len((root / name).read_text(encoding="utf-8").splitlines())
        if lines > MAX_FILE_LINES:
            yield f"{name}: {lines} lines (at most {MAX_FILE_LINES})"


def long_functions(root: Path, files: Iterable[str]) -> Iterator[str]:
    for path in files:
        if not path.endswith(".py") or path.startswith(LONG_FUNCTIONS_ALLOWED):
            continue
        tree = ast.parse((root / path).read_text(encoding="utf-8"), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    yield (
                        f"{path}:{node.lineno}: {node.name}() is {lines} lines "
                        f"(at most {MAX_FUNCTION_LINES})"
                    )


def package_modules(files: Iterable[str]) -> dict[str, str]:
    """Dotted module name → file, for the package's modules (a package is its __init__)."""
    modules: dict[str, str] = {}
    for name in files:
        if name.startswith(f"{PACKAGE}/") and name.endswith(".py"):
            dotted = name.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            modules[dotted] = name
    return modules


def _imported(node: ast.AST, modules: Mapping[str, str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in modules:
                yield alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module not in modules:
            return
        for alias in node.names:
            submodule = f"{node.module}.{alias.name}"
            yield submodule if submodule in modules else node.module


def import_graph(root: Path, modules: Mapping[str, str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse((root / path).read_text(encoding="utf-8"), path)
        for node in ast.walk(tree):
            for target in _imported(node, modules):
                graph[name].add(target)
                # Importing a.b.c runs a.b's __init__ first, unless the importer is inside a.b.
                parts = target.split(".")
                for depth in range(2, len(parts)):
                    package = ".".join(parts[:depth])
                    if not name.startswith(f"{package}."):
                        graph[name].add(package)
        graph[name].discard(name)
        graph[name].discard(PACKAGE)  # the root package holds the version only
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: Mapping[str, set[str]]) -> Iterator[str]:
    def room(module: str) -> str:
        return module.split(".")[1]

    for importer, imported in sorted((a, b) for a, bs in graph.items() for b in bs):
        if imported == PACKAGE or room(importer) not in ROOMS or room(imported) not in ROOMS:
            continue
        if ROOMS.index(room(imported)) > ROOMS.index(room(importer)) and not _allowed_upward(
            importer.split(".", 1)[1], imported.split(".", 1)[1]
        ):
            yield f"{importer} imports {imported}: room {room(imported)} is above {room(importer)}"


def _allowed_upward(importer: str, imported: str) -> bool:
    """Listed, or the package of a listed module (importing it runs the package first)."""
    return any(
        importer == a and (imported == b or b.startswith(f"{imported}.")) for a, b in UPWARD_IMPORTS
    )


def name_collisions(modules: Mapping[str, str]) -> Iterator[str]:
    by_name: dict[str, list[str]] = {}
    for dotted, path in modules.items():
        if path.endswith("__init__.py"):
            continue
        parts = dotted.split(".")
        if len(parts) >= 4 and parts[1] == "probes":  # resilience_exporter.probes.<kind>.<x>
            continue
        by_name.setdefault(parts[-1], []).append(path)
    for name, paths in sorted(by_name.items()):
        if len(paths) > 1:
            yield f"module name {name!r} used by {', '.join(sorted(paths))}"


def tests_importing_tests(root: Path, files: Iterable[str]) -> Iterator[str]:
    for name in files:
        if name.startswith("tests/") and name.endswith(".py"):
            for imported in _TEST_IMPORT.findall((root / name).read_text(encoding="utf-8")):
                yield f"{name} imports the test module {imported}: share through a support module"


def _doc_files(files: Iterable[str]) -> list[str]:
    return [
        name
        for name in files
        if name.endswith(".md")
        and (name == "README.md" or name.startswith("docs/"))
        and not name.startswith(_DOC_SKIP)
    ]


def missing_doc_modules(root: Path, files: Sequence[str]) -> Iterator[str]:
    paths = [name for name in files if name.endswith(".py")]
    basenames = {name.rsplit("/", 1)[-1] for name in paths}
    modules = package_modules(files)
    for doc in _doc_files(files):
        text = (root / doc).read_text(encoding="utf-8")
        for line_number, line in enumerate(text.splitlines(), start=1):
            for span in _BACKTICKED.findall(line):
                for named in _named_modules(root, span, paths, basenames, modules):
                    yield f"{doc}:{line_number}: names {named}, which does not exist"


def _named_modules(
    root: Path, span: str, paths: Sequence[str], basenames: set[str], modules: Mapping[str, str]
) -> Iterator[str]:
    for path in _PY_PATH.findall(span):
        if "/" in path:
            if not any(p == path or p.endswith(f"/{path}") for p in paths):
                yield path
        elif path not in basenames:
            yield path
    for dotted in _DOTTED.findall(span):
        if dotted in modules:
            continue
        # Else a name the module defines (`resilience_exporter.instrument.Instrumentation`).
        module, _, attribute = dotted.rpartition(".")
        if module not in modules or not _defines(root / modules[module], attribute):
            yield dotted


def _defines(path: Path, name: str) -> bool:
    source = path.read_text(encoding="utf-8")
    pattern = rf"^(?:(?:async )?def|class) {re.escape(name)}\b|^{re.escape(name)}\s*[:=]"
    return re.search(pattern, source, re.M) is not None


def breaches(root: Path) -> list[str]:
    files = tracked_files(root)
    modules = package_modules(files)
    found = [*long_files(root, files), *long_functions(root, files)]
    graph = import_graph(root, modules)
    found += [f"import cycle: {' ↔ '.join(c)}" for c in cycles(graph)]
    found += upward_imports(graph)
    found += [*name_collisions(modules), *tests_importing_tests(root, files)]
    found += missing_doc_modules(root, files)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path.cwd()
    found = breaches(root)
    for breach in found:
        print(breach)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
