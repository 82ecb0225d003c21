"""Token combinations under a summed squared cost: the sets of changes a perturbation within a radius can
make. Perturbations of distinct patches are orthogonal, so changes ``(p, j)`` with squared costs ``c_pj``
(lower bounds of the squared distances from patch ``p`` to token ``j``'s cell) need a perturbation of norm
at least ``sqrt(sum c_pj)``: within ``r`` only the sets with ``sum c_pj <= r^2`` are reachable. Shared by
the flip-set certificate's enumeration (bisector radii) and the verifier's leaves (exact costs where
known)."""

from __future__ import annotations

import math

Change = tuple[int, int]
"""A patch and the token it takes."""
Option = tuple[int, list[tuple[int, float]]]
"""A patch and the tokens it can take with their squared costs, cheapest first."""
COST_SLACK = 1e-12
"""Relative slack on a summed squared cost: sums in another order may differ in the last bits."""


def combinations(options: list[Option], left: float, limit: int, most: int | None = None,
                 ) -> list[tuple[tuple[Change, ...], float]] | None:
    """Every set of changes, one token per patch of ``options`` and at most ``most`` of them, whose squared
    costs sum to at most ``left``, with that sum: the empty set first, then depth first in the options'
    order (so a set's changes are always listed in that order). ``None`` when there are more than
    ``limit``."""
    floor = [math.inf] * (len(options) + 1)  # the cheapest change of any option from a on: the walk stops there
    for a in range(len(options) - 1, -1, -1):
        floor[a] = min(floor[a + 1], options[a][1][0][1] if options[a][1] else math.inf)
    out: list[tuple[tuple[Change, ...], float]] = []

    def walk(k: int, chosen: tuple[Change, ...], spent: float) -> bool:
        if len(out) >= limit:
            return False
        out.append((chosen, spent))
        if most is not None and len(chosen) >= most:
            return True
        for a in range(k, len(options)):
            if spent + floor[a] > left:
                break
            q, tokens = options[a]
            for j, c in tokens:
                if spent + c > left:
                    break  # cheapest first: the rest of this patch's tokens cost more
                if not walk(a + 1, (*chosen, (q, j)), spent + c):
                    return False
        return True

    return out if walk(0, (), 0.0) else None
