"""The token classifiers' certificates: token invariance ``R_0``, one flip ``R_2`` and any number of
flips ``R_set`` (method.md sections 2-3), in the family's function shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..certify import image_certificates
from ..evaluation import EvalSet
from ..exact import single_flip_certificates
from ..setcert import certified_radius
from ..vocab import tokenize
from . import Radii


def token_invariance_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """``R_0``: the smallest patch radius (no token, so no prediction, changes within it)."""
    size, r0 = int(settings["batch_size"]), []
    for i in range(0, data.images.shape[0], size):
        x = data.images[i:i + size].cpu()
        certs = image_certificates(x, net.vocab, data.scale)
        if not torch.equal(tokenize(x, net.vocab)[1].cpu(), certs.assignment):
            raise ValueError("certificate assignment differs from the classifier's tokenization")
        r0.append(certs.r0)
    return Radii(torch.cat(r0))


def single_flip_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """``R_2`` where no single flip below it changes the prediction, else ``R_0``."""
    res = single_flip_certificates(net, data.images, data.labels, data.scale, int(settings["batch_size"]))
    correct = res.prediction == res.label
    return Radii(torch.where(res.flip_safe, res.r2, res.r0),
                 columns={"r0": res.r0, "r2": res.r2, "flip_safe": res.flip_safe.int(),
                          "flips_checked": res.flips_checked},
                 summary={"acr_r0": float(torch.where(correct, res.r0, 0.0).mean()),
                          "flips_checked_mean": float(res.flips_checked.double().mean())})


def flip_set_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """``R_set`` (:mod:`tokencert.setcert`): sound for any number of flips (0 when misclassified)."""
    return Radii(certified_radius(net, data.images.cpu(), data.labels.cpu(), data.scale,
                                  enumeration_limit=int(settings["enumeration_limit"]),
                                  linear=settings["relaxation"] == "linear"))
