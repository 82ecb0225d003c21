"""Frozen Gaussian vocabulary: tokens drawn once from a per-dimension Gaussian fit."""

from __future__ import annotations

import torch


def gaussian_tokens(patches: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """K tokens ~ N(mean_d, std_d^2) independently per dimension, fitted to M x d ``patches``."""
    mean = patches.mean(dim=0)
    std = patches.std(dim=0)
    noise = torch.randn(k, patches.shape[1], generator=gen, dtype=torch.float64)
    return mean + noise * std
