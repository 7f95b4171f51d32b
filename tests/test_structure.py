"""The package's shape: its import graph has no cycle (imports inside functions
included), its folders import only downwards (:data:`LAYERS`), no training module
reaches the measuring code, only the study model lies at the top, and no module is
long."""

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


# The package's layers, lowest first (docs/ownership.md#layers): a module imports from
# its own layer or one below, never above; in one layer, a sub-package imports no other
# sub-package (train/ never imports results/, nor results/ train/). The top level holds
# the study model only: its vocabulary at the bottom, settings above data/ (a run's
# settings name its dataset), and the study itself above compute/ (it checks the
# compute keys) and below everything that runs a study.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "smoothbench.errors",
        "smoothbench.files",
        "smoothbench.config",
        "smoothbench.methods",
        "smoothbench.run_record",
    ),
    ("smoothbench.data", "smoothbench.models"),
    ("smoothbench.settings",),
    ("smoothbench.compute",),
    ("smoothbench.study",),
    ("smoothbench.train", "smoothbench.results"),
    ("smoothbench.tools", "smoothbench.pipeline"),
)
STUDY_MODEL = {
    "smoothbench",
    "smoothbench.config",
    "smoothbench.errors",
    "smoothbench.files",
    "smoothbench.methods",
    "smoothbench.run_record",
    "smoothbench.settings",
    "smoothbench.study",
}


def _place(module: str, layers: tuple[tuple[str, ...], ...]) -> tuple[int, str]:
    """(layer, part) of a module: its sub-package, or the top-level module itself."""
    for layer, parts in enumerate(layers):
        for part in parts:
            if module == part or module.startswith(part + "."):
                return layer, part
    raise AssertionError(f"{module}: in no layer of LAYERS")


def wrong_way_imports(
    graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS
) -> list[str]:
    """Every import that goes up a layer, or sideways from one sub-package to another
    (top-level modules of one layer may import each other)."""
    found = []
    for module, targets in sorted(graph.items()):
        if module == "smoothbench":
            continue
        layer, part = _place(module, layers)
        for target in sorted(targets):
            target_layer, target_part = _place(target, layers)
            both_top_level = part in STUDY_MODEL and target_part in STUDY_MODEL
            if target_layer > layer or (
                target_layer == layer and part != target_part and not both_top_level
            ):
                found.append(f"{module} -> {target}")
    return found


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
    assert graph.get("smoothbench.train.loop")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_folders_import_only_downwards():
    assert wrong_way_imports(import_graph()) == []


def test_the_direction_check_finds_an_import_up_or_sideways():
    graph = {
        "smoothbench.errors": set(),
        "smoothbench.data.registry": {"smoothbench.errors"},
        "smoothbench.train.loop": {"smoothbench.data.registry"},
        "smoothbench.results.tables": {"smoothbench.errors"},
    }
    assert wrong_way_imports(graph) == []
    graph["smoothbench.data.registry"].add("smoothbench.train.loop")  # up
    graph["smoothbench.results.tables"].add("smoothbench.train.loop")  # sideways
    assert wrong_way_imports(graph) == [
        "smoothbench.data.registry -> smoothbench.train.loop",
        "smoothbench.results.tables -> smoothbench.train.loop",
    ]


def test_only_the_study_model_lies_at_the_top():
    top = {_module_name(path) for path in PACKAGE.glob("*.py")}
    assert top == STUDY_MODEL, sorted(top ^ STUDY_MODEL)
    folders = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert folders == {
        "compute",
        "data",
        "models",
        "pipeline",
        "results",
        "tools",
        "train",
    }
    for folder in folders:
        docstring = ast.get_docstring(
            ast.parse((PACKAGE / folder / "__init__.py").read_text())
        )
        assert docstring and docstring.count("\n") == 0, folder


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_training_module_imports_the_measuring_code():
    graph = import_graph()
    reached = _reachable(graph, "smoothbench.train.loop")
    assert "smoothbench.compute.decisions" in reached
    assert "smoothbench.tools.tune_candidates" not in reached, sorted(reached)
    adapter = (REPOSITORY / "workflow" / "scripts" / "train.py").read_text()
    assert "tune_" not in adapter


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
    determinism) stops (smoothbench.compute.decisions.reconcile, test_resume_computation):
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


def test_the_longest_first_order_names_test_files_that_exist():
    """conftest's LONGEST_FIRST (the order make test's workers take files in) names
    only files that exist, so a renamed file does not drop silently to the end."""
    from conftest import LONGEST_FIRST

    tests = REPOSITORY / "tests"
    assert [name for name in LONGEST_FIRST if not (tests / name).is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
