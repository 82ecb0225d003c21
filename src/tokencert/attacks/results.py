"""Attack outputs: per-sample CSV (keyed by test-set index) and the summary JSON."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from ..io import atomic_path, write_json
from .base import AttackOutcome


def eps_column(eps: float) -> str:
    """CSV column holding 'still correct at eps'."""
    return f"correct@{eps:g}"


def write_outcome(csv_path: str | os.PathLike[str], json_path: str | os.PathLike[str], outcome: AttackOutcome,
                  indices: torch.Tensor, labels: torch.Tensor, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Write the per-sample CSV and the summary JSON (``summary`` adds attack, model, params...)."""
    frame = pd.DataFrame({"idx": indices.tolist(), "label": labels.tolist()})
    for i, eps in enumerate(outcome.eps):
        frame[eps_column(eps)] = outcome.correct[i].to(torch.int64).tolist()
    frame["min_adv_norm"] = outcome.min_norm.tolist()
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    out = {**summary, "n_images": int(len(frame)), "eps": list(outcome.eps),
           "robust_accuracy": outcome.robust_accuracy(), "sanity": {**outcome.checks, **summary.get("sanity", {})}}
    write_json(json_path, out)
    return out


def read_outcome(csv_path: str | os.PathLike[str]) -> tuple[AttackOutcome, torch.Tensor, torch.Tensor]:
    """(outcome, test-set indices, labels) from a per-sample CSV."""
    frame = pd.read_csv(csv_path)
    eps = [float(c.split("@", 1)[1]) for c in frame.columns if c.startswith("correct@")]
    correct = torch.tensor(frame[[eps_column(e) for e in eps]].to_numpy().T, dtype=torch.bool)
    norms = torch.tensor(frame["min_adv_norm"].astype(float).to_numpy(), dtype=torch.float64)
    return (AttackOutcome(eps, correct, norms), torch.tensor(frame["idx"].to_numpy()),
            torch.tensor(frame["label"].to_numpy()))


def summary_checks(summary: Mapping[str, Any]) -> dict[str, bool]:
    """The sanity checks an attack's summary recorded (within eps, in the box, ...), by name."""
    return {k: v for k, v in summary.get("sanity", {}).items() if isinstance(v, bool)}
