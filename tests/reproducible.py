"""Comparing two runs of the same parameters: every output file byte for byte, but for the wall-clock
fields (``tokencert.io.WALL_CLOCK``) and the files that carry them or a creation date."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tokencert.io import without_wall_clock

NOT_COMPARED = ("results/report/report.tex", "results/report/report.log", "results/report/tables/cost.",
                "results/report/tables/landscape")
"""Files with wall-clock numbers in them (the cost and landscape tables' seconds, the report that
includes them, the LaTeX log's dates and build folder); PDFs carry a creation date and are not compared
either (their figures' PNGs are)."""


def comparable(path: Path) -> Any:
    """A file's content without its wall-clock fields."""
    if path.suffix == ".json":
        return without_wall_clock(json.loads(path.read_text()))
    if path.suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t" if path.suffix == ".tsv" else ","))
        return [without_wall_clock(row) for row in rows]
    return path.read_bytes()


def differences(a: Path, b: Path, within_first: bool = False) -> list[str]:
    """Files of ``data/`` and ``results/`` that differ between two workflow directories (or exist in one;
    ``within_first``: that ``a`` lacks are not counted, ``a`` being a run of some of ``b``'s targets)."""
    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for top in ("data", "results") for p in (root / top).rglob("*")
                if p.is_file() and p.suffix != ".pdf" and not p.relative_to(root).as_posix().startswith(NOT_COMPARED)}

    names_a, names_b = files(a), files(b)
    out = sorted(names_a - names_b if within_first else names_a ^ names_b)
    out += [n for n in sorted(names_a & names_b) if comparable(a / n) != comparable(b / n)]
    return out
