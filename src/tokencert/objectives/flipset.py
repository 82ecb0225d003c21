"""The ``flipset`` loss (token classifiers): certified training with the flip-set bounds of
:mod:`tokencert.setcert` (see :mod:`tokencert.objectives`). Registered there by name, so only the jobs
that train with it run, and depend on, the certificate code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import DiscreteClassifier
from ..setcert import deviation_box, flip_budget, geometry, margin_bounds, tokenized
from . import Loss, Objective


def flipset(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
            scale: torch.Tensor | None, progress: float) -> Loss:
    """``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)`` at training ``progress`` in [0, 1]."""
    if not isinstance(model, DiscreteClassifier):
        raise ValueError("objective flipset needs a token classifier")
    logits = model(x)
    clean = F.cross_entropy(logits, y)
    share = objective.schedule(progress)
    if share == 0:
        return clean, logits
    radius = objective.eps * share
    geo = geometry(x.detach().cpu(), model.vocab, None if scale is None else scale.cpu())
    lo, hi, _ = deviation_box(geo, radius)
    center = tokenized(geo, model.vocab, x.shape[-2:]).to(x)
    lower = margin_bounds(model.net, model.vocab, center, lo.to(x), hi.to(x),
                          flip_budget(geo.patch_radii, radius).to(x.device), y)
    worst = -lower.masked_fill(lower.isinf(), 0.0)  # upper bounds of z_j - z_y, 0 at y
    kappa = objective.clean_share(progress)
    return kappa * clean + (1 - kappa) * F.cross_entropy(worst, y), logits
