"""The flip-set certifier: exact enumeration of the reachable token combinations where they are few, else
bounds, and the certified radius by bisection over the breakpoints."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..models import DiscreteClassifier, forward_batches
from ..tokens import unpatchify
from ..vocab import Vocabulary
from .enumeration import COST_SLACK, Change, Option, combinations
from .geometry import Geometry, breakpoints, deviation_box, flip_budget, geometry, per_image, tokenized
from .ibp import check_layers, margin_bounds
from .linear import linear_margin_bounds

MARGIN_SLACK = 1e-5  # a certified logit margin must exceed this times (1 + largest |logit|)
ENUMERATION_LIMIT = 512  # reachable token combinations enumerated exactly, else bounds


class _Options:
    """One image's reachable changes, cheapest first: its patches ordered by their cheapest token, each
    patch's tokens by radius, so the changes within a radius are a prefix of every patch's list and a
    combination's changes always come in the same order (the enumeration's cache compares them)."""

    def __init__(self, radii: torch.Tensor) -> None:
        self.radii, self.tokens = torch.sort(radii, dim=1)  # P x K, inf (the own token) last
        self.order = torch.argsort(self.radii[:, 0], stable=True).tolist()

    def within(self, radius: float) -> list[Option]:
        counts = ((self.radii <= radius) & torch.isfinite(self.radii)).sum(dim=1).tolist()
        return [(p, list(zip(self.tokens[p, :counts[p]].tolist(), self.radii[p, :counts[p]].square().tolist(),
                             strict=True))) for p in self.order if counts[p]]


def _window(options: _Options, radius: float, upper: float, limit: int, known: set[tuple[Change, ...]],
            ) -> list[tuple[tuple[Change, ...], float]] | None:
    """The token combinations a perturbation of the image of ``options`` can reach from ``radius`` up to
    ``upper`` (the window: these sets stay the same up to the next breakpoint): at most the budget's
    patches, each to a token reachable at ``radius``, with summed squared radii up to ``upper^2``; those not
    in ``known`` (already classified correctly), cheapest first, with their sums. ``None`` when they are
    more than ``limit``."""
    budget = int(flip_budget(options.radii[:, :1].T, radius)[0])  # its patch radii: each patch's cheapest token
    combos = combinations(options.within(radius), upper * upper * (1 + COST_SLACK), limit, budget)
    if combos is None:
        return None
    return sorted((c for c in combos if c[0] not in known), key=lambda c: c[1])


def _exact(net: nn.Module, geo: Geometry, index: int, label: int, fresh: list[tuple[tuple[Change, ...], float]],
           vocab: Vocabulary, shape: tuple[int, int, int], known: set[tuple[Change, ...]]) -> float:
    """How far the combinations ``fresh`` of a :func:`_window` are classified ``label`` by ``net``, the
    deployed network (its own precision: the classifier's actual decisions): ``inf`` when all of them
    are, else the square root of the smallest summed cost of one that is not (below it, every reachable
    combination was classified ``label``). Grows ``known`` by those classified ``label``."""
    own = geo.own()[index]
    param = next(net.parameters())
    for part in forward_batches(len(fresh), param.device):  # cheapest first: a refusal ends it early
        chunk = fresh[part]
        batch = own.unsqueeze(0).repeat(len(chunk), 1, 1)
        rows = [b for b, (combo, _) in enumerate(chunk) for _ in combo]
        patches = [p for combo, _ in chunk for p, _ in combo]
        tokens = [j for combo, _ in chunk for _, j in combo]
        batch[rows, patches] = geo.tables[patches, tokens]
        images = unpatchify(batch, vocab.patch_size, vocab.mode, shape[0], shape[1:])
        with torch.no_grad():
            right = (net(images.to(device=param.device, dtype=param.dtype)).argmax(1) == label).tolist()
        known.update(combo for (combo, _), ok in zip(chunk, right, strict=True) if ok)
        if not all(right):  # the sums are sorted: the first one refused is the smallest
            return math.sqrt(min(cost for (_, cost), ok in zip(chunk, right, strict=True) if not ok)
                             / (1 + COST_SLACK))
    return math.inf


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
                 enumeration_limit: int, linear: bool, radii: torch.Tensor | None = None) -> None:
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
        if radii is not None:  # lower bounds of the flip costs at least the bisector radii, own tokens inf
            if radii.shape != self.geo.radii.shape or not bool((radii >= self.geo.radii).all()):
                raise ValueError(f"radii must be {tuple(self.geo.radii.shape)} and at least the bisector radii")
            self.geo = Geometry(self.geo.assignment, radii.to(torch.float64), self.geo.tables)
        self.limit = enumeration_limit
        with torch.no_grad():
            self.center = tokenized(self.geo, self.vocab, self.shape[1:])
            logits = self.net(self.center)
        self.correct = logits.argmax(1) == self.y
        self.target = MARGIN_SLACK * (1 + logits.abs().max(dim=1).values)  # a certified margin exceeds it
        self.known: list[set[tuple[Change, ...]]] = [set() for _ in range(len(self.y))]  # see _exact
        self.options: dict[int, _Options] = {}
        self.overflow: dict[int, tuple[float, float]] = {}  # per image a window too large: so is any above it

    @torch.no_grad()
    def bounds_certify(self, rows: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        geo = self.geo.take(rows)
        lo, hi, reach = deviation_box(geo, radius)
        budget = flip_budget(geo.patch_radii, radius)
        args = (self.center[rows], lo, hi, budget, self.y[rows])
        lower = (linear_margin_bounds(self.net, self.vocab, geo, reach, *args, target=self.target[rows])
                 if self.linear else margin_bounds(self.net, self.vocab, *args))
        return lower.min(dim=1).values > self.target[rows]

    def reach(self, rows: torch.Tensor, radius: float | torch.Tensor, upper: float | torch.Tensor) -> torch.Tensor:
        """Per image of ``rows``, how far from ``radius`` (one, or one per row) it is certified, within the
        window up to ``upper`` (at most the next breakpoint): ``inf`` when the bounds certify it at
        ``radius`` (they stay the same up to the next breakpoint) or every combination of the window is
        classified correctly; else the radius below which every reachable combination is (at most
        ``radius``: not certified at ``radius``), ``-inf`` when neither decides. A window within the
        enumeration limit is classified without the bounds: that decides exactly (the bounds could only
        certify it whole) and costs less (on the study's classifiers, 1.3-2x less than the bounds first)."""
        radius, upper = per_image(radius, len(rows)), per_image(upper, len(rows))
        out = torch.full((len(rows),), -math.inf, dtype=torch.float64)
        windows = {}
        for k in torch.nonzero(self.correct[rows]).flatten().tolist():
            i, window = int(rows[k]), (float(radius[k]), float(upper[k]))
            over = self.overflow.get(i, (math.inf, math.inf))
            if window[0] >= over[0] and window[1] >= over[1]:  # contains a window with too many combinations
                windows[k] = None
                continue
            if i not in self.options:  # sorted once per image, not per query
                self.options[i] = _Options(self.geo.radii[i])
            windows[k] = _window(self.options[i], *window, self.limit, self.known[i])
            if windows[k] is None and window < over:
                self.overflow[i] = window
        bound = [k for k, w in windows.items() if w is None]
        if bound:
            ok = self.bounds_certify(rows[bound], radius[bound])
            out[torch.tensor(bound)[ok]] = math.inf
        for k, fresh in windows.items():
            if fresh is not None:
                i = int(rows[k])
                out[k] = _exact(self.deployed, self.geo, i, int(self.y[i]), fresh, self.vocab, self.shape,
                                self.known[i])
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
        out.append(certifier.reach(torch.arange(certifier.x.shape[0]), radius, radius) > radius)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def certified_radius(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None = None, *,
                     enumeration_limit: int = ENUMERATION_LIMIT, batch: int = 16, linear: bool = True,
                     radii: torch.Tensor | None = None) -> torch.Tensor:
    """Per image the flip-set certified radius (float64; 0 when misclassified): the supremum of the
    radii :func:`certified` accepts, by bisection over the image's breakpoints (certification is
    constant between breakpoints, so the result is sound whatever the bisection meets; with IBP
    alone it is also monotone and the radius the largest, with the linear bound nearly always: its
    relaxation can, rarely, be tighter at a larger radius). ``inf`` when no breakpoint breaks it.
    ``radii`` (N x P x K): lower bounds of the flip costs in place of the bisector radii, e.g. the
    distances to the cells within the pixel box (:meth:`tokencert.flipsearch.candidates.Flips.cost_radii`); the
    radius is then certified against the perturbations they bound (those that keep the image in the box)."""
    out = []
    for start in range(0, x.shape[0], batch):
        part = None if radii is None else radii[start:start + batch]
        certifier = _Certifier(model, x[start:start + batch], y[start:start + batch], scale, enumeration_limit, linear,
                               part)
        out.append(_bisect(certifier))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _bisect(certifier: _Certifier) -> torch.Tensor:
    """Certified radius of every image of ``certifier``: all images search together, one query per step.
    A query at breakpoint ``m`` asks whether the image is certified from it up to the next breakpoint.
    An exponential search: breakpoints 1, 3, 7, 15, ... until one fails, then bisection between the
    last certified and the first failed. The radius is nearly always among the first few dozen of an
    image's thousands of breakpoints, where queries are also cheapest (few reachable tokens, few
    combinations to enumerate); plain bisection began at the middle breakpoint, far out. The radius is
    the first failed breakpoint, or beyond it where the enumeration certifies part of its window."""
    n = certifier.x.shape[0]
    points = [torch.cat([breakpoints(certifier.geo, i), torch.tensor([math.inf], dtype=torch.float64)])
              for i in range(n)]
    count = torch.tensor([p.numel() - 1 for p in points])
    low = torch.full((n,), -1)  # index of the last breakpoint known certified up to the next (-1: none)
    high = count.clone()  # index of the first known uncertified (count: none is)
    partial = torch.full((n,), -math.inf, dtype=torch.float64)  # how far the query at high still certified
    first = True
    while bool((high - low > 1).any()):
        active = torch.nonzero(high - low > 1).flatten()
        mid = (torch.zeros_like(active) if first else
               torch.where(high[active] < count[active], (low[active] + high[active]) // 2,
                           torch.minimum(2 * low[active] + 1, count[active] - 1)))
        first = False
        radius = torch.stack([points[k][m] for k, m in zip(active.tolist(), mid.tolist(), strict=True)])
        upper = torch.stack([points[k][m + 1] for k, m in zip(active.tolist(), mid.tolist(), strict=True)])
        reach = certifier.reach(active, radius, upper)
        ok = reach >= upper
        low[active] = torch.where(ok, mid, low[active])
        high[active] = torch.where(ok, high[active], mid)
        partial[active] = torch.where(ok, partial[active], reach)
    out = torch.zeros(n, dtype=torch.float64)
    for k in range(n):
        if high[k] < count[k]:  # certified below points[high] (and below partial, when larger)
            out[k] = max(float(points[k][high[k]]), float(partial[k]))
        else:
            out[k] = math.inf
    return out
