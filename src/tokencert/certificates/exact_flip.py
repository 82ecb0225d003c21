"""The complete verifier's interval (:func:`tokencert.exactflip.minimal_flip_radius`) in the family's
function shape: its lower end is the certified radius, its upper end a verified adversarial norm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evaluation import EvalSet
from ..exactflip import VerifierSettings, minimal_flip_radius
from ..flipsearch import SearchSettings
from . import Radii


def exact_flip_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """Per image the verifier's lower and upper bound on the smallest adversarial token-flip perturbation,
    whether they meet (``closed``) and the branch-and-bound nodes spent."""
    out = minimal_flip_radius(net, data.images.cpu(), data.labels.cpu(), data.scale,
                              max_radius=float(settings["max_radius"]),
                              search=SearchSettings.from_params(settings),
                              settings=VerifierSettings.from_params(settings))
    known = out.upper > 0
    return Radii(out.lower, columns={"verifier_upper": out.upper, "closed": out.closed.int(), "nodes": out.nodes},
                 summary={"closed_share": float(out.closed[known].double().mean()) if known.any() else float("nan"),
                          "nodes_mean": float(out.nodes[known].double().mean()) if known.any() else 0.0},
                 upper=out.upper)
