"""Attack outcomes and their files: the per-sample CSV (keyed by test-set index) and the summary JSON.

Outside the ``attacks`` package on purpose: certificate jobs read the attacks' CSVs (the bracket), and a
job's code is the import closure of its script (``tokencert.provenance``), so importing these from
``attacks`` made every certificate job stale whenever any attack changed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .io import read_columns, write_columns, write_json


@dataclass
class AttackOutcome:
    """Per sample and eps: still correct after the attack; smallest fooling norm seen (inf if none)."""

    eps: list[float]
    correct: torch.Tensor  # n_eps x N bool, judged on the hard model
    min_norm: torch.Tensor  # N, smallest norm of a verified adversarial example
    checks: dict[str, bool] = field(default_factory=dict)

    def robust_accuracy(self) -> list[float]:
        """Fraction still correct at each eps."""
        return self.correct.to(torch.float64).mean(dim=1).tolist()


def eps_column(eps: float) -> str:
    """CSV column holding 'still correct at eps'."""
    return f"correct@{eps:g}"


def write_outcome(csv_path: str | os.PathLike[str], json_path: str | os.PathLike[str], outcome: AttackOutcome,
                  indices: torch.Tensor, labels: torch.Tensor, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Write the per-sample CSV and the summary JSON (``summary`` adds attack, model, params...)."""
    columns = {"idx": indices.tolist(), "label": labels.tolist()}
    for i, eps in enumerate(outcome.eps):
        columns[eps_column(eps)] = outcome.correct[i].to(torch.int64).tolist()
    columns["min_adv_norm"] = outcome.min_norm.tolist()
    write_columns(csv_path, columns)
    out = {**summary, "n_images": len(columns["idx"]), "eps": list(outcome.eps),
           "robust_accuracy": outcome.robust_accuracy(), "sanity": {**outcome.checks, **summary.get("sanity", {})}}
    write_json(json_path, out)
    return out


def read_outcome(csv_path: str | os.PathLike[str]) -> tuple[AttackOutcome, torch.Tensor, torch.Tensor]:
    """(outcome, test-set indices, labels) from a per-sample CSV."""
    columns = read_columns(csv_path)
    eps = [float(c.split("@", 1)[1]) for c in columns if c.startswith("correct@")]
    correct = torch.tensor([[int(v) for v in columns[eps_column(e)]] for e in eps], dtype=torch.bool).reshape(
        len(eps), len(columns["idx"]))
    norms = torch.tensor([float(v) for v in columns["min_adv_norm"]], dtype=torch.float64)
    return (AttackOutcome(eps, correct, norms), torch.tensor([int(v) for v in columns["idx"]]),
            torch.tensor([int(v) for v in columns["label"]]))


def summary_checks(summary: Mapping[str, Any]) -> dict[str, bool]:
    """The sanity checks an attack's summary recorded (within eps, in the box, ...), by name."""
    return {k: v for k, v in summary.get("sanity", {}).items() if isinstance(v, bool)}
