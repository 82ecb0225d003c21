"""Beam search over sets of token flips by exact cost, guided by the classifier's margin on the token image.

A state is a set of flips (at most one per patch) of one image, its squared cost the sum of the flips'
exact squared cell distances (patches are disjoint). Every state of every image is expanded at once:
the margin's gradient on the token image predicts each affordable flip's effect; the ``expand`` best by
predicted margin and the ``expand`` best per unit cost become children, whose margins the network then
computes exactly; the ``beam`` children of lowest margin per image go on. A child with a negative
margin is adversarial; its image keeps the cheapest one. With ``first`` the search stops an image at its
first adversarial set (a budget decided); otherwise the budget drops below every one found (minimum
norm), until no affordable flip remains or ``depth`` flips are set. The network judges each flip set once
per :class:`Search`: the eps walk's searches and the refinement meet many sets again.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import forward_batches, logit_margin
from ..tokens import patchify
from ..vocab import Vocabulary
from .candidates import Flips


def margins(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{k != y} z_k`` of the deployed network on token images (float64 out)."""
    param = next(net.parameters())
    out = []
    for rows in forward_batches(images.shape[0], param.device):
        logits = net(images[rows].to(device=param.device, dtype=param.dtype)).to(torch.float64).cpu()
        out.append(logit_margin(logits, labels[rows]))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _gradients(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The margin's gradient with respect to each token image (float64, the images' shape)."""
    param = next(net.parameters())
    out = []
    for rows in forward_batches(images.shape[0], param.device):
        batch = images[rows].to(device=param.device, dtype=param.dtype).requires_grad_(True)
        with torch.enable_grad():
            logits = net(batch)
            margin = logit_margin(logits, labels[rows].to(param.device))
            (grad,) = torch.autograd.grad(margin.sum(), batch)
        out.append(grad.to(torch.float64).cpu())
    return torch.cat(out)


class Beam:
    """States of several images: image index, chosen candidate flips (S x F), token assignment (S x P),
    squared cost, margin and an order-free key of the flip set (for duplicates)."""

    def __init__(self, image: torch.Tensor, chosen: torch.Tensor, assignment: torch.Tensor, cost: torch.Tensor,
                 key: torch.Tensor) -> None:
        self.image, self.chosen, self.assignment, self.cost, self.key = image, chosen, assignment, cost, key
        self.margin = torch.zeros(0)

    def take(self, rows: torch.Tensor) -> Beam:
        beam = Beam(self.image[rows], self.chosen[rows], self.assignment[rows], self.cost[rows], self.key[rows])
        beam.margin = self.margin[rows]
        return beam


def _best_per_image(image: torch.Tensor, score: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the ``width`` lowest scores of each image."""
    order = torch.argsort(score, stable=True)
    order = order[torch.argsort(image[order], stable=True)]
    ranked = image[order]
    first = torch.searchsorted(ranked, ranked, side="left")
    return order[torch.arange(len(order)) - first < width]


class Search:
    """The search over one batch's candidate flips with the deployed network ``net``."""

    def __init__(self, net: nn.Module, flips: Flips, vocab: Vocabulary, labels: torch.Tensor,
                 shape: tuple[int, ...], beam: int, expand: int, depth: int, seed: int) -> None:
        self.net, self.flips, self.vocab, self.labels, self.shape = net, flips, vocab, labels, shape
        self.beam, self.expand, self.depth = beam, expand, depth
        n, width = flips.cost.shape
        gen = torch.Generator().manual_seed(seed)
        self.keys = torch.randint(-2**62, 2**62, (n, width), generator=gen)  # a flip set's key: sum of its flips'
        self.judged: dict[tuple[int, int, int], float] = {}  # margin by (image, key, flips) of every set judged

    def _margins(self, beam: Beam) -> torch.Tensor:
        """The margins of ``beam``'s flip sets: the network's for those not judged before in this search."""
        sets = list(zip(beam.image.tolist(), beam.key.tolist(), beam.chosen.sum(dim=1).tolist(), strict=True))
        new = [s for s, state in enumerate(sets) if state not in self.judged]
        if new:
            rows = torch.tensor(new)
            fresh = margins(self.net, self.flips.token_images(beam.assignment[rows], self.vocab, self.shape),
                            self.labels[beam.image[rows]])
            self.judged.update(zip((sets[s] for s in new), fresh.tolist(), strict=True))
        return torch.tensor([self.judged[state] for state in sets], dtype=torch.float64)

    def _root(self, rows: torch.Tensor) -> Beam:
        n = len(rows)
        width = self.flips.cost.shape[1]
        beam = Beam(rows, torch.zeros(n, width, dtype=torch.bool), self.flips.assignment[rows].clone(),
                    torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.long))
        beam.margin = self._margins(beam)
        return beam

    def _children(self, beam: Beam, budget: torch.Tensor) -> Beam:
        """The selected affordable children of every state (duplicates removed)."""
        f = self.flips
        images = f.token_images(beam.assignment, self.vocab, self.shape)
        grad = patchify(_gradients(self.net, images, self.labels[beam.image]), self.vocab.patch_size, self.vocab.mode)
        patch, token = f.patch[beam.image], f.token[beam.image]  # S x F
        rows = torch.arange(len(beam.image)).unsqueeze(1)
        g = grad[rows, patch]  # S x F x d
        new = f.tables[patch, token]
        current = f.tables[patch, beam.assignment.gather(1, patch)]
        delta = ((new - current) * g).sum(dim=2)
        cost = f.cost[beam.image]
        flipped = beam.assignment.gather(1, patch) != f.assignment[beam.image].gather(1, patch)
        total = beam.cost.unsqueeze(1) + cost
        ok = torch.isfinite(cost) & ~flipped & (total <= budget[beam.image].unsqueeze(1))
        predicted = torch.where(ok, beam.margin.unsqueeze(1) + delta, torch.inf)
        efficiency = torch.where(ok, delta / cost.clamp(min=1e-12), torch.inf)
        k = min(self.expand, predicted.shape[1])
        picks = torch.cat([torch.topk(predicted, k, dim=1, largest=False).indices,
                           torch.topk(efficiency, k, dim=1, largest=False).indices], dim=1)
        parent = rows.expand_as(picks).flatten()
        pick = picks.flatten()
        keep = ok[parent, pick]
        parent, pick = parent[keep], pick[keep]
        child = beam.take(parent)
        child.chosen = child.chosen.clone()
        child.chosen[torch.arange(len(pick)), pick] = True
        child.assignment = child.assignment.clone()
        child.assignment[torch.arange(len(pick)), f.patch[child.image, pick]] = f.token[child.image, pick]
        child.cost = child.cost + f.cost[child.image, pick]
        child.key = child.key + self.keys[child.image, pick]
        pair = torch.stack([child.image, child.key], dim=1)
        _, first = _unique_first(pair)
        child = child.take(first)
        child.margin = self._margins(child)
        return child

    def run(self, rows: torch.Tensor, budget: torch.Tensor, first: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image of the batch: the squared cost of the cheapest adversarial flip set found within
        ``budget`` (squared, one per image of the batch; ``inf``: none) and that set (N x F)."""
        n, width = self.flips.cost.shape
        best = torch.full((n,), torch.inf, dtype=torch.float64)
        chosen = torch.zeros(n, width, dtype=torch.bool)
        budget = budget.clone()
        beam = self._root(rows)
        for _ in range(self.depth):
            live = budget[beam.image] > 0
            beam = beam.take(torch.nonzero(live).flatten())
            if len(beam.image) == 0:
                break
            child = self._children(beam, budget)
            if len(child.image) == 0:
                break
            bad = child.margin < 0
            for i in torch.unique(child.image[bad]).tolist():
                mine = torch.nonzero(bad & (child.image == i)).flatten()
                j = mine[torch.argmin(child.cost[mine])]
                if child.cost[j] < best[i]:
                    best[i], chosen[i] = child.cost[j], child.chosen[j]
                    # first: the image is decided; else only cheaper sets are worth looking for
                    budget[i] = -1.0 if first else torch.nextafter(best[i], torch.tensor(0.0, dtype=torch.float64))
            rest = torch.nonzero(~bad).flatten()
            child = child.take(rest)
            child = child.take(_best_per_image(child.image, child.margin, self.beam))
            beam = child
        return best, chosen

    def prune(self, image: int, chosen: torch.Tensor) -> torch.Tensor:
        """An adversarial flip set made cheaper by dropping flips while it stays adversarial (the drop that
        saves most first)."""
        while int(chosen.sum()) > 1:
            members = torch.nonzero(chosen).flatten()
            trial = chosen.unsqueeze(0).repeat(len(members), 1)
            trial[torch.arange(len(members)), members] = False
            assignment = self.flips.assignment[image].unsqueeze(0).repeat(len(members), 1)
            for t in range(len(members)):
                sel = torch.nonzero(trial[t]).flatten()
                assignment[t, self.flips.patch[image, sel]] = self.flips.token[image, sel]
            m = margins(self.net, self.flips.token_images(assignment, self.vocab, self.shape),
                        self.labels[image].expand(len(members)))
            if not (m < 0).any():
                break
            saved = torch.where(m < 0, self.flips.cost[image, members], -torch.inf)
            chosen = trial[int(torch.argmax(saved))]
        return chosen


def _unique_first(pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of an S x 2 integer tensor and the index of each one's first occurrence."""
    distinct, inverse = torch.unique(pair, dim=0, return_inverse=True)
    first = torch.full((len(distinct),), len(pair), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(pair)), reduce="amin")
    return distinct, first
