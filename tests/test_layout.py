"""The shape of the package: the data goes down the floors (no import cycles between pulse_jax's
modules), and modules and functions stay short enough to read (STYLE: at most 450 lines a
module, 90 a function). Read from the source with ``ast``; nothing is imported.

Known exceptions are listed by name, so that a new one fails and an old one, once fixed,
is taken off the list (the test fails if a listed exception is no longer needed)."""

from __future__ import annotations

import ast
import pathlib

import fakes

PACKAGE = fakes.REPO / "pulse_jax"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 90

def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict, top_level: bool) -> set[str]:
    """The pulse_jax modules that module ``name`` imports: a ``from package import x`` names
    submodule ``x`` when there is one, else the package itself."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found |= {sub} if sub in modules else ({base} if base in modules else set())
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph(top_level: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules, top_level) for name, path in modules.items()}


def test_the_finder_sees_the_package():
    graph = _graph(top_level=True)
    assert {"pulse_jax", "pulse_jax.search.steps", "pulse_jax.stylegan.convs"} <= set(graph)
    assert "pulse_jax.search.config" in graph["pulse_jax.search.steps"]
    assert "pulse_jax.stylegan.layers" in graph["pulse_jax.stylegan2.layers"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles_at_import_time():
    assert _cycles(_graph(top_level=True)) == []


def test_no_import_cycles_through_call_time_imports():
    """Imports inside functions do not make a package fail to import, but one that closes a
    cycle is still an upward dependency."""
    assert _cycles(_graph(top_level=False)) == []


def test_modules_and_functions_are_short():
    long_modules, long_functions = set(), []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.add(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {lines} lines")
    assert long_modules == set(), f"over {MAX_MODULE_LINES} lines: {sorted(long_modules)}"
    assert long_functions == []


def test_no_module_is_another_plus_a_suffix():
    """No ``search.py`` beside ``search_steps.py``: a module that grows parts becomes a
    package instead of siblings named after it."""
    names = sorted(p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                   if (p.suffix == ".py" and p.stem != "__init__")
                   or (p.is_dir() and (p / "__init__.py").is_file()))
    pairs = [(a, b) for a in names for b in names if a != b and b.startswith(a + "_")]
    assert pairs == []
