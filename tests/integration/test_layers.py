"""The library's layering: every import inside occ3d_lib points down (or sideways within its own
subpackage), no import cycle exists, and library imports sit at module top.

The layers, bottom to top (docs/CONVENTIONS.md draws them):

    core -> face -> render -> nets -> data -> occlusion -> training | evaluation | teaching -> app

where ``app`` is the modules at the package root (pipeline, train_cli, publish, pretrain) and ``a | b``
are independent siblings that may not import each other: evaluation and teaching reach trained networks
through ``nets`` (``nets.predict``) and the ``Context``, never through training.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "occ3d_lib"
LAYERS: list[tuple[str, ...]] = [
    ("core",), ("face",), ("render",), ("nets",), ("data",), ("occlusion",),
    ("training", "evaluation", "teaching"), ("app",),
]
RANK = {group: i for i, layer in enumerate(LAYERS) for group in layer}
#: Library imports allowed inside a function, each with its reason (optional heavy dependency).
LAZY_ALLOWED = {
    ("occ3d_lib.render.renderer", "occ3d_lib.render.raster_pytorch3d"): "PyTorch3D is optional and slow to import",
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(LIB.rglob("*.py")):
        parts = p.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _group(module: str) -> str:
    """The layer group of a module: its subpackage, or "app" for a module at the package root."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return parts[1] if (LIB / parts[1]).is_dir() else "app"


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_pkg: bool) -> list[str]:
    """Fully qualified occ3d_lib modules an import statement loads (``from pkg import mod`` -> pkg.mod)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("occ3d_lib.")]
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_pkg else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not (target == "occ3d_lib" or target.startswith("occ3d_lib.")):
        return []
    out = []
    for a in node.names:
        sub = f"{target}.{a.name}"
        out.append(sub if sub in MODULES else target)
    return [t for t in out if t != "occ3d_lib"]


def _imports() -> dict[str, list[tuple[str, bool, int]]]:
    """module -> [(imported module, at module top?, line)] for imports of occ3d_lib modules."""
    graph: dict[str, list[tuple[str, bool, int]]] = {}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        for node in tree.body:  # `if TYPE_CHECKING:` blocks count as module top
            if isinstance(node, ast.If):
                top |= {id(n) for n in node.body}
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _resolve(mod, node, path.name == "__init__.py"):
                    edges.append((t, id(node) in top, node.lineno))
        graph[mod] = edges
    return graph


GRAPH = _imports()


def test_every_module_sits_in_a_layer():
    unknown = sorted(m for m in MODULES if m != "occ3d_lib" and _group(m) not in RANK)
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}; put them in a subpackage or add it to LAYERS"


def test_imports_point_down():
    bad = []
    for mod, edges in GRAPH.items():
        if mod == "occ3d_lib":
            continue  # the package root exports the entry points of several layers and reaches subpackages on first use
        g = _group(mod)
        for target, _, line in edges:
            tg = _group(target)
            if tg == g:
                continue
            if RANK[tg] >= RANK[g]:
                bad.append(f"{MODULES[mod].relative_to(LIB.parent)}:{line} ({g}) imports {target} ({tg})")
    assert not bad, "imports that point up or sideways between layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: sorted({t for t, _, _ in e if t in MODULES and t != m}) for m, e in GRAPH.items() if m != "occ3d_lib"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
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
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_library_imports_are_at_module_top():
    lazy = [f"{MODULES[m].relative_to(LIB.parent)}:{line} imports {t} inside a function"
            for m, edges in GRAPH.items() for t, top, line in edges if not top and (m, t) not in LAZY_ALLOWED]
    assert not lazy, "\n".join(lazy)


@pytest.mark.parametrize("layer", [g for layer in LAYERS for g in layer if g != "app"])
def test_layer_is_a_package_with_a_docstring(layer):
    init = LIB / layer / "__init__.py"
    assert init.is_file(), f"{init} is missing"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring saying what the layer holds"
