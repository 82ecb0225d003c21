"""Toy plugins for tests/test_extending.py: one of every extension point, registered on import
(``plugins: [toyplugins]``), none of them in the package. README "Extending it" shows each."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokencert.attacks import register_attack
from tokencert.certificates import Certificate, Radii, register
from tokencert.objectives import register_objective
from tokencert.vocab import register_kind


def tiny_net(channels: int, num_classes: int) -> torch.nn.Module:
    """An architecture: ``arch: toyplugins:tiny_net``."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(7), torch.nn.Flatten(), torch.nn.Linear(channels * 49,
                                                                                                    num_classes))


def random_patches(fit: torch.Tensor, k: int, recipe: dict, gen: torch.Generator) -> torch.Tensor:
    """A vocabulary kind: ``k`` training patches drawn at random."""
    return fit[torch.randperm(fit.shape[0], generator=gen)[:k]].to(torch.float64)


def smooth_ce(objective, model, x, y, generator, scale, progress):
    """An objective: cross-entropy with label smoothing."""
    logits = model(x)
    return F.cross_entropy(logits, y, label_smoothing=0.1), logits


def noise_attack(model, params, seed, scale):
    """An attack: a random direction of norm ``eps`` (a weak black-box baseline)."""
    gen = torch.Generator().manual_seed(seed)

    def run(x, y, eps):
        d = torch.randn(x.shape, generator=gen).to(x)
        return (x + 0.999 * eps * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    return run


def zero_radius(net, data, settings) -> Radii:
    """A certificate: radius 0 for every image (sound, and as weak as a certificate can be)."""
    return Radii(torch.zeros(data.labels.numel(), dtype=torch.float64))


register_kind("randompatches", random_patches)
register_objective("smoothce", smooth_ce)
register_attack("noise", noise_attack, pixel=True, black_box=True)
register(Certificate("zero", "zerocert", "Zero", zero_radius, applies="any", defaults={"n_images": 20}))
