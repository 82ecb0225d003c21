"""Randomized smoothing, exactly as Cohen, Rosenfeld and Kolter (2019), arXiv 1902.02918.

The smoothed classifier is ``G(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)``
added in ``[0,1]`` pixel space (no clipping). With units of per-channel ``scale`` the
noise of channel ``c`` has standard deviation ``sigma * scale[c]``, so ``sigma`` and the
certified radius are both in those units.

- :func:`predict`: ``n`` samples, two-sided binomial test of the top two counts at level
  ``alpha``; abstain (``-1``) when the test does not reject.
- :func:`certify`: ``n0`` samples select the class ``cA``, ``n`` fresh samples estimate
  ``pA`` by the one-sided Clopper-Pearson lower bound at level ``alpha``; abstain when
  ``pA <= 1/2``, else return ``cA`` and the radius ``sigma * Phi^-1(pA)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from .noise import prepare, sample_counts, sample_counts_many

ABSTAIN = -1


def check_params(sigma: float, alpha: float, batch_size: int, **counts: int) -> None:
    """Raise ``ValueError`` unless ``sigma > 0``, ``0 < alpha < 1``, and every count is >= 1."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    for name, value in {"batch_size": batch_size, **counts}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}")


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower bound on ``p`` from ``k`` successes in ``n``."""
    return float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0


def max_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with ``n`` samples: all ``n`` votes for one class give
    ``pA = alpha^(1/n)`` and the radius ``sigma * Phi^-1(pA)``."""
    return sigma * float(norm.ppf(lower_confidence_bound(n, n, alpha)))


CHANCE_SLACK = 0.05  # clean accuracy within this of 1/classes: the smoothed classifier predicts a constant


def chance_level(clean_accuracy: float, num_classes: int) -> bool:
    """Whether a smoothed classifier's clean accuracy is at chance level (``<= 1/classes + 0.05``):
    its prediction is (nearly) constant, so its certified radii say nothing about robustness."""
    return num_classes > 1 and clean_accuracy <= 1.0 / num_classes + CHANCE_SLACK


def _radius(count: int, n: int, alpha: float, sigma: float, c_a: int) -> tuple[int, float]:
    """CERTIFY's decision from the estimation count of the selected class ``c_a``."""
    p_a = lower_confidence_bound(count, n, alpha)
    if p_a <= 0.5:
        return ABSTAIN, 0.0
    return c_a, float(sigma * norm.ppf(p_a))


class Smooth:
    """Cohen et al.'s smoothed classifier ``G`` of base classifier ``model`` at noise ``sigma`` (their
    ``core.Smooth``): :meth:`predict` and :meth:`certify` as in the paper, :meth:`certify_many` the same
    CERTIFY for several images sharing forward passes. ``scale``: per-channel unit scale (the noise of
    channel ``c`` has standard deviation ``sigma * scale[c]``); ``precision``: ``fp32`` or ``bf16``;
    ``batch_size``: noisy copies per forward pass. The model is prepared for noisy inputs in place
    (:func:`tokencert.smoothing.noise.prepare`)."""

    def __init__(self, model: nn.Module, sigma: float, *, batch_size: int, scale: torch.Tensor | None = None,
                 precision: str = "fp32") -> None:
        check_params(sigma, 0.5, batch_size)
        self.model, self.sigma, self.scale = prepare(model, precision), float(sigma), scale
        self.precision, self.batch_size = precision, int(batch_size)

    def _counts(self, x: torch.Tensor, num: int, generators: Sequence[torch.Generator | None] | None) -> torch.Tensor:
        return sample_counts_many(self.model, x, self.sigma, num, self.batch_size, generators=generators,
                                  scale=self.scale, precision=self.precision)

    def predict(self, x: torch.Tensor, n: int, alpha: float, *, generator: torch.Generator | None = None) -> int:
        """PREDICT: the smoothed prediction of one image ``x``, or :data:`ABSTAIN`."""
        check_params(self.sigma, alpha, self.batch_size, n=n)
        counts = sample_counts(self.model, x, self.sigma, n, self.batch_size, generator=generator, scale=self.scale,
                               precision=self.precision)
        top = counts.topk(2)
        n_a, n_b = int(top.values[0]), int(top.values[1])
        if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top.indices[0])

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, *,
                generator: torch.Generator | None = None) -> tuple[int, float]:
        """CERTIFY of one image: ``(class, radius)``, or ``(ABSTAIN, 0.0)``."""
        return self.certify_many(x.unsqueeze(0) if x.dim() == 3 else x, n0, n, alpha, generators=[generator])[0]

    def certify_many(self, x: torch.Tensor, n0: int, n: int, alpha: float, *,
                     generators: Sequence[torch.Generator | None] | None = None) -> list[tuple[int, float]]:
        """CERTIFY of each image of ``x`` (N x C x H x W): per image exactly CERTIFY (``n0`` samples select
        ``cA``, ``n`` fresh samples from the same generator estimate ``pA``); only the forward passes are
        shared between the images."""
        check_params(self.sigma, alpha, self.batch_size, n0=n0, n=n)
        selected = self._counts(x, n0, generators).argmax(1)
        counts = self._counts(x, n, generators)
        return [_radius(int(counts[i, c]), n, alpha, self.sigma, int(c)) for i, c in enumerate(selected)]
