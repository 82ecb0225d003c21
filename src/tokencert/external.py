"""Classifiers a researcher already has (``classifiers.external``): their weights loaded into the
study's classifier format, so the whole evaluation (attacks, certificates, smoothing, landscape) applies."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import EXTERNAL
from .data import load_split_in_units, to_float
from .evaluation import predictions
from .io import load_torch, read_json, sha256_file, write_json
from .models import DiscreteClassifier, build_model, model_meta, resolve_arch, save_classifier
from .vocab import Vocabulary

log = logging.getLogger("tokencert")


def normalization(spec: str | Mapping[str, Any], manifest: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """``(mean, std)`` of the network's first layer: the dataset's (``"dataset"``), none, or given."""
    channels = int(manifest["shape"][0])
    if spec == "dataset":
        return list(manifest["mean"]), list(manifest["std"])
    if spec == "none":
        return [0.0] * channels, [1.0] * channels
    return [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]]


def state_dict(path: str | os.PathLike[str], key: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a state_dict, or ``{"state_dict": ...}`` (``weights_only`` loading)."""
    try:
        obj = load_torch(path, map_location="cpu")
    except Exception as exc:
        raise ValueError(f"{key} '{path}' cannot be read as a weights-only checkpoint: "
                         f"{' '.join(str(exc).split())[:300]}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{key} '{path}' holds no state_dict (a mapping of names to tensors)")
    return dict(obj)


def import_classifier(*, dataset: str, model: str, spec: Mapping[str, Any], data_dir: str | os.PathLike[str],
                      units: str, vocab_path: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
                      device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """Load ``spec["checkpoint"]`` into ``spec["arch"]`` (normalization first, as every classifier of the
    study), measure its test accuracy and write ``model.pt`` and ``final.json`` like a trained one.
    A checkpoint that does not fit the architecture is one ``ValueError`` naming the key."""
    key = f"classifiers.external.{model}.checkpoint"
    manifest = read_json(Path(data_dir) / "manifest.json")
    channels, image_size, classes = int(manifest["shape"][0]), int(manifest["shape"][1]), len(manifest["classes"])
    arch = resolve_arch(spec.get("arch", "auto"), channels)
    mean, std = normalization(spec.get("normalization", "dataset"), manifest)
    net = build_model(arch, channels, classes, mean, std, image_size)
    try:
        net[1].load_state_dict(state_dict(spec["checkpoint"], key))
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise ValueError(f"{key}: the weights do not fit architecture {arch!r}: {first}") from exc
    vocab = Vocabulary.load(vocab_path) if vocab_path else None
    sigma = spec.get("sigma")
    kind = "discrete" if vocab is not None else "noise" if sigma is not None else "baseline"
    meta = model_meta(arch=arch, channels=channels, num_classes=classes, image_size=image_size, mean=mean, std=std,
                      dataset=dataset, kind=kind, sigma=sigma, vocab=vocab)
    test = load_split_in_units(data_dir, "test", units).split
    evaluated = (net if vocab is None else DiscreteClassifier(net, vocab)).to(device).eval()
    correct = predictions(evaluated, to_float(test.images).to(device)) == test.labels
    meta["test_accuracy"] = float(correct.double().mean())
    save_classifier(Path(out_dir) / "model.pt", net, meta)
    final = {"dataset": dataset, "model": model, "kind": kind, "sigma": sigma, "vocabulary": meta["vocabulary"],
             "objective": {"kind": EXTERNAL, "checkpoint": str(spec["checkpoint"]),
                           "sha256": sha256_file(spec["checkpoint"])},
             "units": units, "test_accuracy": meta["test_accuracy"], "n_test": int(test.labels.numel()),
             "device": str(device), "settings": {"arch": arch, "mean": mean, "std": std}}
    write_json(Path(out_dir) / "final.json", final)
    log.info("%s/%s: external %s classifier from %s, test accuracy %.4f", dataset, model, arch, spec["checkpoint"],
             final["test_accuracy"])
    return final
