"""The ``gloro`` loss (Lipschitz networks): GloRo's bottom logit with the network's Lipschitz bound
(:mod:`tokencert.lipschitz`; see :mod:`tokencert.objectives`). Registered there by name, so only the
jobs that train with it run, and depend on, the certificate code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..lipschitz import margin_lipschitz
from . import Loss, Objective


def gloro(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
          scale: torch.Tensor | None, progress: float) -> Loss:
    """Cross-entropy over the classes and the bottom logit ``max_{j != y} z_j + sqrt(2) L eps`` at ``progress``."""
    logits = model(x)
    lip = margin_lipschitz(model, scale, nominal=True)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
    bottom = others.max(dim=1, keepdim=True).values + lip * objective.eps * objective.schedule(progress)
    return F.cross_entropy(torch.cat([logits, bottom], dim=1), y), logits
