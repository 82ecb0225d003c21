"""Flip-set certificates: sound certificates of a token classifier beyond one token flip.

Perturbations of distinct patches are orthogonal, so a perturbation that moves patch ``p`` into
the cell of token ``j`` costs at least ``r_pj`` (the bisector distance, :mod:`tokencert.certify`)
and a set ``S`` of changed patches at least ``sqrt(sum_{p in S} r_p^2)``. Within a radius ``r``:

* patch ``p`` can only take its own token or a token ``j`` with ``r_pj <= r`` (its reachable set);
* at most ``m`` patches change, ``m`` the largest count whose smallest squared patch radii sum to
  at most ``r^2``.

The network sees the tokenized image. Its first linear layer (after the input normalization) is
bounded per output unit by the ``m`` largest per-patch contributions, each maximized over the box
spanned by the patch's reachable tokens (computed in one pass per class of patches that share no
output unit: 4 classes for a 3 x 3 convolution over 4 x 4 patches); every later layer by interval
bound propagation (IBP), the last one on the logit differences ``z_y - z_j`` directly. On these
intermediate bounds a linear bound of each margin is then back-substituted to the input image
(CROWN-IBP), whose minimum over the budgeted token choices is exact per patch; the larger of the
two bounds counts. The token combinations a perturbation within ``r`` can reach are those whose
squared radii sum to at most ``r^2`` (:mod:`.enumeration`); when they are few, they are all classified
on the deployed network instead of bounded: exact for this relaxation, which contains every combination
a perturbation within ``r`` can produce. Bounds are computed in float64 on a float64 copy of the network
and a certificate needs a margin above :data:`MARGIN_SLACK` (relative), which absorbs the difference
between that copy and the deployed float32 network.

The bounds only grow with ``r`` and change only at the radii ``r_pj`` and the budget thresholds
``sqrt(r_(1)^2 + ... + r_(k)^2)``, so they are constant between these breakpoints; the certified radius
is found by bisection over them, each query asking whether the image is certified from its breakpoint up
to the next (the bounds at the breakpoint, or every combination with summed squared radii up to the next
one classified). Where a query's enumeration meets a misclassified combination, the radius is the square
root of the smallest such sum: with IBP (monotone in ``r``) the result is the supremum of the radii
:func:`certified` accepts.
"""

from .certifier import ENUMERATION_LIMIT, MARGIN_SLACK, certified, certified_radius, float64_copy
from .enumeration import Change, Option, combinations
from .geometry import Geometry, breakpoints, deviation_box, flip_budget, geometry, tokenized
from .ibp import interval, margin_bounds
from .linear import linear_margin_bounds

__all__ = ["ENUMERATION_LIMIT", "MARGIN_SLACK", "Change", "Geometry", "Option", "breakpoints", "certified",
           "certified_radius", "combinations", "deviation_box", "flip_budget", "float64_copy", "geometry", "interval",
           "linear_margin_bounds", "margin_bounds", "tokenized"]
