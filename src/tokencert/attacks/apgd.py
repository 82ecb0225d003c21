"""Auto-PGD (Croce & Hein 2020), L2, with the cross-entropy or the DLR loss, from torchattacks.

APGD adapts its step size from the progress of the loss, so it needs no step-size tuning, and
DLR is invariant to the scale of the logits; the two are the white-box half of AutoAttack, by
which the literature (RobustBench) judges adversarially trained models. On a token classifier
the gradient comes from the straight-through identity surrogate (BPDA, as in the suite's
``bpda``) while every forward value is the hard ``f(Q(x))``. torchattacks measures L2 in pixel
space; in scaled units the attack uses the largest pixel ball inside the budget's ellipsoid
(``eps * min_c s_c``), a valid (weaker) attack, as for Square.
"""

from __future__ import annotations

import torch
from torch import nn

LOSSES = ("ce", "dlr")


def apgd(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, loss: str, steps: int, restarts: int,
         seed: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial images from L2 APGD with ``loss`` (``ce`` or ``dlr``) on ``model`` (differentiable)."""
    import torchattacks

    if loss not in LOSSES:
        raise ValueError(f"APGD loss must be one of {LOSSES}, got {loss!r}")
    if eps == 0 or x0.shape[0] == 0:
        return x0.clone()
    if loss == "dlr":
        with torch.no_grad():
            classes = model(x0[:1]).shape[1]
        if classes < 3:
            raise ValueError(f"APGD-DLR needs at least 3 classes (its loss uses the third-largest logit), "
                             f"got {classes}")
    pixel_eps = eps * (1.0 if scale is None else float(scale.min()))
    attack = torchattacks.APGD(model, norm="L2", eps=pixel_eps, steps=steps, n_restarts=restarts, seed=seed,
                               loss=loss, rho=0.75, verbose=False)
    with torch.enable_grad():
        adv = attack(x0.contiguous(), y)
    return adv.detach().clamp(0.0, 1.0)
