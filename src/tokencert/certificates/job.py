"""The one job shape of every certificate (rule ``certificate``): a certified radius per image of a
stratified test subset, its certified-accuracy summary and the bracket against the attacks."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..certacc import summarize
from ..evaluation import counted, eval_set, load_model, predictions
from ..io import write_columns, write_json
from ..outcomes import read_outcome
from ..study import CLOSED_BRACKET
from . import Certificate

log = logging.getLogger("tokencert")


def run_certificate(
    cert: Certificate,
    *,
    dataset: str,
    model: str,
    model_path: str | os.PathLike[str],
    vocab_path: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str],
    settings: Mapping[str, Any],
    seed: int,
    units: str,
    grid: Sequence[float],
    attacks_path: str | os.PathLike[str] | None,
    json_path: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    device: torch.device = torch.device("cpu"),
) -> dict[str, Any]:
    """Certify ``settings["n_images"]`` stratified test images (all without it) with ``cert``; write the
    summary (``bracket`` added with ``attacks_path``, the suite's per-sample worst case) and the
    per-image CSV (``idx, label, prediction, certified_radius, upper_bound`` and the certificate's
    own columns). A certified radius above a verified adversarial norm raises (an unsound
    certificate or a broken attack): it is never written as a result."""
    n_images = settings.get("n_images")
    data = eval_set(data_dir, 2**62 if n_images is None else int(n_images), seed, units, device)
    net = load_model(model_path, vocab_path, dataset, device)
    with counted(net, device=device) as work:
        out = cert.function()(net, data, settings)
        prediction = predictions(net, data.images)
    seconds = work.seconds / max(1, data.labels.numel())
    radius = torch.as_tensor(out.radius, dtype=torch.float64).cpu()
    if radius.shape != data.labels.shape or bool(torch.isnan(radius).any()) or bool((radius < 0).any()):
        raise ValueError(f"certificate {cert.name}: radii of shape {tuple(radius.shape)} for "
                         f"{data.labels.numel()} images, or NaN / negative")
    # inf (nothing breaks it): every image of the [0,1] box lies within this radius, so it is the same claim
    box = data.images[0].numel() ** 0.5 / (1.0 if data.scale is None else float(data.scale.min()))
    correct = prediction == data.labels.cpu()
    certified = torch.where(correct, radius.clamp(max=box), 0.0)
    summary = summarize(cert.name, dataset, model, units, certified, correct, torch.zeros_like(correct), grid,
                        None, seconds)
    summary.update(out.summary)
    summary["work"] = work.summary(data.labels.numel())
    upper = torch.full_like(certified, float("inf"))
    if out.upper is not None:  # the certificate's own verified adversarial norms (a complete verifier's)
        upper = torch.as_tensor(out.upper, dtype=torch.float64).cpu()
    if attacks_path is not None:
        attacks, attack_idx, _ = read_outcome(attacks_path)
        upper, summary["bracket"] = bracket(certified, correct, data.indices, attack_idx, attacks.min_norm, upper)
    columns = {"idx": data.indices, "label": data.labels, "prediction": prediction, "certified_radius": certified,
               "upper_bound": upper, **out.columns}
    write_columns(csv_path, {k: torch.as_tensor(v).cpu().tolist() for k, v in columns.items()})
    write_json(json_path, summary)
    log.info("%s/%s %s: clean %.3f, ACR %.4f, %.3g s/image, bracket %s", dataset, model, cert.name,
             summary["clean_accuracy"], summary["acr"], seconds, summary.get("bracket"))
    return summary


def bracket(certified: torch.Tensor, correct: torch.Tensor, indices: torch.Tensor, upper_idx: torch.Tensor,
            upper_norm: torch.Tensor, own: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float | int]]:
    """Per image the attacks' upper bound on the minimal adversarial norm (inf when none), joined on
    test-set index (and the certificate's ``own`` upper bounds, where it has them), and statistics of
    ``certified lower bound <= minimal norm <= upper bound``: the median ratio and the share of images
    whose bracket is closed (lower within :data:`tokencert.study.CLOSED_BRACKET` of upper).

    Raises ``RuntimeError`` when a certified lower bound exceeds a verified adversarial norm:
    that would mean an unsound certificate (or a broken attack), never a result to report.
    """
    lookup = dict(zip(upper_idx.tolist(), upper_norm.tolist(), strict=True))
    upper = torch.tensor([lookup.get(i, float("inf")) for i in indices.tolist()], dtype=torch.float64)
    if own is not None:
        upper = torch.minimum(upper, own)
    bad = certified > upper
    if bad.any():
        raise RuntimeError(f"certified radius above a verified adversarial norm for test images "
                           f"{indices[bad].tolist()}: unsound certificate or broken attack")
    known = torch.isfinite(upper) & correct
    return upper, {
        "images_with_upper_bound": int(known.sum()),
        "median_lower": float(certified[known].median()) if known.any() else float("nan"),
        "median_upper": float(upper[known].median()) if known.any() else float("nan"),
        "median_gap_ratio": float((upper[known] / certified[known].clamp_min(1e-12)).median())
        if known.any() else float("nan"),
        "closed_share": float((certified[known] >= upper[known] * (1 - CLOSED_BRACKET)).double().mean())
        if known.any() else float("nan"),
    }
