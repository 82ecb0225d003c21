"""Certified accuracy versus radius: the one summary format of smoothing and every certificate of
the family (:mod:`tokencert.certificates`).

An image counts as certified at radius ``r`` when it is classified correctly, the
classifier did not abstain and its certified radius is at least ``r``. The average
certified radius (ACR) is the mean over images of ``radius * correct``.

``R_0`` of a discrete classifier is the smallest patch radius of the image's certificate
map (no token can change within it, so neither can the prediction); ``Rset`` its flip-set
certificate (:mod:`tokencert.setcert`), sound for any number of token flips; ``lipschitz`` the
margin certificate of a Lipschitz network (:mod:`tokencert.lipschitz`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | Sequence[float] | Sequence[bool]


def _vector(values: ArrayLike, name: str, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one value per image (1-D), got shape {arr.shape}")
    return arr.astype(dtype)


def certified_accuracy(radii: np.ndarray, ok: np.ndarray, grid: Sequence[float]) -> list[float]:
    """Fraction of images with ``ok`` and ``radius >= r`` for each ``r`` in ``grid``."""
    return [float(np.mean(ok & (radii >= r))) for r in grid]


def curve(summary: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Certified accuracy as the step function it is, from the summary's per-image
    ``certified_radii``: breakpoints ``0, r_1 <= r_2 <= ...`` and the value on
    ``[x_k, x_{k+1})`` (``drawstyle="steps-post"``), the fraction of the ``n_images`` whose
    radius exceeds ``r``; it equals ``#{i: radius_i >= r} / n`` everywhere but at the radii."""
    radii = np.sort(np.asarray(summary["certified_radii"], dtype=np.float64))
    n = int(summary["n_images"])
    xs = np.concatenate([[0.0], radii])
    ys = np.concatenate([[radii.size], radii.size - np.arange(1, radii.size + 1)]) / n
    return xs, ys


def summarize(
    method: str,
    dataset: str,
    model: str,
    units: str,
    radii: ArrayLike,
    correct: ArrayLike,
    abstain: ArrayLike,
    grid: Sequence[float],
    sigma: float | None,
    seconds_per_image: float,
) -> dict[str, Any]:
    """The certified-accuracy summary of ``docs/design.md``.

    ``radii``: certified radius per image (>= 0, no NaN; 0 for an image certified at no
    radius). ``correct`` and ``abstain``: booleans per image. An abstained image never
    counts as correct, whatever ``correct`` says.
    """
    if not method:
        raise ValueError("a summary needs the name of its method")
    r = _vector(radii, "radii", np.float64)
    ok = _vector(correct, "correct", bool)
    abst = _vector(abstain, "abstain", bool)
    if not (r.shape == ok.shape == abst.shape):
        raise ValueError(f"radii, correct and abstain differ in length: {r.shape}, {ok.shape}, {abst.shape}")
    if r.size == 0:
        raise ValueError("no images to summarize")
    if np.isnan(r).any() or (r < 0).any():
        raise ValueError("radii must be >= 0 and not NaN (use 0 for no certified radius)")
    grid = [float(g) for g in grid]
    if not grid or any(not np.isfinite(g) or g < 0 for g in grid):
        raise ValueError(f"radius grid must be non-empty, finite and >= 0, got {grid}")
    ok &= ~abst
    return {
        "method": method,
        "dataset": dataset,
        "model": model,
        "sigma": None if sigma is None else float(sigma),
        "units": units,
        "n_images": int(r.size),
        "clean_accuracy": float(ok.mean()),
        "abstain_rate": float(abst.mean()),
        "radii": grid,
        "certified_accuracy": certified_accuracy(r, ok, grid),
        "certified_radii": sorted(float(v) for v in r[ok]),  # the whole curve: a step at each radius
        "acr": float(np.where(ok, r, 0.0).mean()),
        "seconds_per_image": float(seconds_per_image),
    }
