"""Vocabularies designed for margin: a minimum separation between tokens and an exact background token.

A patch's certificate radius is its distance to the nearest bisector (method.md section 3), at
most half the distance from its token to the nearest other one; a patch that *is* a token (an
all-zero background patch and an all-zero token) gets exactly half of that distance. Pruning a
codebook to a minimum separation ``delta`` therefore trades reconstruction for radius: every
exactly represented patch is certified to ``delta / 2``, and the flip-set certificate
(:mod:`tokencert.setcert`) sees fewer, farther reachable tokens.
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
