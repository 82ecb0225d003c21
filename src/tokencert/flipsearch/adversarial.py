"""The exact multi-flip attack: candidate flips with exact costs, the eps walk of budgeted searches, then
minimum-norm refinement and descent; every adversarial set realised as a float32 image and verified on the deployed
model (prediction, the intended tokens, the norm)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import torch
from tqdm import tqdm

from ..models import DiscreteClassifier
from ..units import norms
from ..vocab import tokenize
from .candidates import Flips, candidate_flips
from .search import Search

NORM_SLACK = 1e-9  # a realised image's norm may exceed its summed exact costs by rounding only
DESCENT = 0.8
"""A descent round looks for an adversarial set within this fraction of the image's best norm: a search
from the root under a smaller budget explores cheaper flips than one that only lowers its budget as it
finds sets (``discrete-gauss``, 100 images, descent after 4 minimum-norm rounds: 0.8 and 0.6 the same
median, 0.8 the lower mean)."""


@dataclass(frozen=True)
class Settings:
    """Integer settings read from a parameter section (keys of other settings ignored)."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        return cls(**{k: int(v) for k, v in params.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SearchSettings(Settings):
    """``beam`` states per image, ``expand`` children per state and criterion, ``depth`` flips at most,
    ``per_patch`` candidate tokens per patch, ``refine`` minimum-norm rounds after the eps walk and
    ``descent`` rounds after those (each on the images the round before improved),
    ``batch`` images searched together."""

    beam: int = 8
    expand: int = 8
    depth: int = 32
    per_patch: int = 16
    refine: int = 1
    descent: int = 8
    batch: int = 50


@dataclass
class Adversarial:
    """Per image the smallest verified adversarial norm (``inf``: none found; 0: misclassified), its image
    (the original where none) and whether every realised image passed its checks."""

    norm: torch.Tensor
    images: torch.Tensor
    verified: bool


@torch.no_grad()
def token_search(model: DiscreteClassifier, x: torch.Tensor, y: torch.Tensor, max_eps: float,
                 scale: torch.Tensor | None = None, settings: SearchSettings = SearchSettings(),
                 eps_grid: list[float] | None = None, seed: int = 0) -> Adversarial:
    """The cheapest adversarial token-flip sets found for float images ``x`` (N x C x H x W in [0,1]) with
    labels ``y``: with ``eps_grid``, one search per eps in increasing order on the images no smaller
    verified example decides, then ``settings.refine`` minimum-norm rounds (budget just below the image's
    best) and ``settings.descent`` rounds (an adversarial set within :data:`DESCENT` of it) on the images
    broken so far; norms up to ``max_eps``."""
    if not isinstance(model, DiscreteClassifier):
        raise TypeError(f"token search needs a token classifier (DiscreteClassifier), got {type(model).__name__}")
    out = Adversarial(torch.full((x.shape[0],), math.inf, dtype=torch.float64), x.detach().cpu().clone(), True)
    predicted = torch.cat([model(x[i:i + 500]).argmax(1).cpu() for i in range(0, x.shape[0], 500)])
    out.norm[predicted != y.cpu()] = 0.0
    grid = sorted(e for e in (eps_grid or [max_eps]) if e <= max_eps)
    for start in tqdm(range(0, x.shape[0], settings.batch), desc="tokensearch (batches)", mininterval=2.0):
        stop = min(start + settings.batch, x.shape[0])
        _search_batch(model, x[start:stop].detach().cpu(), y[start:stop].cpu(), max_eps, scale, settings, grid,
                      seed + start, out, start)
    return out


def _search_batch(model: DiscreteClassifier, x: torch.Tensor, y: torch.Tensor, max_eps: float,
                  scale: torch.Tensor | None, settings: SearchSettings, grid: list[float], seed: int,
                  out: Adversarial, offset: int) -> None:
    flips = candidate_flips(x, model.vocab, scale, max_eps, settings.per_patch)
    search = Search(model.net, flips, model.vocab, y, tuple(x.shape[1:]), settings.beam, settings.expand,
                    settings.depth, seed)
    n = x.shape[0]
    norm = out.norm[offset:offset + n]

    def record(best: torch.Tensor, chosen: torch.Tensor, rows: torch.Tensor) -> None:
        for i in rows.tolist():
            if not math.isfinite(float(best[i])):
                continue
            pick = search.prune(i, chosen[i])
            adv, size, ok = _verify(model, flips, i, x[i], y[i], pick, scale)
            out.verified &= ok
            if ok and size < norm[i]:
                norm[i], out.images[offset + i] = size, adv

    def rounds(count: int, budget: Callable[[], torch.Tensor], first: bool) -> None:
        """Up to ``count`` searches under ``budget()``, each on the broken images the one before improved (an
        unchanged budget finds the same sets)."""
        improved = torch.ones(n, dtype=torch.bool)
        for _ in range(count):
            rows = torch.nonzero((norm > 0) & torch.isfinite(norm) & improved).flatten()
            if rows.numel() == 0:
                return
            before = norm.clone()
            best, chosen = search.run(rows, budget(), first=first)
            record(best, chosen, rows)
            improved = norm < before

    for eps in grid:
        rows = torch.nonzero(norm > eps).flatten()
        if rows.numel():
            best, chosen = search.run(rows, torch.full((n,), eps * eps, dtype=torch.float64), first=True)
            record(best, chosen, rows)
    rounds(settings.refine, lambda: norm.square() * (1 - 1e-9), first=False)
    rounds(settings.descent, lambda: (norm * DESCENT).square(), first=True)


def _verify(model: DiscreteClassifier, flips: Flips, image: int, x: torch.Tensor, y: torch.Tensor,
            pick: torch.Tensor, scale: torch.Tensor | None) -> tuple[torch.Tensor, float, bool]:
    """Realise flip set ``pick`` of image ``image`` and judge it on the deployed model: the float32 image, its
    norm and whether it fools the model with exactly the intended tokens at the summed exact cost."""
    shape = tuple(x.shape)
    adv = flips.realise(image, torch.nonzero(pick).flatten(), model.vocab, shape)
    intended = flips.assignment[image].clone()
    intended[flips.patch[image, pick]] = flips.token[image, pick]
    param = next(model.net.parameters())
    batch = adv.unsqueeze(0).to(param.device)
    tokens_ok = bool((tokenize(batch, model.vocab)[1].cpu()[0] == intended).all())
    fooled = bool(model(batch).argmax(1).cpu()[0] != y)
    size = float(norms((adv.to(torch.float64) - x.to(torch.float64)).unsqueeze(0), scale)[0])
    cost = float(flips.cost[image, pick].sum())
    exact = abs(size * size - cost) <= NORM_SLACK * (1.0 + cost) + 1e-12
    return adv, size, tokens_ok and fooled and exact
