"""Deterministic certificates of Lipschitz networks (the GloRo / Lipschitz-margin baseline).

If every logit vector satisfies ``||z(x + delta) - z(x)||_2 <= L ||delta||_2``, each difference
``z_y - z_j`` changes by at most ``sqrt(2) L ||delta||_2``, so the prediction ``y`` holds within

    R = (z_y - max_{j != y} z_j) / (sqrt(2) L).

``L`` is computed soundly from the network as it is: the product over its layers of each layer's
L2 operator norm, the exact spectral norm of a dense layer's weight (float64 SVD, raised by a
relative ``1e-9`` against rounding), ``1 / min(std)`` for the input normalization, 1 for the
1-Lipschitz activations; any other layer is refused by name. The margin is the deployed network's
(float32), lowered by :data:`MARGIN_SLACK` relative to the logits. In the dataset's units a
perturbation has size ``||delta / s||``, so ``||delta|| <= max(s) r`` and ``R`` is divided by
``max(s)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .models import MaxMin, Normalize, layers, logit_margin

MARGIN_SLACK = 1e-5
ONE_LIPSCHITZ = (MaxMin, nn.ReLU, nn.Flatten, nn.Identity)


def _orthogonal(layer: nn.Module) -> bool:
    """Whether ``layer.weight`` comes from torch's orthogonal parametrization."""
    if not nn.utils.parametrize.is_parametrized(layer, "weight"):
        return False
    return any(type(p).__name__ == "_Orthogonal" for p in layer.parametrizations["weight"])


def lipschitz_constant(net: nn.Module, *, nominal: bool = False) -> float:
    """A sound upper bound on the L2 Lipschitz constant of ``net`` (see the module docstring).

    ``nominal``: orthogonally parametrized layers count as 1 without an SVD (training, every step;
    their norm is 1 up to rounding); never for a certificate."""
    bound = 1.0
    for layer in layers(net):
        if nominal and _orthogonal(layer):
            continue
        if isinstance(layer, nn.Linear):
            norm = float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
            bound *= norm * (1 + 1e-9)
        elif isinstance(layer, Normalize):
            bound /= float(layer.std.min())
        elif not isinstance(layer, ONE_LIPSCHITZ):
            raise ValueError(f"unsupported layer {type(layer).__name__} for Lipschitz certificates "
                             f"(supported: Linear, Normalize, {', '.join(t.__name__ for t in ONE_LIPSCHITZ)})")
    return bound


def margin_lipschitz(net: nn.Module, scale: torch.Tensor | None = None, *, nominal: bool = False) -> float:
    """The Lipschitz constant of each logit difference ``z_y - z_j`` in the dataset's units:
    ``sqrt(2) L max(s)`` (module docstring); ``nominal`` as for :func:`lipschitz_constant`."""
    return lipschitz_constant(net, nominal=nominal) * math.sqrt(2.0) * (1.0 if scale is None else float(scale.max()))


@torch.no_grad()
def margin_radius(net: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None = None,
                  batch: int = 1000) -> torch.Tensor:
    """Certified radius per image (float64; 0 when misclassified) of the Lipschitz network ``net``."""
    lip = margin_lipschitz(net, scale)
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, x.shape[0], batch):
        z = net(x[start:start + batch]).double()
        margin = logit_margin(z, y[start:start + batch].to(z.device)) - MARGIN_SLACK * (1 + z.abs().max(dim=1).values)
        out.append((margin / lip).clamp(min=0.0).cpu())
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
