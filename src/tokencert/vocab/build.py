"""Build a vocabulary from its recipe in params (``kind``: gaussian, kmeans or learned)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..tokens import resolve_mode
from .base import Vocabulary
from .gaussian import gaussian_tokens
from .kmeans import kmeans_plus_plus, kmeans_tokens
from .learned import LearnedSettings, train_learned
from .patches import patch_groups, sample_rows

log = logging.getLogger("tokencert")

KINDS = ("gaussian", "kmeans", "learned")
DEFAULT_FIT_PATCHES = 100_000


def _initial_tokens(kind: str, groups: torch.Tensor, recipe: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    k = int(recipe["K"])
    tables = []
    for patches in groups:
        fit = sample_rows(patches, recipe.get("fit_patches", DEFAULT_FIT_PATCHES), gen)
        if kind == "gaussian" or (kind == "learned" and recipe.get("init", "patches") == "gaussian"):
            tables.append(gaussian_tokens(fit, k, gen))
        elif kind == "kmeans":
            tables.append(kmeans_tokens(fit, k, int(recipe.get("iters", 20)), gen))
        elif recipe.get("init", "patches") == "kmeans++":
            tables.append(kmeans_plus_plus(fit, k, gen))
        else:  # learned, init from random training patches
            tables.append(sample_rows(fit, k, gen) if fit.shape[0] >= k else gaussian_tokens(fit, k, gen))
    return torch.stack(tables)


def build_vocabulary(name: str, recipe: dict[str, Any], train_images: torch.Tensor, patch_size: int,
                     seed: int, device: torch.device = torch.device("cpu")) -> Vocabulary:
    """Draw, fit or train vocabulary ``name`` on uint8 N x C x H x W ``train_images``."""
    kind = recipe.get("kind")
    if kind not in KINDS:
        raise ValueError(f"vocabulary '{name}': kind must be one of {KINDS}, got {kind!r}")
    if int(recipe.get("K", 0)) < 2:
        raise ValueError(f"vocabulary '{name}': K must be >= 2, got {recipe.get('K')}")
    _, channels, height, width = train_images.shape
    if height != width:
        raise ValueError(f"vocabulary '{name}': square images expected, got {height}x{width}")
    mode = resolve_mode(recipe.get("mode"), channels)
    gen = torch.Generator().manual_seed(seed)
    tables = _initial_tokens(kind, patch_groups(train_images, patch_size, mode), recipe, gen)
    tokens = tables if mode == "per_channel_separate" else tables[0]
    meta = {"name": name, "kind": kind, "recipe": dict(recipe), "seed": seed}
    vocab = Vocabulary(tokens, patch_size, mode, channels, height, meta)
    if kind == "learned":
        vocab = train_learned(vocab, train_images, LearnedSettings.from_recipe(recipe), gen, device)
    log.info("vocabulary %s: %s, K=%d, mode=%s, d=%d", name, kind, vocab.K, mode, vocab.dim)
    return vocab
