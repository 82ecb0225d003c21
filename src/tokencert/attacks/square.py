"""Gradient-free Square attack (L2) from torchattacks, on the hard model.

torchattacks measures L2 in pixel space; in scaled units the attack uses the largest pixel
ball inside the budget's ellipsoid (``eps * min_c s_c``), which is a valid (weaker) attack.
"""

from __future__ import annotations

import torch
from torch import nn


def square(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, queries: int, p_init: float,
           seed: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial images from the L2 Square attack with ``queries`` model queries."""
    import torchattacks

    if eps == 0:
        return x0.clone()
    pixel_eps = eps * (1.0 if scale is None else float(scale.min()))
    attack = torchattacks.Square(model, norm="L2", eps=pixel_eps, n_queries=queries, n_restarts=1,
                                 p_init=p_init, loss="margin", resc_schedule=True, seed=seed, verbose=False)
    with torch.enable_grad():
        adv = attack(x0.contiguous(), y)  # torchattacks' Square reshapes with .view
    return adv.detach().clamp(0.0, 1.0)
