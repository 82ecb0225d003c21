"""Learned vocabulary: tokens trained by gradient descent to reconstruct images through ``Q``.

Switches (each a recipe key, method.md section 4): ``temperature`` > 0 replaces the hard
assignment by the soft-discretization during training; ``negentropy_weight`` adds the
token-distance negentropy ``sum_j p_j log p_j`` (p = softmax of negative squared distances
at ``entropy_tau``); ``sobel_weight`` adds the Sobel structure loss; ``noise_sigma`` > 0
reconstructs the clean image from a noisy input (the denoised vocabulary); per-channel
tokens come from ``mode: per_channel_separate``. Tokens unused during an epoch are
re-seeded with random training patches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.store import to_float
from ..tokens import patchify, token_scores, unpatchify
from .base import Vocabulary
from .quantize import tokenize

log = logging.getLogger("tokencert")

SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


@dataclass
class LearnedSettings:
    """Training settings of a learned vocabulary (defaults used where the recipe is silent)."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.01
    temperature: float = 0.0
    negentropy_weight: float = 0.0
    entropy_tau: float = 0.1
    sobel_weight: float = 0.0
    noise_sigma: float = 0.0

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any]) -> LearnedSettings:
        """Pick this class's fields from a vocabulary recipe."""
        return cls(**{k: recipe[k] for k in cls.__dataclass_fields__ if k in recipe})


def sobel_magnitude(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``sqrt((x * K_x)^2 + (x * K_y)^2 + eps)`` per channel."""
    c = images.shape[1]
    kx = SOBEL_X.to(images).expand(c, 1, 3, 3)
    ky = SOBEL_X.T.to(images).expand(c, 1, 3, 3)
    gx = F.conv2d(images, kx, padding=1, groups=c)
    gy = F.conv2d(images, ky, padding=1, groups=c)
    return torch.sqrt(gx * gx + gy * gy + eps)


def _grouped_patches(images: torch.Tensor, vocab: Vocabulary) -> torch.Tensor:
    """N x G x L x d patches (G token tables)."""
    return vocab.group_patches(patchify(images, vocab.patch_size, vocab.mode))


def _reconstruct(images: torch.Tensor, tokens: torch.Tensor, vocab: Vocabulary,
                 settings: LearnedSettings) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Reconstruction (differentiable in ``tokens``: G x K x d), token scores (squared distances
    up to a per-patch constant, G x NL x K; only when the soft-discretization or the negentropy
    needs them, else None), hard indices."""
    patches = _grouped_patches(images, vocab)  # N x G x L x d
    n, g, l_count, d = patches.shape
    scores = None
    if settings.temperature > 0 or settings.negentropy_weight > 0:
        scores = token_scores(patches.transpose(0, 1).reshape(g, n * l_count, d), tokens, tokens.dtype)
    frozen = Vocabulary(tokens.detach().reshape(vocab.tokens.shape), vocab.patch_size, vocab.mode,
                        vocab.channels, vocab.image_size, vocab.meta)
    index = tokenize(images, frozen)[1].reshape(n, g, l_count).transpose(0, 1).reshape(g, -1)
    if scores is not None and settings.temperature > 0:
        mixed = torch.softmax(-scores / settings.temperature, dim=-1) @ tokens
    else:
        mixed = torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, d))
    mixed = mixed.reshape(g, n, l_count, d).transpose(0, 1).reshape(n, g * l_count, d)
    recon = unpatchify(mixed, vocab.patch_size, vocab.mode, vocab.channels, images.shape[2:])
    return recon, scores, index


def train_learned(init: Vocabulary, train_images: torch.Tensor, settings: LearnedSettings,
                  gen: torch.Generator, device: torch.device) -> Vocabulary:
    """Train the tokens of ``init`` on uint8 ``train_images``; returns the trained vocabulary."""
    groups = init.groups
    tokens = init.tokens.reshape(groups, init.K, init.dim).to(device=device, dtype=torch.float32)
    tokens = torch.nn.Parameter(tokens.clone())
    optimiser = torch.optim.Adam([tokens], lr=settings.lr)
    n = train_images.shape[0]
    steps = settings.epochs * ((n + settings.batch_size - 1) // settings.batch_size)
    bar = tqdm(total=steps, desc=f"learned vocabulary {init.name}", mininterval=2.0)
    for epoch in range(settings.epochs):
        usage = torch.zeros(groups, init.K, device=device)
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, settings.batch_size):
            clean = to_float(train_images[order[start:start + settings.batch_size]]).to(device)
            noisy = clean
            if settings.noise_sigma > 0:
                noise = torch.randn(clean.shape, generator=gen).to(device)
                noisy = (clean + settings.noise_sigma * noise).clamp(0, 1)
            recon, scores, index = _reconstruct(noisy, tokens, init, settings)
            loss = F.mse_loss(recon, clean)
            if settings.sobel_weight > 0:
                loss = loss + settings.sobel_weight * F.mse_loss(sobel_magnitude(recon), sobel_magnitude(clean))
            if scores is not None and settings.negentropy_weight > 0:
                p = torch.softmax(-scores / settings.entropy_tau, dim=-1)
                loss = loss + settings.negentropy_weight * (p * torch.log(p + 1e-12)).sum(-1).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            usage.scatter_add_(1, index, torch.ones_like(index, dtype=usage.dtype))
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        dead = usage == 0
        if dead.any():
            _reseed(tokens, dead, train_images, init, gen)
        log.info("learned %s epoch %d: loss %.5f, dead tokens re-seeded %d", init.name, epoch + 1,
                 loss.item(), int(dead.sum()))
    bar.close()
    return Vocabulary(tokens.detach().cpu().to(torch.float64).reshape(init.tokens.shape), init.patch_size,
                      init.mode, init.channels, init.image_size, dict(init.meta))


def _reseed(tokens: torch.Tensor, dead: torch.Tensor, images: torch.Tensor, vocab: Vocabulary,
            gen: torch.Generator) -> None:
    """Replace dead tokens by random training patches of their group."""
    sample = images[torch.randint(images.shape[0], (min(256, images.shape[0]),), generator=gen)]
    patches = _grouped_patches(to_float(sample), vocab)  # n x G x L x d
    with torch.no_grad():
        for g in range(tokens.shape[0]):
            count = int(dead[g].sum())
            pool = patches[:, g].reshape(-1, vocab.dim)
            picks = pool[torch.randint(pool.shape[0], (count,), generator=gen)]
            tokens[g, dead[g]] = picks.to(tokens)
