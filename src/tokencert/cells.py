"""Exact patch geometry: the distance from a patch to a token's Voronoi cell within the pixel box,
and a point inside that cell a float32 image can hold.

The cell of token ``t_j`` is ``{z : ||z - t_j|| <= ||z - t_k|| for all k}`` (the tokenizer's rule in
float64), i.e. ``a_k . z <= b_k`` with ``a_k = 2 (t_k - t_j)``, ``b_k = ||t_k||^2 - ||t_j||^2``. The
cost of moving patch ``x`` into it is ``d_j(x)^2 = min ||(z - x) / s||^2`` over the cell and
``0 <= z <= 1`` (``s``: the per-dimension unit scale). The bisector radius ``r_j`` of
:mod:`tokencert.certify` is the distance to one of these half-spaces, a lower bound.

A small QP per (patch, token) pair: in the scaled displacement ``y = (z - x) / s`` it is a *least
distance program* (``min ||y||`` under linear inequalities), solved exactly by Lawson and Hanson's
reduction to non-negative least squares (``scipy.optimize.nnls``) over a working set of inequalities
(cutting planes: the bisector of the patch's own token first, then every inequality the solution still
violates, until none is). The inequalities are tightened by :data:`MARGIN` so the solution lies strictly
inside the cell; rounded to float32 it is checked with the tokenizer's own scores (tightened further
where a tie remains), and its distance is the *upper bound*. The solver's multipliers, put into the
Lagrangian of the untightened problem (minimised over the box in closed form), give the *lower bound*
by weak duality: sound whatever the solver's rounding, and equal to the upper bound up to the margin.
(Batched first-order dual ascent was tried first: on K = 256 Gaussian tokens its gap was still
1e-3 after 200 iterations and 20 s for 1,800 pairs, where this solver is exact in 2-3 cuts.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .tokens import token_scores

MARGIN = 5e-8
"""Realised points satisfy every cell inequality with slack ``MARGIN (||a_k||_1 + |b_k| + 1)``: more than
float32 rounding of a point in ``[0,1]`` (2^-25 per coordinate) can move ``a_k . z``."""


@dataclass
class CellDistances:
    """Per (patch, token) pair: ``lower <= d <= upper`` (float64, scaled units; ``upper`` is ``inf``
    where no point was realised, ``lower`` is ``inf`` for an empty cell) and ``points`` (M x d, the
    realised float32-representable point, valid where ``upper`` is finite)."""

    lower: torch.Tensor
    upper: torch.Tensor
    points: torch.Tensor


def _constraints(tokens: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``b`` (M x K), the mask of real constraints (M x K: not the target, not a duplicate of it) and
    the empty-cell flag (a duplicate of the target with a lower index wins every tie)."""
    sq = (tokens * tokens).sum(dim=1)
    b = sq.unsqueeze(0) - sq[targets].unsqueeze(1)
    same = (tokens.unsqueeze(0) == tokens.unsqueeze(1)).all(dim=2)[targets]  # K x K, then per pair
    index = torch.arange(tokens.shape[0])
    empty = (same & (index.unsqueeze(0) < targets.unsqueeze(1))).any(dim=1)
    return b, ~same, empty


def _slack(z: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a_k . z - b_k`` for every pair and token (M x K)."""
    tz = z @ tokens.T
    return 2.0 * (tz - (z * tokens[targets]).sum(dim=1, keepdim=True)) - b


def lower_bound(x: torch.Tensor, lam: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
    """``d^2 >= 2 g(lam)`` for any multipliers ``lam >= 0`` (M x K): the Lagrangian minimised over the box
    at ``z = clip(x - s^2 A^T lam, 0, 1)`` (weak duality), so the bound is sound for any ``lam``."""
    b, _, _ = _constraints(tokens, targets)
    at_lam = 2.0 * (lam @ tokens - lam.sum(dim=1, keepdim=True) * tokens[targets])
    z = (x - scale * scale * at_lam).clamp(0.0, 1.0)
    return (((z - x) / scale) ** 2).sum(dim=1) + 2.0 * (lam * _slack(z, tokens, targets, b)).sum(dim=1)


def _wins(points: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Whether the tokenizer's float64 scores put each point in its target's cell, no tie (a later copy of
    the target ties always and loses it: ties go to the lowest index). ``real``: the targets' constraint
    mask (:func:`_constraints`)."""
    scores = token_scores(points, tokens)
    own = scores.gather(1, targets.unsqueeze(1))
    later_copy = ~real & (torch.arange(tokens.shape[0]) > targets.unsqueeze(1))
    others = scores.scatter(1, targets.unsqueeze(1), torch.inf).masked_fill(later_copy, torch.inf)
    return (own < others).all(dim=1)


def _least_distance(x: np.ndarray, s: np.ndarray, a: np.ndarray, b: np.ndarray, first: int,
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """``argmin ||(z - x) / s||`` over ``a z <= b`` and the box, with the multipliers of ``a``'s rows;
    ``None`` when infeasible. Lawson and Hanson's LDP: ``min ||y||`` s.t. ``G y >= h`` is the residual of
    ``nnls([G^T; h^T], e_last)``; rows enter by cutting planes."""
    from scipy.optimize import nnls  # here: every attack job imports this module, few solve a cell (0.5 s)

    d, k = x.shape[0], a.shape[0]
    cells = [first] if first >= 0 else []
    low: list[int] = []
    high: list[int] = []
    e = np.zeros(d + 1)
    e[d] = 1.0
    diag = np.diag(s)
    for _ in range(k + 2 * d):
        g = np.concatenate([-a[cells] * s, diag[low], -diag[high]])
        h = np.concatenate([a[cells] @ x - b[cells], -x[low], x[high] - 1.0])
        system = np.concatenate([g.T, h[None]])
        u, _ = nnls(system, e, maxiter=50 * (len(h) + d + 1))
        r = system @ u - e
        if not r[d] < -1e-12:  # zero residual: the inequalities have no common point
            return None
        z = x + s * (r[:d] / -r[d])
        tol = 1e-12 * (1.0 + np.abs(b))
        cut = np.nonzero(a @ z - b > tol)[0]
        new_cells = [int(c) for c in cut if c not in cells]
        new_low = [int(i) for i in np.nonzero(z < -1e-15)[0] if i not in low]
        new_high = [int(i) for i in np.nonzero(z > 1.0 + 1e-15)[0] if i not in high]
        if not (new_cells or new_low or new_high):
            lam = np.zeros(k)
            np.add.at(lam, cells, u[:len(cells)] / -r[d])
            return np.clip(z, 0.0, 1.0), lam
        cells, low, high = cells + new_cells, low + new_low, high + new_high
    return None


@torch.no_grad()
def cell_distances(x: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor | None = None,
                   ) -> CellDistances:
    """Distances from patches ``x`` (M x d in [0,1]) to the cells of ``tokens[targets]`` (K x d, M indices)
    within the box, in the metric ``||delta / scale||`` (``scale``: d per-dimension unit scale, ``None``
    for pixels), and the realised points; a pair whose patch already lies strictly in the target cell
    costs 0 (the patch itself)."""
    x = x.to(torch.float64)
    tokens = tokens.to(torch.float64)
    m, d = x.shape
    s = torch.ones(d, dtype=torch.float64) if scale is None else scale.to(torch.float64).expand(d)
    b, real, empty = _constraints(tokens, targets)
    lam = torch.zeros(m, tokens.shape[0], dtype=torch.float64)
    point = x.clone()
    ok = _wins(x, tokens, targets, real)
    own = token_scores(x, tokens).argmin(dim=1)
    t_np, x_np, s_np, b_np = tokens.numpy(), x.numpy(), s.numpy(), b.numpy()
    a_l1 = (2.0 * (tokens.unsqueeze(0) - tokens.unsqueeze(1)).abs().sum(dim=2))[targets]  # ||a_k||_1, K x K first
    need = (MARGIN * (a_l1 + b.abs() + 1.0)).numpy()
    lam_np, real_np, own_np, targets_np = lam.numpy(), real.numpy(), own.tolist(), targets.tolist()
    pending = torch.nonzero(~ok & ~empty).flatten().tolist()
    for grow in (1.0, 16.0, 256.0):  # each pair: tighter margins until its rounded point wins (or no point is)
        solved, points = [], []
        for i in pending:
            j, keep = targets_np[i], real_np[i]
            first = int(keep[:own_np[i]].sum()) if own_np[i] != j and keep[own_np[i]] else -1
            found = _least_distance(x_np[i], s_np, 2.0 * (t_np[keep] - t_np[j]), b_np[i][keep] - grow * need[i][keep],
                                    first)
            if found is not None:
                lam_np[i, keep] = found[1]
                solved.append(i)
                points.append(found[0])
        if not solved:
            break
        rows = torch.tensor(solved)
        z = torch.from_numpy(np.stack(points)).to(torch.float32).to(torch.float64)
        wins = _wins(z, tokens, targets[rows], real[rows])
        point[rows[wins]], ok[rows[wins]] = z[wins], True
        pending = rows[~wins].tolist()
    upper = torch.where(ok, (((point - x) / s) ** 2).sum(dim=1).sqrt(), torch.inf)
    lower = lower_bound(x, lam, tokens, targets, s).clamp(min=0.0).sqrt() * (1.0 - 1e-12)
    lower = torch.where(empty, torch.inf, torch.minimum(lower, upper))
    return CellDistances(lower, torch.where(empty, torch.inf, upper), point)
