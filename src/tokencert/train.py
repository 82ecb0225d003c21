"""Training of the study's classifiers: SGD with momentum, cosine learning rate, resumable.

One loop serves the three kinds of classifier. The input pipeline of a training batch
is: uint8 images -> float ``[0,1]`` -> augmentation (random crop with padding 4 and
horizontal flip, per sample) -> Gaussian noise (noise classifiers) -> the model, which
for a :class:`~tokencert.models.DiscreteClassifier` tokenizes first. Every random draw of
epoch ``e`` comes from a generator seeded with ``derive_seed(seed, e)``, so a run resumed
from the checkpoint of epoch ``e - 1`` gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io as _io
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data.store import Split, load_split, load_split_in_units, to_float
from .io import load_torch, save_torch, write_json, write_text
from .models import (
    DiscreteClassifier,
    build_model,
    channels_last,
    model_meta,
    resolve_arch,
    save_classifier,
)
from .objectives import Objective, add_noise, batch_loss
from .runtime import derive_seed
from .study import SIGMA_OBJECTIVES
from .vocab import Vocabulary, tokenize

log = logging.getLogger("tokencert")

AUGMENTS = ("none", "cropflip")
CROP_PAD = 4
METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_acc", "seconds")


@dataclass(frozen=True)
class TrainSettings:
    """Resolved ``training`` parameters (no ``auto`` left)."""

    arch: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    augment: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any], channels: int, image_size: int) -> TrainSettings:
        """Settings from a ``training`` section, resolving ``arch`` and ``augment``."""
        augment = params.get("augment", "auto")
        if augment == "auto":
            augment = "cropflip" if channels == 3 and image_size == 32 else "none"
        if augment not in AUGMENTS:
            raise ValueError(f"training.augment must be auto or one of {AUGMENTS}, got {augment!r}")
        return cls(
            arch=resolve_arch(params.get("arch", "auto"), channels),
            epochs=int(params["epochs"]),
            batch_size=int(params["batch_size"]),
            lr=float(params["lr"]),
            momentum=float(params["momentum"]),
            weight_decay=float(params["weight_decay"]),
            augment=augment,
        )


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch and random horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=generator.device).to(x.device)
    rows = (off[0, :, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (off[1, :, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out).contiguous()


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration of the block (restored afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _pretokenize(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """``Q(x)`` of every image (float32, on ``device``), computed once."""
    chunks = [tokenize(to_float(images[i:i + batch_size]).to(device), model.vocab)[0].float()
              for i in range(0, images.shape[0], batch_size)]
    return torch.cat(chunks)


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
             device: torch.device, noise: tuple[float, torch.Tensor | None, int] | None = None) -> float:
    """Accuracy of ``model`` (eval mode) on uint8 ``images``; with ``noise = (sigma, scale, seed)`` on one
    seeded noisy copy of each image (the distribution a noise objective trains on)."""
    was_training = model.training
    model.eval()
    correct = 0
    generator = None if noise is None else torch.Generator().manual_seed(noise[2])
    for i in range(0, images.shape[0], batch_size):
        x = to_float(images[i:i + batch_size])
        if noise is not None:
            x = add_noise(x, noise[0], noise[1], generator)
        x = x.to(device)
        correct += int((model(x).argmax(1).cpu() == labels[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, images.shape[0])


class Trainer:
    """Train ``model`` on a split; checkpoint after every epoch; resume from the checkpoint.

    ``objective``: what a batch minimises (:mod:`tokencert.objectives`; default cross-entropy),
    with noise and budgets in units of per-channel ``scale`` (``None``: pixel units).
    ``fingerprint``: plain data identifying the run; a checkpoint with another fingerprint is
    ignored (with a warning).
    """

    def __init__(
        self,
        model: nn.Module,
        settings: TrainSettings,
        *,
        seed: int,
        device: torch.device,
        objective: Objective | None = None,
        scale: torch.Tensor | None = None,
        fingerprint: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model.to(device)
        self.settings = settings
        self.seed = seed
        self.device = device
        self.objective = objective or Objective()
        self.scale = None if scale is None else scale.to(device, torch.float32)
        self.fingerprint = {"settings": asdict(settings), "seed": seed, "objective": self.objective.record(),
                            **(fingerprint or {})}
        self.progress = progress
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )

    def _inputs(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return crop_flip(x, generator) if self.settings.augment == "cropflip" else x

    def _train_epoch(self, net: nn.Module, data: torch.Tensor, labels: torch.Tensor, epoch: int,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, pretokenized: bool) -> tuple[float, float]:
        """One pass over the shuffled data; returns mean loss and accuracy."""
        generator = _generator(self.device, derive_seed(self.seed, "epoch", epoch))
        order = torch.randperm(data.shape[0], generator=generator, device=self.device).cpu()
        bs = self.settings.batch_size
        net.train()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        bar = tqdm(range(0, len(order), bs), desc=f"epoch {epoch}", leave=False, mininterval=5,
                   disable=not self.progress)
        steps = len(bar)
        for step, start in enumerate(bar):
            idx = order[start:start + bs]
            x = data[idx].to(self.device)
            x = x if pretokenized else self._inputs(to_float(x), generator)
            y = labels[idx].to(self.device)
            progress = ((epoch - 1) * steps + step) / (self.settings.epochs * steps)
            loss, logits = batch_loss(self.objective, net, x, y, generator, self.scale, progress)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            scheduler.step()
            total_loss += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
            if self.progress and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        return float(total_loss) / len(order), int(correct) / len(order)

    def _load_checkpoint(self, path: str | os.PathLike[str] | None,
                         scheduler: torch.optim.lr_scheduler.LRScheduler) -> tuple[int, list[dict[str, Any]]]:
        """Resume state of a checkpoint: (epochs done, their metrics). A checkpoint that does not
        load (truncated, bad pickle, wrong keys or shapes) or belongs to another run is reported in
        one line, kept aside as ``<name>.corrupt`` and training starts over from epoch 0."""
        if path is None or not os.path.exists(path):
            return 0, []
        fresh = [copy.deepcopy(x.state_dict()) for x in (self.model, self.optimizer, scheduler)]
        try:
            state = load_torch(path, map_location=self.device)
            if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
                raise ValueError("it belongs to another run (settings, seed, model or data differ)")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            done, metrics = int(state["epoch"]), list(state["metrics"])
        except Exception as exc:  # noqa: BLE001 (any unreadable checkpoint is set aside, never trusted)
            aside = Path(f"{path}.corrupt")
            os.replace(path, aside)
            log.warning("checkpoint %s not used: %s; kept as %s, training from epoch 0",
                        path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, aside)
            for x, state in zip((self.model, self.optimizer, scheduler), fresh, strict=True):
                x.load_state_dict(state)  # a half-loaded checkpoint leaves nothing behind
            return 0, []
        log.info("resuming from %s after epoch %d", path, done)
        return done, metrics

    def fit(
        self,
        train: Split,
        test: Split,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        metrics_csv: str | os.PathLike[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Train for ``settings.epochs`` (resuming from ``checkpoint``); return the per-epoch metrics."""
        s = self.settings
        steps = (train.images.shape[0] + s.batch_size - 1) // s.batch_size
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=s.epochs * steps)
        done, metrics = self._load_checkpoint(checkpoint, scheduler)
        # Without augmentation, noise or adversaries the tokenized training set never changes: tokenize once.
        pretokenized = (isinstance(self.model, DiscreteClassifier) and s.augment == "none"
                        and self.objective.kind == "standard")
        net = self.model.net if pretokenized else self.model
        data = _pretokenize(self.model, train.images, 1024, self.device) if pretokenized else train.images
        with deterministic(self.device.type == "cpu"):
            for epoch in tqdm(range(done + 1, s.epochs + 1), desc="training", disable=not self.progress):
                start = time.perf_counter()
                loss, acc = self._train_epoch(net, data, train.labels, epoch, scheduler, pretokenized)
                test_acc = evaluate(self.model, test.images, test.labels, 1024, self.device)
                metrics.append({"epoch": epoch, "train_loss": loss, "train_acc": acc, "test_acc": test_acc,
                                "seconds": time.perf_counter() - start})
                log.info("epoch %d: loss %.4f train acc %.4f test acc %.4f (%.1f s)", epoch, loss, acc, test_acc,
                         metrics[-1]["seconds"])
                if metrics_csv is not None:
                    write_metrics(metrics_csv, metrics)
                if checkpoint is not None:
                    save_torch(checkpoint, {
                        "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "metrics": metrics, "fingerprint": self.fingerprint,
                    })
        if metrics_csv is not None:
            write_metrics(metrics_csv, metrics)
        self.model.eval()
        return metrics


def write_metrics(path: str | os.PathLike[str], rows: list[Mapping[str, Any]]) -> None:
    """Per-epoch metrics as CSV (atomic)."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def train_classifier(
    *,
    dataset: str,
    model: str,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    training: Mapping[str, Any],
    units: str,
    seed: int,
    device: torch.device,
    objective: Mapping[str, Any] | None = None,
    vocab_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the classifier ``model`` of ``dataset`` from its recipe: ``objective`` (the recipe's
    ``objective`` and parameters, default ``standard``), a token classifier when ``vocab_path`` is given.

    Writes ``model.pt``, ``metrics.csv`` and ``final.json`` to ``out_dir``, resuming from
    ``out_dir/checkpoint.pt`` when an earlier run was interrupted (the checkpoint is removed
    on success). Returns the ``final.json`` record.
    """
    out = Path(out_dir)
    goal = Objective.from_recipe(dict(objective or {}))
    loaded = load_split_in_units(data_dir, "test", units)
    manifest, test = loaded.manifest, loaded.split
    channels, image_size = int(manifest["shape"][0]), int(manifest["shape"][1])
    settings = TrainSettings.from_params(training, channels, image_size)
    vocab = None
    if vocab_path is not None:
        vocab = Vocabulary.load(vocab_path)
        vocab.check_compatible(channels, image_size)
    sigma = goal.sigma if goal.kind in SIGMA_OBJECTIVES else None
    kind = "discrete" if vocab is not None else "noise" if sigma is not None else "baseline"
    train = load_split(data_dir, "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = channels_last(build_model(settings.arch, channels, len(manifest["classes"]), manifest["mean"],
                                        manifest["std"], image_size))
    meta = model_meta(
        arch=settings.arch, channels=channels, num_classes=len(manifest["classes"]), image_size=image_size,
        mean=manifest["mean"], std=manifest["std"], dataset=dataset, kind=kind, sigma=sigma, vocab=vocab,
    )
    # perturbed inputs have no repeated patches worth looking for (tokens.assign)
    model_in = net if vocab is None else DiscreteClassifier(net, vocab, dedup=goal.kind == "standard")
    trainer = Trainer(
        model_in, settings, seed=seed, device=device, objective=goal, scale=loaded.scale,
        fingerprint={"meta": meta, "units": units, "data": manifest["sha256"]},
        progress=progress,
    )
    checkpoint = out / "checkpoint.pt"
    metrics = trainer.fit(train, test, checkpoint=checkpoint, metrics_csv=out / "metrics.csv")
    meta["test_accuracy"] = metrics[-1]["test_acc"]
    # under its own training noise too: far above the clean accuracy means a distribution shift (clean
    # images are not what it was trained on), both low an under-trained classifier (report findings)
    noisy_accuracy = None if sigma is None else evaluate(
        trainer.model, test.images, test.labels, 1024, device, (sigma, loaded.scale, derive_seed(seed, "noisy-test")))
    save_classifier(out / "model.pt", trainer.model, meta)
    final = {
        "dataset": dataset, "model": model, "kind": kind, "sigma": sigma, "vocabulary": meta["vocabulary"],
        "objective": goal.record(),
        "units": units, "test_accuracy": meta["test_accuracy"], "noisy_test_accuracy": noisy_accuracy,
        "n_train": int(train.labels.numel()),
        "n_test": int(test.labels.numel()), "train_seconds": sum(m["seconds"] for m in metrics),
        "device": str(device), "settings": asdict(settings), "seed": seed,
    }
    write_json(out / "final.json", final)
    checkpoint.unlink(missing_ok=True)
    log.info("%s/%s: test accuracy %.4f in %.1f s", dataset, model, final["test_accuracy"], final["train_seconds"])
    return final
