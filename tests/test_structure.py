"""The package's shape: its import graph has no cycle (imports inside functions
included), no training module reaches the measuring code, and no module is long."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPOSITORY

PACKAGE = REPOSITORY / "src" / "smoothbench"
LONGEST_MODULE = 500  # lines


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the smoothbench modules it imports, anywhere in its text (a function's
    body included): ``import smoothbench.x``, ``from smoothbench import x`` (x a
    module) and ``from smoothbench.x import y``."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module] + [
                    f"{node.module}.{alias.name}" for alias in node.names
                ]
            for target in found:
                if target in modules and target != name and target != "smoothbench":
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for target in graph[node] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph.get("smoothbench.training")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_training_module_imports_the_measuring_code():
    graph = import_graph()
    reached = _reachable(graph, "smoothbench.training")
    assert "smoothbench.computation" in reached
    assert "smoothbench.tuning" not in reached, sorted(reached)
    adapter = (REPOSITORY / "workflow" / "scripts" / "train.py").read_text()
    assert "tuning" not in adapter


def test_no_module_is_longer_than_a_sitting():
    lengths = {
        path.name: len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")
    }
    too_long = {
        name: lines for name, lines in lengths.items() if lines > LONGEST_MODULE
    }
    assert not too_long, too_long


def test_no_comment_says_a_run_may_resume_under_another_computation():
    """A resume that would switch a computation key (backend, precision, XLA,
    determinism) stops (smoothbench.computation.reconcile, test_resume_computation):
    no comment or docstring may promise otherwise."""
    promise = re.compile(
        r"(may|can|could) resume\s+(#\s*)?under\s+(#\s*)?(another|a different|any)\s+"
        r"(#\s*)?(precision|backend|computation|setting)"
    )
    found = [
        f"{path.relative_to(PACKAGE)}: {match.group(0)!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for match in promise.finditer(path.read_text())
    ]
    assert not found, found
