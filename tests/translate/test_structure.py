"""The translator's phases stand apart: its import graph (module-level and function-level
imports alike) has no cycle, no package file grows past 400 lines, and generated names come
from one namespace that never gives a name to two objects."""
import ast
from pathlib import Path

import pytest

from equivalence.translator.text import RESERVED, Header, Namespace

ROOT = Path(__file__).resolve().parents[2]
TRANSLATOR = ROOT / "equivalence" / "translator"
MAX_LINES = 400


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = TRANSLATOR, root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every ``import`` statement of
    its source, at module level or inside a function (a lazy import is a dependency too);
    ``root`` is the directory the package's dotted names start from."""
    modules = {_module_name(p, root): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module
                # ``from base import x``: the submodule base.x where there is one, else base
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in import order, the first repeated at the
    end), or ``None``."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_translator_has_no_import_cycle():
    graph = import_graph()
    assert {"equivalence.translator.graph", "equivalence.translator.capture",
            "equivalence.translator.aten.nn"} <= set(graph)
    # the reader sees relative imports at every level, lazy ones included
    assert "equivalence.translator.ops" in graph["equivalence.translator.aten.nn"]
    assert "equivalence.translator.graph" in graph["equivalence.translator.capture"]
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("package", ["jaxconv", "equivalence", "benchmarks"])
def test_no_package_has_an_import_cycle(package):
    cycle = find_cycle(import_graph(ROOT / package))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_bottom_phases_import_no_other_phase():
    graph = import_graph()
    for bottom in ("graph", "text", "state"):
        assert graph[f"equivalence.translator.{bottom}"] == set(), bottom


def test_the_cycle_finder_finds_lazy_cycles(tmp_path):
    package = tmp_path / "equivalence" / "translator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import f\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    assert find_cycle(import_graph(package, tmp_path)) == ["equivalence.translator.a", "equivalence.translator.b",
                                 "equivalence.translator.a"]


@pytest.mark.parametrize("package", ["jaxconv", "equivalence", "benchmarks"])
def test_no_file_is_longer_than_400_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_a_namespace_gives_one_name_per_object_and_never_one_name_to_two():
    names = Namespace(RESERVED)
    a, b = object(), object()
    assert names.create_name("block", a) == "block"
    assert names.create_name("block", b) == "block_1"
    assert names.create_name("block", a) == "block"
    assert names.create_name("nn", object()) == "nn_1"                  # reserved
    assert names.create_name("max", object()) == "max_1"                # a builtin
    assert names.create_name("blocks.0.cpe", object()) == "blocks_0_cpe"
    inner = names.child({"Conv2d"})
    assert inner.create_name("block", object()) == "block_2"
    assert inner.create_name("Conv2d", object()) == "Conv2d_1"


def test_module_level_definitions_share_one_namespace():
    header = Header()
    first = header.define("window", ("=", "window", "1"), lambda n: f"{n} = 1")
    again = header.define("window", ("=", "window", "1"), lambda n: f"{n} = 1")
    other = header.define("window", ("=", "window", "2"), lambda n: f"{n} = 2")
    assert (first, again, other) == ("window", "window", "window_1")
    assert header.imported("mylib", "window") == "window_2"      # an import takes no defined name
    assert header.lines() == ["from mylib import window as window_2", "", "window = 1", "window_1 = 2"]
