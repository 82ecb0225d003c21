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

from ..certificates import CERTIFICATES, by_folder
from ..config import Plan
from ..io import read_json

# Groups of report inputs: result files results/<dataset>/<stage>/... (docs/design.md "Files");
# "certificates" and "brackets" hold every certificate of the family (tokencert.certificates)
GROUPS = ("manifests", "vocab", "certify", "finals", "smoothing", "certificates", "attacks", "brackets", "examples")


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
    certs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # certificate -> model -> summary
    attacks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model -> attack -> summary
    # certificate -> model -> (certified radius, attack upper bound) per image: the bracket
    brackets: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    examples: dict[str, Path] = field(default_factory=dict)  # "vocab", "test", "maps": the example figure's files

    def certificates(self, model: str) -> dict[str, dict[str, Any]]:
        """The certificate summaries of ``model`` by certificate name, in registry order (weakest first)."""
        return {name: self.certs[name][model] for name in CERTIFICATES if model in self.certs.get(name, {})}

    def certificate(self, name: str, model: str) -> dict[str, Any] | None:
        """One certificate summary of ``model``, if computed."""
        return self.certs.get(name, {}).get(model)

    def deterministic(self, model: str) -> dict[str, dict[str, Any]]:
        """``model``'s certificates without those another computed one refines (``R_0`` where ``R_2`` is)."""
        computed = self.certificates(model)
        refined = {r for name in computed for r in CERTIFICATES[name].refines}
        return {name: s for name, s in computed.items() if name not in refined}


def collect(plan: Plan, files: Mapping[str, Sequence[str | Path]]) -> list[DatasetResults]:
    """Results of every dataset of the plan, read from ``files`` (groups of :data:`GROUPS`)."""
    unknown = set(files) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown report input groups {sorted(unknown)} (known: {', '.join(GROUPS)})")
    # per-classifier results in path order (models, then sigmas / attacks), vocabularies in plan order
    ordered = ("finals", "smoothing", "certificates", "attacks", "brackets")
    paths = {group: [Path(p) for p in files.get(group, [])] for group in GROUPS}
    paths.update({group: sorted(paths[group]) for group in ordered})
    out = {}
    for path in paths["manifests"]:  # data/<dataset>/manifest.json
        name = path.parts[-2]
        out[name] = DatasetResults(name, read_json(path), plan.datasets[name].units)
    for group in ("vocab", "certify"):
        for path in paths[group]:  # results/<dataset>/<stage>/<name>.json
            getattr(out[path.parts[-3]], group)[path.stem] = read_json(path)
    for path in paths["certificates"]:  # results/<dataset>/<certificate folder>/<model>.json
        out[path.parts[-3]].certs.setdefault(by_folder(path.parts[-2]).name, {})[path.stem] = read_json(path)
    for path in paths["finals"]:  # results/<dataset>/models/<model>/final.json
        out[path.parts[-4]].models[path.parts[-2]] = read_json(path)
    for path in paths["smoothing"]:  # results/<dataset>/smooth/<model>/sigma-<s>.json
        summary = read_json(path)
        out[path.parts[-4]].smoothing.setdefault(path.parts[-2], {})[float(summary["sigma"])] = summary
    for path in paths["attacks"]:  # results/<dataset>/attacks/<model>/<attack>.json
        out[path.parts[-4]].attacks.setdefault(path.parts[-2], {})[path.stem] = read_json(path)
    for path in paths["brackets"]:  # results/<dataset>/<certificate folder>/<model>.csv
        table = np.genfromtxt(path, delimiter=",", names=True)
        out[path.parts[-3]].brackets.setdefault(by_folder(path.parts[-2]).label, {})[path.stem] = (
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
    """Robust accuracy of ``model`` under ``attack`` (or ``worst``) at ``eps``, if that was run. In a cascade
    an attack's own outcome is cumulative (every attack before it too), so this is the attack alone, on the
    cascade's check images (:mod:`tokencert.attacks.cascade`)."""
    summary = d.attacks.get(model, {}).get(attack)
    if summary is not None and "alone" in summary:
        summary = {"eps": summary["eps"], "robust_accuracy": summary["alone"]["robust_accuracy"]}
    return None if summary is None or summary["robust_accuracy"] is None else at(
        summary["robust_accuracy"], summary["eps"], eps)


def cascade_images(d: DatasetResults) -> int | None:
    """The check images of the dataset's cascaded attacks (each attack alone), ``None`` without a cascade."""
    counts = {s["alone"]["n_images"] for attacks in d.attacks.values() for s in attacks.values() if "alone" in s}
    return min(counts) if counts else None
