"""Training objectives of the classifier recipes: what one training batch minimises.

- ``standard``: cross-entropy on the (augmented) images;
- ``noise``: cross-entropy on ``x + sigma * s * eps`` (Gaussian augmentation, Cohen et al. 2019);
  a token classifier tokenizes the noisy image, as ``f(Q(x + eps))`` is what gets smoothed;
- ``pgd_at``: cross-entropy on L2 PGD examples within ``eps`` (Madry et al. 2018);
- ``trades``: cross-entropy plus ``beta * KL(f(x) || f(x'))``, ``x'`` maximising the KL within
  ``eps`` (Zhang et al. 2019);
- ``consistency``: cross-entropy on ``copies`` noisy copies plus ``lam`` times their KL to the
  mean prediction and ``eta`` times its entropy (Jeong & Shin 2020), at ``sigma``;
- ``flipset`` (token classifiers): certified training with the flip-set bounds of
  :mod:`tokencert.setcert` at radius ``eps`` (interval bound propagation training, Gowal et al.
  2019): ``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)``, the radius ramped linearly from 0
  to ``eps`` and ``kappa`` from 1 to ``clean_weight`` over the ``ramp`` share of training that follows
  the ``warmup`` share (clean training); in training mode the bounds normalize each batch-norm layer with the batch
  statistics of the box centres (as CROWN-IBP training does; the running statistics, which the
  certificate uses, come from the clean batch alone);
- ``gloro`` (Lipschitz networks, ``arch: lipmlp``): cross-entropy over the classes and GloRo's
  bottom logit ``max_{j != y} z_j + sqrt(2) L eps`` (Leino et al. 2021), ``L`` the network's
  Lipschitz bound (:mod:`tokencert.lipschitz`, nominal: orthogonal layers count 1; a constant
  here; the certificate computes it exactly), ``eps`` ramped as for ``flipset`` (``warmup``, ``ramp``).

Budgets and noise are in the dataset's units: a perturbation ``delta`` has size
``||delta / s||_2`` and the noise of channel ``c`` has standard deviation ``sigma * s_c``. The
inner maximisation of ``pgd_at`` / ``trades`` runs with the network in eval mode (batch-norm
statistics are not updated by adversarial iterates) and, for a token classifier,
differentiates the straight-through identity surrogate (BPDA; the forward value stays the
hard ``f(Q(x))``), as the attack suite does. Every random draw comes from the caller's
generator, so a resumed epoch repeats the same draws.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import differentiable
from ..study import (
    EPS_OBJECTIVES,
    OBJECTIVE_CODE,
    OBJECTIVE_KEYS,
    OBJECTIVE_PARAMETERS,
    SCHEDULE,
    SIGMA_OBJECTIVES,
    register_objective_name,
)
from ..units import channel_view, project

Loss = tuple[torch.Tensor, torch.Tensor]
LossFunction = Callable[..., Loss]

STEP_SIZE = 2.5  # relative PGD step: each of `steps` steps moves 2.5 * eps / steps (as the attack suite)


@dataclass(frozen=True)
class Objective:
    """A training objective and its parameters (see the module docstring)."""

    kind: str = "standard"
    sigma: float | None = None
    eps: float | None = None
    steps: int = 10
    beta: float = 6.0
    lam: float = 10.0
    eta: float = 0.5
    copies: int = 2
    warmup: float = SCHEDULE["warmup"]
    ramp: float = SCHEDULE["ramp"]
    clean_weight: float = SCHEDULE["clean_weight"]

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVE_PARAMETERS:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVE_PARAMETERS)}, got {self.kind!r}")
        if self.kind in SIGMA_OBJECTIVES and not (self.sigma is not None and self.sigma > 0):
            raise ValueError(f"objective {self.kind} needs sigma > 0, got {self.sigma}")
        if self.kind in EPS_OBJECTIVES and not (self.eps is not None and self.eps > 0):
            raise ValueError(f"objective {self.kind} needs eps > 0, got {self.eps}")
        if self.steps < 1 or self.copies < 2:
            raise ValueError(f"steps must be >= 1 and copies >= 2, got {self.steps} and {self.copies}")
        if self.beta < 0 or self.lam < 0 or self.eta < 0:
            raise ValueError(f"beta, lam and eta must be >= 0, got {self.beta}, {self.lam}, {self.eta}")
        if not (0 <= self.warmup and 0 < self.ramp and self.warmup + self.ramp <= 1 and 0 <= self.clean_weight <= 1):
            raise ValueError("the schedule needs warmup >= 0, ramp > 0, warmup + ramp <= 1 and clean_weight in "
                             f"[0, 1], got {self.warmup}, {self.ramp}, {self.clean_weight}")

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any]) -> Objective:
        """The objective of a classifier recipe (keys ``objective``, ``sigma``, ``eps``, ...)."""
        fields = {k: recipe[k] for k in OBJECTIVE_KEYS if k in recipe}
        return cls(kind=recipe.get("objective", "standard"), **fields)

    def record(self) -> dict[str, Any]:
        """The parameters that matter for this kind (for metadata and fingerprints)."""
        keep = OBJECTIVE_PARAMETERS[self.kind]
        return {"kind": self.kind, **{k: v for k, v in asdict(self).items() if k in keep}}

    def schedule(self, progress: float) -> float:
        """The certified-training schedule (``flipset``, ``gloro``) at training ``progress`` in [0, 1]: the
        share of ``eps`` trained at, 0 during the ``warmup``, then linear to 1 over the ``ramp``."""
        return min(1.0, max(0.0, progress - self.warmup) / self.ramp)

    def clean_share(self, progress: float) -> float:
        """``kappa``, the clean loss's weight at ``progress``: from 1 down to ``clean_weight`` with the schedule."""
        return 1.0 - (1.0 - self.clean_weight) * self.schedule(progress)


def add_noise(x: torch.Tensor, sigma: float, scale: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """``x + sigma * s_c * N(0, I)``: the Gaussian noise a noise objective trains under (``s``: per-channel
    unit scale, None in pixel units)."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise * (sigma * channel_view(scale, x))


def _maximise(model: nn.Module, x: torch.Tensor, loss_fn: Any, eps: float, steps: int, start: torch.Tensor,
              scale: torch.Tensor | None) -> torch.Tensor:
    """``steps`` normalised-gradient ascent steps of ``loss_fn(logits)`` from ``start``, projected onto the
    eps ball around ``x`` and the box; the last iterate (as in adversarial training)."""
    grad_model = differentiable(model)
    was_training = model.training
    model.eval()
    s = channel_view(scale, x)
    alpha = STEP_SIZE * eps / steps
    adv = project(x, start, eps, scale)
    for _ in range(steps):
        adv = adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(grad_model(adv)), adv)
        g = grad * s
        g = g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
        adv = project(x, adv.detach() + alpha * s * g, eps, scale)
    model.train(was_training)
    return adv.detach()


def _standard(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              generator: torch.Generator, scale: torch.Tensor | None, progress: float) -> Loss:
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def _noise(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           generator: torch.Generator, scale: torch.Tensor | None, progress: float) -> Loss:
    logits = model(add_noise(x, objective.sigma, scale, generator))
    return F.cross_entropy(logits, y), logits


def _pgd_at(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator, scale: torch.Tensor | None, progress: float) -> Loss:
    start = x + channel_view(scale, x) * objective.eps / 4 * torch.randn(
        x.shape, generator=generator, device=x.device, dtype=x.dtype) / x[0].numel() ** 0.5
    adv = _maximise(model, x, lambda out: F.cross_entropy(out, y), objective.eps, objective.steps, start, scale)
    logits = model(adv)
    return F.cross_entropy(logits, y), logits


def _trades(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator, scale: torch.Tensor | None, progress: float) -> Loss:
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    if objective.beta == 0:  # the robust term vanishes: nothing to maximise, nothing drawn
        return loss, logits
    clean = F.softmax(logits.detach(), dim=1)
    start = x + 0.001 * channel_view(scale, x) * torch.randn(x.shape, generator=generator, device=x.device,
                                                             dtype=x.dtype)
    kl = lambda out: F.kl_div(F.log_softmax(out, dim=1), clean, reduction="sum")  # noqa: E731
    adv = _maximise(model, x, kl, objective.eps, objective.steps, start, scale)
    robust = F.kl_div(F.log_softmax(model(adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return loss + objective.beta * robust, logits


def _consistency(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator, scale: torch.Tensor | None, progress: float) -> Loss:
    copies = objective.copies
    noisy = add_noise(x.repeat(copies, 1, 1, 1), objective.sigma, scale, generator)
    out = model(noisy)
    ce = F.cross_entropy(out, y.repeat(copies))
    log_p = F.log_softmax(out, dim=1).view(copies, x.shape[0], -1)
    mean = log_p.exp().mean(0)
    kl = (mean * (mean.clamp_min(1e-12).log() - log_p)).sum(-1).mean()  # mean over copies of KL(mean || p_i)
    entropy = -(mean * mean.clamp_min(1e-12).log()).sum(-1).mean()
    return ce + objective.lam * kl + objective.eta * entropy, out[: x.shape[0]]


LOSSES: dict[str, LossFunction | str] = {
    "standard": _standard, "noise": _noise, "pgd_at": _pgd_at, "trades": _trades, "consistency": _consistency,
    **{name: f"{module}:{name}" for name, module in OBJECTIVE_CODE.items()},
}
"""The batch loss of every objective by name (:data:`tokencert.study.OBJECTIVE_PARAMETERS` names them): the
function, or ``"module:function"`` imported on first use (the certified-training losses, so that only
the jobs that train with them depend on the certificate code: :func:`tokencert.provenance.code_hash`)."""


def register_objective(name: str, loss: LossFunction, parameters: tuple[str, ...] = (), *, sigma: bool = False,
                       eps: bool = False, tokens: bool = False) -> None:
    """Add a training objective (a plugin module calls this on import): ``loss(objective, model, x, y,
    generator, scale, progress) -> (loss, logits)``; ``parameters``: the recipe keys it reads (of
    :data:`tokencert.study.OBJECTIVE_KEYS`); ``sigma``: trained under noise and smoothed at it;
    ``eps``: needs an L2 budget; ``tokens``: needs a token classifier."""
    register_objective_name(name, parameters, sigma=sigma, eps=eps, tokens=tokens)
    LOSSES[name] = loss
    OBJECTIVE_CODE[name] = loss.__module__


def batch_loss(objective: Objective, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator, scale: torch.Tensor | None = None,
               progress: float = 1.0) -> Loss:
    """``(loss, logits)`` of one training batch under ``objective``; ``logits`` are those the training
    accuracy is counted on (the clean, noisy or adversarial inputs the loss is about). ``progress``:
    the share of training done (the ``flipset`` schedule)."""
    return loss_function(objective.kind)(objective, model, x, y, generator, scale, progress)


def loss_function(kind: str) -> LossFunction:
    """The batch loss of objective ``kind`` (imported on first use where registered by name)."""
    if kind not in LOSSES:
        raise ValueError(f"objective {kind!r} has no loss (register it with register_objective)")
    loss = LOSSES[kind]
    if isinstance(loss, str):
        module, _, attr = loss.partition(":")
        loss = LOSSES[kind] = getattr(importlib.import_module(module), attr)
    return loss
