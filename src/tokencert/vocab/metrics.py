"""Quality of a vocabulary on test images: reconstruction and token usage.

The certificates of a vocabulary (patch radii, ``R_0``) are the certify stage's
(:mod:`tokencert.certify`); the report reads them from there.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..data.store import to_float
from .base import Vocabulary
from .quantize import tokenize


def usage_statistics(index: torch.Tensor, vocab: Vocabulary) -> tuple[torch.Tensor, float, float]:
    """Token counts (G x K), usage perplexity ``exp(H)`` and the fraction of tokens never used."""
    n, p_count = index.shape
    per_group = index.reshape(n, vocab.groups, p_count // vocab.groups).transpose(0, 1).reshape(vocab.groups, -1)
    counts = torch.stack([torch.bincount(row, minlength=vocab.K) for row in per_group]).to(torch.float64)
    probs = counts.flatten() / counts.sum()
    nonzero = probs[probs > 0]
    perplexity = math.exp(float(-(nonzero * nonzero.log()).sum()))
    return counts, perplexity, float((counts == 0).to(torch.float64).mean())


def quality_metrics(vocab: Vocabulary, test_images: torch.Tensor, batch_size: int = 1000) -> dict[str, Any]:
    """Reconstruction MSE/PSNR, usage perplexity and dead-token fraction on uint8 test images."""
    start = time.perf_counter()
    squared, indices = 0.0, []
    for i in range(0, test_images.shape[0], batch_size):
        x = to_float(test_images[i:i + batch_size]).to(torch.float64)
        tokenized, index = tokenize(x, vocab)
        squared += float(((tokenized.clamp(0, 1) - x) ** 2).sum())
        indices.append(index)
    mse = squared / test_images.numel()
    counts, perplexity, dead = usage_statistics(torch.cat(indices), vocab)
    return {
        "name": vocab.name,
        "kind": vocab.meta.get("kind"),
        "K": vocab.K,
        "patch_size": vocab.patch_size,
        "mode": vocab.mode,
        "dim": vocab.dim,
        "recon_mse": mse,
        "recon_psnr": 10 * math.log10(1.0 / mse) if mse > 0 else math.inf,
        "perplexity": perplexity,
        "dead_fraction": dead,
        "usage_counts": counts.tolist(),
        "seconds": time.perf_counter() - start,
    }
