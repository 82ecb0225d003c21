"""Deterministic, stratified selection of samples."""

from __future__ import annotations

import torch


def stratified_indices(labels: torch.Tensor, n_select: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``n_select`` samples whose class proportions follow ``labels``.

    Per-class counts use largest-remainder rounding, so exactly ``n_select`` are chosen;
    within a class the choice is a seeded random permutation.
    """
    n = labels.numel()
    if not 0 < n_select <= n:
        raise ValueError(f"cannot select {n_select} of {n} samples")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_select / n
    quota = exact.floor().long()
    remainder = n_select - int(quota.sum())
    if remainder:
        order = torch.argsort(exact - quota.double(), descending=True, stable=True)
        quota[order[:remainder]] += 1
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == cls, as_tuple=False).flatten()
        perm = torch.randperm(members.numel(), generator=gen)
        chosen.append(members[perm[:q]])
    return torch.sort(torch.cat(chosen)).values


def complement(n: int, indices: torch.Tensor) -> torch.Tensor:
    """Sorted indices in ``range(n)`` that are not in ``indices``."""
    mask = torch.ones(n, dtype=torch.bool)
    mask[indices] = False
    return torch.nonzero(mask, as_tuple=False).flatten()
