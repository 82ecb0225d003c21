"""The report: tables (LaTeX), figures (PDF/PNG) and the document."""

from .document import build

__all__ = ["build"]
