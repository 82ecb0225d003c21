"""Benchmark: ``tokensearch``'s memo of judged flip sets against a search that judges every set every time.

    python benchmarks/bench_tokensearch.py [--threads 1] [--images 40] [--rounds 2]
    python benchmarks/bench_tokensearch.py --data data/mnist5k \\
        --classifier results/mnist5k/models/discrete-learned/model.pt results/mnist5k/vocab/learned.pt

The attack as the suite runs it (``flipsearch.token_search`` at the study's settings with the eps walk
0.5 / 1 / 1.58 / 4 and one refinement): each :class:`~tokencert.flipsearch.search.Search` asks the network
for the margin of a flip set once, where the reference (the same search with ``_margins`` judging every set
it meets) asks again whenever the walk's searches or the refinement meet a set again. Interleaved per round
on the same images (the speed-up is the median per-round ratio); the images sent through the network are
counted; the norms and images must be identical. Random MNIST-shaped problem (``bench_tokenflip.problem``)
and ``--classifier MODEL VOCAB`` (repeatable, with ``--data``): trained study classifiers on ``--images``
stratified test images. Writes benchmarks/out/bench_tokensearch.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_tokenflip import token_cases, token_cases_args, write_speedups

import tokencert.flipsearch.adversarial as adversarial
from tokencert.flipsearch import SearchSettings, token_search
from tokencert.flipsearch.search import Beam, Search, margins

EPS = [0.5, 1.0, 1.58, 4.0]


class EveryTime(Search):
    """The reference: every flip set the search meets goes through the network."""

    def _margins(self, beam: Beam) -> torch.Tensor:
        return margins(self.net, self.flips.token_images(beam.assignment, self.vocab, self.shape),
                       self.labels[beam.image])


def _run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, search: type[Search],
         ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The attack with ``search``: images, norms, images through the network and seconds."""
    sent = [0]
    hook = model.net.register_forward_pre_hook(lambda _, inputs: sent.__setitem__(0, sent[0] + inputs[0].shape[0]))
    adversarial.Search = search
    try:
        began = time.perf_counter()
        found = token_search(model, x, y, max(EPS), None, SearchSettings(), EPS)
        seconds = time.perf_counter() - began
    finally:
        adversarial.Search = Search
        hook.remove()
    return found.images, found.norm, sent[0], seconds


def compare(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int) -> dict:
    """Both searches, interleaved: seconds per image, images through the network, speed-up, identical outputs."""
    times: dict[type[Search], list[float]] = {Search: [], EveryTime: []}
    out = {}
    for _ in range(rounds):
        for search in (Search, EveryTime):
            out[search] = _run(model, x, y, search)
            times[search].append(out[search][3])
    same = torch.equal(out[Search][0], out[EveryTime][0]) and torch.equal(out[Search][1], out[EveryTime][1])
    row = {"classifier": name, "images": x.shape[0], "judged": out[Search][2], "reference_judged": out[EveryTime][2],
           "s_per_image": statistics.median(times[Search]) / x.shape[0],
           "reference_s_per_image": statistics.median(times[EveryTime]) / x.shape[0],
           "speedup": statistics.median(r / b for r, b in zip(times[EveryTime], times[Search], strict=True)),
           "identical": same}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each search")
    args = token_cases_args(parser)
    rows = [compare(*case, args.rounds) for case in token_cases(args)]
    write_speedups("bench_tokensearch", {"threads": args.threads, "rounds": args.rounds, "eps": EPS}, rows,
                   {"classifier": "classifier", "images": "images", "images judged": "judged",
                    "every time, images judged": "reference_judged"},
                   "every time", "the memo changed the search's result")


if __name__ == "__main__":
    main()
