"""The certified-training losses: ``flipset`` (token classifiers, the flip-set bounds of
:mod:`tokencert.setcert`) and ``gloro`` (Lipschitz networks, :mod:`tokencert.lipschitz`); see
:mod:`tokencert.objectives` for both. Registered by name there, so only the jobs that train with them
run (and depend on) the certificate code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..lipschitz import margin_lipschitz
from ..models import DiscreteClassifier
from ..setcert import deviation_box, flip_budget, geometry, margin_bounds, tokenized
from . import Loss, Objective

WARMUP, RAMP = 0.2, 0.7  # clean training until WARMUP, then radius and robust weight ramp up until RAMP


def flipset(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
            scale: torch.Tensor | None, progress: float) -> Loss:
    """The ``flipset`` loss at training ``progress``."""
    return _flipset(model, x, y, objective.eps, scale, progress)


def gloro(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
          scale: torch.Tensor | None, progress: float) -> Loss:
    """The ``gloro`` loss at training ``progress``."""
    return _gloro(model, x, y, objective.eps, scale, progress)


def _flipset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, scale: torch.Tensor | None,
             progress: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``flipset`` loss (module docstring) at training ``progress`` in [0, 1]."""
    if not isinstance(model, DiscreteClassifier):
        raise ValueError("objective flipset needs a token classifier")
    logits = model(x)
    clean = F.cross_entropy(logits, y)
    ramp = _ramp(progress)
    if ramp == 0:
        return clean, logits
    radius = eps * ramp
    geo = geometry(x.detach().cpu(), model.vocab, None if scale is None else scale.cpu())
    lo, hi, _ = deviation_box(geo, radius)
    center = tokenized(geo, model.vocab, x.shape[-2:]).to(x)
    lower = margin_bounds(model.net, model.vocab, center, lo.to(x), hi.to(x),
                          flip_budget(geo.patch_radii, radius).to(x.device), y)
    worst = -lower.masked_fill(lower.isinf(), 0.0)  # upper bounds of z_j - z_y, 0 at y
    kappa = 1.0 - 0.5 * ramp
    return kappa * clean + (1 - kappa) * F.cross_entropy(worst, y), logits


def _ramp(progress: float) -> float:
    """The certified-training schedule: 0 until WARMUP, then linear to 1 at RAMP."""
    return min(1.0, max(0.0, progress - WARMUP) / (RAMP - WARMUP))


def _gloro(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, scale: torch.Tensor | None,
           progress: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``gloro`` loss (module docstring) at training ``progress``."""
    logits = model(x)
    lip = margin_lipschitz(model, scale, nominal=True)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
    bottom = others.max(dim=1, keepdim=True).values + lip * eps * _ramp(progress)
    return F.cross_entropy(torch.cat([logits, bottom], dim=1), y), logits
