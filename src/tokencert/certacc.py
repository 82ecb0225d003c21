"""Certified accuracy versus radius: the one summary format of smoothing, ``R_0`` and ``R_2``.

An image counts as certified at radius ``r`` when it is classified correctly, the
classifier did not abstain and its certified radius is at least ``r``. The average
certified radius (ACR) is the mean over images of ``radius * correct``.

``R_0`` of a discrete classifier is the smallest patch radius of the image's certificate
map (no token can change within it, so neither can the prediction); ``Rset`` its flip-set
certificate (:mod:`tokencert.setcert`), sound for any number of token flips; ``lipschitz`` the
margin certificate of a Lipschitz network (:mod:`tokencert.lipschitz`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .data.store import load_split, to_float
from .io import load_torch, read_json, write_json
from .models import DiscreteClassifier, load_classifier
from .vocab import Vocabulary, tokenize

log = logging.getLogger("tokencert")

METHODS = ("smoothing", "R0", "R2", "Rset", "lipschitz")

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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
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


@torch.inference_mode()
def token_invariance(
    model: DiscreteClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    certificate: Mapping[str, torch.Tensor],
    *,
    device: torch.device,
    batch_size: int = 1000,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``R_0`` per image, whether ``model`` classifies it correctly, and seconds per image.

    ``certificate``: ``{"assignment": (N, P), "radii": (N, P)}`` of the certify stage for
    uint8 ``images`` in order. Raises ``ValueError`` when its token assignment is not the
    one the classifier sees (a certificate of another vocabulary or test set).
    """
    assignment, radii = certificate["assignment"], certificate["radii"]
    n = images.shape[0]
    if assignment.shape[0] != n or radii.shape != assignment.shape:
        raise ValueError(
            f"certificate of {assignment.shape[0]} images (radii {tuple(radii.shape)}) for a test set of {n}"
        )
    model = model.to(device).eval()
    correct = torch.zeros(n, dtype=torch.bool)
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        x = to_float(images[i:i + batch_size]).to(device)
        tokenized, index = tokenize(x, model.vocab)
        if not torch.equal(index.cpu(), assignment[i:i + batch_size]):
            raise ValueError("certificate assignment differs from the classifier's tokenization "
                             "(certificate of another vocabulary or test set)")
        correct[i:i + batch_size] = model.net(tokenized.to(x.dtype)).argmax(1).cpu() == labels[i:i + batch_size]
    r0 = radii.min(dim=1).values
    seconds = (time.perf_counter() - start) / max(1, n)
    return r0.numpy(), correct.numpy(), seconds


def certacc_r0(
    *,
    dataset: str,
    model: str,
    model_path: str | os.PathLike[str],
    vocab_path: str | os.PathLike[str],
    certificate_path: str | os.PathLike[str],
    certify_summary_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    units: str,
    grid: Sequence[float],
    device: torch.device,
    json_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Certified accuracy of the discrete classifier ``model`` with ``R_0``; writes and returns the summary.

    The certificate radii of the certify stage are already in ``units``. ``seconds_per_image``
    is the whole deterministic certificate: the certify stage's time per image (from its
    summary) plus tokenizing and classifying here.
    """
    net, _ = load_classifier(model_path, Vocabulary.load(vocab_path), map_location=device, dataset=dataset)
    test = load_split(data_dir, "test")
    radii, correct, seconds = token_invariance(net, test.images, test.labels, load_torch(certificate_path),
                                               device=device)
    seconds += float(read_json(certify_summary_path)["seconds_per_image"])
    summary = summarize("R0", dataset, model, units, radii, correct, np.zeros_like(correct), grid, None, seconds)
    write_json(json_path, summary)
    log.info("%s/%s R_0: clean %.3f, ACR %.4f", dataset, model, summary["clean_accuracy"], summary["acr"])
    return summary
