"""The report's PDF table names, which the workflow reads when it starts (no heavy imports here:
every Snakemake start, dry run and cluster job parses the rules)."""

from __future__ import annotations

from collections.abc import Sequence

LANDSCAPE_PARTS = {"radii": ("clean", "cert", "worst"),
                   "evaluation": ("verified", "worst_eps", "bracket", "closed", "seconds")}
"""The landscape in the PDF: two tables per dataset (parts, readable at print size) and their column groups."""


def pdf_table_names(datasets: Sequence[str]) -> list[str]:
    """The LaTeX tables of the PDF, ``tables/<name>.tex`` (the report rule's outputs)."""
    return ([f"main-{d}" for d in datasets] + [f"landscape-{d}-{p}" for d in datasets for p in LANDSCAPE_PARTS]
            + ["vocab", "cost", "published"])
