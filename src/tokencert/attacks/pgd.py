"""L2 projected gradient descent with random start and restarts, keeping the best iterate.

The gradient comes from ``grad_model`` (the model itself, or a straight-through surrogate
of a discrete model, whose forward value is exactly the hard model's); every iterate is
judged on those hard logits. Per sample the result is the first iterate that fools the
model, else the iterate of highest loss: the best, not the last. A fooled sample leaves the
batch, so later steps and restarts only attack the samples still standing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..units import channel_view, norms, project
from .base import check_attack_params, image_draws


def random_start(x0: torch.Tensor, eps: float, scale: torch.Tensor | None, seed: int, keys: torch.Tensor,
                 restart: int = 0) -> torch.Tensor:
    """A uniformly random direction at a uniformly random radius in the eps ball, clipped to the box; each
    image's drawn from its own seed (:func:`tokencert.attacks.base.image_seed` of ``seed``, its key and the
    restart), so its start does not depend on the other images of the batch."""
    direction, uniform = image_draws(tuple(x0.shape), seed, keys, restart)
    u = direction.to(x0.device, x0.dtype)
    u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    radius = eps * uniform.to(x0.device, x0.dtype).view(-1, 1, 1, 1)
    return project(x0, x0 + channel_view(scale, x0) * u * radius, eps, scale)


def pgd(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
        restarts: int, seed: int, scale: torch.Tensor | None = None, grad_model: nn.Module | None = None,
        keys: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial images within ``||delta / s|| <= eps`` (best per sample over steps and restarts).

    ``step_size`` is relative: each step moves ``step_size * eps / steps``. ``grad_model``
    must compute the same forward value as ``model`` (default: ``model`` itself). ``keys``: each
    image's identity for its random starts (default: its position).
    """
    check_attack_params(eps=eps, steps=steps)
    grad_model = grad_model or model
    if eps == 0:
        return x0.clone()
    s = channel_view(scale, x0)
    alpha = step_size * eps / steps
    best = x0.clone()
    best_loss = torch.full((x0.shape[0],), -torch.inf, device=x0.device, dtype=x0.dtype)
    fooled = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    keys = torch.arange(x0.shape[0]) if keys is None else keys.cpu()
    for restart in range(restarts):
        active = (~fooled).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        x = random_start(x0[active], eps, scale, seed, keys[active.cpu()], restart)
        for step in range(steps + 1):
            x = x.detach().requires_grad_(True)
            logits = grad_model(x)
            loss = F.cross_entropy(logits, y[active], reduction="none")
            with torch.no_grad():
                wrong = logits.argmax(1) != y[active]
                better = wrong | (loss > best_loss[active])
                best[active[better]] = x[better]
                best_loss[active[better]] = loss[better]
                fooled[active[wrong]] = True
            standing = ~wrong
            if step == steps or not standing.any() or not loss.requires_grad:
                break  # no gradient reaches the input (a plain discrete classifier): masking
            (grad,) = torch.autograd.grad(loss[standing].sum(), x, allow_unused=True)
            if grad is None:
                break
            with torch.no_grad():
                g = grad[standing] * s  # gradient with respect to u = delta / s
                g = g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
                active = active[standing]
                x = project(x0[active], x[standing] + alpha * s * g, eps, scale)
    assert bool((norms(best - x0, scale) <= eps * (1 + 1e-5) + 1e-6).all())
    return best
