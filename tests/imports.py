"""The import graph of the package as the tests read it: :mod:`tokencert.provenance` on the checkout's sources."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import REPO
from tokencert import provenance

SOURCES = REPO / "src" / "tokencert"


def import_closure(paths: list[Path]) -> set[Path]:
    """Every tokencert source file of the checkout the given files import, directly or not."""
    return provenance.import_closure(paths, SOURCES)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``tokencert.vocab`` for ``vocab/__init__.py``)."""
    out = {}
    for path in sorted(SOURCES.rglob("*.py")):
        parts = ["tokencert", *path.relative_to(SOURCES).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def module_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports directly (dotted names)."""
    known = package_modules()
    return {m for m in provenance.imported_modules(path, SOURCES) if m in known}
