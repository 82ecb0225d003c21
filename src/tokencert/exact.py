"""Exact single-flip certificate ``R_2`` (method.md section 3).

Patches are disjoint, so a perturbation that changes the tokens of two patches ``i != k``
has ``||delta||^2 >= r_i^2 + r_k^2 >= r_(1)^2 + r_(2)^2 = R_2^2``: below ``R_2`` at most one
patch changes its token. A patch ``i`` can only move into the Voronoi cell of a token ``j``
by crossing the bisector of ``t_a`` and ``t_j`` (the cell of ``t_j`` lies in the half-space
closer to ``t_j`` than to ``t_a``), which costs at least ``r_{i,j}``. So the set
``{(i, j) : r_{i,j} < R_2}`` contains every token change reachable below ``R_2``. If no
such single flip changes the prediction, the prediction is certified at ``R_2``;
otherwise at ``R_0 = r_(1)``. The radii are the float64 lower bounds of
:mod:`tokencert.certify`, so both steps stay sound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .flips import flipped_images, patch_geometry, tokenized_image
from .models import DiscreteClassifier


@dataclass
class ExactResult:
    """Per image: label, prediction, ``R_0``, ``R_2``, whether every single flip below ``R_2`` keeps
    the prediction, the certified radius of a correct prediction (0 if wrong), flips checked."""

    label: torch.Tensor
    prediction: torch.Tensor
    r0: torch.Tensor
    r2: torch.Tensor
    flip_safe: torch.Tensor
    certified: torch.Tensor
    flips_checked: torch.Tensor
    seconds_per_image: float


@torch.no_grad()
def single_flip_certificates(model: DiscreteClassifier, images: torch.Tensor, labels: torch.Tensor,
                             scale: torch.Tensor | None = None, batch_size: int = 512) -> ExactResult:
    """``R_0``/``R_2`` certificates of N x C x H x W images in [0,1] for the discrete classifier."""
    vocab = model.vocab
    model.eval()
    device = next(model.net.parameters()).device
    out: dict[str, list] = {k: [] for k in ("prediction", "r0", "r2", "flip_safe", "flips")}
    start = time.perf_counter()
    for image in tqdm(images, desc="single-flip certificates", mininterval=2.0):
        geometry = patch_geometry(image.cpu(), vocab, scale)
        radii = torch.sort(geometry.patch_radii).values
        r0 = float(radii[0])
        r2 = float(torch.sqrt(radii[0] ** 2 + radii[1] ** 2)) if radii.numel() > 1 else float(radii[0])
        flips = torch.nonzero(geometry.radii < r2, as_tuple=False)
        tokenized = tokenized_image(geometry, vocab, image.shape[-1])
        pred = int(model.net(tokenized.to(device=device, dtype=torch.float32)).argmax(1))
        safe = True
        for i in range(0, flips.shape[0], batch_size):
            batch = flipped_images(geometry, flips[i:i + batch_size], vocab, image.shape[-1])
            if (model.net(batch.to(device=device, dtype=torch.float32)).argmax(1) != pred).any():
                safe = False
                break
        out["prediction"].append(pred)
        out["r0"].append(r0)
        out["r2"].append(r2)
        out["flip_safe"].append(safe)
        out["flips"].append(int(flips.shape[0]))
    seconds = (time.perf_counter() - start) / max(1, images.shape[0])
    prediction = torch.tensor(out["prediction"])
    r0, r2 = torch.tensor(out["r0"], dtype=torch.float64), torch.tensor(out["r2"], dtype=torch.float64)
    safe = torch.tensor(out["flip_safe"])
    correct = prediction == labels.cpu()
    certified = torch.where(correct, torch.where(safe, r2, r0), torch.zeros_like(r0))
    return ExactResult(labels.cpu(), prediction, r0, r2, safe, certified, torch.tensor(out["flips"]), seconds)
