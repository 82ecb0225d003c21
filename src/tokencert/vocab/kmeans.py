"""k-means vocabulary: Lloyd's algorithm with k-means++ initialisation (batched torch)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..tokens import assign


def kmeans_plus_plus(points: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to D(x)^2."""
    n = points.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least K={k} training patches, got {n}")
    centres = torch.empty(k, points.shape[1], dtype=points.dtype)
    centres[0] = points[torch.randint(n, (1,), generator=gen)]
    closest = ((points - centres[0]) ** 2).sum(dim=1)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than K: pick uniformly among the rest
            pick = torch.randint(n, (1,), generator=gen)
        else:
            pick = torch.multinomial(closest / total, 1, generator=gen)
        centres[i] = points[pick]
        closest = torch.minimum(closest, ((points - centres[i]) ** 2).sum(dim=1))
    return centres


def lloyd(points: torch.Tensor, centres: torch.Tensor, iters: int, gen: torch.Generator,
          desc: str = "k-means") -> torch.Tensor:
    """``iters`` Lloyd steps; an empty cluster is re-seeded with a random point."""
    centres = centres.clone()
    k = centres.shape[0]
    for _ in tqdm(range(iters), desc=desc, mininterval=2.0):
        labels = assign(points, centres)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, labels, points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled].unsqueeze(1).to(points.dtype)
        empty = int((~filled).sum())
        if empty:
            centres[~filled] = points[torch.randint(points.shape[0], (empty,), generator=gen)]
    return centres


def kmeans_tokens(patches: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """K centroids of M x d ``patches``."""
    return lloyd(patches, kmeans_plus_plus(patches, k, gen), iters, gen)
