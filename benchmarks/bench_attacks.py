"""Benchmark: the suite's SSPGD over an eps grid against a plain reference implementation.

    python benchmarks/bench_attacks.py [--threads 2] [--images 100] [--steps 20]

A small CNN is trained (2 epochs) on 5,000 tokenized MNIST training images (Gaussian
vocabulary, K = 256, p = 4), then both implementations attack the same test images with
the same budget (steps, restarts, taus, eps grid):

- suite: ``tokencert.attacks.run_attack("sspgd", ...)``: fooled samples leave the batch,
  one straight-through forward per step, eps grid walked upwards (an example found at a
  small eps decides every larger one), later taus only attack survivors;
- reference: the literal loop: every eps, tau, restart and step on the whole batch, a hard
  forward to judge and a surrogate forward for the gradient.

Both report robust accuracy per eps, from the same per-image random starts (the suite's keys are
the positions in each round's batch, the reference's too). Writes benchmarks/out/bench_attacks.{json,md}. Uses
../shared/datasets when present, random images otherwise (then accuracies mean nothing).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from bench_certify import HERE, load_labeled

from tokencert.attacks import clean_accuracy, project, run_attack
from tokencert.attacks.pgd import random_start
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, StraightThrough, build_model
from tokencert.runtime import use_threads
from tokencert.tokens import patchify
from tokencert.vocab import Vocabulary, tokenize
from tokencert.vocab.gaussian import gaussian_tokens


def discrete_mnist_model(train: torch.Tensor, labels: torch.Tensor, k: int) -> DiscreteClassifier:
    """A CNN trained briefly on tokenized images (Adam, 2 epochs, batch 128); seeded throughout,
    initial weights included, so every run benchmarks the same model."""
    gen = torch.Generator().manual_seed(0)
    vocab = Vocabulary(gaussian_tokens(patchify(train.double(), 4, "joint").reshape(-1, 16), k, gen),
                       4, "joint", 1, 28, {"name": f"gauss-{k}"})
    torch.manual_seed(0)
    net = build_model("cnn", 1, 10, [0.1307], [0.3081])
    tokenized = tokenize(train, vocab)[0]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        for idx in torch.randperm(train.shape[0], generator=gen).split(128):
            opt.zero_grad()
            F.cross_entropy(net(tokenized[idx]), labels[idx]).backward()
            opt.step()
    return DiscreteClassifier(net, vocab).eval()


def reference_sspgd(model: DiscreteClassifier, x0: torch.Tensor, y: torch.Tensor, eps_grid: list[float],
                    taus: list[float], steps: int, restarts: int, step_size: float, seed: int) -> list[float]:
    """Robust accuracy per eps from the literal loop (whole batch at every step)."""
    keys = torch.arange(x0.shape[0])
    accuracy = []
    for eps in eps_grid:
        fooled = torch.zeros(x0.shape[0], dtype=torch.bool)
        alpha = step_size * eps / steps
        for t, tau in enumerate(taus):
            surrogate = StraightThrough(model, tau)
            for restart in range(restarts):
                x = random_start(x0, eps, None, seed + t, keys, restart)  # the suite's per-image starts
                for _ in range(steps + 1):
                    with torch.no_grad():
                        fooled |= model(x).argmax(1) != y
                    x = x.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(F.cross_entropy(surrogate(x), y), x)
                    with torch.no_grad():
                        g = grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
                        x = project(x0, x + alpha * g, eps)
        accuracy.append(float((~fooled).double().mean()))
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--K", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the suite and the reference")
    args = parser.parse_args()
    use_threads(args.threads)
    (train, train_labels), (test, test_labels), source = load_labeled("mnist")
    model = discrete_mnist_model(train, train_labels, args.K)
    x, y = test[:args.images], test_labels[:args.images]
    eps_grid, taus = [0.5, 1.0, 2.0, 4.0], [0.01, 0.1, 1.0]
    params = {"pgd": {"steps": args.steps, "restarts": args.restarts, "step_size": 2.5}, "sspgd": {"taus": taus}}
    # interleaved: each round attacks its share of the images with the suite, then with the
    # reference, so both see the same machine load; the speed-up is the median per-round ratio
    suite_times, reference_times, suite_correct, reference_correct = [], [], [], []
    for part in torch.arange(x.shape[0]).chunk(args.rounds):
        start = time.perf_counter()
        suite_correct.append(run_attack("sspgd", model, x[part], y[part], eps_grid, params, seed=0).correct)
        suite_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_correct.append(torch.tensor(reference_sspgd(model, x[part], y[part], eps_grid, taus, args.steps,
                                                              args.restarts, 2.5, seed=0)) * part.numel())
        reference_times.append(time.perf_counter() - start)
    suite = torch.cat(suite_correct, dim=1).double().mean(dim=1).tolist()
    reference = (torch.stack(reference_correct).sum(dim=0) / x.shape[0]).tolist()
    ratios = [r / s for r, s in zip(reference_times, suite_times, strict=True)]
    suite_seconds, reference_seconds = sum(suite_times), sum(reference_times)
    result = {"source": source, "images": args.images, "K": args.K, "steps": args.steps, "restarts": args.restarts,
              "clean_accuracy": clean_accuracy(model, x, y), "taus": taus, "eps": eps_grid, "threads": args.threads,
              "rounds": args.rounds, "suite_seconds": suite_seconds, "reference_seconds": reference_seconds,
              "speedup": statistics.median(ratios), "speedup_range": [min(ratios), max(ratios)],
              "suite_robust_accuracy": suite, "reference_robust_accuracy": reference}
    write_json(HERE / "out" / "bench_attacks.json", result)
    lines = ["| implementation | seconds | robust accuracy @ eps " + " / ".join(f"{e:g}" for e in eps_grid) + " |",
             "|---|---:|---|",
             f"| suite | {suite_seconds:.1f} | " + " / ".join(f"{a:.0%}" for a in suite) + " |",
             f"| reference | {reference_seconds:.1f} | " + " / ".join(f"{a:.0%}" for a in reference) + " |",
             "", f"speed-up {result['speedup']:.1f}x (median of {args.rounds} interleaved rounds, range "
             f"{min(ratios):.1f}-{max(ratios):.1f}x; {args.images} images, {args.steps} steps x {args.restarts} "
             f"restarts, {len(taus)} taus, {args.threads} threads, clean accuracy {result['clean_accuracy']:.0%}, "
             f"{source})"]
    write_text(HERE / "out" / "bench_attacks.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
