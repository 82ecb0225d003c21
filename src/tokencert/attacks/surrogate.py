"""Gradients for the discrete classifier ``g(x) = f(Q(x))``: its own gradient is zero almost
everywhere, so adaptive attacks differentiate a surrogate while the forward pass stays hard.

- SSPGD: backward through the soft tokenizer ``S_tau`` (softmax over ``-||x_i - t_j||^2 / tau``);
- BPDA: backward through the identity.
The forward value is exactly ``f(Q(x))`` in both (straight-through).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import DiscreteClassifier
from ..vocab import soft_tokenize, tokenize


class StraightThrough(nn.Module):
    """``f(Q(x))`` forward; backward through the soft tokenizer at ``tau``, or the identity (``tau=None``)."""

    def __init__(self, model: DiscreteClassifier, tau: float | None) -> None:
        super().__init__()
        self.model = model
        self.tau = tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hard = tokenize(x.detach(), self.model.vocab)[0].to(x.dtype)
        surrogate = x if self.tau is None else soft_tokenize(x, self.model.vocab, self.tau)
        return self.model.net(hard + (surrogate - surrogate.detach()))  # exactly `hard`, forward
