"""Build a vocabulary from its recipe in params (``kind``: gaussian, kmeans or learned; optionally
pruned to a minimum token separation with an exact background token, :mod:`.margin`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..config import check_margin
from ..study import VOCABULARY_KINDS
from ..tokens import resolve_mode
from .base import Vocabulary
from .gaussian import gaussian_tokens
from .kmeans import kmeans_plus_plus, kmeans_tokens
from .learned import LearnedSettings, train_learned
from .margin import separated, spread
from .patches import patch_groups, sample_rows

log = logging.getLogger("tokencert")

DEFAULT_FIT_PATCHES = 100_000

Builder = Callable[[torch.Tensor, int, dict[str, Any], torch.Generator], torch.Tensor]
"""``(fit patches M x d, K, recipe, generator) -> K x d tokens`` of one token table."""


def _learned_init(fit: torch.Tensor, k: int, recipe: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """The starting tokens of a learned vocabulary (``init``), trained afterwards."""
    init = recipe.get("init", "patches")
    if init == "gaussian":
        return gaussian_tokens(fit, k, gen)
    if init == "kmeans++":
        return kmeans_plus_plus(fit, k, gen)
    return sample_rows(fit, k, gen) if fit.shape[0] >= k else gaussian_tokens(fit, k, gen)


BUILDERS: dict[str, Builder] = {
    "gaussian": lambda fit, k, recipe, gen: gaussian_tokens(fit, k, gen),
    "kmeans": lambda fit, k, recipe, gen: kmeans_tokens(fit, k, int(recipe.get("iters", 20)), gen),
    "learned": _learned_init,
}
"""Every vocabulary kind by name (:data:`tokencert.study.VOCABULARY_KINDS` names them)."""
assert tuple(BUILDERS) == tuple(VOCABULARY_KINDS), "tokencert.study.VOCABULARY_KINDS names the built-ins"


def register_kind(name: str, builder: Builder, keys: Mapping[str, Any] | None = None) -> None:
    """Add a vocabulary kind (a plugin module calls this on import); ``keys``: the JSON schema of the
    recipe keys it adds (by name). Margin pruning (``min_separation``, ``background``) applies to it too."""
    VOCABULARY_KINDS[name] = dict(keys or {})
    BUILDERS[name] = builder


def _initial_tokens(kind: str, groups: torch.Tensor, recipe: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    k = int(recipe["K"])
    tables = []
    for patches in groups:
        fit = sample_rows(patches, recipe.get("fit_patches", DEFAULT_FIT_PATCHES), gen)
        tokens = BUILDERS[kind](fit, k, recipe, gen)
        if tokens.shape != (k, fit.shape[1]):
            raise ValueError(f"vocabulary kind {kind!r} built tokens of shape {tuple(tokens.shape)}, "
                             f"expected {(k, fit.shape[1])}")
        tables.append(tokens)
    return torch.stack(tables)


def _with_margin(name: str, vocab: Vocabulary, recipe: dict[str, Any], patches: torch.Tensor,
                 gen: torch.Generator) -> Vocabulary:
    """``vocab`` pruned to ``min_separation`` with an optional exact background token, re-fitted under the
separation for ``spread`` rounds (:mod:`.margin`)."""
    patches = sample_rows(patches, recipe.get("fit_patches", DEFAULT_FIT_PATCHES), gen)
    design = (float(recipe.get("min_separation", 0)), bool(recipe.get("background", False)))
    iters = int(recipe.get("spread", 0))
    tokens = (spread(vocab.tokens, patches.to(vocab.tokens), *design, iters) if iters
              else separated(vocab.tokens, patches.to(vocab.tokens), *design))
    log.info("vocabulary %s: %d of %d tokens kept at separation %s (%d spreading rounds)", name, tokens.shape[0],
             vocab.K, design[0], iters)
    return Vocabulary(tokens, vocab.patch_size, vocab.mode, vocab.channels, vocab.image_size, vocab.meta)


def build_vocabulary(name: str, recipe: dict[str, Any], train_images: torch.Tensor, patch_size: int,
                     seed: int, device: torch.device = torch.device("cpu")) -> Vocabulary:
    """Draw, fit or train vocabulary ``name`` on uint8 N x C x H x W ``train_images``."""
    kind = recipe.get("kind")
    if kind not in BUILDERS:
        raise ValueError(f"vocabulary '{name}': kind must be one of {tuple(BUILDERS)}, got {kind!r}")
    if int(recipe.get("K", 0)) < 2:
        raise ValueError(f"vocabulary '{name}': K must be >= 2, got {recipe.get('K')}")
    _, channels, height, width = train_images.shape
    if height != width:
        raise ValueError(f"vocabulary '{name}': square images expected, got {height}x{width}")
    mode = resolve_mode(recipe.get("mode"), channels)
    check_margin(name, recipe, mode)
    gen = torch.Generator().manual_seed(seed)
    groups = patch_groups(train_images, patch_size, mode)
    tables = _initial_tokens(kind, groups, recipe, gen)
    tokens = tables if mode == "per_channel_separate" else tables[0]
    meta = {"name": name, "kind": kind, "recipe": dict(recipe), "seed": seed}
    vocab = Vocabulary(tokens, patch_size, mode, channels, height, meta)
    if kind == "learned":
        vocab = train_learned(vocab, train_images, LearnedSettings.from_recipe(recipe), gen, device)
    if recipe.get("min_separation", 0) > 0 or recipe.get("background", False):
        vocab = _with_margin(name, vocab, recipe, groups[0], gen)
    log.info("vocabulary %s: %s, K=%d, mode=%s, d=%d", name, kind, vocab.K, mode, vocab.dim)
    return vocab
