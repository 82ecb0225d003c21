"""Device selection: CUDA only when the rule was given a GPU and one exists."""

from __future__ import annotations

import torch


def select_device(gpus: int | None = None, prefer: str = "auto") -> torch.device:
    """Return the device a job should use.

    ``gpus`` is the number of GPUs the scheduler granted (Snakemake ``resources.gpu``);
    ``None`` means "not run under a scheduler" and lets an available GPU be used.
    ``prefer`` may force ``"cpu"`` or ``"cuda"`` (the latter fails loudly without CUDA).
    """
    if prefer == "cpu":
        return torch.device("cpu")
    if prefer == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda")
    if prefer != "auto":
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {prefer!r}")
    granted = True if gpus is None else gpus > 0
    if granted and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
