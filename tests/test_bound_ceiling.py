"""benchmarks/bound_ceiling.py: full CROWN is sound against every token combination within the radius
(exhaustive, tiny problems) and the sampled ceiling is below the margin of every combination it sampled."""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.tiny_problems import tiny_case
from tokencert.flipsearch.candidates import candidate_flips
from tokencert.models import layers
from tokencert.setcert import Geometry, combinations, deviation_box, float64_copy
from tokencert.setcert.certifier import _Options

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
ceiling = pytest.importorskip("bound_ceiling")


def case(k: int, seed: int):
    model, images, labels = tiny_case(k, seed, 4, 40 + seed)
    flips = candidate_flips(images, model.vocab, None, 4.0, k)
    return model, labels, flips, flips.cost_radii()


def margin(net, flips, vocab, assignment: torch.Tensor, label: int) -> torch.Tensor:
    with torch.no_grad():
        z = net(flips.token_images(assignment, vocab, (1, 4, 4)))
    return (z[:, label:label + 1] - z).masked_fill(torch.arange(z.shape[1]) == label, torch.inf).min(dim=1).values


@pytest.mark.parametrize(("k", "seed"), [(4, 0), (6, 1), (8, 2)])
def test_full_crown_is_sound_and_not_vacuous(k: int, seed: int) -> None:
    model, labels, flips, radii = case(k, seed)
    net = float64_copy(model)
    positive = 0
    for i in range(len(labels)):
        geo = Geometry(flips.assignment[i:i + 1], radii[i:i + 1], flips.tables)
        center = flips.token_images(geo.assignment, model.vocab, (1, 4, 4))
        for radius in (0.05, 0.2, 0.5):
            bound = ceiling.full_crown_margin(net, model.vocab, geo, center, int(labels[i]), radius)
            combos = combinations(_Options(radii[i]).within(radius), radius * radius, 10**6)
            assignment = flips.assignment[i].repeat(len(combos), 1)
            for b, (combo, _) in enumerate(combos):
                for p, j in combo:
                    assignment[b, p] = j
            worst = float(margin(net, flips, model.vocab, assignment, int(labels[i])).min())
            assert float(bound.min()) <= worst + 1e-9
            positive += int(float(bound.min()) > 0)
    assert positive > 0


def test_sampled_ceiling_is_below_every_sampled_margin() -> None:
    """The ceiling (sampled intermediate ranges) never exceeds the margin of a combination it sampled, and is
    the same with in-place ReLUs (as in the study's CNN), whose inputs the ranges must see before they are
    overwritten."""
    model, labels, flips, radii = case(8, 3)
    net = float64_copy(model)
    inplace = copy.deepcopy(net)
    for k, module in enumerate(inplace):
        if isinstance(module, nn.ReLU):
            inplace[k] = nn.ReLU(inplace=True)
    rng = random.Random(0)
    for i in range(len(labels)):
        geo = Geometry(flips.assignment[i:i + 1], radii[i:i + 1], flips.tables)
        assignment = ceiling.reachable_samples(flips, radii, i, 0.3, 50, rng)
        cost = radii[i].square().masked_fill(radii[i].isinf(), 0).gather(1, assignment.T).sum(dim=0)
        assert (cost <= 0.09 + 1e-12).all() and torch.equal(assignment[0], flips.assignment[i])
        samples = flips.token_images(assignment, model.vocab, (1, 4, 4))
        reach = deviation_box(geo, torch.tensor([0.3], dtype=torch.float64))[2]
        parts = ceiling.sampled_ceiling(net, model.vocab, geo, reach, samples, int(labels[i]), 0.3)
        worst = float(margin(net, flips, model.vocab, assignment, int(labels[i])).min())
        assert all(float(part.min()) <= worst + 1e-9 for part in parts)
        same = ceiling.sampled_ceiling(inplace, model.vocab, geo, reach, samples, int(labels[i]), 0.3)
        assert all(torch.equal(a, b) for a, b in zip(same, parts, strict=True))
        with torch.no_grad():
            plain = ceiling.sampled_ranges(layers(net), net, samples)
            overwritten = ceiling.sampled_ranges(layers(inplace), inplace, samples)
        assert all(torch.equal(a, b) for pa, pb in zip(plain, overwritten, strict=True) for a, b in zip(pa, pb))
        assert float(plain[3][0].min()) < 0  # a ReLU's input, before the ReLU
