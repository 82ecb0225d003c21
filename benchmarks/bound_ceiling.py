"""Benchmark: how far could a tighter bound take the verifier's lower end on a token classifier? (issue 21)

The verifier's intervals on the K = 256 classifiers stay open: its lower end is ``R_set`` on the exact
costs (enumeration where the combinations are few, else the flip-set bounds), its upper end the search's
smallest adversarial example. This benchmark measures, on the verifier's images (the first ``--images``
of the stratified test set) of each ``--classifier``, at radii that are fractions of the upper end:

* ``crown-ibp``: the flip-set bound the verifier uses (:func:`tokencert.setcert.linear_margin_bounds`: IBP
  intermediate bounds, the linear bound under the knapsack on the last step), sound;
* ``crown``: full CROWN, every ReLU's pre-activation bounds back-substituted to the tokens and minimised
  per patch under the same knapsack (:func:`full_crown_margin`), sound and about 1,000x slower: it is
  evaluated at the start's radius only (which enumeration already proved);
* ``ceiling``: the same bound (the larger of the last layer's interval bound and the linear one) with every
  intermediate bound replaced by the range over sampled reachable combinations (:func:`sampled_ceiling`): an
  inner approximation of the true ranges, which no sound per-neuron bound can narrow, so an optimistic
  (unsound) indication of what such bounds could reach; its linear part is reported apart;
* the upper end with the search at the study's settings and a 16x larger one (beam 128).

A bound "certifies" a radius when its smallest margin is positive. Writes
``benchmarks/out/bound_ceiling.{json,md}``.

    python benchmarks/bound_ceiling.py --data data/mnist5k \\
        --classifier results/mnist5k/models/discrete-gauss/model.pt results/mnist5k/vocab/gauss.pt \\
        --classifier results/mnist5k/models/discrete-learned/model.pt results/mnist5k/vocab/learned.pt
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tokencert.evaluation import eval_set, load_model
from tokencert.flipsearch.adversarial import SearchSettings, token_search
from tokencert.flipsearch.candidates import Flips, candidate_flips
from tokencert.io import write_json, write_text
from tokencert.models import layers
from tokencert.runtime import use_threads
from tokencert.setcert import (
    Geometry,
    certified_radius,
    deviation_box,
    flip_budget,
    float64_copy,
    interval,
    linear_margin_bounds,
)
from tokencert.setcert.ibp import first_layer, interval_margin, logit_differences
from tokencert.setcert.linear import budgeted_minimum, record_inputs, relaxed_margins
from tokencert.vocab import Vocabulary

OUT = Path(__file__).resolve().parent / "out"
FRACTIONS = (0.2, 0.35, 0.5, 2 / 3)  # of the upper end; 2/3: the 1.5x bracket
STRONG = SearchSettings(beam=128, expand=32, depth=64, per_patch=64, refine=4)
SPECS = 1024  # pre-activations back-substituted together (memory: SPECS x input size, float64)


@torch.no_grad()
def full_crown_margin(net: nn.Module, vocab: Vocabulary, geo: Geometry, center: torch.Tensor, label: int,
                      radius: float) -> torch.Tensor:
    """Lower bounds of ``z_y - z_j`` (one image: ``geo`` and ``center`` of one row; +inf at ``y``) over the
    token combinations whose squared cost radii sum within ``radius^2``, with every ReLU's input bounded
    by CROWN (back-substitution to the tokens, the tighter of it and IBP), not IBP alone. Sound; ``net``
    float64, of the layers :mod:`tokencert.setcert` supports (ReLUs inside residual blocks keep IBP's)."""
    rad = torch.tensor([radius], dtype=torch.float64)
    dev_lo, dev_hi, reach = deviation_box(geo, rad)
    budget = flip_budget(geo.patch_radii, rad)
    leaves = layers(net)
    lo, hi, first = first_layer(leaves, center, dev_lo, dev_hi, budget, tuple(center.shape[1:]), vocab)
    trace: dict = {}
    record_inputs(leaves[:first], center, trace)  # the leading affine layers

    def minimum(k: int, coef: torch.Tensor, const: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Lower bound (1 x S) of ``coef . input of leaves[k] + const`` within the radius."""
        entries = {key: list(pairs) for key, pairs in trace.items()}  # budgeted_minimum consumes its entries
        return budgeted_minimum(leaves[:k], coef, const, entries, vocab, geo, reach, center, budget, rad)

    for k in range(first, len(leaves) - 1):
        if isinstance(leaves[k], nn.ReLU):
            size = lo[0].numel()
            low, high = [], []
            for start in range(0, size, SPECS):
                rows = torch.arange(start, min(size, start + SPECS))
                eye = torch.zeros(len(rows), size, dtype=torch.float64)
                eye[torch.arange(len(rows)), rows] = 1
                eye = eye.view(1, len(rows), *lo.shape[1:])
                low.append(minimum(k, eye))
                high.append(-minimum(k, -eye))
            lo = torch.maximum(lo, torch.cat(low, dim=1).view_as(lo))
            hi = torch.minimum(hi, torch.cat(high, dim=1).view_as(hi))
        lo, hi = interval(leaves[k], lo, hi, trace)
    coef, const = logit_differences(leaves[-1], torch.tensor([label]))
    out = minimum(len(leaves) - 1, coef, const)
    out[0, label] = torch.inf
    return out[0]


def reachable_samples(flips: Flips, radii: torch.Tensor, image: int, radius: float, count: int,
                      rng: random.Random) -> torch.Tensor:
    """``count`` random token assignments (count + 1 x P, the own first) of ``image`` whose squared cost radii
    sum within ``radius^2``: patches in random order, each changed with a probability drawn per sample."""
    cost = radii[image].square()
    own = flips.assignment[image]
    reach = [[(j, float(cost[p, j])) for j in torch.nonzero(cost[p] <= radius * radius).flatten().tolist()]
             for p in range(cost.shape[0])]
    out = [own.clone()]
    for _ in range(count):
        chance, left, assignment = rng.choice((0.05, 0.1, 0.2, 0.4, 0.7, 1.0)), radius * radius, own.clone()
        for p in rng.sample(range(len(reach)), len(reach)):
            options = [t for t in reach[p] if t[1] <= left] if rng.random() < chance else []
            if options:
                j, c = rng.choice(options)
                assignment[p], left = j, left - c
        out.append(assignment)
    return torch.stack(out)


def sampled_ranges(leaves: list[nn.Module], net: nn.Module, samples: torch.Tensor,
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer of ``leaves`` (``net``'s), the range (1 x input shape, lower and upper) of its input over the
    token images ``samples``."""
    acts: dict[int, torch.Tensor] = {}

    def record(k: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:  # None: the input stays as it is
            acts[k] = inputs[0].clone()  # a copy: an in-place ReLU (the study's CNN) overwrites its input
        return hook

    hooks = [m.register_forward_pre_hook(record(k)) for k, m in enumerate(leaves)]
    try:
        net(samples)
    finally:
        for hook in hooks:
            hook.remove()
    return [(acts[k].min(0, keepdim=True).values, acts[k].max(0, keepdim=True).values) for k in range(len(leaves))]


@torch.no_grad()
def sampled_ceiling(net: nn.Module, vocab: Vocabulary, geo: Geometry, reach: torch.Tensor, samples: torch.Tensor,
                    label: int, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of the flip-set bound (:func:`linear_margin_bounds`: the larger counts) for one image
    (``reach``: its tokens reachable within ``radius``) with every intermediate bound replaced by the range of
    the layer's input over the token images ``samples`` (the first: the image's own tokens): the linear bound,
    and the last layer's interval bound over its input's range (+inf at ``label``). UNSOUND: an inner
    approximation of the true ranges, so what per-neuron bounds could reach at best (indicative)."""
    leaves = layers(net)
    ranges = sampled_ranges(leaves, net, samples)
    rad = torch.tensor([radius], dtype=torch.float64)
    labels = torch.tensor([label])
    linear = relaxed_margins(leaves, 0, {id(m): [ranges[k]] for k, m in enumerate(leaves)}, vocab, geo, reach,
                             samples[:1], flip_budget(geo.patch_radii, rad), labels, radius=rad)[0]
    linear[label] = torch.inf
    return linear, interval_margin(leaves, *ranges[-1], len(leaves) - 1, labels)[0]


def _classifier(args: argparse.Namespace, model_path: str, vocab_path: str) -> list[dict]:
    dataset = Path(args.data).name
    data = eval_set(args.data, args.images, 0, "pixel", torch.device("cpu"))
    model = load_model(model_path, vocab_path, dataset, torch.device("cpu"))
    x, y = data.images.cpu(), data.labels.cpu()
    began = time.perf_counter()
    study = token_search(model, x, y, 4.0, data.scale, SearchSettings())
    study_s, began = time.perf_counter() - began, time.perf_counter()
    strong = token_search(model, x, y, 4.0, data.scale, STRONG)
    strong_s = time.perf_counter() - began
    flips = candidate_flips(x, model.vocab, data.scale, 4.0, SearchSettings().per_patch)
    radii = flips.cost_radii()
    start = certified_radius(model, x, y, data.scale, radii=radii)
    net = float64_copy(model)
    rng = random.Random(0)
    rows = []
    for i in range(len(y)):
        upper = float(torch.minimum(study.norm[i], strong.norm[i]))
        if not 0 < upper < math.inf:  # misclassified, or nothing found
            continue
        geo = Geometry(flips.assignment[i:i + 1], radii[i:i + 1], flips.tables)
        center = flips.token_images(geo.assignment, model.vocab, tuple(x.shape[1:]))
        label = int(y[i])
        row = {"classifier": Path(model_path).parent.name, "image": i, "start": float(start[i]),
               "upper_study": float(study.norm[i]), "upper_strong": float(strong.norm[i]),
               "search_s": [study_s / len(y), strong_s / len(y)], "crown_ibp": {}, "ceiling": {},
               "ceiling_linear": {}}
        for fraction in FRACTIONS:
            r = upper * fraction
            rad = torch.tensor([r], dtype=torch.float64)
            dev_lo, dev_hi, reach = deviation_box(geo, rad)
            with torch.no_grad():
                bound = linear_margin_bounds(net, model.vocab, geo, reach, center, dev_lo, dev_hi,
                                             flip_budget(geo.patch_radii, rad), torch.tensor([label]), radius=rad)
            samples = flips.token_images(reachable_samples(flips, radii, i, r, args.samples, rng), model.vocab,
                                         tuple(x.shape[1:]))
            row["crown_ibp"][f"{fraction:.3f}"] = float(bound.min())
            linear, last = sampled_ceiling(net, model.vocab, geo, reach, samples, label, r)
            row["ceiling"][f"{fraction:.3f}"] = float(torch.maximum(linear, last).min())
            row["ceiling_linear"][f"{fraction:.3f}"] = float(linear.min())
        began = time.perf_counter()
        row["crown_at_start"] = float(full_crown_margin(net, model.vocab, geo, center, label, row["start"]).min())
        row["crown_s"] = time.perf_counter() - began
        print(row, flush=True)
        rows.append(row)
    return rows


def _markdown(rows: list[dict], samples: int) -> list[str]:
    fractions = ", ".join(f"{f:.2f}" for f in FRACTIONS)
    lines = ["## How far a tighter bound could take the verifier (`bound_ceiling.py`)", "",
             f"Smallest margin bound at radius = upper end x ({fractions}); certified where positive. "
             f"ceiling: intermediate ranges from {samples} sampled reachable combinations (unsound, indicative), "
             "the larger of the last layer's interval bound and the linear bound on them; its linear part apart. "
             "Full CROWN at the start (`R_set` on the exact costs, proved there by enumeration).", "",
             "| classifier | image | start | upper: study / beam 128 | CROWN-IBP bound | ceiling "
             "| ceiling's linear part | full CROWN at start |",
             "|---|---:|---:|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['classifier']} | {r['image']} | {r['start']:.4f} | {r['upper_study']:.4f} / "
                     f"{r['upper_strong']:.4f} | " + " / ".join(f"{v:.3g}" for v in r["crown_ibp"].values())
                     + " | " + " / ".join(f"{v:.3g}" for v in r["ceiling"].values())
                     + " | " + " / ".join(f"{v:.3g}" for v in r["ceiling_linear"].values())
                     + f" | {r['crown_at_start']:.3g} ({r['crown_s']:.0f} s) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset folder of the study (data/<name>)")
    parser.add_argument("--classifier", nargs=2, action="append", required=True, metavar=("MODEL", "VOCAB"))
    parser.add_argument("--images", type=int, default=3, help="the verifier's count in params.yaml")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    rows = [row for model, vocab in args.classifier for row in _classifier(args, model, vocab)]
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "images": args.images, "samples": args.samples, "fractions": FRACTIONS, "rows": rows}
    write_json(OUT / "bound_ceiling.json", result)
    write_text(OUT / "bound_ceiling.md", "\n".join(_markdown(rows, args.samples)) + "\n")
    print(f"wrote {OUT / 'bound_ceiling.json'} and bound_ceiling.md")


if __name__ == "__main__":
    main()
