"""Reading every result file of a study into one structure (the only place that knows the keys).

Missing pieces (a dataset without smoothing, a model nobody attacked) become ``None`` and
render as '-', never as a crash or a made-up number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as tc
from ..io import read_json


def _json(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


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
    certacc: dict[str, dict[str, Any]] = field(default_factory=dict)
    exact: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model -> attack -> summary

    def smoothing_sigmas(self, config: dict[str, Any]) -> list[float]:
        """The smoothing sigma grid of this dataset."""
        return [float(s) for s in tc.dataset_section(config, self.name, "smoothing")["sigmas"]]


def collect(config: dict[str, Any], root: Path = Path(".")) -> list[DatasetResults]:
    """Results of every dataset of the study, read from ``root``."""
    out = []
    for dataset in config["study"]["datasets"]:
        res = root / "results" / dataset
        manifest = _json(root / "data" / dataset / "manifest.json")
        if manifest is None:
            continue
        d = DatasetResults(dataset, manifest, tc.dataset_units(config, dataset))
        for vocab in tc.vocabulary_recipes(config):
            for store, sub in ((d.vocab, "vocab"), (d.certify, "certify")):
                if (found := _json(res / sub / f"{vocab}.json")) is not None:
                    store[vocab] = found
        for path in sorted((res / "models").glob("*/final.json")):
            d.models[path.parent.name] = read_json(path)
        for path in sorted((res / "smooth").glob("*/sigma-*.json")):
            summary = read_json(path)
            d.smoothing.setdefault(path.parent.name, {})[float(summary["sigma"])] = summary
        for store, sub in ((d.certacc, "certacc"), (d.exact, "exact")):
            for path in sorted((res / sub).glob("*.json")):
                store[path.stem] = read_json(path)
        for path in sorted((res / "attacks").glob("*/*.json")):
            d.attacks.setdefault(path.parent.name, {})[path.stem] = read_json(path)
        out.append(d)
    return out


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
