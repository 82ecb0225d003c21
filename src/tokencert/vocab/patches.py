"""Training patches: the vectors vocabularies are fitted to, one group per token table."""

from __future__ import annotations

import torch

from ..data.store import to_float
from ..tokens import patchify


def patch_groups(images: torch.Tensor, patch_size: int, mode: str) -> torch.Tensor:
    """uint8 or float images -> G x M x d float64 patches (G = C for per_channel_separate, else 1)."""
    x = to_float(images) if images.dtype == torch.uint8 else images
    patches = patchify(x.to(torch.float64), patch_size, mode)
    n, p_count, d = patches.shape
    if mode == "per_channel_separate":
        c = images.shape[1]
        return patches.reshape(n, c, p_count // c, d).transpose(0, 1).reshape(c, -1, d)
    return patches.reshape(1, -1, d)


def sample_rows(patches: torch.Tensor, count: int | None, gen: torch.Generator) -> torch.Tensor:
    """At most ``count`` rows of an M x d matrix, drawn without replacement."""
    if count is None or count >= patches.shape[0]:
        return patches
    return patches[torch.randperm(patches.shape[0], generator=gen)[:count]]
