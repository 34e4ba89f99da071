"""The tree shows the architecture, and stays that way.

Read from the source as text (``ast``), nothing imported:

* no import cycle between symref's modules, imports inside functions included;
* the layering of the core subpackages: ``reference`` < ``fast`` < ``model`` <
  ``io`` < ``train`` (a module imports only its own layer and the ones below;
  ``reference`` imports nothing else of symref), and no library module imports the
  front doors (``symref/__init__``, ``symref.cli``);
* no module of the package over 800 lines;
* tests and benchmarks do not import each other (no ``sys.path`` into the other).

Each check reports every offender with its file and line, so a failure says what to
move.  ``test_checker_sees_a_planted_cycle`` proves the cycle check can fail.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "symref"
MAX_LINES = 800
#: core layers, lowest first; everything else in the package is an application
#: (vcnn, transport, checks, ase, lammps, md, ...) that may import any core layer
LAYERS = ["reference", "fast", "model", "io", "train"]
#: importable from anywhere: no symref imports of its own
LEAVES = {"symref._version"}
FRONT_DOORS = {"symref", "symref.cli"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module a dotted ``name`` (module or module.attribute) lives in."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        head = ".".join(parts[:k])
        if head in MODULES:
            return head
    return None


def imports_of(mod: str, path: Path) -> list[tuple[str, int]]:
    """``(imported symref module, line)`` for every import in ``path``, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "symref":
                    out.append((_resolve(alias.name), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if src.split(".")[0] != "symref":
                continue
            for alias in node.names:
                sub = f"{src}.{alias.name}"
                out.append((sub if sub in MODULES else _resolve(src), node.lineno))
    return [(m, line) for m, line in out if m is not None and m != mod]


def import_graph() -> dict[str, dict[str, int]]:
    return {m: dict(imports_of(m, p)) for m, p in MODULES.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_import_cycles():
    """No two modules of symref import each other, directly or through others, counting
    imports inside functions (a lazy import hides a cycle, it does not remove it)."""
    graph = import_graph()
    found = cycles(graph)
    lines = []
    for comp in found:
        for m in comp:
            for t, line in graph[m].items():
                if t in comp:
                    lines.append(f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}")
    assert not found, "import cycles:\n" + "\n".join(lines)


def test_checker_sees_a_planted_cycle():
    """The cycle finder reports a planted a -> b -> c -> a (and not a lone a -> b)."""
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_core_layers_import_only_downwards():
    """reference < fast < model < io < train; core layers never import applications or
    front doors; no library module imports ``symref`` itself or the CLI."""
    bad = []
    for m, deps in import_graph().items():
        for t, line in deps.items():
            where = f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
            if t in LEAVES:
                continue
            if t in FRONT_DOORS and m not in FRONT_DOORS:
                bad.append(where + " (a front door)")
                continue
            lm, lt = layer(m), layer(t)
            if lm is None:
                continue  # applications and front doors may import any core layer
            if lt is None or LAYERS.index(lt) > LAYERS.index(lm):
                bad.append(where + f" ({lm} may import only {LAYERS[:LAYERS.index(lm) + 1]})")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_modules_fit_one_sitting():
    """No module of the package is over 800 lines."""
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_subpackages_say_what_they_hold_and_may_import():
    """Every subpackage's __init__ has a docstring naming what it may import."""
    missing = []
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if "import" not in doc.lower():
            missing.append(str(init.relative_to(ROOT)))
    assert not missing, f"__init__ docstrings without an import rule: {missing}"


@pytest.mark.parametrize("folder, other", [("tests", "benchmarks"), ("benchmarks", "tests")])
def test_tests_and_benchmarks_do_not_import_each_other(folder, other):
    """What tests and benchmarks share lives in the package (symref.synthetic,
    symref.deepmd_kit): no ``sys.path`` entry into the other folder, no import of its
    modules."""
    names = {p.stem for p in (ROOT / other).glob("*.py")} - {"conftest", "__init__"}
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        text = path.read_text()
        for k, line in enumerate(text.splitlines(), 1):
            if "sys.path" in line and re.search(rf"[\"'/]{other}[\"'/]", line):
                bad.append(f"{path.relative_to(ROOT)}:{k}: {line.strip()}")
        for node in ast.walk(ast.parse(text)):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                    else [])
            for mod in mods:
                if mod.split(".")[0] in names:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {mod}")
    assert not bad, f"{folder}/ reaches into {other}/:\n" + "\n".join(bad)
