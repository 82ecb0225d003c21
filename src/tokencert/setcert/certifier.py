"""The flip-set certifier: bounds, else exact enumeration of the covered token combinations, and the
certified radius by bisection over the breakpoints."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..models import DiscreteClassifier
from ..tokens import unpatchify
from ..vocab import Vocabulary
from .geometry import Geometry, breakpoints, deviation_box, flip_budget, geometry, per_image, tokenized
from .ibp import check_layers, margin_bounds
from .linear import linear_margin_bounds

MARGIN_SLACK = 1e-5  # a certified logit margin must exceed this times (1 + largest |logit|)
ENUMERATION_LIMIT = 512  # token combinations enumerated exactly, else bounds


def _combinations(radii: torch.Tensor, radius: float, budget: int, limit: int) -> list[list[tuple[int, int]]] | None:
    """Every set of at most ``budget`` (patch, token) changes, one token per patch, each with
    ``r_pj <= radius``: the combinations the bounds cover; ``None`` when there are more than ``limit``.
    ``radii``: P x K of one image."""
    reach = radii <= radius
    counts = [0] * (budget + 1)  # combinations by size: elementary symmetric sums of the option counts
    counts[0] = 1
    for c in reach.sum(dim=1).tolist():
        for k in range(budget, 0, -1):
            counts[k] += counts[k - 1] * c
    if sum(counts) > limit:
        return None
    options = [[(p, int(j)) for j in torch.nonzero(row).flatten()] for p, row in enumerate(reach)]
    options = [o for o in options if o]
    out: list[list[tuple[int, int]]] = []

    def walk(k: int, chosen: list[tuple[int, int]]) -> bool:
        if len(out) > limit:
            return False
        out.append(list(chosen))
        if len(chosen) < budget:
            for q in range(k, len(options)):
                for change in options[q]:
                    if not walk(q + 1, [*chosen, change]):
                        return False
        return True

    return out if walk(0, []) else None


def _exact(net: nn.Module, geo: Geometry, index: int, label: int, radius: float, vocab: Vocabulary,
           shape: tuple[int, int, int], limit: int, known: set[tuple[tuple[int, int], ...]]) -> bool | None:
    """Whether every token combination within the budget is classified ``label`` (None: too many) by
    ``net``, the deployed network (its own precision: the classifier's actual decisions). ``known``:
    the image's combinations already classified ``label`` (by earlier queries: the combinations at a
    smaller radius are a subset of those at a larger one), skipped here and grown by this query."""
    budget = int(flip_budget(geo.patch_radii[index:index + 1], radius)[0])
    combos = _combinations(geo.radii[index], radius, budget, limit)
    if combos is None:
        return None
    fresh = [c for c in map(tuple, combos) if c not in known]
    own = geo.own()[index]
    param = next(net.parameters())
    for start in range(0, len(fresh), 512):
        chunk = fresh[start:start + 512]
        batch = own.unsqueeze(0).repeat(len(chunk), 1, 1)
        rows = [b for b, combo in enumerate(chunk) for _ in combo]
        patches = [p for combo in chunk for p, _ in combo]
        tokens = [j for combo in chunk for _, j in combo]
        batch[rows, patches] = geo.tables[patches, tokens]
        images = unpatchify(batch, vocab.patch_size, vocab.mode, shape[0], shape[1:])
        with torch.no_grad():
            if (net(images.to(device=param.device, dtype=param.dtype)).argmax(1) != label).any():
                return False
        known.update(chunk)
    return True


def float64_copy(model: nn.Module) -> nn.Module:
    """The token classifier's network as a float64 CPU copy in eval mode, its layers checked."""
    if not isinstance(model, DiscreteClassifier):
        raise TypeError("flip-set certificates need a token classifier (DiscreteClassifier), "
                        f"got {type(model).__name__}")
    check_layers(model.net)
    net = copy.deepcopy(model.net).to(dtype=torch.float64, memory_format=torch.contiguous_format).cpu()
    return net.eval()


class _Certifier:
    """One image batch's geometry and the float64 network, for repeated radius queries."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None,
                 enumeration_limit: int, linear: bool) -> None:
        self.net = float64_copy(model)
        self.linear = linear
        self.deployed = model.net
        self.vocab = model.vocab
        self.x = x.detach().cpu().to(torch.float64)
        self.y = y.detach().cpu().long()
        if self.x.ndim != 4 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"x must be N x C x H x W with one label each, got {tuple(x.shape)}, {tuple(y.shape)}")
        self.shape = tuple(self.x.shape[1:])
        self.geo = geometry(self.x, self.vocab, scale)
        self.limit = enumeration_limit
        with torch.no_grad():
            self.center = tokenized(self.geo, self.vocab, self.shape[1:])
            logits = self.net(self.center)
        self.correct = logits.argmax(1) == self.y
        self.target = MARGIN_SLACK * (1 + logits.abs().max(dim=1).values)  # a certified margin exceeds it
        self.known: list[set[tuple[tuple[int, int], ...]]] = [set() for _ in range(len(self.y))]  # see _exact

    @torch.no_grad()
    def bounds_certify(self, rows: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        geo = Geometry(self.geo.assignment[rows], self.geo.radii[rows], self.geo.tables)
        lo, hi, reach = deviation_box(geo, radius)
        budget = flip_budget(geo.patch_radii, radius)
        args = (self.center[rows], lo, hi, budget, self.y[rows])
        lower = (linear_margin_bounds(self.net, self.vocab, geo, reach, *args, target=self.target[rows])
                 if self.linear else margin_bounds(self.net, self.vocab, *args))
        return lower.min(dim=1).values > self.target[rows]

    def certify(self, rows: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
        """Certified per image of ``rows`` at ``radius`` (one, or one per row): the bounds, else
        exact enumeration where the combinations are few."""
        radius = per_image(radius, len(rows))
        out = self.correct[rows] & self.bounds_certify(rows, radius)
        for k in torch.nonzero(self.correct[rows] & ~out).flatten().tolist():
            i = int(rows[k])
            exact = _exact(self.deployed, self.geo, i, int(self.y[i]), float(radius[k]), self.vocab, self.shape,
                           self.limit, self.known[i])
            out[k] = bool(exact)
        return out


def certified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, scale: torch.Tensor | None = None,
              *, enumeration_limit: int = ENUMERATION_LIMIT, batch: int = 16, linear: bool = True) -> torch.Tensor:
    """Per image of the float batch ``x`` (N x C x H x W in [0,1]) with labels ``y``: True only if the
    token classifier ``model`` predicts ``y`` at ``x`` and at every ``x + delta`` with
    ``||delta / scale||_2 <= radius`` (``scale``: per-channel unit scale, ``None`` for pixel units).
    ``linear``: the linear (CROWN-IBP) bound beside IBP's (:func:`linear_margin_bounds`); ``False``
    for IBP alone."""
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and >= 0, got {radius}")
    out = []
    for start in range(0, x.shape[0], batch):
        certifier = _Certifier(model, x[start:start + batch], y[start:start + batch], scale, enumeration_limit, linear)
        out.append(certifier.certify(torch.arange(certifier.x.shape[0]), float(radius)))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def certified_radius(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None = None, *,
                     enumeration_limit: int = ENUMERATION_LIMIT, batch: int = 16, linear: bool = True,
                     ) -> torch.Tensor:
    """Per image the flip-set certified radius (float64; 0 when misclassified): the supremum of the
    radii :func:`certified` accepts, by bisection over the image's breakpoints (certification is
    constant between breakpoints, so the result is sound whatever the bisection meets; with IBP
    alone it is also monotone and the radius the largest, with the linear bound nearly always: its
    relaxation can, rarely, be tighter at a larger radius). ``inf`` when no breakpoint breaks it."""
    out = []
    for start in range(0, x.shape[0], batch):
        certifier = _Certifier(model, x[start:start + batch], y[start:start + batch], scale, enumeration_limit, linear)
        out.append(_bisect(certifier))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _bisect(certifier: _Certifier) -> torch.Tensor:
    """Certified radius of every image of ``certifier``: all images search together, one query per step.
    An exponential search: breakpoints 1, 3, 7, 15, ... until one fails, then bisection between the
    last certified and the first failed. The radius is nearly always among the first few dozen of an
    image's thousands of breakpoints, where queries are also cheapest (few reachable tokens, few
    combinations to enumerate); plain bisection began at the middle breakpoint, far out."""
    n = certifier.x.shape[0]
    rows = torch.arange(n)
    points = [breakpoints(certifier.geo, i) for i in range(n)]
    count = torch.tensor([p.numel() for p in points])
    ok0 = certifier.certify(rows, 0.0)  # breakpoint 0 is radius 0
    low = torch.where(ok0, 0, -1)  # index of the last breakpoint known certified (-1: none)
    high = torch.where(ok0, count, 0)  # index of the first known uncertified (count: none is)
    while bool((high - low > 1).any()):
        active = torch.nonzero(high - low > 1).flatten()
        mid = torch.where(high[active] < count[active], (low[active] + high[active]) // 2,
                          torch.minimum(2 * low[active] + 1, count[active] - 1))
        radius = torch.stack([points[k][m] for k, m in zip(active.tolist(), mid.tolist(), strict=True)])
        ok = certifier.certify(active, radius)
        low[active] = torch.where(ok, mid, low[active])
        high[active] = torch.where(ok, high[active], mid)
    out = torch.zeros(n, dtype=torch.float64)
    for k in range(n):
        if low[k] >= 0:  # certified on [points[low], points[high]): the supremum is points[high]
            out[k] = points[k][high[k]] if high[k] < count[k] else math.inf
    return out
