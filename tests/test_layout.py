"""The house's layout: ganrun's import graph has no circle, commands import nothing from each
other, and nothing below imports from above (read from the source with ast, lazy imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ganrun"

# Each package or module may import only from packages in lower layers (or its own package).
LAYERS = [
    {"errors", "registry", "atomic", "config", "shell"},
    {"data", "models", "losses", "metrics", "optim", "memory", "outputs"},
    {"runtime"},
    {"observe", "evaluation", "train", "rundir", "sweeps"},
    {"commands"},
    {"completion", "help"},  # the CLI's edges: tab completion, the --help page
    {"cli", "__main__"},
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The ganrun modules a module imports anywhere in its body (`from pkg import sub` counts sub)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def top(name: str) -> str:
    return name.split(".")[1] if "." in name else name


def test_the_import_graph_has_no_circle():
    g = graph()
    assert "ganrun.commands.train" in g and g["ganrun.commands.train"], "the graph reads no imports"
    assert cycles(g) == []


def test_commands_import_nothing_from_each_other():
    g = graph()
    commands = [m for m in g if m.startswith("ganrun.commands.")]
    assert len(commands) >= 4
    bad = {m: sorted(i for i in g[m] if i == "ganrun.commands" or i.startswith("ganrun.commands.")) for m in commands}
    assert {m: deps for m, deps in bad.items() if deps} == {}


def test_nothing_below_imports_from_above():
    layer = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    g = graph()
    rooms = {top(m) for m in g} - {"ganrun"}
    assert rooms <= set(layer), f"rooms missing from LAYERS: {sorted(rooms - set(layer))}"
    upward = sorted(f"{m} → {i}" for m, deps in g.items() if m != "ganrun" for i in deps
                    if i != "ganrun" and top(i) != top(m) and layer[top(i)] > layer[top(m)])
    assert upward == []
