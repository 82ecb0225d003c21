"""The complete verifier of a token classifier's smallest adversarial perturbation: branch and bound over
token assignments.

For ``f(Q(x))`` the smallest adversarial perturbation is ``min sqrt(sum_p d_p(T_p)^2)`` over the token
assignments ``T`` with ``f(T) != y`` (``d_p(j)``: the exact distance from patch ``p`` to token ``j``'s cell
within the box). The search (:mod:`tokencert.flipsearch`) gives an upper bound ``U`` with a realised image. The
verifier then decides "no assignment within ``rho`` changes the class" for ``rho = U (1 - tol)``: a node
fixes the tokens of some patches (their cost spent) and leaves the others free within the remaining
budget; the flip-set bounds of :mod:`tokencert.setcert` on that sub-problem (each free patch's reachable
tokens by the lower bounds of their costs, the flip budget, IBP and the linear bound) prune it, a node
with few combinations left is enumerated on the deployed network (a combination that changes the class
and whose exact cost is within ``rho`` is realised and becomes the new ``U``), and any other node is
split on its cheapest free patch (its own token, or each reachable one). A proof at ``rho`` closes the
bracket; a node budget that runs out leaves the largest ``rho`` proved so far (by bisection between
the proved and the open, from the flip-set certificate on the same costs: within the box, so it is this
problem's bound, not :mod:`tokencert.setcert`'s certificate for any perturbation), so the interval is sound
either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from .flipsearch.adversarial import SearchSettings, Settings, token_search
from .flipsearch.candidates import Flips, candidate_flips, exact_costs
from .flipsearch.search import margins
from .models import DiscreteClassifier
from .setcert import (
    ENUMERATION_LIMIT,
    MARGIN_SLACK,
    Change,
    Geometry,
    Option,
    certified_radius,
    combinations,
    deviation_box,
    flip_budget,
    float64_copy,
    linear_margin_bounds,
)
from .study import CLOSED_BRACKET
from .units import norms


@dataclass(frozen=True)
class VerifierSettings(Settings):
    """``nodes`` per decision, ``decisions`` per image (bisection steps after the first), ``node_batch``
    nodes bounded together, ``enumeration`` combinations classified at a leaf, ``start_limit`` the
    enumeration limit of the flip-set certificate the bisection starts from."""

    nodes: int = 400
    decisions: int = 4
    node_batch: int = 32
    enumeration: int = 256
    start_limit: int = ENUMERATION_LIMIT


@dataclass
class FlipRadius:
    """Per image: ``lower <= minimal adversarial norm <= upper`` (float64; 0 for a misclassified image,
    ``upper`` inf when nothing was found), the realised ``adversarial`` images (the original where
    ``upper`` is inf), whether the interval is ``closed`` and the nodes bounded."""

    lower: torch.Tensor
    upper: torch.Tensor
    adversarial: torch.Tensor
    closed: torch.Tensor
    nodes: torch.Tensor


def minimal_flip_radius(model: DiscreteClassifier, x: torch.Tensor, y: torch.Tensor,
                        scale: torch.Tensor | None = None, *, max_radius: float = 4.0,
                        search: SearchSettings = SearchSettings(), settings: VerifierSettings = VerifierSettings(),
                        seed: int = 0) -> FlipRadius:
    """Sound interval on the smallest adversarial L2 perturbation (units of ``scale``) of every float image
    of ``x`` (N x C x H x W in [0,1], labels ``y``), up to ``max_radius``: exact (``closed``) wherever the
    branch and bound finishes within ``settings.nodes`` per decision."""
    found = token_search(model, x, y, max_radius, scale, search, seed=seed)
    n = x.shape[0]
    out = FlipRadius(torch.zeros(n, dtype=torch.float64), found.norm.clone(), found.images,
                     found.norm == 0, torch.zeros(n, dtype=torch.long))
    net = float64_copy(model)
    flips = candidate_flips(x.detach().cpu(), model.vocab, scale, max_radius, search.per_patch)
    radii = flips.cost_radii()
    # R_set on the same costs (a proved start in the box, cheaply)
    start = certified_radius(model, x.detach().cpu(), y.detach().cpu(), scale, radii=radii,
                             enumeration_limit=settings.start_limit)
    for i in tqdm(range(n), desc="exactflip (images)", mininterval=2.0):
        if out.upper[i] == 0:
            continue
        problem = _Problem(model, net, flips, radii, i, x[i].detach().cpu(), int(y[i]), scale, settings)
        _verify_image(problem, out, i, min(float(start[i]), max_radius), max_radius, settings)
    return out


def _verify_image(problem: _Problem, out: FlipRadius, i: int, proved: float, max_radius: float,
                  settings: VerifierSettings) -> None:
    """Bisection of decisions between the largest radius proved (the flip-set certificate's, to begin
    with) and the upper bound."""
    open_ = None
    for _ in range(settings.decisions + 1):
        target = min(float(out.upper[i]), max_radius) * (1 - CLOSED_BRACKET) if open_ is None else (proved + open_) / 2
        verdict, adversarial = problem.decide(target)
        out.nodes[i] += problem.nodes
        if adversarial is not None:
            image, size = adversarial
            if size < out.upper[i]:
                out.upper[i], out.adversarial[i] = size, image
            open_ = None if size < out.upper[i] * (1 + 1e-12) else target
            continue
        if verdict:
            proved = max(proved, target)
            if open_ is None:
                break
        else:
            open_ = target
    out.lower[i] = min(proved, float(out.upper[i]))
    out.closed[i] = bool(out.lower[i] >= out.upper[i] * (1 - CLOSED_BRACKET) - 1e-12)


class _Problem:
    """One image's branch and bound: float64 bounds, the deployed network at the leaves."""

    def __init__(self, model: DiscreteClassifier, net: torch.nn.Module, flips: Flips, radii: torch.Tensor, image: int,
                 x: torch.Tensor, label: int, scale: torch.Tensor | None, settings: VerifierSettings) -> None:
        self.model, self.net, self.flips, self.image, self.x, self.label = model, net, flips, image, x, label
        self.scale, self.settings = scale, settings
        self.costs = radii[image].square()  # P x K squared lower bounds of the exact costs (inf: the own token)
        self.own = flips.assignment[image]
        self.nodes = 0

    def _geometry(self, fixed: torch.Tensor) -> Geometry:
        """Nodes (B x P fixed tokens, -1 free) as a batch of the certificate's geometry."""
        assignment = torch.where(fixed >= 0, fixed, self.own)
        radii = self.costs.sqrt().unsqueeze(0).repeat(len(fixed), 1, 1)
        radii[fixed >= 0] = torch.inf
        return Geometry(assignment, radii, self.flips.tables)

    def _certified(self, fixed: torch.Tensor, remaining: torch.Tensor) -> torch.Tensor:
        geo = self._geometry(fixed)
        center = self.flips.token_images(geo.assignment, self.model.vocab, tuple(self.x.shape))
        labels = torch.full((len(fixed),), self.label)
        with torch.no_grad():
            logits = self.net(center)
        target = MARGIN_SLACK * (1 + logits.abs().max(dim=1).values)
        radius = remaining.clamp(min=0).sqrt()
        lo, hi, reach = deviation_box(geo, radius)
        budget = flip_budget(geo.patch_radii, radius)
        with torch.no_grad():
            lower = linear_margin_bounds(self.net, self.model.vocab, geo, reach, center, lo, hi, budget, labels,
                                         target=target, radius=radius)
        return (logits.argmax(1) == self.label) & (lower.min(dim=1).values > target)

    def decide(self, rho: float) -> tuple[bool, tuple[torch.Tensor, float] | None]:
        """(proved: no assignment within ``rho`` changes the class, a realised adversarial image within
        ``rho`` found on the way (then not proved)); ``(False, None)`` when the node budget ran out."""
        self.nodes = 0
        p = self.costs.shape[0]
        stack = [(torch.full((p,), -1, dtype=torch.long), rho * rho)]
        while stack:
            if self.nodes >= self.settings.nodes:
                return False, None
            batch = stack[-self.settings.node_batch:]
            del stack[-self.settings.node_batch:]
            self.nodes += len(batch)
            fixed = torch.stack([b[0] for b in batch])
            remaining = torch.tensor([b[1] for b in batch], dtype=torch.float64)
            done = self._certified(fixed, remaining)
            for k in torch.nonzero(~done).flatten().tolist():
                node, left = fixed[k], float(remaining[k])
                combos = self._combinations(node, left)
                if combos is not None:
                    found = self._leaf(node, combos, rho)
                    if found is not None:
                        return False, found
                    continue
                stack.extend(self._split(node, left))
        return True, None

    def _options(self, node: torch.Tensor, left: float) -> list[Option]:
        """Free patches with their reachable tokens and squared costs within ``left``, cheapest first."""
        reach = (self.costs <= left) & (node < 0).unsqueeze(1)
        out = []
        for q in torch.nonzero(reach.any(dim=1)).flatten().tolist():
            tokens = torch.nonzero(reach[q]).flatten()
            costs = self.costs[q, tokens]
            order = torch.argsort(costs, stable=True)
            out.append((q, list(zip(tokens[order].tolist(), costs[order].tolist(), strict=True))))
        return out

    def _split(self, node: torch.Tensor, left: float) -> list[tuple[torch.Tensor, float]]:
        """Children on the free patch with the cheapest flip: it keeps its token, or takes each reachable one."""
        q, tokens = min(self._options(node, left), key=lambda o: o[1][0][1])
        keep = node.clone()
        keep[q] = self.own[q]
        children = [(keep, left)]
        for j, c in tokens:
            child = node.clone()
            child[q] = j
            children.append((child, left - c))
        return children

    def _combinations(self, node: torch.Tensor, left: float) -> list[tuple[Change, ...]] | None:
        """Every set of changes of the free patches with summed squared cost within ``left`` (the empty set
        first), or ``None`` when there are more than the enumeration limit."""
        combos = combinations(self._options(node, left), left, self.settings.enumeration)
        return None if combos is None else [c for c, _ in combos]

    def _leaf(self, node: torch.Tensor, combos: list[tuple[Change, ...]], rho: float,
              ) -> tuple[torch.Tensor, float] | None:
        """Classify every combination of a leaf; the first that changes the class within ``rho`` by its
        exact costs, realised and verified (image, norm); ``None`` when there is none."""
        assignment = torch.where(node >= 0, node, self.own).unsqueeze(0).repeat(len(combos), 1)
        for b, combo in enumerate(combos):
            for q, j in combo:
                assignment[b, q] = j
        images = self.flips.token_images(assignment, self.model.vocab, tuple(self.x.shape))
        wrong = margins(self.model.net, images, torch.full((len(combos),), self.label)) < 0
        for b in torch.nonzero(wrong).flatten().tolist():
            found = self._realise(assignment[b], rho)
            if found is not None:
                return found
        return None

    def _realise(self, assignment: torch.Tensor, rho: float) -> tuple[torch.Tensor, float] | None:
        """The assignment as a float32 image at its exact costs, if they are within ``rho`` and it fools the
        deployed model with exactly these tokens."""
        changed = torch.nonzero(assignment != self.own).flatten()
        patches = self.flips.patches[self.image]
        cells = exact_costs(patches[changed], changed, assignment[changed], self.model.vocab, self.scale,
                            patches.shape[0])
        if not torch.isfinite(cells.upper).all() or float(cells.lower.square().sum()) > rho * rho:
            return None
        image = self.flips.moved(self.image, changed, cells.points, self.model.vocab, tuple(self.x.shape))
        device = next(self.model.net.parameters()).device
        with torch.no_grad():
            if int(self.model(image.unsqueeze(0).to(device)).argmax(1)[0]) == self.label:
                return None
        return image, float(norms((image.double() - self.x.double()).unsqueeze(0), self.scale)[0])
