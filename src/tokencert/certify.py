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

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .data.store import to_float
from .tokens import patchify, token_scores, unique_rows
from .vocab import Vocabulary

UNIT_ROUNDOFF = 2.0**-53
CACHE_BLOCK_BYTES = 4 << 20  # a patch-by-token block that stays in cache


def token_distances(tokens: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """K x K matrix of ``||(t_j - t_a) * s||`` computed from exact differences (float64)."""
    t = tokens.to(torch.float64)
    if scale is not None:
        t = t * scale.to(t)
    return torch.cdist(t, t, compute_mode="donot_use_mm_for_euclid_dist")


def _inverse_gaps(gaps: torch.Tensor) -> torch.Tensor:
    """``1 / (2 gap)`` with ``-inf`` on the diagonal and ``+inf`` for duplicate tokens.

    Multiplying a negative numerator by it gives ``+inf`` for the own token and ``-inf``
    (clamped to a radius of 0) for a duplicate of it.
    """
    inv = 1.0 / (2.0 * gaps)
    inv.fill_diagonal_(-torch.inf)
    return inv


def _radii_block(patches: torch.Tensor, tokens: torch.Tensor, inv_gaps: torch.Tensor,
                 token_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Assignment (M) and unclamped pairwise radii (M x K) of one block of patches.

    The numerator ``||x - t_j||^2 - ||x - t_a||^2`` is lowered by ``E``, a bound on the rounding
    error of two float64 scores ``||t||^2 - 2<x, t>`` (d-term dot products, largest token norm),
    so radii are never above their exact values once passed through :func:`_finish`.
    """
    scores = token_scores(patches, tokens)
    best, assignment = scores.min(dim=1)
    gamma = (patches.shape[1] + 2) * UNIT_ROUNDOFF * 1.01
    t_max = float(token_norms.max())
    x_norm = patches.to(torch.float64).norm(dim=1)
    bound = 2.0 * gamma * (t_max * t_max + 2.0 * x_norm * t_max) + torch.finfo(torch.float64).tiny
    scores.sub_((best + bound).unsqueeze(1)).mul_(inv_gaps[assignment])
    return assignment, scores


def _finish(radii: torch.Tensor, dim: int) -> torch.Tensor:
    """Clamp at 0 and absorb the relative rounding of the gap and the division (monotone, so it
    commutes with taking the minimum first)."""
    return radii.clamp_(min=0.0).mul_(1.0 - 4 * (dim + 2) * UNIT_ROUNDOFF * 1.01)


def pairwise_radii(patches: torch.Tensor, tokens: torch.Tensor,
                   scale: torch.Tensor | None = None) -> torch.Tensor:
    """M x K radii to the bisector of each patch's own token and every token ``j``.

    ``inf`` for the own token, ``0`` for a duplicate of it. ``scale``: per-dimension unit
    scale (``d``), ``None`` for pixel units.
    """
    return _finish(_radii_block(patches, tokens, *_token_geometry(patches, tokens, scale))[1], patches.shape[1])


def _token_geometry(patches: torch.Tensor, tokens: torch.Tensor,
                    scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked inputs' inverse token gaps (K x K, scaled) and token norms (K), on the patches' device."""
    _check(patches, tokens)
    inv_gaps = _inverse_gaps(token_distances(tokens, scale)).to(patches.device)
    return inv_gaps, tokens.to(device=patches.device, dtype=torch.float64).norm(dim=1)


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
    inv_gaps, norms = _token_geometry(patches, tokens, scale)
    chunk_size = chunk_size or max(64, CACHE_BLOCK_BYTES // (8 * tokens.shape[0]))
    distinct, inverse = unique_rows(patches.to(torch.float64))
    assignment = torch.empty(distinct.shape[0], dtype=torch.long, device=patches.device)
    radius = torch.empty(distinct.shape[0], dtype=torch.float64, device=patches.device)
    for start in range(0, distinct.shape[0], chunk_size):
        block = slice(start, start + chunk_size)
        assignment[block], radii = _radii_block(distinct[block], tokens, inv_gaps, norms)
        radius[block] = radii.min(dim=1).values
    return assignment[inverse], _finish(radius, patches.shape[1])[inverse]


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
    tables = vocab.tables(per_channel=True)
    if vocab.mode == "joint":
        dim_scale = None if scale is None else scale.to(torch.float64).repeat_interleave(p * p)
        map_shape: tuple[int, ...] = grid
    else:
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


def certify_dataset(vocab: Vocabulary, images: torch.Tensor, scale: torch.Tensor | None = None,
                    batch_size: int = 1000) -> tuple[ImageCertificates, dict[str, float]]:
    """Certificates of uint8 test ``images`` (batched) and the study's summaries.

    ``patch_cert``: mean radius over all patches of all images; ``img_cert_summed``: mean over
    images of the per-image sum; ``r0_*``: statistics of the sound radius ``R_0``.
    """
    start = time.perf_counter()
    parts = [image_certificates(to_float(images[i:i + batch_size]), vocab, scale)
             for i in tqdm(range(0, images.shape[0], batch_size), desc=f"certify {vocab.name}", mininterval=2.0)]
    seconds = time.perf_counter() - start
    certs = ImageCertificates(torch.cat([p.assignment for p in parts]), torch.cat([p.radii for p in parts]),
                              parts[0].map_shape)
    r0 = certs.r0
    values, counts = torch.unique(certs.radii, return_counts=True)  # identical patches: identical radii
    mode = int(counts.argmax())
    rest = certs.radii[certs.radii != values[mode]]
    return certs, {
        "n_images": int(images.shape[0]),
        "patches_per_image": int(certs.radii.shape[1]),
        "patch_cert": float(certs.radii.mean()),
        # the most common radius: on MNIST the all-zero background patch, 62 % of all patches,
        # whose radius alone moves the mean and the median (it depends on the two tokens nearest
        # to it); the mean over the other patches shows the trend over K
        "mode_radius": float(values[mode]),
        "mode_share": float(counts[mode]) / certs.radii.numel(),
        "patch_cert_rest": float(rest.mean()) if rest.numel() else float(values[mode]),
        "img_cert_summed": float(certs.summed.mean()),
        "r0_mean": float(r0.mean()),
        "r0_median": float(r0.median()),
        "r0_max": float(r0.max()),
        "seconds_per_image": seconds / images.shape[0],
    }
