"""What the page needs to build a method's form: parameters read from a signature text.

labwire servers report each method's signature as text, e.g. ``"(x: float, y: float = 0) ->
list[float]"``. :func:`parameters` reads it with :mod:`ast` (never evaluated) into plain
dictionaries the page turns into typed inputs. A signature that cannot be read gives ``None``
and the page offers one field for a JSON list of arguments instead.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["parameters"]

#: Annotations the page has a typed input for; anything else is entered as JSON.
_KINDS = {"int": "int", "float": "float", "bool": "bool", "str": "str"}


def parameters(signature: str) -> list[dict[str, Any]] | None:
    """The parameters of ``signature`` (``self`` and ``cls`` left out), or None if unreadable.

    Each parameter is ``{"name", "kind", "type", "annotation", "required", "default"}``:
    ``kind`` is ``"positional"``, ``"keyword"`` (keyword-only), ``"args"`` (``*args``) or
    ``"kwargs"`` (``**kwargs``); ``type`` is ``int``, ``float``, ``bool``, ``str`` or
    ``json``; ``default`` is the default value when it is a literal (``"has_default"`` says
    whether there is one at all).

    Args:
        signature: A signature as :func:`inspect.signature` prints it.
    """
    try:
        tree = ast.parse(f"def _f{signature}: pass")
    except (SyntaxError, ValueError):
        return None
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef):
        return None
    arguments = function.args
    result: list[dict[str, Any]] = []
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
    defaults.extend(arguments.defaults)
    for index, (argument, default) in enumerate(zip(positional, defaults, strict=True)):
        if index == 0 and argument.arg in ("self", "cls"):
            continue
        result.append(_parameter(argument, "positional", default))
    if arguments.vararg is not None:
        result.append(_parameter(arguments.vararg, "args", None))
    for argument, kw_default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        result.append(_parameter(argument, "keyword", kw_default))
    if arguments.kwarg is not None:
        result.append(_parameter(arguments.kwarg, "kwargs", None))
    return result


def _parameter(argument: ast.arg, kind: str, default: ast.expr | None) -> dict[str, Any]:
    node = argument.annotation
    if node is None:
        annotation = ""
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        annotation = node.value  # postponed annotations are printed quoted
    else:
        annotation = ast.unparse(node)
    entry: dict[str, Any] = {
        "name": argument.arg,
        "kind": kind,
        "annotation": annotation,
        "type": "json" if kind in ("args", "kwargs") else _KINDS.get(annotation, "json"),
        "required": kind in ("positional", "keyword") and default is None,
        "has_default": default is not None,
        "default": None,
    }
    if default is not None:
        try:
            entry["default"] = ast.literal_eval(default)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            entry["default_text"] = ast.unparse(default)
    return entry
