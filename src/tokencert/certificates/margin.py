"""The Lipschitz networks' certificate in the family's function shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evaluation import EvalSet
from ..lipschitz import margin_radius
from . import Radii


def lipschitz_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """The logit margin over ``sqrt(2)`` times the network's Lipschitz constant (:mod:`tokencert.lipschitz`)."""
    return Radii(margin_radius(net, data.images, data.labels, data.scale))
