"""Benchmark: exact certificates of whole test sets against a literal reference loop.

    python benchmarks/bench_certify.py [--threads 2] [--reference-patches 300]

Full MNIST test set (10,000 x 49 joint patches) and CIFAR-10 test set (10,000 x 192
per-channel patches), Gaussian vocabularies with K = 1024 fitted to training patches. The
reference is the literal "minimum over triple-wise" computation: for each patch, a Python
loop over the tokens evaluating the bisector distance of one (patch, own token, other
token) triple at a time. Both run in the same process on a subset, which also checks that
they agree. Writes benchmarks/out/bench_certify.{json,md}. Uses ../shared/datasets when
present, random images of the same shape otherwise.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from tokencert.certify import image_certificates
from tokencert.data import build_dataset, to_float
from tokencert.io import write_json, write_text
from tokencert.runtime import use_threads
from tokencert.tokens import patchify
from tokencert.vocab import Vocabulary
from tokencert.vocab.gaussian import gaussian_tokens

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "datasets"
CASES = {
    "mnist": ("mnist-png.tar.gz", 1, 28, "joint"),
    "cifar10": ("cifar10-jpg.tar.gz", 3, 32, "per_channel"),
}


Labeled = tuple[torch.Tensor, torch.Tensor]


def load_labeled(name: str) -> tuple[Labeled, Labeled, str]:
    """(images, labels) of 5,000 random training images and all test images (shuffled) of a benchmark
    case, and where they came from."""
    archive, channels, size, _ = CASES[name]
    path = SHARED / archive
    if path.exists():
        spec = {"source": "imagefolder", "path": str(path), "channels": channels, "image_size": size}
        _, splits = build_dataset(name, spec, seed=0, cache_dir=HERE / "out" / "cache")
        train, test = splits["train"], splits["test"]  # stored by class: take a random 5,000
        pick = torch.randperm(train.images.shape[0], generator=torch.Generator().manual_seed(0))[:5000]
        order = torch.randperm(test.images.shape[0], generator=torch.Generator().manual_seed(1))
        return ((to_float(train.images[pick]), train.labels[pick]), (to_float(test.images[order]), test.labels[order]),
                str(path))
    gen = torch.Generator().manual_seed(0)
    return ((torch.rand(5000, channels, size, size, generator=gen), torch.randint(0, 10, (5000,), generator=gen)),
            (torch.rand(10000, channels, size, size, generator=gen), torch.randint(0, 10, (10000,), generator=gen)),
            "random images")


def load_images(name: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train, test) float images of a benchmark case and where they came from."""
    (train, _), (test, _), source = load_labeled(name)
    return train, test, source


def reference_radius(x: np.ndarray, tokens: np.ndarray) -> float:
    """The literal computation: nearest token, then a loop over every other token."""
    dist = [float(np.sum((x - t) ** 2)) for t in tokens]
    a = int(np.argmin(dist))
    best = math.inf
    for j, t in enumerate(tokens):
        if j == a:
            continue
        gap = float(np.sqrt(np.sum((t - tokens[a]) ** 2)))
        r = 0.0 if gap == 0 else (dist[j] - dist[a]) / (2 * gap)
        best = min(best, r)
    return best


def run_case(name: str, k: int, reference_patches: int, rounds: int) -> dict:
    """Time the full test set and the reference on a subset, interleaved over ``rounds`` rounds
    (each round times ours once and the reference on its share of the subset, so both see the
    same machine load); the speed-up is the median of the per-round ratios. Check agreement."""
    _, channels, size, mode = CASES[name]
    train, test, source = load_images(name)
    gen = torch.Generator().manual_seed(0)
    fit = patchify(train.to(torch.float64), 4, mode).reshape(-1, 16 if mode != "joint" else channels * 16)
    vocab = Vocabulary(gaussian_tokens(fit, k, gen), 4, mode, channels, size, {"name": f"gauss-{k}"})
    image_certificates(test[:50], vocab)  # warm-up
    patches = patchify(test.to(torch.float64), 4, mode)
    n_patches = patches.shape[0] * patches.shape[1]
    pick = torch.randperm(n_patches, generator=gen)[:reference_patches]
    flat = patches.reshape(-1, patches.shape[2])[pick].numpy()
    table = vocab.tokens.numpy()
    fast_times, ref_rates, ref = [], [], []
    for share in np.array_split(flat, rounds):
        start = time.perf_counter()
        certs = image_certificates(test, vocab)
        fast_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref += [reference_radius(x, table) for x in share]
        ref_rates.append(len(share) / (time.perf_counter() - start))
    ratios = [n_patches / t / r for t, r in zip(fast_times, ref_rates, strict=True)]
    fast = certs.radii.reshape(-1)[pick].numpy()
    ref_array = np.array(ref)
    return {
        "case": name, "source": source, "images": int(test.shape[0]), "patches": int(n_patches), "K": k,
        "mode": mode, "rounds": rounds, "seconds_full_test_set": float(np.median(fast_times)),
        "seconds_full_test_set_range": [min(fast_times), max(fast_times)],
        "patches_per_second": n_patches / float(np.median(fast_times)),
        "reference_patches": reference_patches, "reference_patches_per_second": float(np.median(ref_rates)),
        "speedup": float(np.median(ratios)), "speedup_range": [min(ratios), max(ratios)],
        "max_abs_difference": float(np.max(np.abs(fast - ref_array))),
        "never_above_reference": bool(np.all(fast <= ref_array)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--K", type=int, default=1024)
    parser.add_argument("--reference-patches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of ours and the reference")
    args = parser.parse_args()
    use_threads(args.threads)
    results = [run_case(name, args.K, args.reference_patches, args.rounds) for name in CASES]
    out = HERE / "out"
    write_json(out / "bench_certify.json", {"threads": args.threads, "results": results})
    lines = ["| case | patches | K | full test set (s, median) | patches/s | reference patches/s | "
             "speed-up (median, range over rounds) | max abs diff |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        low, high = r["speedup_range"]
        lines.append(f"| {r['case']} ({r['mode']}) | {r['patches']:,} | {r['K']} | {r['seconds_full_test_set']:.2f} | "
                     f"{r['patches_per_second']:,.0f} | {r['reference_patches_per_second']:,.0f} | "
                     f"{r['speedup']:,.0f}x ({low:,.0f}-{high:,.0f}x) | {r['max_abs_difference']:.1e} |")
    write_text(out / "bench_certify.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
