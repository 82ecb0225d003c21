"""The smooth job (rule ``smooth``): certify the chosen test images of a classifier at its recipe's sigma,
write the per-image TSV (Cohen et al.'s columns) and the certified-accuracy summary."""

from __future__ import annotations

import csv
import io as _io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..certacc import summarize
from ..data.store import load_split_in_units, to_float
from ..evaluation import counted
from ..io import write_json, write_text
from ..models import load_classifier
from ..runtime import derive_seed
from ..vocab import Vocabulary
from .core import ABSTAIN, Smooth, check_params
from .noise import batch_size_for, group_size

log = logging.getLogger("tokencert")

TSV_FIELDS = ("idx", "label", "predict", "radius", "correct", "time")


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
    smoothed = Smooth(model, sigma, batch_size=batch_size, scale=scale, precision=precision)
    group = group_size(batch_size, n0)
    rows = []
    bar = tqdm(total=len(indices), desc=f"certify sigma={sigma:g}", mininterval=2, disable=not progress)
    for first in range(0, len(indices), group):
        chunk = list(indices[first:first + group])
        x = to_float(images[chunk]).to(device)
        generators = [torch.Generator(device=device).manual_seed(derive_seed(seed, idx)) for idx in chunk]
        start = time.perf_counter()
        results = smoothed.certify_many(x, n0, n, alpha, generators=generators)
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
    """Certify the test images chosen by ``settings`` (``every``, ``max_images``) with the smoothed ``model``
    at ``sigma``, its recipe's (the noise it was trained under, stored in the classifier: checked).

    ``settings``: the ``smoothing`` section (``n0``, ``n``, ``alpha``, ``batch_size`` (an int or
    one per device type), ``precision``). Writes the per-image TSV and the summary JSON; returns
    the summary.
    """
    n0, n, alpha = settings["n0"], settings["n"], settings["alpha"]
    batch_size = batch_size_for(settings["batch_size"], device)
    precision = settings.get("precision", "fp32")
    check_params(sigma, alpha, batch_size, n0=n0, n=n)
    vocab = Vocabulary.load(vocab_path) if vocab_path is not None else None
    net, meta = load_classifier(model_path, vocab, map_location=device, dataset=dataset)
    if meta["sigma"] is None or float(meta["sigma"]) != float(sigma):
        raise ValueError(f"{model_path}: trained under noise sigma {meta['sigma']}, but its recipe smooths it "
                         f"at {sigma}")
    loaded = load_split_in_units(data_dir, "test", units)
    test = loaded.split
    indices = select_indices(test.labels.numel(), int(settings["every"]), settings.get("max_images"))
    with counted(net, device=device) as work:
        rows = certify_images(
            net, test.images, test.labels, indices, sigma, n0, n, alpha, batch_size,
            seed=seed, device=device, scale=loaded.scale, precision=precision, progress=progress,
        )
    write_tsv(tsv_path, rows)
    summary = summarize_rows(rows, dataset=dataset, model=model, units=units, sigma=sigma, grid=grid)
    summary.update({"n0": n0, "n": n, "alpha": alpha, "precision": precision, "batch_size": batch_size,
                    "device": device.type, "work": work.summary(len(rows))})
    write_json(json_path, summary)
    log.info("%s/%s sigma=%g: clean %.3f, ACR %.3f, %.3f s/image", dataset, model, sigma,
             summary["clean_accuracy"], summary["acr"], summary["seconds_per_image"])
    return summary
