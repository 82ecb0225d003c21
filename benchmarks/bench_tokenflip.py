"""Benchmark: the token-flip attack stepping all images of a chunk together against one image at a time.

    python benchmarks/bench_tokenflip.py [--threads 1] [--images 40] [--rounds 2]

The reference is the same attack in chunks of one image (``tokencert.attacks.tokenflip.ELEMENTS = 1``): each
image's geometry, candidate images and forward passes on their own, as the attack ran before it batched its
images. Both attack the same images, interleaved per round (the speed-up is the median per-round ratio), and
must return identical images and the same norms (to float64 rounding: a norm summed in a larger batch may differ in
its last bit). Two shapes: MNIST's (1 x 28 x 28, joint Gaussian tokens, K = 1,024)
and CIFAR-10's (3 x 32 x 32, per-channel Gaussian tokens, K = 1,024: 192 patches), each under a linear network
(what is left is the attack's own work: the geometry and the tokenizer, which ran on the CPU even beside a GPU)
and the study's network (the CNN; ResNet-9). Random smooth images and random networks: the speed is the
point, not the norms. Writes benchmarks/out/bench_tokenflip.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_certify import HERE

import tokencert.attacks.tokenflip as flip
from tokencert.evaluation import eval_set, load_model
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, build_model, channels_last
from tokencert.runtime import use_threads
from tokencert.tokens import patchify
from tokencert.vocab import Vocabulary
from tokencert.vocab.gaussian import gaussian_tokens

SHAPES = {"MNIST": (1, 28, "joint", "cnn"), "CIFAR-10": (3, 32, "per_channel", "resnet9")}


def problem(shape: str, network: str, images: int) -> tuple[DiscreteClassifier, torch.Tensor, torch.Tensor]:
    """A random token classifier of ``shape`` with a ``linear`` or the study's network, and images it labels."""
    channels, side, mode, arch = SHAPES[shape]
    gen = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(images, channels, 7, 7, generator=gen), size=side, mode="bilinear").clamp(0, 1)
    patches = patchify(x.double(), 4, mode).reshape(-1, 16 if mode == "per_channel" else 16 * channels)
    vocab = Vocabulary(gaussian_tokens(patches, 1024, gen), 4, mode, channels, side, {"name": "gauss"})
    torch.manual_seed(0)
    net = (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * side * side, 10)) if network == "linear"
           else channels_last(build_model(arch, channels, 10, [0.5] * channels, [0.25] * channels, side)))
    model = DiscreteClassifier(net.eval(), vocab).eval()
    return model, x, model(x).argmax(1)


def token_cases_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options of a benchmark over :func:`token_cases` (``--threads``, ``--images``, ``--classifier``,
    ``--data``, beside the caller's own), parsed, with the threads set."""
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--classifier", nargs=2, action="append", default=[], metavar=("MODEL", "VOCAB"),
                        help="a trained token classifier of the study and its vocabulary")
    parser.add_argument("--data", help="the dataset directory of --classifier (e.g. data/mnist5k)")
    args = parser.parse_args()
    if args.classifier and not args.data:
        parser.error("--classifier needs --data")
    use_threads(args.threads)
    return args


def token_cases(args: argparse.Namespace) -> Iterator[tuple[str, DiscreteClassifier, torch.Tensor, torch.Tensor]]:
    """(name, classifier, images, labels): the random MNIST-shaped CNN with K = 1,024 Gaussian tokens, then
    every ``--classifier`` on ``--images`` stratified test images of ``--data``."""
    yield "random CNN, K = 1,024", *problem("MNIST", "cnn", args.images)
    if args.classifier:
        data = eval_set(args.data, args.images, 0, "pixel", torch.device("cpu"))
        for model_path, vocab_path in args.classifier:
            model = load_model(model_path, vocab_path, Path(args.data).name, torch.device("cpu"))
            yield Path(model_path).parent.name, model, data.images, data.labels


def write_speedups(name: str, meta: dict, rows: list[dict], columns: dict[str, str], reference: str,
                   failure: str) -> None:
    """``benchmarks/out/<name>.{json,md}``: per row the ``columns`` (header -> key), seconds per image against the
    ``reference``'s, the speed-up and whether the outputs were identical; exits with ``failure`` unless all were."""
    write_json(HERE / "out" / f"{name}.json", {**meta, "rows": rows})
    header = [*columns, "s/image", f"{reference}, s/image", "speed-up", "identical"]
    align = ["---" if isinstance(rows[0][key], str) else "---:" for key in columns.values()] + ["---:"] * 3 + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join([*(str(r[key]) for key in columns.values()), f"{r['s_per_image']:.3f}",
                                f"{r['reference_s_per_image']:.3f}", f"{r['speedup']:.2f}x",
                                "yes" if r["identical"] else "NO"]) + " |" for r in rows]
    write_text(HERE / "out" / f"{name}.md", "\n".join(lines) + "\n")
    if not all(r["identical"] for r in rows):
        raise SystemExit(failure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the attack and the reference")
    args = parser.parse_args()
    use_threads(args.threads)
    rows, batched_elements = [], flip.ELEMENTS
    for shape in SHAPES:
        for network in ("linear", SHAPES[shape][3]):
            model, x, y = problem(shape, network, args.images)
            times: dict[str, list[float]] = {"chunked": [], "one image": []}
            out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            for _ in range(args.rounds):
                for name, elements in (("chunked", batched_elements), ("one image", 1)):
                    flip.ELEMENTS = elements
                    began = time.perf_counter()
                    out[name] = flip.tokenflip(model, x, y, max_eps=4.0, max_flips=32, candidates=32)
                    times[name].append(time.perf_counter() - began)
            flip.ELEMENTS = batched_elements
            (images, norm), (alone, alone_norm) = out["chunked"], out["one image"]
            same = torch.equal(images, alone) and torch.allclose(norm, alone_norm, rtol=1e-12, atol=0.0)
            ratio = statistics.median(r / c for r, c in zip(times["one image"], times["chunked"]))
            rows.append({"shape": shape, "network": network, "images": args.images,
                         "found": int(torch.isfinite(out["chunked"][1]).sum()),
                         "s_per_image": statistics.median(times["chunked"]) / args.images,
                         "reference_s_per_image": statistics.median(times["one image"]) / args.images,
                         "speedup": ratio, "identical": same})
            print(rows[-1], flush=True)
    write_speedups("bench_tokenflip", {"threads": args.threads, "rounds": args.rounds}, rows,
                   {"shape": "shape", "network": "network", "images": "images", "fooled": "found"},
                   "one image at a time", "the chunked attack and the one-image reference differ")

if __name__ == "__main__":
    main()
