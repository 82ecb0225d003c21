"""Loading what an evaluation stage needs: the test images it works on, the model, units."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from .data import load_split_in_units, to_float
from .data.split import stratified_indices
from .models import load_classifier
from .vocab import Vocabulary


@dataclass
class EvalSet:
    """A stratified subset of the test set (float images in [0,1]), its indices, and the unit scale."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    scale: torch.Tensor | None
    shape: tuple[int, int]  # (channels, image size)


def eval_set(data_dir: str | os.PathLike[str], n_images: int, seed: int, units: str,
             device: torch.device) -> EvalSet:
    """``n_images`` test images, stratified by class and seeded (all when there are fewer)."""
    loaded = load_split_in_units(data_dir, "test", units)
    test, scale = loaded.split, loaded.scale
    n = test.labels.numel()
    idx = torch.arange(n) if n_images >= n else stratified_indices(test.labels, n_images, seed)
    return EvalSet(to_float(test.images[idx]).to(device), test.labels[idx].to(device), idx, scale,
                   (int(test.images.shape[1]), int(test.images.shape[2])))


def load_model(model_path: str | os.PathLike[str], vocab_path: str | os.PathLike[str] | None, dataset: str,
               device: torch.device) -> nn.Module:
    """A classifier in eval mode on ``device`` (discrete ones with their vocabulary)."""
    vocab = Vocabulary.load(vocab_path) if vocab_path else None
    model, _ = load_classifier(model_path, vocab, map_location=device, dataset=dataset)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.inference_mode()
def predictions(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's predicted class of each image (on the CPU), in batches."""
    return torch.cat([model(images[i:i + batch_size]).argmax(1).cpu() for i in range(0, images.shape[0], batch_size)])
