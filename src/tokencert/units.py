"""Units of sigma, eps and radii: ``pixel`` ([0,1] pixel space) or ``normalized``.

In ``normalized`` units a perturbation ``delta`` of an image in pixel space is measured
as ``|| delta / std_c ||_2`` with ``std_c`` the per-channel standard deviation of the
training set (recorded in the dataset manifest). Every algorithm in this package works
in pixel space and takes the per-channel ``scale`` (``None`` for pixel units), so
all conversions happen here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

UNITS = ("pixel", "normalized")


def channel_scale(units: str, manifest: Mapping[str, Any]) -> torch.Tensor | None:
    """Per-channel scale ``s`` (float64, shape C): a perturbation's norm in ``units`` is ||delta / s||;
    ``None`` in pixel units (the one representation of them: every algorithm takes ``None`` so)."""
    channels = int(manifest["shape"][0])
    if units == "pixel":
        return None
    if units == "normalized":
        std = torch.as_tensor(manifest["std"], dtype=torch.float64)
        if std.shape != (channels,) or not torch.all(std > 0):
            raise ValueError(f"manifest std must hold {channels} positive values, got {manifest['std']}")
        return std
    raise ValueError(f"units must be one of {UNITS}, got {units!r}")


def channel_view(scale: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Per-channel scale broadcastable to N x C x H x W (ones in pixel units)."""
    if scale is None:
        return torch.ones(1, like.shape[1], 1, 1, dtype=like.dtype, device=like.device)
    return scale.to(dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def norms(delta: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample size ``||delta / s||_2`` of ``delta`` (N x C x H x W) in units of channel ``scale``."""
    return (delta / channel_view(scale, delta)).flatten(1).norm(dim=1)


def project(x0: torch.Tensor, x: torch.Tensor, eps: float, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Project ``x`` onto ``{||x - x0|| <= eps} ∩ [0,1]`` (approximately: ball, then box).

    Clipping to the box after the ball never increases the norm, so the result is always
    inside both.
    """
    delta = x - x0
    size = norms(delta, scale).view(-1, 1, 1, 1)
    delta = delta * torch.clamp(eps / (size + 1e-12), max=1.0)
    return (x0 + delta).clamp(0.0, 1.0)


def describe(units: str) -> str:
    """Human-readable label of the units for tables and axes."""
    return "L2 in [0,1] pixel space" if units == "pixel" else "L2 in normalized space ((x - mean) / std)"

