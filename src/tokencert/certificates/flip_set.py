"""``R_set``: any number of token flips (:mod:`tokencert.setcert`), in the family's function shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evaluation import EvalSet
from ..setcert import certified_radius
from . import Radii


def flip_set_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """The flip-set certified radius (0 when misclassified)."""
    return Radii(certified_radius(net, data.images.cpu(), data.labels.cpu(), data.scale,
                                  enumeration_limit=int(settings["enumeration_limit"]),
                                  linear=settings["relaxation"] == "linear"))
