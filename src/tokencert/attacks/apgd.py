"""Auto-PGD (Croce & Hein 2020), L2, with the cross-entropy or the DLR loss, from torchattacks.

APGD adapts its step size from the progress of the loss, so it needs no step-size tuning, and
DLR is invariant to the scale of the logits; the two are the white-box half of AutoAttack, by
which the literature (RobustBench) judges adversarially trained models. On a token classifier
the gradient comes from the straight-through identity surrogate (BPDA, as in the suite's
``bpda``) while every forward value is the hard ``f(Q(x))``. torchattacks measures L2 in pixel
space; in scaled units the attack uses the largest pixel ball inside the budget's ellipsoid
(``eps * min_c s_c``), a valid (weaker) attack, as for Square.

Random starts are seeded per image (:func:`tokencert.attacks.base.image_seed` of the run's seed,
the image's key and the restart): torchattacks draws one ``torch.randn(x.shape)`` for the whole
batch, so an image's start would depend on which other images stand beside it (the eps walk and the
cascade shrink the batch).
With its own seed, an image's result is the one torchattacks' APGD gives for that image alone with
that seed, whatever the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch
from torch import nn

from .base import image_noise

LOSSES = ("ce", "dlr")


@contextmanager
def _start_from(noise: torch.Tensor) -> Iterator[None]:
    """Within the block, ``torch.randn`` of ``noise``'s shape returns ``noise`` (torchattacks' APGD draws its
    L2 start so and has no argument for it); every other call draws as usual."""
    draw = torch.randn

    def randn(*size, **kwargs):  # noqa: ANN002, ANN003 (torch.randn's own signature)
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        return noise.clone() if shape == tuple(noise.shape) and not kwargs else draw(*size, **kwargs)

    with mock.patch.object(torch, "randn", randn):
        yield


def apgd(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, loss: str, steps: int, restarts: int,
         seed: int, scale: torch.Tensor | None = None, keys: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial images from L2 APGD with ``loss`` (``ce`` or ``dlr``) on ``model`` (differentiable).

    ``keys``: each image's identity for its random start (default: its position); restart ``r`` attacks
    the images no earlier restart fooled, from starts seeded with ``(seed, key, r)``.
    """
    import torchattacks

    if loss not in LOSSES:
        raise ValueError(f"APGD loss must be one of {LOSSES}, got {loss!r}")
    if eps == 0 or x0.shape[0] == 0:
        return x0.clone()
    with torch.no_grad():
        logits = model(x0)
    if loss == "dlr" and logits.shape[1] < 3:
        raise ValueError(f"APGD-DLR needs at least 3 classes (its loss uses the third-largest logit), "
                         f"got {logits.shape[1]}")
    standing = logits.argmax(1) == y
    keys = torch.arange(x0.shape[0]) if keys is None else keys.cpu()
    pixel_eps = eps * (1.0 if scale is None else float(scale.min()))
    attack = torchattacks.APGD(model, norm="L2", eps=pixel_eps, steps=steps, n_restarts=1, seed=seed,
                               loss=loss, rho=0.75, verbose=False)
    adv = x0.clone()
    for restart in range(restarts):
        todo = standing.nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        noise = image_noise(tuple(x0[todo].shape), seed, keys[todo.cpu()], restart)
        with torch.enable_grad(), _start_from(noise):
            found = attack(x0[todo].contiguous(), y[todo]).detach()
        with torch.no_grad():
            fooled = model(found).argmax(1) != y[todo]
        adv[todo[fooled]] = found[fooled]
        standing[todo[fooled]] = False
    return adv.clamp(0.0, 1.0)
