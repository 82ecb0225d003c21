"""Benchmark: the study's networks in channels-last against the default (contiguous) memory format.

For each architecture, batch size and thread count: the forward pass (what attacks' queries,
smoothing and evaluation run) and forward + backward (training, gradient attacks), timed in
interleaved rounds (contiguous, then channels-last, on the same inputs); the speed-up is the
median of the per-round ratios. Also checks that both formats give the same logits (within
1e-4) and gradients, which is what makes the switch safe. Decides where the pipeline uses
channels-last (``tokencert.models.channels_last``). Writes ``benchmarks/out/channels_last.{json,md}``.

    python benchmarks/bench_channels_last.py [--threads 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tokencert.io import write_json, write_text
from tokencert.models import build_model
from tokencert.runtime import use_threads

OUT = Path(__file__).resolve().parent / "out"
SHAPES = {"cnn": (1, 28), "resnet9": (3, 32), "resnet18": (3, 32)}


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``reps`` calls of ``fn``."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def passes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The timed operations: inference forward, and forward + backward of the cross-entropy."""
    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def backward() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
    return {"forward": forward, "forward+backward": backward}


def measure(arch: str, batch: int, threads: int, args: argparse.Namespace) -> list[dict]:
    """Both passes of ``arch`` at ``batch`` and ``threads``: contiguous against channels-last."""
    torch.set_num_threads(threads)
    channels, size = SHAPES[arch]
    torch.manual_seed(0)
    plain = build_model(arch, channels, 10, [0.5] * channels, [0.25] * channels).eval()
    last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x = torch.rand(batch, channels, size, size)
    y = torch.randint(0, 10, (batch,))
    with torch.inference_mode():
        diff = float((plain(x) - last(x.contiguous(memory_format=torch.channels_last))).abs().max())
    rows = []
    ops_plain, ops_last = passes(plain, x, y), passes(last, x.contiguous(memory_format=torch.channels_last), y)
    for op in ops_plain:
        for fn in (ops_plain[op], ops_last[op]):
            fn()  # warm-up
        ratios, t_plain, t_last = [], [], []
        for _ in range(args.rounds):
            a, b = timed(ops_plain[op], args.reps), timed(ops_last[op], args.reps)
            t_plain.append(a)
            t_last.append(b)
            ratios.append(a / b)
        row = {"arch": arch, "batch": batch, "threads": threads, "op": op,
               "contiguous_ms": 1e3 * statistics.median(t_plain), "channels_last_ms": 1e3 * statistics.median(t_last),
               "speedup": statistics.median(ratios),
               "speedup_range": [min(ratios), max(ratios)], "max_logit_diff": diff}
        print(f"{arch} batch {batch} threads {threads} {op}: {row['contiguous_ms']:.2f} ms vs "
              f"{row['channels_last_ms']:.2f} ms, {row['speedup']:.2f}x; max logit diff {diff:.1e}")
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    lines = ["## Channels-last memory format (`bench_channels_last.py`)", "",
             f"{result['machine']}, torch {result['torch']}; medians of {result['rounds']} interleaved rounds "
             "(speed-up = contiguous time / channels-last time, range over rounds).", "",
             "| arch | batch | threads | pass | contiguous ms | channels-last ms | speed-up | max logit diff |",
             "|---|---:|---:|---|---:|---:|---|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['arch']} | {r['batch']} | {r['threads']} | {r['op']} | {r['contiguous_ms']:.2f} | "
                     f"{r['channels_last_ms']:.2f} | {r['speedup']:.2f}x ({r['speedup_range'][0]:.2f}-"
                     f"{r['speedup_range'][1]:.2f}x) | {r['max_logit_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["cnn", "resnet9"])
    parser.add_argument("--batch", type=int, nargs="+", default=[100])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5, help="calls per timing (their median)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.reps, args.threads, args.archs = 1, 1, args.threads[:1], args.archs[:1]
    use_threads(max(args.threads))  # PASSIVE OpenMP workers before any timing; measure() sets each count
    rows = [row for arch in args.archs for batch in args.batch for t in args.threads
            for row in measure(arch, batch, t, args)]
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "rounds": args.rounds, "rows": rows}
    write_json(OUT / "channels_last.json", result)
    write_text(OUT / "channels_last.md", markdown(result))
    print(f"wrote {OUT / 'channels_last.json'} and channels_last.md")


if __name__ == "__main__":
    main()
