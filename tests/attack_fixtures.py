"""Small trained classifiers for attack and certificate tests (seconds on a CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokencert.models import DiscreteClassifier
from tokencert.vocab import Vocabulary, tokenize


def two_class_images(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 grayscale images: class 0 bright on the left half, class 1 on the right half."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = 0.15 * torch.rand(n, 1, 8, 8, generator=gen)
    left = y == 0
    x[left, :, :, :4] += 0.7
    x[~left, :, :, 4:] += 0.7
    return x.clamp(0, 1), y


def fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 150) -> nn.Module:
    """Full-batch Adam on cross entropy (no random draws)."""
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def linear_net(seed: int = 0) -> nn.Module:
    """A linear classifier of 8x8 images with seeded initial weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 2))


def vocabulary() -> Vocabulary:
    """Eight 4x4 tokens: flat patches at several grey levels."""
    levels = torch.linspace(0.0, 1.0, 8, dtype=torch.float64)
    return Vocabulary(levels.view(-1, 1).expand(8, 16).clone(), 4, "joint", 1, 8, {"name": "levels"})


def trained_models() -> tuple[nn.Module, DiscreteClassifier, torch.Tensor, torch.Tensor]:
    """(baseline, discrete classifier, images, labels)."""
    x, y = two_class_images()
    baseline = fit(linear_net(), x, y)
    vocab = vocabulary()
    net = fit(linear_net(), tokenize(x, vocab)[0], y)
    return baseline, DiscreteClassifier(net, vocab).eval(), x, y
