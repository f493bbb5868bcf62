"""The hash of a step's code: the source of its module and of every module of the ``pipeline``
package it imports, transitively, found by reading the ``import`` statements (anywhere in a module,
functions and ``TYPE_CHECKING`` blocks included), never by importing. The step cache
(:mod:`pipeline.cache`) puts it in each step's key."""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "pipeline"


def package_root() -> Path:
    return Path(__file__).resolve().parent


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` of the package at ``root`` (None: not one of ours)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=512)
def _imports(path: Path, name: str, root: Path) -> frozenset[str]:
    """The package modules that module ``name`` (at ``path``) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, if it is one
    modules = set()
    for module in found:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            prefix = ".".join(parts[:i])
            if _module_file(prefix, root) is not None:
                modules.add(prefix)
    return frozenset(modules)


def _outside_file(module: str) -> Path | None:
    """The source file of a step module outside the package (a plug-in step), or None."""
    from importlib.util import find_spec

    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _files(module: str, root: Path) -> dict[str, Path]:
    """``module`` and every package module it imports, transitively, with their files."""
    files: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in files:
            continue
        path = _module_file(name, root) or (_outside_file(name) if name == module else None)
        if path is None:
            continue
        files[name] = path
        todo.extend(_imports(path, name, root) - set(files))
    return dict(sorted(files.items()))


def code_closure(module: str, root: Path | None = None) -> list[str]:
    """``module`` and every package module it imports, transitively, sorted."""
    return list(_files(module, root or package_root()))


@functools.lru_cache(maxsize=64)
def code_hash(module: str, root: Path | None = None) -> str:
    """SHA-256 of the source of ``module`` and of the package modules it imports."""
    digest = hashlib.sha256()
    for name, path in _files(module, root or package_root()).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
