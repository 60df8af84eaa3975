"""Typed notebook parameters: ``-p key=value`` parsed against the notebook's declared default.

Taught in notebook 00, section "Running the whole series". A notebook's ``parameters`` cell
declares each parameter with a default (``seed = 0``, ``run_l1_ablation = True``,
``coeff_weight = 1.0``, ``teacher = "train"``) and, where the default is ``None``, optionally
an annotation (``run_ablations: Optional[bool] = None``; papermill's parser reads that form). The type of the default (or the
annotation) is the parameter's type, and every value given on the command line is parsed
and checked against it *before* any notebook runs:

- bool: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case); anything else is an error,
  so ``-p run_l1_ablation=false`` really is ``False``;
- int: a decimal integer that fits in 64 bits (``True`` is not an int);
- float: a finite number (``nan`` and ``inf`` are errors);
- str: the text as typed (a quoted Python string literal is unquoted);
- None allowed (default ``None``, or ``None`` in the annotation): ``none`` / ``null``.

A default that is ``None`` without an annotation accepts any Python literal or, failing that,
the text. Errors are :class:`ParameterError` (a ``ValueError``) with one line naming the
parameter, the value and what is expected.
"""
from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}
_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "None": type(None)}
INT_BITS = 64


class ParameterError(ValueError):
    """A notebook parameter value that does not parse or does not match its declared type."""


@dataclass(frozen=True)
class Declared:
    """One parameter of a ``parameters`` cell: default source text and annotation source text."""

    name: str
    default: str | None
    annotation: str | None = None

    @property
    def types(self) -> tuple[type, ...] | None:
        """The accepted Python types (None: any literal)."""
        if self.annotation:
            ann = self.annotation.strip().strip("'\"")
            optional = ann.startswith("Optional[") and ann.endswith("]")
            names = [t.strip() for t in (ann[len("Optional["):-1] if optional else ann).split("|")]
            names += ["None"] if optional else []
            if all(n in _TYPES for n in names):
                return tuple(_TYPES[n] for n in names)
        if self.default is None:
            return None
        try:
            value = ast.literal_eval(self.default)
        except (ValueError, SyntaxError):
            # an expression such as os.environ.get("OCC3D_PROFILE", "course"): a string
            return (str,) if "environ" in self.default or self.default.lstrip().startswith(("f'", 'f"')) else None
        if value is None:
            return None
        return (type(value),) if type(value) in (bool, int, float, str) else None

    def describe(self) -> str:
        ts = self.types
        return "any Python literal" if ts is None else " or ".join(
            {bool: "true/false", int: "an int", float: "a finite number", str: "a string",
             type(None): "none"}[t] for t in ts)


def parse_cell(source: str) -> dict[str, Declared]:
    """The parameters declared in a ``parameters`` cell's source, in order."""
    out: dict[str, Declared] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, ann = node.targets, None
        elif isinstance(node, ast.AnnAssign):
            targets, ann = [node.target], ast.get_source_segment(source, node.annotation)
        else:
            continue
        value = getattr(node, "value", None)
        default = ast.get_source_segment(source, value) if value is not None else None
        for t in targets:
            if isinstance(t, ast.Name):
                out[t.id] = Declared(t.id, default, ann)
    return out


def _fail(decl: Declared, value: Any, why: str = "") -> ParameterError:
    shown = value if isinstance(value, str) else repr(value)
    return ParameterError(f"parameter {decl.name}={shown!s} {why or 'is not ' + decl.describe()} "
                          f"(declared default: {decl.default}); pass e.g. -p {decl.name}=<{decl.describe()}>")


def _check_number(decl: Declared, v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and not -(2 ** (INT_BITS - 1)) <= v < 2 ** INT_BITS:
        raise _fail(decl, v, f"does not fit in {INT_BITS} bits")
    if isinstance(v, float) and not math.isfinite(v):
        raise _fail(decl, v, "is not a finite number")
    return v


def coerce(decl: Declared, value: Any) -> Any:
    """``value`` (command-line text or a Python value) as the declared type, or :class:`ParameterError`."""
    types = decl.types
    if not isinstance(value, str):  # a Python value from a caller: check it
        if types is None:
            return value
        if isinstance(value, bool) and bool not in types:
            raise _fail(decl, value)
        if isinstance(value, int) and not isinstance(value, bool) and int not in types and float in types:
            value = float(value)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _fail(decl, value)
        return _check_number(decl, value)
    text = value.strip()
    low = text.lower()
    if types is None:
        if low in _NONE:
            return None
        try:
            return _check_number(decl, ast.literal_eval(text))
        except (ValueError, SyntaxError):
            return text
    if type(None) in types and low in _NONE:
        return None
    if bool in types:
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    for kind in (int, float):
        if kind in types:
            try:
                number = int(text, 10) if kind is int else float(text)
            except ValueError:
                continue
            return _check_number(decl, number)
    if str in types:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            try:
                lit = ast.literal_eval(text)
                if isinstance(lit, str):
                    return lit
            except (ValueError, SyntaxError):
                pass
        return value
    raise _fail(decl, value)


def field_declarations(cls: type) -> dict[str, Declared]:
    """The fields of a dataclass (e.g. the profile) as parameters typed by their annotations, so that
    ``-p imagenet_init=true`` is the bool True and ``-p sopi_lr=abc`` an error naming the field."""
    out: dict[str, Declared] = {}
    for f in dataclasses.fields(cls):
        default = repr(f.default) if f.default is not dataclasses.MISSING else None
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", None)
        out[f.name] = Declared(f.name, default, annotation)
    return out


def split_items(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``key=value`` strings to ``{key: value text}`` (names must be identifiers)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"parameter {item!r} must look like key=value")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise ParameterError(f"parameter name {k!r} is not a valid identifier")
        out[k] = v
    return out
