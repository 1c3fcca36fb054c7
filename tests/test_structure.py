"""The library's shape: small modules, imports at the top of each module, and an import graph
between its parts (``render``, ``shifts``, ``envs``, ``dreamer``, ``train``, ...) without cycles."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "pvm_mbrl"
MAX_LINES = 400


def _modules():
    return sorted(ROOT.rglob("*.py"))


def _part(name: str) -> str:
    """``pvm_mbrl.envs.dmc.base`` -> ``envs``; ``pvm_mbrl.train`` -> ``train``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(tree: ast.Module, module: str):
    """(node, imported module names) of every import in ``tree`` (relative ones resolved)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            yield node, [base] + [f"{base}.{a.name}" for a in node.names]


def _name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_the_library_imports_itself_only_at_the_top_of_modules():
    inside = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node, names in _imports(fn, _name(path)):
                    if any(n.split(".")[0] == "pvm_mbrl" for n in names):
                        inside.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not inside, f"imports of pvm_mbrl inside functions hide the graph: {inside}"


def test_the_parts_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for path in _modules():
        name = _name(path)
        src = _part(name)
        for _, names in _imports(ast.parse(path.read_text()), name):
            for dst in {_part(n) for n in names if n.startswith("pvm_mbrl.")} - {src}:
                graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(u):
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path[path.index(v) :], v])}")
            if v not in state:
                visit(v)
        path.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)
    assert "envs" not in graph.get("shifts", set()) | graph.get("render", set())
