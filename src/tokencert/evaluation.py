"""Loading what an evaluation stage needs: the test images it works on, the model, units."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from .data import load_split_in_units, to_float
from .data.split import stratified_indices
from .models import DiscreteClassifier, load_classifier
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


@dataclass
class Work:
    """What a job spent on its models: images through their networks forward and backward (a batch of
    ``b`` counts ``b``), the passes themselves (``calls``: a batch counts 1, what a GPU's per-pass latency
    is paid on), wall seconds and the device (see :func:`counted`)."""

    device: str
    forward: int = 0
    backward: int = 0
    forward_calls: int = 0
    backward_calls: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def summary(self, images: int) -> dict[str, float | int | str]:
        """The job summary's ``work`` entry: totals and per image of the ``images`` evaluated."""
        return {"device": self.device, "seconds": self.seconds, "forward_images": self.forward,
                "backward_images": self.backward, "forward_per_image": self.forward / max(1, images),
                "backward_per_image": self.backward / max(1, images), "forward_calls": self.forward_calls,
                "backward_calls": self.backward_calls}


@contextlib.contextmanager
def counted(*models: nn.Module | None, device: torch.device | str = "cpu") -> Iterator[Work]:
    """Count every forward and backward pass through the networks of ``models`` (a token classifier's
    ``net``, which its surrogates and searches call too; copies made inside, e.g. the certificates'
    float64 networks, keep the count) while the block runs, and its wall seconds."""
    work = Work(str(device))

    def hook(_: nn.Module, __: object, output: torch.Tensor) -> None:
        work.forward += int(output.shape[0])
        work.forward_calls += 1
        if output.requires_grad:
            output.register_hook(lambda grad: _backward(grad.shape[0]))

    def _backward(n: int) -> None:
        work.backward += n
        work.backward_calls += 1

    nets = [m.net if isinstance(m, DiscreteClassifier) else m for m in models if m is not None]
    handles = [net.register_forward_hook(hook) for net in nets]
    try:
        yield work
    finally:
        work.seconds = time.perf_counter() - work.started
        for handle in handles:
            handle.remove()
