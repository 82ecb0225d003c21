"""The token flips of a batch of images with their exact costs: each patch's cheapest reachable tokens
(by bisector radius, a lower bound of the cost), the exact distance to each token's cell within the
box (:mod:`tokencert.cells`) and the realised point that attains it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cells import CellDistances, cell_distances
from ..flips import dim_scale, own_tokens, token_radii
from ..tokens import unique_rows, unpatchify
from ..vocab import Vocabulary


@dataclass
class Flips:
    """N images' patches (N x P x d, float64), own tokens (N x P), bisector radii (N x P x K, ``inf``
    for the own token), per-patch token tables (P x K x d) and the candidate flips: per image up to
    ``F`` of them (N x F: ``patch``, ``token``, squared realised ``cost`` (``inf``: padding), squared
    ``lower`` bound of the cost, and ``point``, the realised patch, N x F x d)."""

    patches: torch.Tensor
    assignment: torch.Tensor
    radii: torch.Tensor
    tables: torch.Tensor
    patch: torch.Tensor
    token: torch.Tensor
    cost: torch.Tensor
    lower: torch.Tensor
    point: torch.Tensor

    def cost_radii(self) -> torch.Tensor:
        """N x P x K lower bounds of each flip's cost within the box: the bisector radii, raised to the square
        root of ``lower`` for the candidate flips (``inf``: the own token)."""
        radii = self.radii.clone()
        cand = torch.isfinite(self.cost)
        image = torch.arange(len(radii)).unsqueeze(1).expand_as(self.patch)[cand]
        p, j = self.patch[cand], self.token[cand]
        radii[image, p, j] = torch.maximum(radii[image, p, j], self.lower[cand].sqrt())
        return radii

    def token_images(self, assignment: torch.Tensor, vocab: Vocabulary, shape: tuple[int, ...]) -> torch.Tensor:
        """The images the classifier sees for token assignments (S x P): S x C x H x W, float64."""
        patches = self.tables[torch.arange(self.tables.shape[0]), assignment]
        return unpatchify(patches, vocab.patch_size, vocab.mode, vocab.channels, shape[-2:])

    def realise(self, image: int, flips: torch.Tensor, vocab: Vocabulary, shape: tuple[int, ...]) -> torch.Tensor:
        """Image ``image`` with the candidate flips ``flips`` (indices into its F) moved to their points."""
        return self.moved(image, self.patch[image, flips], self.point[image, flips], vocab, shape)

    def moved(self, image: int, patch: torch.Tensor, points: torch.Tensor, vocab: Vocabulary,
              shape: tuple[int, ...]) -> torch.Tensor:
        """Image ``image`` with patches ``patch`` replaced by ``points``: C x H x W float32, every other patch
        bit for bit the original."""
        patches = self.patches[image].clone()
        patches[patch] = points
        out = unpatchify(patches.unsqueeze(0), vocab.patch_size, vocab.mode, vocab.channels, shape[-2:])[0]
        return out.to(torch.float32)


def patch_tables(vocab: Vocabulary) -> list[torch.Tensor]:
    """The token table of each group of patches sharing a table and a unit scale (one in joint mode, one
    per channel otherwise; patch ``p`` belongs to group ``p // (P / groups)``)."""
    return [vocab.tokens] if vocab.mode == "joint" else list(vocab.tables(per_channel=True))


def exact_costs(x: torch.Tensor, patch: torch.Tensor, token: torch.Tensor, vocab: Vocabulary,
                scale: torch.Tensor | None, num_patches: int) -> CellDistances:
    """Cell distances of M patches ``x`` (M x d, patch indices ``patch`` of images with ``num_patches``) to
    tokens ``token``, each with its patch's token table and unit scale; distinct pairs solved once."""
    d = x.shape[1]
    out = CellDistances(torch.zeros(len(x), dtype=torch.float64), torch.full((len(x),), torch.inf, dtype=torch.float64),
                        torch.zeros(len(x), d, dtype=torch.float64))
    scales = dim_scale(vocab, scale, num_patches, d)
    tables = patch_tables(vocab)
    group = patch // (num_patches // len(tables))  # the patch's token table and unit scale
    for g, table in enumerate(tables):
        rows = torch.nonzero(group == g).flatten()
        if rows.numel() == 0:
            continue
        distinct, inverse = unique_rows(torch.cat([x[rows], token[rows].unsqueeze(1).double()], dim=1))
        cells = cell_distances(distinct[:, :d], table, distinct[:, d].long(), scales[patch[rows[0]]])
        out.lower[rows], out.upper[rows] = cells.lower[inverse], cells.upper[inverse]
        out.points[rows] = cells.points[inverse]
    return out


def candidate_flips(images: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None, max_radius: float,
                    per_patch: int) -> Flips:
    """Per image, the ``per_patch`` cheapest tokens of every patch (bisector radius ``<= max_radius``) with
    their exact cell distances and realised points; distinct (patch, token) pairs are solved once."""
    patches, radii, tables = token_radii(images.detach().cpu(), vocab, None if scale is None else scale.cpu())
    n, num, d = patches.shape
    assignment = own_tokens(radii)
    k = min(per_patch, radii.shape[2] - 1)
    r, token = torch.topk(radii, k, dim=2, largest=False)  # own token (inf) never among the cheapest
    keep = torch.isfinite(r) & (r <= max_radius)
    image_idx, patch_idx, slot = torch.nonzero(keep, as_tuple=True)
    token_idx = token[image_idx, patch_idx, slot]
    cells = exact_costs(patches[image_idx, patch_idx], patch_idx, token_idx, vocab, scale, num)
    upper, point = cells.upper, cells.points
    lower = torch.maximum(cells.lower, radii[image_idx, patch_idx, token_idx])
    counts = torch.bincount(image_idx, minlength=n)
    width = int(counts.max()) if n and len(image_idx) else 0
    slot = torch.arange(len(image_idx)) - torch.cumsum(counts, 0).sub(counts)[image_idx]
    out = Flips(patches, assignment, radii, tables, torch.zeros(n, width, dtype=torch.long),
                torch.zeros(n, width, dtype=torch.long), torch.full((n, width), torch.inf, dtype=torch.float64),
                torch.full((n, width), torch.inf, dtype=torch.float64), torch.zeros(n, width, d, dtype=torch.float64))
    out.patch[image_idx, slot], out.token[image_idx, slot] = patch_idx, token_idx
    out.cost[image_idx, slot], out.lower[image_idx, slot] = upper.square(), lower.square()
    out.point[image_idx, slot] = point
    return out
