"""Exact patch and image certificates (method.md section 3), in float64.

For a patch ``x`` with nearest token ``t_a`` and another token ``t_j``, the distance from
``x`` to their bisecting hyperplane is

    r_j(x) = (||x - t_j||^2 - ||x - t_a||^2) / (2 ||(t_j - t_a) * s||)

where ``s`` is the per-dimension unit scale (a perturbation ``delta`` has size
``||delta / s||``; ``s = 1`` in pixel units). No perturbation smaller than ``r_j`` can make
``t_j`` closer than ``t_a``; the patch certificate is ``min_{j != a} r_j``.

Soundness against rounding: the squared-distance differences come from the same float64
scores as the tokenizer's assignment, and every radius is lowered by a bound on the
rounding error of those scores (standard dot-product error analysis), so a reported
radius never exceeds the exact one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokens import chunk_rows, patchify, token_scores
from .vocab.base import Vocabulary

UNIT_ROUNDOFF = 2.0**-53


def token_distances(tokens: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """K x K matrix of ``||(t_j - t_a) * s||`` computed from exact differences (float64)."""
    t = tokens.to(torch.float64)
    if scale is not None:
        t = t * scale.to(t)
    return torch.cdist(t, t, compute_mode="donot_use_mm_for_euclid_dist")


def _radii_block(patches: torch.Tensor, tokens: torch.Tensor, gaps: torch.Tensor,
                 token_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Assignment (M) and pairwise radii (M x K) of one block of patches."""
    scores = token_scores(patches, tokens)
    assignment = scores.argmin(dim=1)
    rows = torch.arange(scores.shape[0], device=scores.device)
    numerator = scores - scores[rows, assignment].unsqueeze(1)  # ||x - t_j||^2 - ||x - t_a||^2 >= 0
    # Rounding bound of each score ||t||^2 - 2<x,t> (d-term dot products) and of their difference.
    gamma = (patches.shape[1] + 2) * UNIT_ROUNDOFF * 1.01
    x_norm = patches.to(torch.float64).norm(dim=1, keepdim=True)
    score_err = gamma * (token_norms.square() + 2.0 * x_norm * token_norms)
    num_err = score_err + score_err[rows, assignment].unsqueeze(1)
    denom = 2.0 * gaps[assignment]
    radii = (numerator - num_err).clamp_min(0.0) / denom
    radii = torch.where(denom > 0, radii * (1.0 - 4 * gamma), torch.zeros_like(radii))
    radii[rows, assignment] = torch.inf
    return assignment, radii


def pairwise_radii(patches: torch.Tensor, tokens: torch.Tensor,
                   scale: torch.Tensor | None = None) -> torch.Tensor:
    """M x K radii to the bisector of each patch's own token and every token ``j``.

    ``inf`` for the own token, ``0`` for a duplicate of it. ``scale``: per-dimension unit
    scale (``d``), ``None`` for pixel units.
    """
    return _radii_block(patches, tokens, *_token_geometry(patches, tokens, scale))[1]


def _token_geometry(patches: torch.Tensor, tokens: torch.Tensor,
                    scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked inputs' token gaps (K x K, scaled) and token norms (K), on the patches' device."""
    _check(patches, tokens)
    gaps = token_distances(tokens, scale).to(patches.device)
    return gaps, tokens.to(device=patches.device, dtype=torch.float64).norm(dim=1)


def _check(patches: torch.Tensor, tokens: torch.Tensor) -> None:
    if tokens.ndim != 2 or patches.ndim != 2 or patches.shape[1] != tokens.shape[1]:
        raise ValueError(f"patches {tuple(patches.shape)} and tokens {tuple(tokens.shape)}: expected M x d and K x d")
    if tokens.shape[0] < 2:
        raise ValueError(f"a vocabulary needs K >= 2 tokens, got {tokens.shape[0]}")
    for name, values in (("patches", patches), ("tokens", tokens)):
        if not torch.isfinite(values).all():
            raise ValueError(f"{name} contain NaN or infinite values")


def patch_certificates(patches: torch.Tensor, tokens: torch.Tensor, scale: torch.Tensor | None = None,
                       chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(assignment, radius) of M x d patches: the nearest token and ``min_{j != a} r_j`` (float64)."""
    gaps, norms = _token_geometry(patches, tokens, scale)
    chunk_size = chunk_size or chunk_rows(tokens.shape[0])
    assignment = torch.empty(patches.shape[0], dtype=torch.long, device=patches.device)
    radius = torch.empty(patches.shape[0], dtype=torch.float64, device=patches.device)
    for start in range(0, patches.shape[0], chunk_size):
        block = slice(start, start + chunk_size)
        assignment[block], radii = _radii_block(patches[block], tokens, gaps, norms)
        radius[block] = radii.min(dim=1).values
    return assignment, radius


@dataclass
class ImageCertificates:
    """Certificate maps of N images: token index and radius per patch, and the map shape."""

    assignment: torch.Tensor  # N x P, long
    radii: torch.Tensor  # N x P, float64
    map_shape: tuple[int, ...]

    @property
    def r0(self) -> torch.Tensor:
        """``R_0`` per image: the smallest patch radius, the sound L2 radius of token invariance."""
        return self.radii.min(dim=1).values

    @property
    def summed(self) -> torch.Tensor:
        """Sum of patch radii per image (the study's "Img. Cert. (summed)")."""
        return self.radii.sum(dim=1)

    @property
    def mean(self) -> torch.Tensor:
        """Mean patch radius per image."""
        return self.radii.mean(dim=1)

    def maps(self) -> torch.Tensor:
        """Radii reshaped to N x map_shape (H/p x W/p, or C x H/p x W/p per channel)."""
        return self.radii.reshape(self.radii.shape[0], *self.map_shape)


def image_certificates(images: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None = None,
                       batch_size: int = 1024) -> ImageCertificates:
    """Certificate maps of N x C x H x W images in [0,1] under ``vocab``.

    ``scale``: per-channel unit scale (``C``), ``None`` for pixel units.
    """
    n, c, h, w = images.shape
    vocab.check_compatible(c, h)
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    p = vocab.patch_size
    grid = (h // p, w // p)
    patches = patchify(images.to(torch.float64), p, vocab.mode)
    per_patch = patches.shape[1]
    if vocab.mode == "joint":
        tables = [vocab.tokens]
        dim_scale = None if scale is None else scale.to(torch.float64).repeat_interleave(p * p)
        map_shape: tuple[int, ...] = grid
    else:
        tables = list(vocab.tokens) if vocab.mode == "per_channel_separate" else [vocab.tokens] * c
        dim_scale = None
        map_shape = (c, *grid)
    groups = patches.reshape(n, len(tables), per_patch // len(tables), patches.shape[2])
    assignment = torch.empty(n, len(tables), groups.shape[2], dtype=torch.long, device=images.device)
    radii = torch.empty(n, len(tables), groups.shape[2], dtype=torch.float64, device=images.device)
    for g, table in enumerate(tables):
        flat = groups[:, g].reshape(-1, patches.shape[2])
        a, r = patch_certificates(flat, table.to(images.device), dim_scale)
        if vocab.mode != "joint" and scale is not None:
            r = r / float(scale[g])  # a one-channel patch: every dimension has the channel's scale
        assignment[:, g] = a.reshape(n, -1)
        radii[:, g] = r.reshape(n, -1)
    return ImageCertificates(assignment.reshape(n, per_patch), radii.reshape(n, per_patch), map_shape)
