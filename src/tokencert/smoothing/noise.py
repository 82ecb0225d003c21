"""The batched noise engine: counts of a classifier's predictions on noisy copies of many images, each
image's noise from its own generator (so results depend on neither the batch size nor the other
images), packed into shared forward passes; fp32 or bfloat16 autocast."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..models import DiscreteClassifier, channels_last

NOISE_CHUNK = 1000  # noise rows drawn per call from one image's generator (see sample_counts_many)
PRECISIONS = ("fp32", "bf16")
MAX_GROUP = 256  # images certified together at most (progress and the time column stay per-image-ish)


def _images(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] < 1:
        raise ValueError(f"expected images (N, C, H, W) or one image (C, H, W), got shape {tuple(x.shape)}")
    return x


def _one_image(x: torch.Tensor) -> torch.Tensor:
    x = _images(x)
    if x.shape[0] != 1:
        raise ValueError(f"expected one image (C, H, W), got shape {tuple(x.shape)}")
    return x


def batch_size_for(batch_size: int | Mapping[str, int], device: torch.device | str) -> int:
    """The smoothing batch size of ``device``: an int, or a mapping by device type (``cpu``, ``cuda``)."""
    if isinstance(batch_size, Mapping):
        kind = torch.device(device).type
        if kind not in batch_size:
            raise ValueError(f"smoothing.batch_size has no entry for device {kind!r}")
        return int(batch_size[kind])
    return int(batch_size)


def group_size(batch_size: int, n0: int) -> int:
    """Images certified together: enough that their ``n0`` selection samples fill one forward pass."""
    return max(1, min(MAX_GROUP, batch_size // n0))


def _forward(model: nn.Module, batch: torch.Tensor, precision: str) -> torch.Tensor:
    """Logits of ``model`` on ``batch``; ``bf16``: under bfloat16 autocast (the tokenizer stays float64).
    The batch needs no channels-last copy: :func:`prepare` puts the weights in channels-last."""
    if precision == "fp32":
        return model(batch)
    with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16):
        return model(batch)


def prepare(model: nn.Module, precision: str) -> nn.Module:
    """``model`` (changed in place) for noisy inputs: eval mode, channels-last weights, and a discrete
    classifier's tokenizer without the search for repeated patches (noisy patches never repeat)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(model, DiscreteClassifier):
        model.dedup = False
    return channels_last(model.eval())


@torch.inference_mode()
def sample_counts_many(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    num: int,
    batch_size: int,
    *,
    generators: Sequence[torch.Generator | None] | None = None,
    scale: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Counts per image and class (int64, CPU, N x classes) of ``model`` on ``num`` noisy copies of each image.

    The noise of image ``i`` comes from ``generators[i]`` alone, drawn ``NOISE_CHUNK`` rows at a
    time (the last draw smaller), so it depends on that generator's state and ``num`` only: not
    on ``batch_size`` nor on the other images. Forward passes pack rows of several images.
    """
    x = _images(x)
    k = x.shape[0]
    generators = list(generators) if generators is not None else [None] * k
    if len(generators) != k:
        raise ValueError(f"{len(generators)} generators for {k} images")
    std = torch.full((1, x.shape[1], 1, 1), float(sigma), dtype=x.dtype, device=x.device)
    if scale is not None:
        std *= scale.to(x).view(1, -1, 1, 1)
    rows = min(batch_size, k * num)
    buf = torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device)
    owner = torch.empty(rows, dtype=torch.long, device=x.device)
    counts: torch.Tensor | None = None
    fill = 0

    def flush() -> None:
        nonlocal counts, fill
        logits = _forward(model, buf[:fill], precision)
        classes = logits.shape[1]
        flat = torch.bincount(owner[:fill] * classes + logits.argmax(1), minlength=k * classes)
        counts = flat if counts is None else counts + flat
        fill = 0

    for i, generator in enumerate(generators):
        for start in range(0, num, NOISE_CHUNK):
            size = min(NOISE_CHUNK, num - start)
            if fill == 0 and size == rows:  # the whole chunk is one batch: draw into the buffer
                noise = buf
            else:
                noise = torch.empty((size, *x.shape[1:]), dtype=x.dtype, device=x.device)
            torch.randn(noise.shape, generator=generator, dtype=x.dtype, device=x.device, out=noise)
            noise.mul_(std).add_(x[i])
            done = 0
            while done < size:
                take = min(rows - fill, size - done)
                if noise is not buf:
                    buf[fill:fill + take].copy_(noise[done:done + take])
                owner[fill:fill + take] = i
                fill, done = fill + take, done + take
                if fill == rows:
                    flush()
    if fill:
        flush()
    assert counts is not None
    return counts.view(k, -1).cpu()


def sample_counts(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    num: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    scale: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Counts per class (int64, CPU) of ``model``'s predictions on ``num`` noisy copies of one image ``x``."""
    return sample_counts_many(model, _one_image(x), sigma, num, batch_size, generators=[generator], scale=scale,
                              precision=precision)[0]
