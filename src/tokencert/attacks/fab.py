"""FAB (Croce & Hein 2020), L2, from torchattacks: a minimum-norm attack.

Where the other attacks look for any adversarial example within each eps, FAB looks for the
smallest one: it linearizes the classifier's decision boundaries around the current iterate,
steps to the nearest one's projection and biases back towards the original image. Run once at
the grid's largest eps, its examples decide every smaller eps (a verified example of norm
``<= eps`` breaks the image at that eps), and their norms are the per-image upper bound of the
robustness bracket. On a token classifier the gradients come from the straight-through identity
surrogate (BPDA), every forward value is the hard ``f(Q(x))``. torchattacks measures L2 in pixel
space; in scaled units the attack uses ``eps * min_c s_c`` (as APGD and Square).
"""

from __future__ import annotations

import torch
from torch import nn


def fab(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, steps: int, restarts: int, seed: int,
        scale: torch.Tensor | None = None) -> torch.Tensor:
    """Minimum-norm adversarial images (the original where none within ``eps`` was found)."""
    import torchattacks

    if eps == 0 or x0.shape[0] == 0:
        return x0.clone()
    with torch.no_grad():
        classes = model(x0[:1]).shape[1]
    pixel_eps = eps * (1.0 if scale is None else float(scale.min()))
    attack = torchattacks.FAB(model, norm="L2", eps=pixel_eps, steps=steps, n_restarts=restarts, seed=seed,
                              n_classes=classes)
    with torch.enable_grad():
        adv = attack(x0.contiguous(), y)
    return adv.detach().clamp(0.0, 1.0)
