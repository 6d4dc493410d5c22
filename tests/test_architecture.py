"""The shape of the source, checked statically (`ast`, nothing imported): one home for each decision.

- training methods are decided by `mtu.methods` (a property or a lookup), never by comparing names;
- the import graph of `src/mtu` (every import, module-level or inside a function) has no cycle;
- the layers: the model's own modules import no loading, pipeline, training, evaluation, deployment or app code.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mtu"
REGISTRY = PACKAGE / "methods.py"
METHOD_NAMES = {"mtu", "single-task", "lora", "ia3", "full", "add-task"}


def parsed() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _names_a_method(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in METHOD_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_method(element) for element in node.elts)
    return False


def method_comparisons(tree: ast.Module) -> list[int]:
    """Lines comparing something with a method's name (`== "lora"`, `in ("mtu", "single-task")`)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and any(map(_names_a_method, [node.left, *node.comparators]))
    ]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the `mtu` modules it imports anywhere in its source (`from mtu.x import y` names mtu.x.y
    when that is a module, else mtu.x)."""
    trees = {module_name(path): (path, tree) for path, tree in parsed().items()}
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in trees.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in trees] or [base]
            else:
                continue
            for target in targets:
                while target and target not in trees:  # `import mtu.a.b` binds mtu.a.b's module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# The model's own modules (the config, the layers, the registry) stay below everything that uses them.
MODEL_LAYER = ("mtu.config", "mtu.methods", "mtu.layers", "mtu.version")
ABOVE_THE_MODEL = (
    "mtu.loading",
    "mtu.pipelines",
    "mtu.training",
    "mtu.evaluation",
    "mtu.deploy",
    "mtu.serve",
    "mtu.cli",
    "mtu.reproduce",
    "mtu.pretrain",
    "mtu.quickstart",
)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}; move what both sides need into a module below both"


def test_the_model_layer_imports_nothing_above_it():
    graph = import_graph()
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if _within(name, MODEL_LAYER)
        for target in targets
        if _within(target, ABOVE_THE_MODEL)
    )
    assert not wrong, wrong


def test_the_cycle_check_sees_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_registry_names_every_method():
    from mtu.methods import METHODS, Method

    assert {method.value for method in Method} == METHOD_NAMES == {method.value for method in METHODS}


def test_methods_are_compared_by_name_nowhere_outside_the_registry():
    found = [
        f"{path.relative_to(SRC)}:{line}"
        for path, tree in parsed().items()
        if path != REGISTRY
        for line in method_comparisons(tree)
    ]
    assert not found, f"decide by a `mtu.methods.Method` property or lookup, not by the method's name: {found}"


def test_the_method_check_sees_comparisons():
    tree = ast.parse('if method == "lora" or m in ("x", "full") or kind == "base": pass')
    assert method_comparisons(tree) == [1, 1]
