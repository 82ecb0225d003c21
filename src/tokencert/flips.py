"""Single token flips: pairwise radii of one image's patches and the images a flip produces.

Shared by the exact ``R_2`` certificate and the token-flip attack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .certify import pairwise_radii
from .tokens import patchify, unpatchify
from .vocab import Vocabulary


@dataclass
class PatchGeometry:
    """One image's patches (P x d), own tokens (P), pairwise radii (P x K, scaled units), and
    the token table and per-dimension scale of each patch."""

    patches: torch.Tensor
    assignment: torch.Tensor
    radii: torch.Tensor
    tables: torch.Tensor  # P x K x d view of each patch's token table
    dim_scale: torch.Tensor  # P x d

    @property
    def patch_radii(self) -> torch.Tensor:
        """Certificate radius of each patch."""
        return self.radii.min(dim=1).values


def token_radii(images: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches (N x P x d, float64) of N x C x H x W images in [0,1], their pairwise radii to every
    token (N x P x K, in the units of ``scale``, ``inf`` for the own token) and each patch's token
    table (P x K x d), all on the images' device."""
    c = images.shape[1]
    patches = patchify(images.to(torch.float64), vocab.patch_size, vocab.mode)
    n, num, d = patches.shape
    s = torch.ones(c, dtype=torch.float64) if scale is None else scale.to(device=images.device, dtype=torch.float64)
    if vocab.mode == "joint":
        radii = pairwise_radii(patches.reshape(-1, d), vocab.tokens, s.repeat_interleave(d // c)).view(n, num, -1)
        return patches, radii, vocab.tokens.to(device=images.device, dtype=torch.float64).expand(num, -1, -1)
    per = num // c
    groups = vocab.tables(per_channel=True)
    radii = torch.cat([pairwise_radii(patches[:, g * per:(g + 1) * per].reshape(-1, d), groups[g]).view(n, per, -1)
                       / s[g] for g in range(c)], dim=1)
    return patches, radii, torch.cat([groups[g].to(device=images.device, dtype=torch.float64).expand(per, -1, -1)
                                      for g in range(c)])


def own_tokens(radii: torch.Tensor) -> torch.Tensor:
    """Index of each patch's own token: the one at radius ``inf`` (last dimension of ``radii``)."""
    return radii.isinf().to(torch.uint8).argmax(dim=-1)


def patch_geometry(image: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None = None) -> PatchGeometry:
    """Geometry of a single C x H x W image in [0,1] (float64 inside)."""
    patches, radii, tables = token_radii(image.unsqueeze(0), vocab, scale)
    patches, radii = patches[0], radii[0]
    return PatchGeometry(patches, own_tokens(radii), radii, tables, dim_scale(vocab, scale, *patches.shape))


def dim_scale(vocab: Vocabulary, scale: torch.Tensor | None, num_patches: int, d: int) -> torch.Tensor:
    """The per-dimension unit scale of every patch (P x d, float64)."""
    c = vocab.channels
    s = torch.ones(c, dtype=torch.float64) if scale is None else scale.to(torch.float64).cpu()
    if vocab.mode == "joint":
        return s.repeat_interleave(d // c).expand(num_patches, -1)
    return s.repeat_interleave(num_patches // c).unsqueeze(1).expand(-1, d)


def tokenized_patches(geometry: PatchGeometry) -> torch.Tensor:
    """P x d tokens the classifier sees for this image."""
    rows = torch.arange(geometry.patches.shape[0])
    return geometry.tables[rows, geometry.assignment]


def tokenized_image(geometry: PatchGeometry, vocab: Vocabulary, image_size: int) -> torch.Tensor:
    """``Q(x)`` as a 1 x C x H x W image."""
    return unpatchify(tokenized_patches(geometry).unsqueeze(0), vocab.patch_size, vocab.mode, vocab.channels,
                      image_size)


def flipped_images(geometry: PatchGeometry, flips: torch.Tensor, vocab: Vocabulary, image_size: int) -> torch.Tensor:
    """Tokenized images (F x C x H x W) with one patch flipped each: ``flips`` is F x 2 of (patch, token)."""
    base = tokenized_patches(geometry)
    out = base.unsqueeze(0).repeat(flips.shape[0], 1, 1)
    out[torch.arange(flips.shape[0]), flips[:, 0]] = geometry.tables[flips[:, 0], flips[:, 1]]
    return unpatchify(out, vocab.patch_size, vocab.mode, vocab.channels, image_size)
