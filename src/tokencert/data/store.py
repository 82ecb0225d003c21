"""Dataset tensors on disk: ``{train,test}.pt`` and ``manifest.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..io import load_torch, read_json, save_torch, sha256_tensor, write_json
from ..units import channel_scale
from .errors import DatasetError


@dataclass
class Split:
    """One split of a dataset: uint8 images (N x C x H x W), int64 labels, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def subset(self, indices: torch.Tensor) -> Split:
        """The samples at ``indices``."""
        return Split(self.images[indices].contiguous(), self.labels[indices].contiguous(), list(self.classes))


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images on the [0,1] scale (float64)."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        total_sq += (block * block).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def check_split(name: str, split: Split, channels: int, image_size: int) -> None:
    """Raise :class:`DatasetError` when a split does not match the declared shape."""
    shape = tuple(split.images.shape[1:])
    if split.images.dtype != torch.uint8 or shape != (channels, image_size, image_size):
        raise DatasetError(
            f"{name}: images are {split.images.dtype} {shape}, expected uint8 {(channels, image_size, image_size)}"
        )
    if split.labels.shape != (split.images.shape[0],):
        raise DatasetError(f"{name}: {split.labels.numel()} labels for {split.images.shape[0]} images")
    if split.labels.numel() and (split.labels.min() < 0 or split.labels.max() >= len(split.classes)):
        raise DatasetError(f"{name}: labels outside 0..{len(split.classes) - 1}")


def build_manifest(name: str, spec: dict[str, Any], splits: dict[str, Split]) -> dict[str, Any]:
    """The manifest of a dataset: source, classes, shape, counts, checksums, channel statistics."""
    mean, std = channel_stats(splits["train"].images)
    return {
        "name": name,
        "source": spec["source"],
        "location": spec.get("path") or spec.get("name") or spec.get("of"),
        "classes": splits["train"].classes,
        "shape": list(splits["train"].images.shape[1:]),
        "counts": {k: int(v.labels.numel()) for k, v in splits.items()},
        "sha256": {k: sha256_tensor(v.images) for k, v in splits.items()},
        "mean": mean,
        "std": std,
    }


def write_dataset(out_dir: Path, manifest: dict[str, Any], splits: dict[str, Split]) -> None:
    """Write ``{split}.pt`` files and the manifest (each atomically, manifest last)."""
    for key, split in splits.items():
        save_torch(out_dir / f"{key}.pt", {"images": split.images.contiguous(), "labels": split.labels.contiguous(),
                                           "classes": split.classes})
    write_json(out_dir / "manifest.json", manifest)


def load_split(dataset_dir: str | Path, split: str) -> Split:
    """Load a split written by :func:`write_dataset`, checking it against the manifest."""
    dataset_dir = Path(dataset_dir)
    manifest = load_manifest(dataset_dir)
    obj = load_torch(dataset_dir / f"{split}.pt")
    try:
        data = Split(obj["images"], obj["labels"], list(obj["classes"]))
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{dataset_dir / f'{split}.pt'}: not a dataset split ({exc})") from exc
    if sha256_tensor(data.images) != manifest["sha256"][split]:
        raise DatasetError(f"{dataset_dir / f'{split}.pt'}: checksum differs from manifest.json")
    return data


@dataclass
class SplitInUnits:
    """A checked split with its dataset's manifest and the per-channel unit scale (``tokencert.units``)."""

    split: Split
    manifest: dict[str, Any]
    scale: torch.Tensor | None  # float64, shape C: a perturbation's size is ||delta / scale||; None: pixel units


def load_split_in_units(dataset_dir: str | Path, split: str, units: str) -> SplitInUnits:
    """Manifest, split and unit scale of a built dataset: what every evaluation stage starts from."""
    manifest = load_manifest(dataset_dir)
    return SplitInUnits(load_split(dataset_dir, split), manifest, channel_scale(units, manifest))


def load_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a built dataset."""
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: dataset not built (no manifest)")
    return read_json(path)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0,1]."""
    return images.to(torch.float32).contiguous() / 255.0
