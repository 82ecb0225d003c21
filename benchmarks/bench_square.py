"""Benchmark: the suite's batched Square over an eps grid against torchattacks' Square, one eps at a time.

    python benchmarks/bench_square.py [--threads 2] [--images 100] [--queries 500]

The model is ``bench_attacks``' (a CNN trained for 2 epochs on tokenized MNIST, K = 256, p = 4, seeded).
Both attack the same test images with the same queries and p_init at every eps of the default study's grid:

- suite: ``tokencert.attacks.run_attack("square", ...)``: every open (image, eps) pair in one batch, one forward
  pass per query step, a pair dropped once its image falls at an eps no larger than its own;
- reference: ``torchattacks.Square`` (L2, margin loss, rescaled schedule) once per eps on the images the smaller
  eps left standing (the eps walk the suite ran before).

Both report robust accuracy per eps and the images they sent through the network; interleaved rounds give
the speed-up (median ratio). Writes benchmarks/out/bench_square.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchattacks
from bench_attacks import discrete_mnist_model
from bench_certify import HERE, load_labeled

from tokencert.attacks import clean_accuracy, run_attack
from tokencert.evaluation import counted
from tokencert.io import write_json, write_text
from tokencert.runtime import use_threads

EPS = [0.5, 1.0, 1.58, 2.0, 4.0]


def reference_square(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, queries: int,
                     seed: int) -> torch.Tensor:
    """Still-correct flags (eps x images) from torchattacks' Square walked up the eps grid."""
    standing = model(x).argmax(1) == y
    correct = []
    for eps in EPS:
        idx = standing.nonzero().squeeze(1)
        if idx.numel():
            attack = torchattacks.Square(model, norm="L2", eps=eps, n_queries=queries, p_init=0.8, loss="margin",
                                         resc_schedule=True, seed=seed)
            adv = attack(x[idx].contiguous(), y[idx])
            standing[idx] = model(adv).argmax(1) == y[idx]
        correct.append(standing.clone())
    return torch.stack(correct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the suite and the reference")
    args = parser.parse_args()
    use_threads(args.threads)
    (train, train_labels), (test, test_labels), source = load_labeled("mnist")
    model = discrete_mnist_model(train, train_labels, 256)
    x, y = test[:args.images], test_labels[:args.images]
    params = {"square": {"queries": args.queries, "p_init": 0.8}}
    times = {"suite": [], "reference": []}
    correct = {"suite": [], "reference": []}
    evaluations = {"suite": 0, "reference": 0}
    for part in torch.arange(x.shape[0]).chunk(args.rounds):
        for name in ("suite", "reference"):
            start = time.perf_counter()
            with counted(model) as work:
                if name == "suite":
                    flags = run_attack("square", model, x[part], y[part], EPS, params, seed=0).correct
                else:
                    flags = reference_square(model, x[part], y[part], args.queries, seed=0)
            times[name].append(time.perf_counter() - start)
            correct[name].append(flags)
            evaluations[name] += work.forward
    accuracy = {k: torch.cat(v, dim=1).double().mean(dim=1).tolist() for k, v in correct.items()}
    ratios = [r / s for r, s in zip(times["reference"], times["suite"], strict=True)]
    result = {"source": source, "images": args.images, "queries": args.queries, "eps": EPS, "threads": args.threads,
              "clean_accuracy": clean_accuracy(model, x, y), "rounds": args.rounds,
              "seconds": {k: sum(v) for k, v in times.items()}, "forward_images": evaluations,
              "speedup": statistics.median(ratios), "speedup_range": [min(ratios), max(ratios)],
              "robust_accuracy": accuracy}
    write_json(HERE / "out" / "bench_square.json", result)
    lines = ["| implementation | seconds | images forward | robust accuracy @ eps " + " / ".join(f"{e:g}" for e in EPS)
             + " |", "|---|---:|---:|---|"]
    lines += [f"| {k} | {result['seconds'][k]:.1f} | {evaluations[k]:,} | "
              + " / ".join(f"{a:.0%}" for a in accuracy[k]) + " |" for k in ("suite", "reference")]
    lines += ["", f"speed-up {result['speedup']:.1f}x (median of {args.rounds} interleaved rounds, range "
              f"{min(ratios):.1f}-{max(ratios):.1f}x; {args.images} images, {args.queries} queries, {args.threads} "
              f"threads, clean accuracy {result['clean_accuracy']:.0%}, {source})"]
    write_text(HERE / "out" / "bench_square.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
