"""Every library function a notebook calls documents its interface in Google style: an ``Args:`` section naming
each parameter (with its shape, dtype or range) and a ``Returns:`` (or ``Yields:``) section saying what comes back.

The notebooks (``notebooks/0*.py``) and the library are read as source with :mod:`ast`; nothing is imported,
so the check takes well under a second. A call is followed through the ``from occ3d_lib... import`` re-exports
of the packages (``occlusion.occlude`` is :func:`occ3d_lib.occlusion.apply.occlude`) and through module-level
aliases (``name = other_name``) to the function that defines it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "occ3d_lib"

#: A parameter entry of an ``Args:`` section: ``name: text``, ``name (type): text``, ``a, b: text``, ``**kw: text``.
ENTRY = re.compile(r"(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\([^)]*\))?:(?:\s|$)")


def library_modules(lib: Path = LIB) -> dict[str, ast.Module]:
    """``{dotted module name: parsed source}`` of every module of the package (a package by its own name)."""
    out = {}
    for path in sorted(lib.rglob("*.py")):
        parts = path.relative_to(lib.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(path.read_text(), filename=str(path))
    return out


def resolve(dotted: str, modules: dict[str, ast.Module], depth: int = 0) -> tuple[str, ast.AST] | None:
    """What ``dotted`` (``occ3d_lib.occlusion.occlude``) names: ``(where, node)`` with the defining module's name
    and its FunctionDef / ClassDef, ``(name, Module)`` for a module, or None when it is not found statically."""
    if depth > 10:
        return None
    if dotted in modules:
        return dotted, modules[dotted]
    if "." not in dotted:
        return None
    parent, attr = dotted.rsplit(".", 1)
    owner = resolve(parent, modules, depth + 1)
    if owner is None or not isinstance(owner[1], ast.Module):
        return None
    mod, tree = owner
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == attr:
            return mod, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("occ3d_lib"):
            for alias in node.names:
                if (alias.asname or alias.name) == attr:
                    return resolve(f"{node.module}.{alias.name}", modules, depth + 1)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and \
                any(isinstance(t, ast.Name) and t.id == attr for t in node.targets):
            return resolve(f"{mod}.{node.value.id}", modules, depth + 1)
    return resolve(f"{mod}.{attr}", modules, depth + 1) if f"{mod}.{attr}" in modules else None


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """``{local name: dotted library name}`` of every ``import occ3d_lib...`` / ``from occ3d_lib... import``."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "occ3d_lib":
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        names["occ3d_lib"] = "occ3d_lib"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "occ3d_lib":
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted_call(func: ast.expr, names: dict[str, str]) -> str | None:
    """The dotted library name a call's function expression spells (``viz.image_grid`` -> ``occ3d_lib...``)."""
    attrs = []
    while isinstance(func, ast.Attribute):
        attrs.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in names:
        return None
    return ".".join([names[func.id], *reversed(attrs)])


def called_functions(sources: list[str], modules: dict[str, ast.Module]) -> dict[str, ast.FunctionDef]:
    """``{module.function: FunctionDef}`` of the library functions the ``sources`` (notebooks) call."""
    out = {}
    for src in sources:
        tree = ast.parse(src)
        names = _imported_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            dotted = _dotted_call(node.func, names)
            found = resolve(dotted, modules) if dotted else None
            if found and isinstance(found[1], (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{found[0]}.{found[1].name}"] = found[1]
    return out


def documented_args(doc: str) -> set[str] | None:
    """The parameter names the ``Args:`` section of ``doc`` lists (stars stripped), None without a section."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Args:":
            continue
        header = len(line) - len(line.lstrip())
        body = []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= header:
                break
            body.append(nxt)
        indents = [len(b) - len(b.lstrip()) for b in body if b.strip()]
        if not indents:
            return set()
        entry = min(indents)
        names = set()
        for b in body:
            if b.strip() and len(b) - len(b.lstrip()) == entry:
                m = ENTRY.match(b.strip())
                if m:
                    names |= {n.strip().lstrip("*") for n in m.group(1).split(",")}
        return names
    return None


def has_returns(doc: str) -> bool:
    """Whether ``doc`` has a ``Returns:`` or ``Yields:`` section."""
    return any(line.strip() in ("Returns:", "Yields:") for line in doc.splitlines())


def missing_documentation(name: str, node: ast.FunctionDef) -> str | None:
    """What the docstring of public function ``node`` lacks (``None`` when nothing): the ``Args:`` section or
    the parameters it does not name (``self``/``cls`` need no entry, ``*args``/``**kwargs`` may have one), and
    the ``Returns:`` section."""
    doc = ast.get_docstring(node) or ""
    a = node.args
    params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    problems = []
    if params:
        listed = documented_args(doc)
        if listed is None:
            problems.append("no Args: section")
        else:
            lacking = [p for p in params if p not in listed]
            if lacking:
                problems.append(f"Args: lacks {', '.join(lacking)}")
    if not has_returns(doc):
        problems.append("no Returns: section")
    return f"{name} ({'; '.join(problems)})" if problems else None


def _notebook_sources() -> list[str]:
    return [p.read_text() for p in sorted((ROOT / "notebooks").glob("0*.py"))]


def test_the_notebooks_calls_are_found():
    called = called_functions(_notebook_sources(), library_modules())
    assert len(called) >= 50, f"only {len(called)} library functions found in the notebooks: {sorted(called)}"
    for name in ("occ3d_lib.data.context.make_context", "occ3d_lib.occlusion.apply.occlude",
                 "occ3d_lib.evaluation.report.tables_markdown"):
        assert name in called, f"{name} is called by a notebook but the scan did not find it"


def test_every_function_a_notebook_calls_documents_args_and_returns():
    called = called_functions(_notebook_sources(), library_modules())
    bad = [m for name, node in sorted(called.items()) if not node.name.startswith("_")
           if (m := missing_documentation(name, node))]
    assert not bad, (f"{len(bad)} function(s) a notebook calls need Google-style docstrings (Args: naming every "
                     "parameter with its shape, Returns:):\n  " + "\n  ".join(bad))


def test_the_checker_catches_what_is_missing():
    lib = ast.parse('''
def good(x, y, *rest, scale=1.0, **kw):
    """Summary.

    Args:
        x: ``(B, 3)``.
        y (Tensor): ``(B,)``,
            continued.
        scale: a factor.

    Returns:
        ``(B,)``.
    """


def partial(x, y):
    """Summary mentioning y.

    Args:
        x: ``(B, 3)``.
            y: a continuation line, not an entry.

    Returns:
        ``(B,)``.
    """


def prose(x):
    """Summary. Returns the sum of x."""


def no_args() -> int:
    """Summary.

    Returns:
        1.
    """


def _private(x):
    pass


alias = good
''')
    modules = {"occ3d_lib": ast.parse("from occ3d_lib.fake import good"), "occ3d_lib.fake": lib}
    notebook = ("from occ3d_lib import good\nimport occ3d_lib.fake as fk\nfrom occ3d_lib.fake import alias\n"
                "good(1, 2)\nfk.partial(1, 2)\nfk.prose(1)\nfk.no_args()\nalias(1, 2)\nfk._private(1)\n")
    called = called_functions([notebook], modules)
    assert sorted(called) == ["occ3d_lib.fake._private", "occ3d_lib.fake.good", "occ3d_lib.fake.no_args",
                              "occ3d_lib.fake.partial", "occ3d_lib.fake.prose"]
    found = {name: missing_documentation(name, node) for name, node in called.items()}
    assert found["occ3d_lib.fake.good"] is None
    assert found["occ3d_lib.fake.no_args"] is None
    assert found["occ3d_lib.fake.partial"] == "occ3d_lib.fake.partial (Args: lacks y)"
    assert found["occ3d_lib.fake.prose"] == "occ3d_lib.fake.prose (no Args: section; no Returns: section)"
