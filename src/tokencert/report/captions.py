"""Captions of the report's figures and tables: one text per kind in the workflow's
``report/captions/<kind>.rst``, shown by the HTML report (``snakemake --report``) and, turned
into LaTeX, by the PDF. The report rule passes that directory in."""

from __future__ import annotations

import os
import re
from pathlib import Path


def caption(kind: str, directory: str | os.PathLike[str]) -> str:
    """The caption text (reStructuredText) of a figure kind or table (``main_table``, ...)."""
    return (Path(directory) / f"{kind}.rst").read_text(encoding="utf-8").strip()


def rst_to_latex(text: str) -> str:
    """The few reStructuredText constructs the captions use (``:math:``, double back-quotes) in
    LaTeX, everything else escaped."""
    from .tables import latex_escape

    parts = re.split(r"(:math:`[^`]*`|``[^`]*``)", text)
    out = []
    for part in parts:
        if part.startswith(":math:`"):
            out.append(f"${part[7:-1]}$")
        elif part.startswith("``"):
            out.append(r"\texttt{" + latex_escape(part[2:-2]) + "}")
        else:
            out.append(latex_escape(part).replace(" sigma", r" $\sigma$").replace(" eps ", r" $\varepsilon$ ")
                       .replace("alpha", r"$\alpha$"))
    return "".join(out)
