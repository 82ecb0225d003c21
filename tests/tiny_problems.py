"""Tiny token-classifier problems and a brute-force reference for exact cell distances, shared by the
flip-set certificate's and the exact verifier's tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from tokencert.models import DiscreteClassifier, Normalize
from tokencert.vocab import Vocabulary


def tiny_vocab(k: int, seed: int) -> Vocabulary:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.rand(k, 4, generator=g, dtype=torch.float64)
    return Vocabulary(tokens=tokens, patch_size=2, mode="joint", channels=1, image_size=4, meta={"name": "tiny"})


def tiny_net(seed: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, classes))
    bn = net[2]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def brute_distance(x: np.ndarray, tokens: np.ndarray, j: int, s: np.ndarray, box: bool = True) -> float:
    """``min ||(z - x) / s||`` over token ``j``'s cell (and the box) by enumerating active sets (KKT) of the
    inequalities: the reference, independent of the package's solver."""
    others = [k for k in range(len(tokens)) if k != j]
    d = len(x)
    boxes = list(np.eye(d)) + list(-np.eye(d)) if box else []
    a = np.array([2 * (tokens[k] - tokens[j]) for k in others] + boxes)
    b = np.array([tokens[k] @ tokens[k] - tokens[j] @ tokens[j] for k in others] + ([1.0] * d + [0.0] * d) * box)
    w = s * s  # z = x - W A^T lam on an active set: stationarity of the weighted projection
    if np.all(a @ x <= b + 1e-12):
        return 0.0
    best = math.inf
    for size in range(1, d + 1):
        for active in itertools.combinations(range(len(a)), size):
            aa, bb = a[list(active)], b[list(active)]
            m = aa @ (w[:, None] * aa.T)
            if abs(np.linalg.det(m)) < 1e-12:
                continue
            lam = np.linalg.solve(m, aa @ x - bb)
            z = x - w * (aa.T @ lam)
            if np.all(lam >= -1e-10) and np.all(a @ z <= b + 1e-9):
                best = min(best, float(np.linalg.norm((z - x) / s)))
    return best


def tiny_case(k: int, seed: int, n: int, image_seed: int) -> tuple[DiscreteClassifier, torch.Tensor, torch.Tensor]:
    """A token classifier of :func:`tiny_net` on :func:`tiny_vocab`, ``n`` random 4x4 images and its own
    predictions as labels."""
    model = DiscreteClassifier(tiny_net(seed), tiny_vocab(k, seed)).eval()
    images = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(image_seed))
    with torch.no_grad():
        return model, images, model(images).argmax(1)
