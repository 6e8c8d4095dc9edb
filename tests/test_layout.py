"""The package's shape: no import cycles, and the packages that docs/ARCHITECTURE.md describes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pareto_bench

PACKAGE = Path(pareto_bench.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` imports anywhere (inside functions too, since a lazy
    import is still a dependency), except under ``if TYPE_CHECKING``. ``from pkg import mod``
    depends on ``mod``, not on ``pkg``'s ``__init__``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if _type_checking_only(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{a.name}" for a in node.names} & modules.keys()
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(base)
    resolved = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_a_cycle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# docs/ARCHITECTURE.md, "Layout": each package imports only those before it.
LAYERS = (
    "core",
    "execution",
    "tasks",
    "dllm",
    "evaluate",
    "rl",
    "tracking",
    "analysis",
    "sweep",
    "bench",
    "cli",
    "__main__",
)


def test_packages_import_only_the_layers_below():
    modules = _modules()
    upward = set()
    for name, path in modules.items():
        own = name.split(".")[1] if "." in name else None
        if own is None:
            continue
        for target in _imports(name, path, modules):
            other = target.split(".")[1] if "." in target else None
            if other and other != own and LAYERS.index(other) > LAYERS.index(own):
                upward.add(f"{name} -> {target}")
    assert sorted(upward) == []


def test_architecture_names_every_package():
    """The layout section of ARCHITECTURE.md lists exactly the package's sub-packages and
    top-level modules."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^  (\w+)(?:/|\.py)", layout, re.M))
    present = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    present |= {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    assert named == present


def test_module_names_are_unique():
    """Two modules of one name would be two different things that a reader, a traceback or a
    grep cannot tell apart (``__init__`` and ``__main__`` aside)."""
    stems: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if not path.stem.startswith("__"):
            stems.setdefault(path.stem, []).append(str(path.relative_to(PACKAGE)))
    assert {stem: paths for stem, paths in stems.items() if len(paths) > 1} == {}
