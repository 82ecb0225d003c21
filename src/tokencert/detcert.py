"""The deterministic certificate jobs beyond ``R_0`` / ``R_2`` (rules ``setcert`` and ``lipcert``): a
certified radius per image, its certified-accuracy summary and the bracket against the attacks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .attacks.results import read_outcome
from .certacc import summarize
from .evaluation import eval_set, load_model
from .exact import bracket
from .io import atomic_path, write_json
from .lipschitz import margin_radius
from .setcert import ENUMERATION_LIMIT, certified_radius

log = logging.getLogger("tokencert")


def deterministic_certificates(
    *,
    method: str,
    dataset: str,
    model: str,
    model_path: str | os.PathLike[str],
    vocab_path: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str],
    n_images: int,
    seed: int,
    units: str,
    grid: Sequence[float],
    attacks_path: str | os.PathLike[str] | None,
    json_path: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    enumeration_limit: int = ENUMERATION_LIMIT,
    linear: bool = True,
) -> dict[str, Any]:
    """A deterministic certified radius per image of ``n_images`` stratified test images (CPU): the
    flip-set certificate of a token classifier (``method="Rset"``, float64, :mod:`tokencert.setcert`)
    or the margin certificate of a Lipschitz network (``"lipschitz"``, :mod:`tokencert.lipschitz`);
    the certified-accuracy summary and, with ``attacks_path`` (the suite's per-sample worst case),
    the bracket ``radius <= minimal adversarial norm <= attack norm``: a certified radius above a
    verified adversarial norm raises (an unsound certificate or a broken attack). ``linear``: the
    flip-set certificate's CROWN-IBP bound beside IBP's. Writes the summary (with ``bracket``) and
    the per-image CSV."""
    data = eval_set(data_dir, n_images, seed, units, torch.device("cpu"))
    net = load_model(model_path, vocab_path, dataset, torch.device("cpu"))
    start = time.perf_counter()
    if method == "Rset":
        radius = certified_radius(net, data.images, data.labels, data.scale, enumeration_limit=enumeration_limit,
                                  linear=linear)
    elif method == "lipschitz":
        radius = margin_radius(net, data.images, data.labels, data.scale)
    else:
        raise ValueError(f"no deterministic certificate {method!r} (Rset, lipschitz)")
    seconds = (time.perf_counter() - start) / max(1, data.labels.numel())
    # inf (no breakpoint breaks it): every image of the [0,1] box is within this radius, so it is the same claim
    box = data.images[0].numel() ** 0.5 / (1.0 if data.scale is None else float(data.scale.min()))
    radius = radius.clamp(max=box)
    with torch.inference_mode():
        prediction = net(data.images).argmax(1).cpu()
    correct = prediction == data.labels.cpu()
    certified = torch.where(correct, radius, 0.0)
    summary = summarize(method, dataset, model, units, certified, correct, np.zeros(correct.numel(), dtype=bool),
                        grid, None, seconds)
    upper = torch.full_like(radius, float("inf"))
    if attacks_path is not None:
        attacks, attack_idx, _ = read_outcome(attacks_path)
        upper, summary["bracket"] = bracket(certified, correct, data.indices, attack_idx, attacks.min_norm)
    frame = pd.DataFrame({"idx": data.indices.tolist(), "label": data.labels.tolist(),
                          "prediction": prediction.tolist(), "certified_radius": certified.tolist(),
                          "upper_bound": upper.tolist()})
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    write_json(json_path, summary)
    log.info("%s/%s %s: clean %.3f, ACR %.4f, %.3f s/image, bracket %s", dataset, model, method,
             summary["clean_accuracy"], summary["acr"], seconds, summary.get("bracket"))
    return summary
