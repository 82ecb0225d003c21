"""The report: tables (LaTeX), figures (PDF/PNG) and the document."""

from __future__ import annotations

from typing import Any

__all__ = ["build"]


def __getattr__(name: str) -> Any:
    """``build`` imported when first asked for: the workflow reads only the table names
    (``report.outputs``) when it starts, and the document's imports (scipy, matplotlib) cost every
    Snakemake start, each dry run and each cluster job's, about a second."""
    if name == "build":
        from .document import build

        return build
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
