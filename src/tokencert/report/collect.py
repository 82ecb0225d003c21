"""Reading the result files of a study into one structure (the only place that knows the keys).

The report reads exactly the files the report rule declares as its inputs (the plan's
results, ``rules/common.smk: report_inputs``), never a glob of ``results/``: results of an
earlier configuration cannot leak in. What the plan did not run (a dataset without
smoothing, a model nobody attacked) becomes ``None`` and renders as '-', never as a crash
or a made-up number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Plan
from ..io import read_json

# Groups of report inputs: result files results/<dataset>/<stage>/... (docs/design.md "Files")
GROUPS = ("manifests", "vocab", "certify", "finals", "smoothing", "certacc", "setcert", "lipcert", "exact",
          "attacks", "brackets", "examples")
BRACKET_METHODS = {"exact": "$R_2$", "setcert": "$R_{set}$", "lipcert": "Lipschitz"}
"""Per-image bracket CSVs (results/<dataset>/<stage>/<model>.csv) by stage: the certificate they hold."""


@dataclass
class DatasetResults:
    """Everything the report shows about one dataset."""

    name: str
    manifest: dict[str, Any]
    units: str = "pixel"
    vocab: dict[str, dict[str, Any]] = field(default_factory=dict)  # quality metrics
    certify: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # final.json
    smoothing: dict[str, dict[float, dict[str, Any]]] = field(default_factory=dict)  # model -> sigma -> summary
    certacc: dict[str, dict[str, Any]] = field(default_factory=dict)  # R_0 summaries
    setcert: dict[str, dict[str, Any]] = field(default_factory=dict)  # flip-set (Rset) summaries
    lipcert: dict[str, dict[str, Any]] = field(default_factory=dict)  # Lipschitz-margin summaries
    exact: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model -> attack -> summary
    # certificate -> model -> (certified radius, attack upper bound) per image: the bracket
    brackets: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    examples: dict[str, Path] = field(default_factory=dict)  # "vocab", "test", "maps": the example figure's files


def collect(plan: Plan, files: Mapping[str, Sequence[str | Path]]) -> list[DatasetResults]:
    """Results of every dataset of the plan, read from ``files`` (groups of :data:`GROUPS`)."""
    unknown = set(files) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown report input groups {sorted(unknown)} (known: {', '.join(GROUPS)})")
    # per-classifier results in path order (models, then sigmas / attacks), vocabularies in plan order
    ordered = ("finals", "smoothing", "certacc", "setcert", "lipcert", "exact", "attacks", "brackets")
    paths = {group: [Path(p) for p in files.get(group, [])] for group in GROUPS}
    paths.update({group: sorted(paths[group]) for group in ordered})
    out = {}
    for path in paths["manifests"]:  # data/<dataset>/manifest.json
        name = path.parts[-2]
        out[name] = DatasetResults(name, read_json(path), plan.datasets[name].units)
    for group in ("vocab", "certify", "certacc", "setcert", "lipcert", "exact"):
        for path in paths[group]:  # results/<dataset>/<stage>/<name>.json
            getattr(out[path.parts[-3]], group)[path.stem] = read_json(path)
    for path in paths["finals"]:  # results/<dataset>/models/<model>/final.json
        out[path.parts[-4]].models[path.parts[-2]] = read_json(path)
    for path in paths["smoothing"]:  # results/<dataset>/smooth/<model>/sigma-<s>.json
        summary = read_json(path)
        out[path.parts[-4]].smoothing.setdefault(path.parts[-2], {})[float(summary["sigma"])] = summary
    for path in paths["attacks"]:  # results/<dataset>/attacks/<model>/<attack>.json
        out[path.parts[-4]].attacks.setdefault(path.parts[-2], {})[path.stem] = read_json(path)
    for path in paths["brackets"]:  # results/<dataset>/<exact|setcert|lipcert>/<model>.csv
        table = np.genfromtxt(path, delimiter=",", names=True)
        out[path.parts[-3]].brackets.setdefault(BRACKET_METHODS[path.parts[-2]], {})[path.stem] = (
            np.atleast_1d(table["certified_radius"]), np.atleast_1d(table["upper_bound"]))
    for path in paths["examples"]:  # results/<dataset>/vocab/<v>.pt, .../certify/<v>.pt, data/<dataset>/test.pt
        if len(path.parts) >= 4 and path.parts[-4] == "results":
            out[path.parts[-3]].examples["vocab" if path.parts[-2] == "vocab" else "maps"] = path
        else:
            out[path.parts[-2]].examples["test"] = path
    return [out[name] for name in plan.datasets if name in out]


def test_accuracy(d: DatasetResults, model: str) -> float | None:
    """Clean test accuracy of a trained classifier."""
    final = d.models.get(model)
    return None if final is None else final.get("test_accuracy")


def at(values: list[float], grid: list[float], point: float) -> float | None:
    """The value at ``point`` of a grid, if the grid has it."""
    for g, v in zip(grid, values, strict=True):
        if abs(g - point) < 1e-12:
            return v
    return None


def attack_accuracy(d: DatasetResults, model: str, attack: str, eps: float) -> float | None:
    """Robust accuracy of ``model`` under ``attack`` (or ``worst``) at ``eps``, if that was run."""
    summary = d.attacks.get(model, {}).get(attack)
    return None if summary is None else at(summary["robust_accuracy"], summary["eps"], eps)
