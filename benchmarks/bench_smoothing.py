"""Benchmark: randomized-smoothing certification against the bare forward pass and a plain loop.

Measures, for the MNIST CNN (``1x28x28``) and its discrete version ``f(Q(x))``:

- the bare forward rate: images per second through ``model`` at the smoothing batch size;
- the certify rate: noisy forward passes per second inside :func:`tokencert.smoothing.certify`
  (``n0 + n`` passes per image); target >= 90 % of the bare rate;
- the rate of a reference loop written the straightforward way (one noise sample and one
  forward pass at a time, no batching);
- the cost per image of smoothing at the study's setting (``n0 = 100``, ``n = 100,000``)
  against the deterministic certificate (tokenize, certificate map, ``R_0``, one forward).

Every figure is measured: medians of ``--repeats`` interleaved rounds, so load from other
processes hits all variants alike. Writes ``benchmarks/out/smoothing.{json,md}``.

    python benchmarks/bench_smoothing.py [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tokencert.certify import image_certificates
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, build_model
from tokencert.smoothing import certify
from tokencert.vocab import Vocabulary

OUT = Path(__file__).resolve().parent / "out"
SIGMA, ALPHA, N0 = 0.5, 0.001, 100


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.inference_mode()
def bare_forward(model: nn.Module, x: torch.Tensor, batch_size: int, passes: int) -> None:
    """``passes`` forward passes (in batches of ``batch_size``) of fixed noisy copies of ``x``."""
    batch = x.expand(batch_size, *x.shape[1:]) + torch.randn(batch_size, *x.shape[1:], device=x.device) * SIGMA
    for _ in range(passes // batch_size):
        model(batch).argmax(1)


@torch.inference_mode()
def reference_certify_counts(model: nn.Module, x: torch.Tensor, sigma: float, num: int) -> torch.Tensor:
    """The plain loop: one noise sample, one forward pass, one count at a time."""
    counts = torch.zeros(10, dtype=torch.long)
    for _ in range(num):
        noisy = x + torch.randn_like(x) * sigma
        counts[int(model(noisy).argmax())] += 1
    return counts


@torch.inference_mode()
def deterministic_certificate(model: DiscreteClassifier, x: torch.Tensor) -> None:
    """Everything the deterministic certificate of one image needs: map, ``R_0``, prediction."""
    image_certificates(x, model.vocab).r0
    model(x).argmax(1)


def rates(model: nn.Module, x: torch.Tensor, batch_size: int, args: argparse.Namespace) -> dict[str, float]:
    """Bare, certify and plain-loop rates (passes per second) of one model at one batch size.

    Medians over interleaved rounds; the ratios are medians of the per-round ratios, so a
    burst of load from other processes affects both sides of a ratio alike.
    """
    passes = N0 + args.n
    bare_passes = (passes // batch_size) * batch_size
    rounds = []
    for _ in range(args.repeats):
        bare = bare_passes / seconds(lambda: bare_forward(model, x, batch_size, passes))
        cert = passes / seconds(lambda: certify(model, x, SIGMA, N0, args.n, ALPHA, batch_size))
        ref = args.reference_n / seconds(lambda: reference_certify_counts(model, x, SIGMA, args.reference_n))
        rounds.append((bare, cert, ref, cert / bare, cert / ref))
    bare, cert, ref, vs_bare, vs_ref = (statistics.median(col) for col in zip(*rounds))
    print(f"  batch {batch_size}: bare {bare:,.0f}/s, certify {cert:,.0f}/s ({100 * vs_bare:.1f} %), "
          f"plain loop {ref:,.0f}/s")
    return {"batch_size": batch_size, "bare_forward_per_s": bare, "certify_per_s": cert, "reference_per_s": ref,
            "certify_vs_bare": vs_bare, "certify_vs_reference": vs_ref,
            "certify_vs_bare_rounds": [r[3] for r in rounds]}


def measure(name: str, model: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> dict:
    """Rates at every batch size, and the per-image cost at the study's ``n`` (first batch size)."""
    print(name)
    row: dict = {"model": name, "n0": N0, "n": args.n, "rates": [rates(model, x, b, args) for b in args.batch_size]}
    study = seconds(lambda: certify(model, x, SIGMA, N0, args.study_n, ALPHA, args.batch_size[0]))
    row.update({"study_n": args.study_n, "smoothing_s_per_image": study})
    if isinstance(model, DiscreteClassifier):
        det = statistics.median(seconds(lambda: deterministic_certificate(model, x)) for _ in range(20))
        row.update({"deterministic_s_per_image": det, "smoothing_vs_deterministic": study / det})
    print(f"  smoothing {study:.2f} s/image at n={args.study_n}")
    return row


def markdown(result: dict) -> str:
    """The result as a markdown section."""
    rows = result["rows"]
    lines = [
        "## Randomized smoothing (`bench_smoothing.py`)", "",
        f"{result['device']} ({result['machine']}), {result['threads']} thread(s), torch {result['torch']}; "
        f"sigma {SIGMA}, n0 = {N0}, n = {rows[0]['n']:,}; medians of {result['repeats']} interleaved rounds. "
        "Rates are noisy forward passes per second.", "",
        "| model | batch | bare forward /s | certify /s | certify / bare | plain loop /s | certify / plain loop |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for q in r["rates"]:
            lines.append(f"| {r['model']} | {q['batch_size']} | {q['bare_forward_per_s']:,.0f} | "
                         f"{q['certify_per_s']:,.0f} | {100 * q['certify_vs_bare']:.1f} % | "
                         f"{q['reference_per_s']:,.0f} | {q['certify_vs_reference']:.2f}x |")
    lines += ["", f"Cost per image: smoothing (n0 = {N0}, n = {rows[0]['study_n']:,}, batch "
              f"{rows[0]['rates'][0]['batch_size']}) vs the deterministic certificate (certificate map, "
              "`R_0`, one forward pass):", "",
              "| model | smoothing s/image | deterministic ms/image | ratio |", "|---|---:|---:|---:|"]
    for r in rows:
        det = r.get("deterministic_s_per_image")
        lines.append(f"| {r['model']} | {r['smoothing_s_per_image']:.2f} | "
                     + (f"{det * 1e3:.3f} | {r['smoothing_vs_deterministic']:,.0f}x |" if det else "- | - |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[100, 1000],
                        help="smoothing batch sizes (the first also for the per-image cost)")
    parser.add_argument("--n", type=int, default=5000, help="estimation samples of one throughput round")
    parser.add_argument("--study-n", type=int, default=100_000, help="n of the per-image cost (the study's)")
    parser.add_argument("--reference-n", type=int, default=1000, help="samples of the plain loop")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (medians are reported)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.n, args.study_n, args.reference_n, args.repeats, args.batch_size = 2000, 2000, 200, 1, [100]
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    x = torch.rand(1, 1, 28, 28, device=device)
    net = build_model("cnn", 1, 10, [0.13], [0.31]).to(device).eval()
    tokens = torch.rand(256, 16, dtype=torch.float64)  # the values do not matter for the timing
    vocab = Vocabulary(tokens=tokens, patch_size=4, mode="joint", channels=1, image_size=28, meta={"name": "random"})
    models = {"cnn": net, "discrete cnn (K=256)": DiscreteClassifier(net, vocab).eval()}
    rows = [measure(name, model, x, args) for name, model in models.items()]
    result = {"device": str(device), "threads": args.threads, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "repeats": args.repeats, "rows": rows}
    write_json(OUT / "smoothing.json", result)
    write_text(OUT / "smoothing.md", markdown(result))
    print(f"wrote {OUT / 'smoothing.json'} and smoothing.md")


if __name__ == "__main__":
    main()
