"""Randomized smoothing, exactly as Cohen, Rosenfeld and Kolter (2019), arXiv 1902.02918.

The smoothed classifier is ``G(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)``
added in ``[0,1]`` pixel space (no clipping). With units of per-channel ``scale`` the
noise of channel ``c`` has standard deviation ``sigma * scale[c]``, so ``sigma`` and the
certified radius are both in those units.

- :func:`predict`: ``n`` samples, two-sided binomial test of the top two counts at level
  ``alpha``; abstain (``-1``) when the test does not reject.
- :func:`certify`: ``n0`` samples select the class ``cA``, ``n`` fresh samples estimate
  ``pA`` by the one-sided Clopper-Pearson lower bound at level ``alpha``; abstain when
  ``pA <= 1/2``, else return ``cA`` and the radius ``sigma * Phi^-1(pA)``.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn
from tqdm import tqdm

from .certacc import summarize
from .data.store import load_split_in_units, to_float
from .io import write_json, write_text
from .models import DiscreteClassifier, channels_last, load_classifier
from .runtime import derive_seed
from .vocab import Vocabulary

log = logging.getLogger("tokencert")

ABSTAIN = -1
TSV_FIELDS = ("idx", "label", "predict", "radius", "correct", "time")


def check_params(sigma: float, alpha: float, batch_size: int, **counts: int) -> None:
    """Raise ``ValueError`` unless ``sigma > 0``, ``0 < alpha < 1``, and every count is >= 1."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    for name, value in {"batch_size": batch_size, **counts}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}")


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower bound on ``p`` from ``k`` successes in ``n``."""
    return float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0


def max_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with ``n`` samples: all ``n`` votes for one class give
    ``pA = alpha^(1/n)`` and the radius ``sigma * Phi^-1(pA)``."""
    return sigma * float(norm.ppf(lower_confidence_bound(n, n, alpha)))


CHANCE_SLACK = 0.05  # clean accuracy within this of 1/classes: the smoothed classifier predicts a constant


def chance_level(clean_accuracy: float, num_classes: int) -> bool:
    """Whether a smoothed classifier's clean accuracy is at chance level (``<= 1/classes + 0.05``):
    its prediction is (nearly) constant, so its certified radii say nothing about robustness."""
    return num_classes > 1 and clean_accuracy <= 1.0 / num_classes + CHANCE_SLACK


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


def predict(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int,
    alpha: float,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    scale: torch.Tensor | None = None,
    precision: str = "fp32",
) -> int:
    """Cohen et al.'s PREDICT: the smoothed prediction of ``x``, or ``-1`` (abstain)."""
    check_params(sigma, alpha, batch_size, n=n)
    counts = sample_counts(model, x, sigma, n, batch_size, generator=generator, scale=scale, precision=precision)
    top = counts.topk(2)
    n_a, n_b = int(top.values[0]), int(top.values[1])
    if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(top.indices[0])


def _radius(count: int, n: int, alpha: float, sigma: float, c_a: int) -> tuple[int, float]:
    """CERTIFY's decision from the estimation count of the selected class ``c_a``."""
    p_a = lower_confidence_bound(count, n, alpha)
    if p_a <= 0.5:
        return ABSTAIN, 0.0
    return c_a, float(sigma * norm.ppf(p_a))


def certify_many(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    *,
    generators: Sequence[torch.Generator | None] | None = None,
    scale: torch.Tensor | None = None,
    precision: str = "fp32",
) -> list[tuple[int, float]]:
    """Cohen et al.'s CERTIFY of each image of ``x`` (N x C x H x W): ``(class, radius)`` or ``(-1, 0.0)``.

    Per image exactly CERTIFY: ``n0`` samples select ``cA``, ``n`` fresh samples from the same
    generator estimate ``pA``; only the forward passes are shared between the images.
    """
    check_params(sigma, alpha, batch_size, n0=n0, n=n)
    kw = {"generators": generators, "scale": scale, "precision": precision}
    selected = sample_counts_many(model, x, sigma, n0, batch_size, **kw).argmax(1)
    counts = sample_counts_many(model, x, sigma, n, batch_size, **kw)
    return [_radius(int(counts[i, c]), n, alpha, sigma, int(c)) for i, c in enumerate(selected)]


def certify(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    scale: torch.Tensor | None = None,
    precision: str = "fp32",
) -> tuple[int, float]:
    """Cohen et al.'s CERTIFY of one image: ``(class, radius)``, or ``(-1, 0.0)`` when abstaining."""
    return certify_many(model, _one_image(x), sigma, n0, n, alpha, batch_size, generators=[generator], scale=scale,
                        precision=precision)[0]


def select_indices(n_images: int, every: int, max_images: int | None = None) -> list[int]:
    """Every ``every``-th test image from index 0, at most ``max_images`` of them."""
    indices = list(range(0, n_images, every))
    return indices if max_images is None else indices[:max_images]


def certify_images(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: Sequence[int],
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    *,
    seed: int,
    device: torch.device,
    scale: torch.Tensor | None = None,
    precision: str = "fp32",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """CERTIFY every image at ``indices`` of uint8 ``images``; one row per image (see :data:`TSV_FIELDS`).

    The noise of image ``i`` comes from a generator seeded with ``derive_seed(seed, i)``, so a
    row does not depend on which other images are certified. Images are certified in groups of
    :func:`group_size` (one forward pass holds several images' noise); ``time`` is the group's
    wall time divided by its size.
    """
    check_params(sigma, alpha, batch_size, n0=n0, n=n)
    model = prepare(model, precision)
    group = group_size(batch_size, n0)
    rows = []
    bar = tqdm(total=len(indices), desc=f"certify sigma={sigma:g}", mininterval=2, disable=not progress)
    for first in range(0, len(indices), group):
        chunk = list(indices[first:first + group])
        x = to_float(images[chunk]).to(device)
        generators = [torch.Generator(device=device).manual_seed(derive_seed(seed, idx)) for idx in chunk]
        start = time.perf_counter()
        results = certify_many(model, x, sigma, n0, n, alpha, batch_size, generators=generators, scale=scale,
                               precision=precision)
        elapsed = (time.perf_counter() - start) / len(chunk)
        for idx, (pred, radius) in zip(chunk, results):
            label = int(labels[idx])
            rows.append({"idx": idx, "label": label, "predict": pred, "radius": radius,
                         "correct": int(pred == label), "time": elapsed})
        bar.update(len(chunk))
    bar.close()
    return rows


def write_tsv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Per-image results as TSV, the columns of Cohen et al.'s ``certify.py`` (time in seconds)."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TSV_FIELDS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "radius": repr(float(row["radius"])), "time": f"{row['time']:.6f}"})
    write_text(path, buf.getvalue())


def summarize_rows(
    rows: Sequence[Mapping[str, Any]], *, dataset: str, model: str, units: str, sigma: float, grid: Sequence[float]
) -> dict[str, Any]:
    """Certified-accuracy summary (``tokencert.certacc``) of certification rows."""
    return summarize(
        "smoothing", dataset, model, units,
        radii=[r["radius"] for r in rows],
        correct=[bool(r["correct"]) for r in rows],
        abstain=[r["predict"] == ABSTAIN for r in rows],
        grid=grid, sigma=sigma,
        seconds_per_image=sum(r["time"] for r in rows) / max(1, len(rows)),
    )


def smooth_classifier(
    *,
    dataset: str,
    model: str,
    sigma: float,
    model_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    settings: Mapping[str, Any],
    units: str,
    grid: Sequence[float],
    seed: int,
    device: torch.device,
    tsv_path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    vocab_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Certify the test images chosen by ``settings`` (``every``, ``max_images``) with the smoothed ``model``.

    ``settings``: the ``smoothing`` section (``n0``, ``n``, ``alpha``, ``batch_size`` (an int or
    one per device type), ``precision``). Writes the per-image TSV and the summary JSON; returns
    the summary.
    """
    n0, n, alpha = settings["n0"], settings["n"], settings["alpha"]
    batch_size = batch_size_for(settings["batch_size"], device)
    precision = settings.get("precision", "fp32")
    check_params(sigma, alpha, batch_size, n0=n0, n=n)
    vocab = Vocabulary.load(vocab_path) if vocab_path is not None else None
    net, _ = load_classifier(model_path, vocab, map_location=device, dataset=dataset)
    loaded = load_split_in_units(data_dir, "test", units)
    test = loaded.split
    indices = select_indices(test.labels.numel(), int(settings["every"]), settings.get("max_images"))
    rows = certify_images(
        net, test.images, test.labels, indices, sigma, n0, n, alpha, batch_size,
        seed=seed, device=device, scale=loaded.scale, precision=precision, progress=progress,
    )
    write_tsv(tsv_path, rows)
    summary = summarize_rows(rows, dataset=dataset, model=model, units=units, sigma=sigma, grid=grid)
    summary.update({"n0": n0, "n": n, "alpha": alpha, "precision": precision, "batch_size": batch_size,
                    "device": device.type})
    write_json(json_path, summary)
    log.info("%s/%s sigma=%g: clean %.3f, ACR %.3f, %.3f s/image", dataset, model, sigma,
             summary["clean_accuracy"], summary["acr"], summary["seconds_per_image"])
    return summary
