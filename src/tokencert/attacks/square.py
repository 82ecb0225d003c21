"""Gradient-free L2 Square attack (Andriushchenko et al. 2020) on the hard model, batched over images
and eps values.

Written here rather than taken from torchattacks (which the suite used before): torchattacks' Square
takes one eps per call, so the eps walk ran one small forward pass per query *and eps*, and it rebuilds
its window pattern with a Python loop at every query. This one gives every row its own eps: all the
(image, eps) pairs a job leaves standing share one forward pass per query step, and a row stops as soon
as its image is broken at an eps no larger than its own (the balls are nested, so that example decides
it). The update is torchattacks' L2 step, step by step (margin loss, its rescaled p schedule, the
initial tiling, the two windows), so one row alone follows the same algorithm; the random draws come
from a seeded CPU generator (device-agnostic, reproducible), shared by the batch as torchattacks' are.

In scaled units the attack uses the largest pixel ball inside the budget's ellipsoid
(``eps * min_c s_c``), which is a valid (weaker) attack.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn
from tqdm import tqdm

from ..models import logit_margin


def p_selection(p_init: float, step: int, queries: int) -> float:
    """The share of the image a window covers at query ``step`` (the schedule rescaled to 10,000 queries)."""
    it = int(step / queries * 10000)
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                           (8000, 256)):
        if it <= bound:
            return p_init / divisor
    return p_init / 512


@lru_cache(maxsize=None)
def _rectangles(rows: int, cols: int) -> torch.Tensor:
    """Nested rectangles around the centre weighted 1 / (ring + 1)^2, unit L2 norm."""
    delta = torch.zeros(rows, cols)
    r, c = rows // 2, cols // 2
    for ring in range(max(rows // 2 + 1, cols // 2 + 1)):
        delta[max(r, 0):min(r + 2 * ring + 1, rows), max(c, 0):min(c + 2 * ring + 1, cols)] += 1.0 / (ring + 1) ** 2
        r, c = r - 1, c - 1
    return delta / delta.norm()


@lru_cache(maxsize=None)
def _window(s: int) -> torch.Tensor:
    """The s x s pattern: rectangles on the top half, their negatives on the bottom half, unit norm."""
    delta = torch.cat([_rectangles(s // 2, s), -_rectangles(s - s // 2, s)])
    return delta / delta.norm()


def _eta(s: int, gen: torch.Generator) -> torch.Tensor:
    """The window pattern, transposed with probability 1/2."""
    return _window(s).t() if torch.rand(1, generator=gen).item() > 0.5 else _window(s)


def _signs(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.sign(2 * torch.rand(shape, generator=gen) - 1)


def _unit(delta: torch.Tensor) -> torch.Tensor:
    return delta / (delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)


@torch.no_grad()
def square(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, queries: int,
           p_init: float, seed: int, scale: torch.Tensor | None = None,
           groups: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial images from the L2 Square attack with ``queries`` model queries per row; ``eps`` is one
    budget or one per row. ``groups``: rows with the same group are the same image at different eps; a row
    stops once a row of its group with an eps no larger than its own fooled the model."""
    n, c, h, w = x0.shape
    if n == 0:
        return x0.clone()
    device = x0.device
    budget = torch.as_tensor(eps, dtype=torch.float32).flatten().expand(n).clone()
    budget *= 1.0 if scale is None else float(scale.min())
    group = torch.arange(n) if groups is None else groups.cpu()
    gen = torch.Generator().manual_seed(int(seed))
    x0 = x0.contiguous()
    radius = budget.to(device).view(-1, 1, 1, 1)

    s = h // 5  # initial tiling with vertical stripes of windows (torchattacks' L2 initialisation)
    start = (h - s * 5) // 2
    delta = torch.zeros(n, c, h, w)
    for vh in range(start, start + s * (h // s), s):
        for vw in range(start, start + s * (w // s), s):
            delta[:, :, vh:vh + s, vw:vw + s] += _eta(s, gen).view(1, 1, s, s) * _signs((n, c, 1, 1), gen)
    best = (x0 + _unit(delta.to(device)) * radius).clamp(0.0, 1.0)
    margin = logit_margin(model(best).float(), y).cpu()
    broken = torch.full((int(group.max()) + 1,), math.inf)  # smallest eps that fooled the group

    def settle() -> torch.Tensor:
        fooled = margin <= 0
        broken.scatter_reduce_(0, group[fooled], budget[fooled], "amin")
        return ((~fooled) & (budget > 0) & (budget < broken[group])).nonzero().squeeze(1)

    features = c * h * w
    for step in tqdm(range(queries), desc="square (queries)", mininterval=2.0, leave=False):
        todo = settle()
        if todo.numel() == 0:
            break
        idx = todo.to(device)
        xc, xb, r = x0[idx], best[idx], radius[idx]
        cur = xb - xc
        s = max(int(round(math.sqrt(p_selection(p_init, step, queries) * features / c))), 3)
        s += 1 - s % 2  # odd
        vh, vw, vh2, vw2 = (int((size - s) * torch.rand(1, generator=gen).item()) for size in (h, w, h, w))
        window = cur[:, :, vh:vh + s, vw:vw + s]
        mask = torch.zeros_like(xc)
        mask[:, :, vh:vh + s, vw:vw + s] = 1.0
        mask[:, :, vh2:vh2 + s, vw2:vw2 + s] = 1.0
        image_norm = cur.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        window_norm = (cur * mask).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        new = (_eta(s, gen).view(1, 1, s, s) * _signs((todo.numel(), c, 1, 1), gen)).to(device)
        new = new + window / (1e-12 + window.norm(dim=(-2, -1), keepdim=True))
        new = new / (1e-12 + new.norm(dim=(-2, -1), keepdim=True)) * (
            (r ** 2 - image_norm ** 2).clamp(min=0) / c + window_norm ** 2).sqrt()
        cur[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
        cur[:, :, vh:vh + s, vw:vw + s] = new
        candidate = (xc + _unit(cur) * r).clamp(0.0, 1.0)
        m = logit_margin(model(candidate).float(), y[idx]).cpu()
        better = (m < margin[todo]) | (m <= 0)
        margin[todo] = torch.where(better, m, margin[todo])
        best[idx] = torch.where(better.to(device).view(-1, 1, 1, 1), candidate, xb)
    return best
