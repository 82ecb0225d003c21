"""Benchmark: our randomized-smoothing CERTIFY against Cohen et al.'s published ``Smooth.certify``.

Both certify the same images with the same model, sigma, ``n0``, ``n``, alpha and batch size;
the two are interleaved (each round times ours, then the reference, on the same images) and
the speed-up is the median of the per-round ratios. Also measured: the bare forward rate of
our model at that batch size (the ceiling), ours in bf16 (on CUDA, or with
``--bf16`` on CPU), and the deterministic certificate of the discrete model per image.

The reference is Cohen et al.'s ``code/core.py`` (github.com/locuslab/smoothing), loaded from
``--reference`` and never part of this repository. Two shims let it run here, neither changes
what it computes: SciPy >= 1.12 has no ``binom_test`` (its import gets ``binomtest``'s
p-value), and on a CPU its hard-coded ``randn_like(..., device='cuda')`` draws on the input's
device (on a GPU, the same thing). It needs ``statsmodels`` (``pip install -e .[bench]``).

    git clone https://github.com/locuslab/smoothing /tmp/smoothing
    python benchmarks/bench_smoothing.py --reference /tmp/smoothing/code/core.py [--quick]

Writes ``benchmarks/out/smoothing.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import platform
import statistics
import time
import types
from collections.abc import Callable
from pathlib import Path

import scipy.stats
import torch
from torch import nn

from tokencert.certify import image_certificates
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, build_model
from tokencert.runtime import use_threads
from tokencert.smoothing import certify_images
from tokencert.vocab import Vocabulary

OUT = Path(__file__).resolve().parent / "out"
SIGMA, ALPHA, N0 = 0.5, 0.001, 100
# Noisy samples per image (n) by device and model: the study's 100,000 on a GPU, less on a CPU.
DEFAULT_N = {"cpu": {"cnn": 2000, "discrete cnn (K=256)": 2000, "resnet18": 200},
             "cuda": {"cnn": 100_000, "discrete cnn (K=256)": 100_000, "resnet18": 20_000}}


def load_reference(path: Path, device: torch.device) -> type:
    """Cohen et al.'s ``Smooth`` class from their ``core.py`` (see the module docstring's shims)."""
    if not hasattr(scipy.stats, "binom_test"):
        scipy.stats.binom_test = lambda k, n, p=0.5: scipy.stats.binomtest(int(k), int(n), p).pvalue
    spec = importlib.util.spec_from_file_location("cohen_core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the reference {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if device.type != "cuda":
        shim = types.ModuleType("torch")
        shim.__dict__.update(torch.__dict__)
        shim.randn_like = lambda t, device=None, **kw: torch.randn_like(t, **kw)
        module.torch = shim
    return module.Smooth


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn`` (CUDA work included)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.inference_mode()
def bare_forward(model: nn.Module, x: torch.Tensor, batch_size: int, passes: int) -> None:
    """``passes`` forward passes, in batches of ``batch_size``, of fixed noisy copies of ``x``."""
    batch = x[:1].expand(batch_size, *x.shape[1:]) + SIGMA * torch.randn(batch_size, *x.shape[1:], device=x.device)
    for _ in range(max(1, passes // batch_size)):
        model(batch).argmax(1)


def compare(name: str, model: nn.Module, images: torch.Tensor, smooth_cls: type, n: int, batch_size: int,
            args: argparse.Namespace, device: torch.device) -> dict:
    """Interleaved rounds of ours (fp32, and bf16 where asked) and the reference on the same images."""
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    x = images.to(device).float() / 255
    # The reference gets the network as built (contiguous, as anyone would hand it over); ours
    # puts its own copy in channels-last (smoothing.prepare), as the pipeline does.
    reference = smooth_cls(copy.deepcopy(model), 10, SIGMA)
    model = copy.deepcopy(model)
    common = dict(sigma=SIGMA, n0=N0, n=n, alpha=ALPHA, batch_size=batch_size, seed=0, device=device,
                  progress=False)
    indices = list(range(images.shape[0]))
    passes = len(indices) * (N0 + n)
    variants = {"ours": lambda: certify_images(model, images, labels, indices, **common),
                "reference": lambda: [reference.certify(x[i], N0, n, ALPHA, batch_size) for i in indices],
                "bare": lambda: bare_forward(model, x, batch_size, passes)}
    if args.bf16:
        variants["ours_bf16"] = lambda: certify_images(model, images, labels, indices, precision="bf16", **common)
    rounds: list[dict[str, float]] = []
    for _ in range(args.repeats):
        rounds.append({key: timed(fn) for key, fn in variants.items()})
    rate = {key: statistics.median(passes / r[key] for r in rounds) for key in variants}
    speedup = [r["reference"] / r["ours"] for r in rounds]
    row = {"model": name, "n": n, "batch_size": batch_size, "images": len(indices), "rates": rate,
           "speedup_median": statistics.median(speedup), "speedup_range": [min(speedup), max(speedup)],
           "ours_vs_bare": statistics.median(r["bare"] / r["ours"] for r in rounds)}
    if args.bf16:
        bf16 = [r["reference"] / r["ours_bf16"] for r in rounds]
        row.update({"bf16_speedup_median": statistics.median(bf16), "bf16_speedup_range": [min(bf16), max(bf16)]})
    print(f"  {name}, batch {batch_size}, n {n}: ours {rate['ours']:,.0f}/s, reference {rate['reference']:,.0f}/s, "
          f"bare {rate['bare']:,.0f}/s; speed-up {row['speedup_median']:.2f}x "
          f"({row['speedup_range'][0]:.2f}-{row['speedup_range'][1]:.2f}x)"
          + (f", bf16 {row['bf16_speedup_median']:.2f}x" if args.bf16 else ""))
    return row


def deterministic_seconds(model: DiscreteClassifier, x: torch.Tensor) -> float:
    """Median seconds of everything the deterministic certificate of one image needs: map, ``R_0``, prediction."""
    def run() -> None:
        image_certificates(x, model.vocab).r0
        with torch.inference_mode():
            model(x).argmax(1)
    return statistics.median(timed(run) for _ in range(20))


def models(device: torch.device, wanted: list[str]) -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    """The benchmarked models (random weights: the rates do not depend on them) and their image shapes."""
    torch.manual_seed(0)
    cnn = build_model("cnn", 1, 10, [0.13], [0.31])
    tokens = torch.rand(256, 16, dtype=torch.float64)
    vocab = Vocabulary(tokens=tokens, patch_size=4, mode="joint", channels=1, image_size=28, meta={"name": "random"})
    every = {"cnn": (cnn, (1, 28, 28)), "discrete cnn (K=256)": (DiscreteClassifier(cnn, vocab), (1, 28, 28)),
             "resnet18": (build_model("resnet18", 3, 10, [0.5] * 3, [0.25] * 3), (3, 32, 32))}
    return {name: (every[name][0].to(device).eval(), every[name][1]) for name in wanted}


def markdown(result: dict) -> str:
    """The result as a markdown section."""
    bf16 = any("bf16_speedup_median" in r for r in result["rows"])
    lines = [
        "## Randomized smoothing against Cohen et al.'s `Smooth.certify` (`bench_smoothing.py`)", "",
        f"{result['device_name']}, {result['threads']} thread(s), torch {result['torch']}; sigma {SIGMA}, "
        f"n0 = {N0}, alpha = {ALPHA}; medians of {result['repeats']} interleaved rounds. Rates are noisy forward "
        "passes per second; speed-up = reference time / our time on the same images (range over rounds).", "",
        "| model | images | n | batch | ours /s | reference /s | bare forward /s | ours / bare | speed-up |"
        + (" bf16 speed-up |" if bf16 else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---|" + ("---|" if bf16 else ""),
    ]
    for r in result["rows"]:
        q = r["rates"]
        line = (f"| {r['model']} | {r['images']} | {r['n']:,} | {r['batch_size']:,} | {q['ours']:,.0f} | "
                f"{q['reference']:,.0f} | {q['bare']:,.0f} | {100 * r['ours_vs_bare']:.0f} % | "
                f"{r['speedup_median']:.2f}x ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f}x) |")
        if bf16:
            low, high = r["bf16_speedup_range"]
            line += f" {r['bf16_speedup_median']:.2f}x ({low:.2f}-{high:.2f}x) |"
        lines.append(line)
    det = result.get("deterministic")
    if det:
        lines += ["", f"Deterministic certificate of the discrete model (map, `R_0`, one forward pass): "
                  f"{det['seconds'] * 1e3:.3f} ms/image; smoothing it at n = 100,000 at our measured rate: "
                  f"{det['smoothing_seconds_at_100k']:.1f} s/image ({det['ratio']:,.0f}x)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="Cohen et al.'s code/core.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, nargs="+", help="default: 100 1000 on CPU, 1000 10000 on CUDA")
    parser.add_argument("--models", nargs="+", default=["cnn", "discrete cnn (K=256)", "resnet18"])
    parser.add_argument("--images", type=int, default=4, help="images certified per round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--bf16", action="store_true", help="also ours in bf16 (always on CUDA)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.bf16 = args.bf16 or device.type == "cuda"
    args.batch_size = args.batch_size or ([1000, 10000] if device.type == "cuda" else [100, 1000])
    if args.quick:
        args.repeats, args.images, args.batch_size = 1, 2, args.batch_size[:1]
    use_threads(args.threads)
    smooth_cls = load_reference(args.reference, device)
    generator = torch.Generator().manual_seed(0)
    rows, det = [], None
    for name, (model, shape) in models(device, args.models).items():
        n = 200 if args.quick else DEFAULT_N[device.type][name]
        images = torch.randint(0, 256, (args.images, *shape), dtype=torch.uint8, generator=generator)
        rows += [compare(name, model, images, smooth_cls, n, b, args, device) for b in args.batch_size]
        if isinstance(model, DiscreteClassifier):
            seconds = deterministic_seconds(model, images[:1].to(device).float() / 255)
            best = max(r["rates"]["ours"] for r in rows if r["model"] == name)
            det = {"seconds": seconds, "smoothing_seconds_at_100k": (N0 + 100_000) / best,
                   "ratio": (N0 + 100_000) / best / seconds}
    name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or platform.machine())
    result = {"device": str(device), "device_name": name, "threads": args.threads, "torch": torch.__version__,
              "repeats": args.repeats, "rows": rows, "deterministic": det}
    write_json(OUT / "smoothing.json", result)
    write_text(OUT / "smoothing.md", markdown(result))
    print(f"wrote {OUT / 'smoothing.json'} and smoothing.md")


if __name__ == "__main__":
    main()
