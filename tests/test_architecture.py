"""The shape of the source, checked statically (`ast`, nothing imported): one home for each decision.

- training methods are decided by `mtu.methods` (a property or a lookup), never by comparing names;
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
