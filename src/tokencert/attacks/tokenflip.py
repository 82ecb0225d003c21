"""Token-flip attack: greedy search over single token flips using the geometry directly.

Each step considers the ``candidates`` cheapest flips of the current image (patch ``i`` to
token ``j`` costs ``r_{i,j}``, known in closed form), moves the patch just across the
bisector along its normal (in the scaled metric), clips to [0,1], keeps the candidates that
really changed the token and stay within ``max_eps`` of the original, and takes the one
with the highest classifier loss (stopping when none raises it). The first candidate that fools the hard model ends the
search: its norm is an upper bound on the image's minimal adversarial perturbation.

Every image of a chunk takes its steps together (one geometry and one batch of forward passes per step, on the
images' device); each image's sequence of flips is the one it would take alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..flips import dim_scale, own_tokens, token_radii
from ..models import DiscreteClassifier, forward_batches
from ..tokens import patchify, unpatchify
from ..units import norms
from ..vocab import Vocabulary, tokenize

OVERSHOOT = 1e-4
ELEMENTS = 1 << 22
"""Float64 elements of a chunk's largest tensors (its radii, its candidate images' patches): 32 MiB each."""


def _logits(model: DiscreteClassifier, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(images[rows]) for rows in forward_batches(images.shape[0], images.device)])


def _flips(radii: torch.Tensor, tables: torch.Tensor,
           candidates: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image (m): the ``candidates`` cheapest flips' costs (inf: none), patches and tokens (m x k each), and
    each patch's own token (m x P). A duplicate of the own token (radius 0, the same vector) is no flip: moving
    towards it has no direction."""
    assignment = own_tokens(radii)
    image, patch, token = (radii == 0).nonzero(as_tuple=True)
    same = (tables[patch, token] == tables[patch, assignment[image, patch]]).all(dim=1)
    radii = radii.clone()
    radii[image[same], patch[same], token[same]] = torch.inf
    cost, order = torch.topk(radii.flatten(1), min(candidates, radii.shape[1] * radii.shape[2]), largest=False)
    return cost, order // radii.shape[2], order % radii.shape[2], assignment


def _moved(patches: torch.Tensor, cost: torch.Tensor, patch: torch.Tensor, token: torch.Tensor, own: torch.Tensor,
           tables: torch.Tensor, scale: torch.Tensor, vocab: Vocabulary, image_size: int) -> torch.Tensor:
    """Images (m x k x C x H x W) with patch ``patch`` moved a distance ``cost (1 + OVERSHOOT)`` from its own token
    ``own`` (m x k x d) towards token ``token``'s side, clipped to [0,1] (rows of infinite cost: the image
    unchanged)."""
    m, k = cost.shape
    rows = torch.arange(m, device=patches.device).unsqueeze(1)
    w = tables[patch, token] - own
    s = scale[patch]
    direction = s * s * w
    direction = direction / (direction / s).norm(dim=2, keepdim=True)
    finite = torch.isfinite(cost)
    step = torch.where(finite, cost * (1 + OVERSHOOT) + 1e-9, 0.0).unsqueeze(2) * direction.nan_to_num(0.0)
    moved = patches.unsqueeze(1).repeat(1, k, 1, 1)
    moved[rows, torch.arange(k, device=patches.device), patch] += step
    out = unpatchify(moved.flatten(0, 1), vocab.patch_size, vocab.mode, vocab.channels, image_size)
    return out.clamp(0.0, 1.0).view(m, k, *out.shape[1:])


def _greedy(model: DiscreteClassifier, x0: torch.Tensor, y: torch.Tensor, max_eps: float, max_flips: int,
            candidates: int, scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`tokenflip` on one chunk of images, all of them stepping together."""
    vocab = model.vocab
    n = x0.shape[0]
    origin = x0.to(torch.float64)
    adv, found = x0.clone(), torch.full((n,), torch.inf, dtype=torch.float64, device=x0.device)
    logits = model(x0)
    found[logits.argmax(1) != y] = 0.0
    loss = F.cross_entropy(logits, y, reduction="none")
    active = torch.isinf(found)
    current = origin.clone()
    for _ in range(max_flips):
        idx = active.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            break
        patches, radii, tables = token_radii(current[idx], vocab, scale)  # on the images' device
        cost, patch, token, assignment = _flips(radii, tables, candidates)
        m, k = cost.shape
        rows = torch.arange(m, device=x0.device).unsqueeze(1)
        own = tables[patch, assignment[rows, patch]]  # each candidate's flipped patch's own token (m x k x d)
        trial = _moved(patches, cost, patch, token, own, tables,
                       dim_scale(vocab, scale, *patches.shape[1:]).to(x0.device), vocab, x0.shape[-1])
        flat = trial.flatten(0, 1)
        now = patchify(tokenize(flat, vocab)[0], vocab.patch_size, vocab.mode).view(m, k, *patches.shape[1:])
        changed = (now[rows, torch.arange(k, device=x0.device), patch] != own).any(dim=2)
        size = norms(flat - origin[idx].repeat_interleave(k, 0), scale).view(m, k)
        valid = torch.isfinite(cost) & changed & (size <= max_eps)
        scores = torch.full((m, k), -torch.inf, dtype=loss.dtype, device=x0.device)
        wrong = torch.zeros((m, k), dtype=torch.bool, device=x0.device)
        if valid.any():
            out = _logits(model, flat[valid.flatten()].to(x0.dtype))
            labels = y[idx].repeat_interleave(k)[valid.flatten()]
            wrong[valid] = out.argmax(1) != labels
            scores[valid] = F.cross_entropy(out, labels, reduction="none")
        fooled = wrong.any(dim=1)
        best = torch.where(wrong, size, torch.inf).argmin(dim=1)  # the smallest fooling norm, first of its ties
        hit = idx[fooled]
        adv[hit] = trial[fooled, best[fooled]].to(x0.dtype)
        found[hit] = size[fooled, best[fooled]]
        top, pick = scores.max(dim=1)  # the first of the highest losses, as argmax takes it
        progress = ~fooled & valid.any(dim=1) & (top > loss[idx])  # else: no candidate makes progress, stop
        moving = idx[progress]
        current[moving] = trial[progress, pick[progress]]
        loss[moving] = top[progress]
        active[idx] = False
        active[moving] = True
    return adv, found


@torch.no_grad()
def tokenflip(model: DiscreteClassifier, x0: torch.Tensor, y: torch.Tensor, max_eps: float, max_flips: int,
              candidates: int, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial images and their norms (float64, on the CPU; inf where no flip sequence within ``max_eps``
    fooled the model). Images go in chunks whose geometry fits :data:`ELEMENTS`."""
    vocab = model.vocab
    num, d = patchify(x0[:1], vocab.patch_size, vocab.mode).shape[1:]
    flips = num * vocab.K
    chunk = max(1, ELEMENTS // max(flips, num * d * min(candidates, flips)))
    parts = []
    with tqdm(total=x0.shape[0], desc="tokenflip (images)", mininterval=2.0) as bar:
        for start in range(0, x0.shape[0], chunk):
            parts.append(_greedy(model, x0[start:start + chunk], y[start:start + chunk], max_eps, max_flips,
                                 candidates, scale))
            bar.update(min(chunk, x0.shape[0] - start))
    return torch.cat([a for a, _ in parts]), torch.cat([f for _, f in parts]).cpu()
