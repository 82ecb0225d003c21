"""The token geometry of a batch under a radius: reachable tokens, the flip budget, the breakpoints
where either changes and the per-patch deviation box of the first layer's input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..flips import own_tokens, token_radii
from ..tokens import unpatchify
from ..vocab import Vocabulary


@dataclass
class Geometry:
    """Patches of N images: own tokens (N x P), pairwise radii (N x P x K, ``inf`` for the own
    token), per-patch token tables (P x K x d) and the patch radii sorted per image."""

    assignment: torch.Tensor
    radii: torch.Tensor
    tables: torch.Tensor

    @property
    def patch_radii(self) -> torch.Tensor:
        return self.radii.min(dim=2).values

    def take(self, rows: torch.Tensor) -> Geometry:
        """The geometry of the images ``rows``."""
        return Geometry(self.assignment[rows], self.radii[rows], self.tables)

    def own(self) -> torch.Tensor:
        """N x P x d tokens the classifier sees."""
        rows = torch.arange(self.tables.shape[0])
        return self.tables[rows.unsqueeze(0), self.assignment]


def geometry(images: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None = None) -> Geometry:
    """Token geometry of N x C x H x W images in [0,1] (float64); radii in the units of ``scale``."""
    _, radii, tables = token_radii(images.cpu(), vocab, None if scale is None else scale.cpu())
    return Geometry(own_tokens(radii), radii, tables)


def per_image(radius: float | torch.Tensor, n: int) -> torch.Tensor:
    return torch.as_tensor(radius, dtype=torch.float64).expand(n).clone()


def tokenized(geo: Geometry, vocab: Vocabulary, size: tuple[int, int]) -> torch.Tensor:
    """The images the classifier sees (N x C x H x W, float64): every patch replaced by its own token."""
    return unpatchify(geo.own(), vocab.patch_size, vocab.mode, vocab.channels, size)


def flip_budget(patch_radii: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Per image (rows of N x P patch radii) the most patches whose tokens can change within ``radius``
    (one radius, or one per image)."""
    thresholds = _budget_thresholds(patch_radii)
    r = per_image(radius, patch_radii.shape[0]).to(thresholds)
    return (thresholds <= r.unsqueeze(1)).sum(dim=1)


def _budget_thresholds(patch_radii: torch.Tensor) -> torch.Tensor:
    """``sqrt(r_(1)^2 + ... + r_(k)^2)`` per image and ``k``: the radii at which the budget grows (the
    budget compares radii with these very floats, so it changes exactly at the breakpoints)."""
    return torch.sort(patch_radii, dim=-1).values.square().cumsum(dim=-1).sqrt()


def breakpoints(geo: Geometry, index: int) -> torch.Tensor:
    """The sorted radii at which the reachable sets or the flip budget of image ``index`` change."""
    radii = geo.radii[index]
    pair = radii[torch.isfinite(radii)]
    budget = _budget_thresholds(radii.min(dim=1).values)  # its patch radii, not the whole batch's sliced
    return torch.unique(torch.cat([pair, budget, torch.zeros(1, dtype=torch.float64)]))


def deviation_box(geo: Geometry, radius: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and patch the box of ``token - own token`` over the reachable tokens (N x P x d each,
    containing 0), and the reachable mask (N x P x K, own token included); one radius or one per image."""
    r = per_image(radius, geo.radii.shape[0]).to(geo.radii).view(-1, 1, 1)
    mine = torch.arange(geo.radii.shape[2]) == geo.assignment.unsqueeze(2)
    reach = (geo.radii <= r) | mine  # a patch with no finite radius (fixed by a branch) keeps its token
    own = geo.own()
    n, num, d = own.shape
    image, patch, token = torch.nonzero(reach, as_tuple=True)  # the reachable pairs: few at the radii certified
    slot = image * num + patch
    lo = torch.zeros(n * num, d, dtype=own.dtype, device=own.device)  # the own token's deviation, 0
    hi = torch.zeros_like(lo)
    for start in range(0, len(slot), BOX_ROWS):  # memory bounded at BOX_ROWS x d
        part = slice(start, start + BOX_ROWS)
        dev = geo.tables[patch[part], token[part]] - own[image[part], patch[part]]
        index = slot[part].unsqueeze(1).expand_as(dev)
        lo.scatter_reduce_(0, index, dev, "amin")
        hi.scatter_reduce_(0, index, dev, "amax")
    return lo.view(n, num, d), hi.view(n, num, d), reach


BOX_ROWS = 2**18
"""Reachable (image, patch, token) triples :func:`deviation_box` gathers per pass."""
