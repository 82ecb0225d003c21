"""Vocabularies designed for margin: a minimum separation between tokens and an exact background token.

A patch's certificate radius is its distance to the nearest bisector (method.md section 3), at
most half the distance from its token to the nearest other one; a patch that *is* a token (an
all-zero background patch and an all-zero token) gets exactly half of that distance. Pruning a
codebook to a minimum separation ``delta`` therefore trades reconstruction for radius: every
exactly represented patch is certified to ``delta / 2``, and the flip-set certificate
(:mod:`tokencert.setcert`) sees fewer, farther reachable tokens.

Greedy pruning keeps k-means centroids as they are, fitted before most of their neighbours were
dropped, so the kept tokens no longer sit at the mean of the patches they now represent.
:func:`spread` re-fits them under the separation: Lloyd steps on the kept tokens, each followed by a
repulsion that pushes every pair closer than ``delta`` apart (the background token stays fixed),
and a final greedy pass that guarantees the separation exactly.
"""

from __future__ import annotations

import torch

from ..tokens import assign


def separated(table: torch.Tensor, patches: torch.Tensor, min_separation: float, background: bool) -> torch.Tensor:
    """The tokens of ``table`` (K x d) kept greedily, most used first (nearest-token counts over the
    M x d ``patches``), each at least ``min_separation`` from every token kept before it; with
    ``background``, an all-zero token comes first. The result keeps ``table``'s dtype."""
    if min_separation < 0:
        raise ValueError(f"min_separation must be >= 0, got {min_separation}")
    counts = torch.bincount(assign(patches, table), minlength=table.shape[0])
    order = torch.sort(counts, descending=True, stable=True).indices
    kept = [torch.zeros_like(table[0])] if background else []
    for i in order.tolist():
        if all(float(torch.linalg.vector_norm(table[i] - k)) >= min_separation for k in kept):
            kept.append(table[i])
    return torch.stack(kept)


def _repel(tokens: torch.Tensor, min_separation: float, fixed: int | None, sweeps: int) -> torch.Tensor:
    """``tokens`` moved apart, pair by pair, until every pair is ``min_separation`` apart (at most
    ``sweeps`` rounds; each round moves both tokens of a violating pair half the shortfall along their
    difference, the whole shortfall the free one of a pair with the ``fixed`` token) and clamped to [0, 1]."""
    tokens = tokens.clone()
    movable = torch.ones(tokens.shape[0], 1, dtype=tokens.dtype)
    if fixed is not None:
        movable[fixed] = 0
    for _ in range(sweeps):
        diff = tokens.unsqueeze(1) - tokens.unsqueeze(0)  # K x K x d: i - j
        dist = torch.linalg.vector_norm(diff, dim=2)
        short = (min_separation - dist).clamp_min(0).fill_diagonal_(0)
        if not bool((short > 1e-9 * max(min_separation, 1.0)).any()):
            break
        share = movable / (movable + movable.T).clamp_min(1)  # [i, j]: i's part of the pair's shortfall
        unit = diff / dist.clamp_min(1e-12).unsqueeze(2)
        tokens = (tokens + (share * short).unsqueeze(2).mul(unit).sum(dim=1)).clamp(0, 1)
    return tokens


def spread(table: torch.Tensor, patches: torch.Tensor, min_separation: float, background: bool,
           iters: int, sweeps: int = 100) -> torch.Tensor:
    """The tokens of :func:`separated` re-fitted under the separation: ``iters`` rounds of a Lloyd step
    (each token to the mean of the M x d ``patches`` nearest to it; the background token stays the
    all-zero patch) and :func:`_repel`; a final :func:`separated` pass drops any token the repulsion
    left too close (a pair pinned by the box), so the result is ``min_separation`` apart exactly."""
    tokens = separated(table, patches, min_separation, background)
    fixed = 0 if background else None
    for _ in range(iters):
        labels = assign(patches, tokens)
        counts = torch.bincount(labels, minlength=tokens.shape[0])
        sums = torch.zeros_like(tokens).index_add_(0, labels, patches.to(tokens))
        filled = counts > 0
        if fixed is not None:
            filled[fixed] = False
        tokens[filled] = sums[filled] / counts[filled].unsqueeze(1).to(tokens.dtype)
        tokens = _repel(tokens, min_separation, fixed, sweeps)
    return separated(tokens, patches, min_separation, background)
