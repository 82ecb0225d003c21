"""What code makes a result: the import graph of the package read from its sources with ``ast``
(nothing is imported), and a hash of the files a job runs, so that editing a module reruns exactly
the jobs whose code imports it (``rules/common.smk: code``)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
"""The ``tokencert`` package directory this module was imported from."""


def module_file(module: str, package: Path = PACKAGE) -> Path | None:
    """The source file of a ``tokencert`` module (None for other packages)."""
    if module != "tokencert" and not module.startswith("tokencert."):
        return None
    base = package.joinpath(*module.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@lru_cache(maxsize=None)
def imported_modules(path: Path, package: Path = PACKAGE) -> frozenset[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved; read once per process)."""
    inside = path.resolve().is_relative_to(package.resolve())
    parts = ["tokencert", *path.resolve().relative_to(package.resolve()).with_suffix("").parts] if inside else []
    parent_package = parts[:-1]  # where a relative import starts (a package's __init__: itself)
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parent_package[: len(parent_package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return frozenset(out)


def import_closure(paths: Iterable[Path], package: Path = PACKAGE) -> set[Path]:
    """Every package source file the given files import, directly or not (packages' ``__init__`` too)."""
    todo, seen = list(paths), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path, package):
            names = module.split(".")
            for i in range(1, len(names) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = module_file(".".join(names[:i]), package)
                if found is not None and found.is_file():
                    todo.append(found)
    return {p for p in seen if p.resolve().is_relative_to(package.resolve())}


def module_source(module: str) -> Path | None:
    """The source file of an importable module outside the package (a plugin's), or None (importing
    its parent packages, which a plugin's have been already)."""
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


@lru_cache(maxsize=None)
def code_hash(*sources: str) -> str:
    """sha256 of the package files that ``sources`` (script paths or module names) run, and of the
    non-package modules among them (plugins); names relative to the package, so a copy of the
    workflow elsewhere has the same hash."""
    paths = [Path(s) if s.endswith(".py") else module_file(s) or module_source(s) for s in sources]
    files = {p.resolve() for p in paths if p is not None}
    closure = import_closure(sorted(files)) | {p for p in files if not p.is_relative_to(PACKAGE)}
    digest = hashlib.sha256()
    for path in sorted(closure, key=_name):
        digest.update(_name(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _name(path: Path) -> str:
    """A file's name in the hash: relative to the package, else ``script:<file name>`` (never equal to a
    package module's: the order of the hashed files must not depend on set order)."""
    return path.relative_to(PACKAGE).as_posix() if path.is_relative_to(PACKAGE) else f"script:{path.name}"
