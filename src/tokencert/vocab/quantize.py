"""The tokenizer ``Q`` of a vocabulary and its soft (differentiable) surrogate."""

from __future__ import annotations

import torch

from ..tokens import assign, check_finite, patchify, token_scores, unpatchify
from .base import Vocabulary


def tokenize(images: torch.Tensor, vocab: Vocabulary, chunk_size: int | None = None, *,
             dedup: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q(x)``: the tokenized images (dtype of ``images``) and the token indices (N x P).

    No gradient flows through the tokenizer (it is piecewise constant). ``dedup``: see
    :func:`tokencert.tokens.assign` (off for noisy images).
    """
    vocab.check_compatible(images.shape[1], images.shape[2])
    with torch.no_grad():
        check_finite("images", images)
        grouped = vocab.group_patches(patchify(images, vocab.patch_size, vocab.mode))
        n, groups, per_group, d = grouped.shape
        index = torch.empty(n, groups, per_group, dtype=torch.long, device=images.device)
        quantized = torch.empty(grouped.shape, dtype=images.dtype, device=images.device)
        for g, table in enumerate(vocab.tables()):
            table = table.to(device=images.device, dtype=torch.float64)
            idx = assign(grouped[:, g], table, chunk_size, dedup=dedup)
            index[:, g] = idx
            quantized[:, g] = table[idx].to(images.dtype)
        out = unpatchify(quantized.reshape(n, groups * per_group, d), vocab.patch_size, vocab.mode,
                         vocab.channels, images.shape[2:])
    return out, index.reshape(n, groups * per_group)


def soft_tokenize(images: torch.Tensor, vocab: Vocabulary, tau: float,
                  tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Soft surrogate of ``Q``: each patch becomes ``sum_j softmax(-||x - t_j||^2 / tau)_j t_j``.

    Differentiable in the images and in ``tokens`` (default: the vocabulary's, as a constant);
    computed in the images' dtype. Used to train vocabularies and by the SSPGD attack.
    """
    if not tau > 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    vocab.check_compatible(images.shape[1], images.shape[2])
    grouped = vocab.group_patches(patchify(images, vocab.patch_size, vocab.mode)).transpose(0, 1)
    groups, n, per_group, d = grouped.shape
    table = (vocab.tokens if tokens is None else tokens).to(device=images.device, dtype=images.dtype)
    tables = table.reshape(groups, vocab.K, d)
    # one matrix product, no distance matrix: ||x||^2 is constant per patch and cancels in the softmax
    scores = token_scores(grouped.reshape(groups, -1, d), tables, images.dtype)
    weights = torch.softmax(-scores / tau, dim=-1)
    mixed = (weights @ tables).reshape(groups, n, per_group, d).transpose(0, 1)
    return unpatchify(mixed.reshape(n, groups * per_group, d), vocab.patch_size, vocab.mode, vocab.channels,
                      images.shape[2:])
