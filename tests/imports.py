"""The import graph of the tokencert package, read from the sources with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO


def module_file(module: str) -> Path | None:
    """The source file of a ``tokencert`` module (None for other packages)."""
    if module != "tokencert" and not module.startswith("tokencert."):
        return None
    base = REPO / "src" / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    parts = list(path.relative_to(REPO / "src").with_suffix("").parts) if "src" in path.parts else []
    package = parts[:-1]  # the package a relative import starts from (a package's __init__: itself)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def import_closure(paths: list[Path]) -> set[Path]:
    """Every tokencert source file the given files import, directly or not (packages' __init__ too)."""
    todo, seen = list(paths), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = module_file(".".join(parts[:i]))
                if found is not None and found.is_file():
                    todo.append(found)
    return {p for p in seen if "src" in p.parts}


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``tokencert.vocab`` for ``vocab/__init__.py``)."""
    out = {}
    for path in sorted((REPO / "src/tokencert").rglob("*.py")):
        parts = list(path.relative_to(REPO / "src").with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def module_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports directly (dotted names)."""
    known = package_modules()
    return {m for m in imported_modules(path) if m in known}
