"""``R_0``: token invariance (method.md section 2), in the family's function shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..certify import image_certificates
from ..evaluation import EvalSet
from ..vocab import tokenize
from . import Radii


def token_invariance_radius(net: Any, data: EvalSet, settings: Mapping[str, Any]) -> Radii:
    """The smallest patch radius: no token, so no prediction, changes within it."""
    size, r0 = int(settings["batch_size"]), []
    for i in range(0, data.images.shape[0], size):
        x = data.images[i:i + size].cpu()
        certs = image_certificates(x, net.vocab, data.scale)
        if not torch.equal(tokenize(x, net.vocab)[1].cpu(), certs.assignment):
            raise ValueError("certificate assignment differs from the classifier's tokenization")
        r0.append(certs.r0)
    return Radii(torch.cat(r0))
