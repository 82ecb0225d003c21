"""L2 projected gradient descent with random start and restarts, keeping the best iterate.

The gradient comes from ``grad_model`` (the model itself, or a straight-through surrogate
of a discrete model); every iterate is judged on the hard ``model``. Per sample the
result is the first iterate that fools the hard model, else the iterate of highest hard
loss: the best, not the last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import channel_view, check_attack_params, norms, project


def random_start(x0: torch.Tensor, eps: float, scale: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random direction at a uniformly random radius in the eps ball, clipped to the box."""
    u = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
    u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    radius = eps * torch.rand(x0.shape[0], generator=gen, dtype=x0.dtype).to(x0.device).view(-1, 1, 1, 1)
    return project(x0, x0 + channel_view(scale, x0) * u * radius, eps, scale)


def pgd(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
        restarts: int, gen: torch.Generator, scale: torch.Tensor | None = None,
        grad_model: nn.Module | None = None) -> torch.Tensor:
    """Adversarial images within ``||delta / s|| <= eps`` (best per sample over steps and restarts).

    ``step_size`` is relative: each step moves ``step_size * eps / steps``.
    """
    check_attack_params(eps=eps, steps=steps)
    grad_model = grad_model or model
    if eps == 0:
        return x0.clone()
    s = channel_view(scale, x0)
    alpha = step_size * eps / steps
    best = x0.clone()
    best_loss = torch.full((x0.shape[0],), -torch.inf, device=x0.device)
    fooled = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    for _ in range(restarts):
        x = random_start(x0, eps, scale, gen)
        for _ in range(steps + 1):
            with torch.no_grad():
                logits = model(x)
                loss = F.cross_entropy(logits, y, reduction="none")
                wrong = logits.argmax(1) != y
                better = ~fooled & (wrong | (loss > best_loss))
                best[better] = x[better]
                best_loss = torch.where(better, loss, best_loss)
                fooled |= wrong
            if fooled.all():
                return best
            x = x.detach().requires_grad_(True)
            loss = F.cross_entropy(grad_model(x), y)
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True) if loss.requires_grad else (None,)
            if grad is None:  # no gradient reaches the input (a plain discrete classifier): masking,
                break  # the iterate would never move from its random start
            with torch.no_grad():
                g = grad * s  # gradient with respect to u = delta / s
                g = g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
                x = project(x0, x + alpha * s * g, eps, scale)
    assert bool((norms(best - x0, scale) <= eps * (1 + 1e-5) + 1e-6).all())
    return best
