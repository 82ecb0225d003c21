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


def patch_geometry(image: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None = None) -> PatchGeometry:
    """Geometry of a single C x H x W image in [0,1] (float64 inside)."""
    c = image.shape[0]
    p = vocab.patch_size
    patches = patchify(image.unsqueeze(0).to(torch.float64), p, vocab.mode)[0]
    s = torch.ones(c, dtype=torch.float64) if scale is None else scale.to(torch.float64)
    if vocab.mode == "joint":
        dim_scale = s.repeat_interleave(p * p).expand(patches.shape[0], -1)
        radii = pairwise_radii(patches, vocab.tokens, dim_scale[0])
        tables = vocab.tokens.expand(patches.shape[0], -1, -1)
    else:
        per = patches.shape[0] // c
        groups = vocab.tables(per_channel=True)
        radii = torch.cat([pairwise_radii(patches[g * per:(g + 1) * per], groups[g]) / s[g] for g in range(c)])
        tables = torch.cat([groups[g].expand(per, -1, -1) for g in range(c)])
        dim_scale = s.repeat_interleave(per).unsqueeze(1).expand(-1, patches.shape[1])
    assignment = radii.isinf().to(torch.uint8).argmax(dim=1)  # the own token has radius inf
    return PatchGeometry(patches, assignment, radii, tables, dim_scale)


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
