"""``R_2``: exact for one token flip (method.md section 3), in the family's function shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..evaluation import EvalSet
from ..exact import single_flip_certificates
from . import Radii


def single_flip_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """``R_2`` where no single flip below it changes the prediction, else ``R_0``."""
    res = single_flip_certificates(net, data.images, data.labels, data.scale, int(settings["batch_size"]))
    correct = res.prediction == res.label
    return Radii(torch.where(res.flip_safe, res.r2, res.r0),
                 columns={"r0": res.r0, "r2": res.r2, "flip_safe": res.flip_safe.int(),
                          "flips_checked": res.flips_checked},
                 summary={"acr_r0": float(torch.where(correct, res.r0, 0.0).mean()),
                          "flips_checked_mean": float(res.flips_checked.double().mean())})
