"""What every attack shares: the L2 budget in (scaled) pixel space (``tokencert.units``), judging.

A perturbation ``delta`` of an image in ``[0,1]`` has size ``||delta / s||_2`` with ``s`` the
per-channel unit scale (``None``: pixel units). Attacks work in ``u = delta / s``, where
the budget is a plain L2 ball, and always return images clipped to ``[0,1]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..study import ATTACKS
from ..units import norms


def image_seed(seed: int, key: int, restart: int = 0) -> int:
    """The seed of one image's random start: the run's ``seed``, the image's ``key`` (its test-set
    index) and the ``restart``, mixed by numpy's SeedSequence (nearby keys give unrelated streams)."""
    return int(np.random.SeedSequence([seed, key, restart]).generate_state(1)[0])


def image_draws(shape: tuple[int, ...], seed: int, keys: torch.Tensor,
                restart: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image of a batch of ``shape``: standard normal noise (row ``i`` drawn from ``image_seed(seed,
    keys[i], restart)`` exactly as ``torch.manual_seed`` then ``torch.randn((1, *shape[1:]))`` draws it),
    and the next uniform draw of the same stream."""
    noise, uniform = torch.zeros(shape), torch.zeros(shape[0])
    for i, key in enumerate(keys.tolist()):
        gen = torch.Generator().manual_seed(image_seed(seed, int(key), restart))
        noise[i] = torch.randn((1, *shape[1:]), generator=gen)[0]
        uniform[i] = torch.rand(1, generator=gen)[0]
    return noise, uniform


def image_noise(shape: tuple[int, ...], seed: int, keys: torch.Tensor, restart: int = 0) -> torch.Tensor:
    """The normal part of :func:`image_draws`: what torchattacks' APGD draws for each image alone."""
    return image_draws(shape, seed, keys, restart)[0]


def check_attack_params(eps: float | list[float] | None = None, steps: int | None = None,
                        tau: float | None = None, name: str | None = None) -> None:
    """Raise ``ValueError`` for eps < 0, steps < 1, tau <= 0 or an unknown attack name."""
    for e in [] if eps is None else (eps if isinstance(eps, list) else [eps]):
        if not e >= 0:
            raise ValueError(f"eps must be >= 0, got {e}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if tau is not None and not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if name is not None and name not in ATTACKS:
        raise ValueError(f"unknown attack '{name}' (known: {', '.join(ATTACKS)})")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Hard-model predictions, batched."""
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


def judge(model: nn.Module, x0: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor,
          scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, bool]]:
    """Whether each adversarial image is still classified correctly by the hard model, the norms
    of the successful ones (inf otherwise) and the sanity checks (within eps, one or one per image; in the box)."""
    size = norms(x_adv - x0, scale)
    checks = {
        "eps_ball_respected": bool((size <= eps * (1 + 1e-5) + 1e-6).all()),
        "in_box": bool(((x_adv >= 0) & (x_adv <= 1)).all()),
    }
    correct = predict(model, x_adv) == y
    return correct, torch.where(correct, torch.full_like(size, torch.inf), size), checks
