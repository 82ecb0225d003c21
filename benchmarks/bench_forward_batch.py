"""Benchmark: the token searches' forward batch on a CPU (``models.FORWARD_BATCH``) against a larger one.

    python benchmarks/bench_forward_batch.py [--threads 1] [--images 40] [--rounds 2] [--reference 1024]
    python benchmarks/bench_forward_batch.py --data data/mnist5k \\
        --classifier results/mnist5k/models/discrete-learned/model.pt results/mnist5k/vocab/learned.pt

``tokensearch`` (``flipsearch.token_search`` at the study's settings, eps 4.0) and ``tokenflip`` send their
candidate token images through the network in batches of ``FORWARD_BATCH["cpu"]``; the reference runs the
same attack with ``--reference`` images per pass (1,024: ``tokensearch``'s batch before). Interleaved per
round on the same images (the speed-up is the median per-round ratio); the norms and images must be
identical. Random MNIST-shaped problem (``bench_tokenflip.problem``: Gaussian tokens, K = 1,024, the study's
CNN), and ``--classifier MODEL VOCAB`` (repeatable, with ``--data``): trained study classifiers on
``--images`` stratified test images. Writes benchmarks/out/bench_forward_batch.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from bench_tokenflip import token_cases, token_cases_args, write_speedups

import tokencert.models as models
from tokencert.attacks.tokenflip import tokenflip
from tokencert.flipsearch import SearchSettings, token_search


def _search(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    found = token_search(model, x, y, 4.0, None, SearchSettings())
    return found.images, found.norm


ATTACKS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "tokensearch": _search,
    "tokenflip": lambda model, x, y: tokenflip(model, x, y, max_eps=4.0, max_flips=32, candidates=32),
}


def compare(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int,
            reference: int) -> list[dict]:
    """Per attack: both batch sizes, interleaved; seconds per image, speed-up, identical outputs."""
    rows, batch = [], models.FORWARD_BATCH["cpu"]
    for attack, run in ATTACKS.items():
        times: dict[int, list[float]] = {batch: [], reference: []}
        out = {}
        for _ in range(rounds):
            for size in (batch, reference):
                models.FORWARD_BATCH["cpu"] = size
                began = time.perf_counter()
                out[size] = run(model, x, y)
                times[size].append(time.perf_counter() - began)
        models.FORWARD_BATCH["cpu"] = batch
        same = torch.equal(out[batch][0], out[reference][0]) and torch.equal(out[batch][1], out[reference][1])
        rows.append({"classifier": name, "attack": attack, "images": x.shape[0], "batch": batch,
                     "reference": reference, "s_per_image": statistics.median(times[batch]) / x.shape[0],
                     "reference_s_per_image": statistics.median(times[reference]) / x.shape[0],
                     "speedup": statistics.median(r / b for r, b in zip(times[reference], times[batch])),
                     "identical": same})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each batch size")
    parser.add_argument("--reference", type=int, default=1024, help="the reference's images per forward pass")
    args = token_cases_args(parser)
    rows = [row for case in token_cases(args) for row in compare(*case, args.rounds, args.reference)]
    write_speedups("bench_forward_batch", {"threads": args.threads, "rounds": args.rounds}, rows,
                   {"classifier": "classifier", "attack": "attack", "images": "images"},
                   f"{args.reference:,} per pass", "the two forward batch sizes gave different results")

if __name__ == "__main__":
    main()
