"""Token-flip attack: greedy search over single token flips using the geometry directly.

Each step considers the ``candidates`` cheapest flips of the current image (patch ``i`` to
token ``j`` costs ``r_{i,j}``, known in closed form), moves the patch just across the
bisector along its normal (in the scaled metric), clips to [0,1], keeps the candidates that
really changed the token and stay within ``max_eps`` of the original, and takes the one
with the highest classifier loss (stopping when none raises it). The first candidate that fools the hard model ends the
search: its norm is an upper bound on the image's minimal adversarial perturbation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..flips import patch_geometry
from ..models import DiscreteClassifier
from ..tokens import patchify, unpatchify
from ..units import norms
from ..vocab import tokenize

OVERSHOOT = 1e-4


def _moved(image: torch.Tensor, flips: torch.Tensor, geometry, vocab, cost: torch.Tensor) -> torch.Tensor:
    """Images with patch ``i`` moved a distance ``cost (1 + OVERSHOOT)`` towards token ``j``'s side."""
    rows = flips[:, 0]
    w = geometry.tables[rows, flips[:, 1]] - geometry.tables[rows, geometry.assignment[rows]]
    s = geometry.dim_scale[rows]
    direction = s * s * w
    direction = direction / (direction / s).norm(dim=1, keepdim=True)
    step = (cost * (1 + OVERSHOOT) + 1e-9).unsqueeze(1) * direction
    patches = geometry.patches.unsqueeze(0).repeat(flips.shape[0], 1, 1)
    patches[torch.arange(flips.shape[0]), rows] += step
    out = unpatchify(patches, vocab.patch_size, vocab.mode, vocab.channels, image.shape[-1])
    return out.clamp(0.0, 1.0)


@torch.no_grad()
def tokenflip(model: DiscreteClassifier, x0: torch.Tensor, y: torch.Tensor, max_eps: float, max_flips: int,
              candidates: int, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial images and their norms (inf where no flip sequence within ``max_eps`` fooled the model)."""
    vocab = model.vocab
    device = next(model.net.parameters()).device
    adv = x0.clone()
    found = torch.full((x0.shape[0],), torch.inf, dtype=torch.float64)
    for n in tqdm(range(x0.shape[0]), desc="tokenflip (images)", mininterval=2.0):
        origin = x0[n].to(torch.float64).cpu()
        current = origin.clone()
        label = y[n:n + 1].to(device)
        logits = model(current.unsqueeze(0).to(device=device, dtype=x0.dtype))
        if logits.argmax(1) != label:
            adv[n], found[n] = x0[n], 0.0
            continue
        current_loss = float(F.cross_entropy(logits, label))
        for _ in range(max_flips):
            geometry = patch_geometry(current, vocab, scale)
            own = geometry.tables[torch.arange(geometry.tables.shape[0]), geometry.assignment].unsqueeze(1)
            # a duplicate of the own token (radius 0) is no flip: moving towards it has no direction
            flat = torch.where((geometry.tables == own).all(dim=2), torch.inf, geometry.radii).flatten()
            k = min(candidates, int(torch.isfinite(flat).sum()))
            if k == 0:
                break
            cost, order = torch.topk(flat, k, largest=False)
            flips = torch.stack([order // geometry.radii.shape[1], order % geometry.radii.shape[1]], dim=1)
            trial = _moved(current, flips, geometry, vocab, cost)
            tokens_now = patchify(tokenize(trial, vocab)[0], vocab.patch_size, vocab.mode)
            before = geometry.tables[flips[:, 0], geometry.assignment[flips[:, 0]]]
            changed = (tokens_now[torch.arange(k), flips[:, 0]] != before).any(dim=1)
            size = norms(trial - origin, scale)
            valid = changed & (size <= max_eps)
            if not valid.any():
                break
            trial, size = trial[valid], size[valid]
            logits = model(trial.to(device=device, dtype=x0.dtype))
            wrong = logits.argmax(1) != label
            if wrong.any():
                best = int(torch.argmin(torch.where(wrong.cpu(), size, torch.full_like(size, torch.inf))))
                adv[n], found[n] = trial[best].to(x0.dtype), float(size[best])
                break
            loss = F.cross_entropy(logits, label.expand(logits.shape[0]), reduction="none")
            if float(loss.max()) <= current_loss:  # no candidate makes progress: stop, never undo
                break
            current, current_loss = trial[int(loss.argmax())], float(loss.max())
    return adv, found
