"""Flip-set certificates: soundness against exhaustive enumeration with exact cell distances (without the box,
the stricter check),
agreement with the single-flip certificate, worst cases, interval bounds, bad input."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.tiny_problems import brute_distance, tiny_case, tiny_net, tiny_vocab
from tokencert.exact import single_flip_certificates
from tokencert.models import BasicBlock, DiscreteClassifier, Normalize, Residual
from tokencert.setcert import (
    ENUMERATION_LIMIT,
    breakpoints,
    certified,
    certified_radius,
    certifier,
    deviation_box,
    flip_budget,
    geometry,
    interval,
    linear_margin_bounds,
    margin_bounds,
)
from tokencert.setcert.certifier import _Certifier, _Options
from tokencert.setcert.enumeration import COST_SLACK, combinations
from tokencert.setcert.linear import _backward
from tokencert.tokens import patchify, unpatchify
from tokencert.vocab import Vocabulary


def truth(net: nn.Module, vocab: Vocabulary, image: torch.Tensor, label: int, radius: float) -> bool:
    """Whether every token combination reachable within ``radius`` (exact cell distances) is classified
    ``label``: the ground truth a sound certificate may never exceed."""
    patches = patchify(image.unsqueeze(0).double(), 2, "joint")[0].numpy()
    tokens = vocab.tokens.numpy()
    cost = np.array([[brute_distance(p, tokens, j, np.ones(len(p)), box=False) ** 2 for j in range(len(tokens))]
                     for p in patches])
    combos = [c for c in itertools.product(range(len(tokens)), repeat=len(patches))
              if sum(cost[p, j] for p, j in enumerate(c)) <= radius * radius * (1 + 1e-9)]
    batch = torch.stack([vocab.tokens[list(c)] for c in combos])
    images = unpatchify(batch, 2, "joint", 1, 4).float()
    with torch.no_grad():
        return bool((net(images).argmax(1) == label).all())


CASES = [(k, seed) for k in (2, 3, 4) for seed in range(6)]


@pytest.mark.parametrize(("k", "seed"), CASES)
def test_sound_against_exhaustive_enumeration(k: int, seed: int) -> None:
    """Every radius the certificate accepts (bounds alone, or bounds then enumeration) is one at which
    no reachable token combination changes the class; and enumeration alone is exact for the cost
    model, so it accepts at least what the bounds accept."""
    vocab, net = tiny_vocab(k, seed), tiny_net(seed)
    model = DiscreteClassifier(net, vocab).eval()
    g = torch.Generator().manual_seed(100 + seed)
    images = torch.rand(6, 1, 4, 4, generator=g)
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0] = (labels[0] + 1) % 3  # one misclassified image: never certified
    for radius in (0.0, 0.05, 0.15, 0.3, 0.6):
        bounds = certified(model, images, labels, radius, enumeration_limit=0)
        full = certified(model, images, labels, radius)
        assert not full[0] and not bounds[0]
        assert (full | ~bounds).all(), "enumeration must accept what the bounds accept"
        for i in range(images.shape[0]):
            if full[i]:
                assert truth(net, vocab, images[i], int(labels[i]), radius), (k, seed, radius, i)


def test_exhaustive_cases_are_not_vacuous() -> None:
    """The cases above certify some images and refuse others at every nonzero radius tested."""
    seen = set()
    for k, seed in CASES[::3]:
        model, images, labels = tiny_case(k, seed, 6, 100 + seed)
        for radius in (0.05, 0.3):
            seen |= {(radius, bool(v)) for v in certified(model, images, labels, radius)}
    assert seen == {(0.05, True), (0.05, False), (0.3, True), (0.3, False)}


@pytest.mark.parametrize("seed", range(4))
def test_radius_against_single_flip_certificate(seed: int) -> None:
    """Below ``R_2`` at most one patch changes, so the flip-set radius (with enumeration) is at least the
    exact single-flip certificate (``R_2`` where every single flip is safe, else ``R_0``), and it is the
    supremum: a radius just below it is accepted, one just above refused."""
    vocab, net = tiny_vocab(4, seed), tiny_net(seed)
    model = DiscreteClassifier(net, vocab).eval()
    images = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(7 + seed))
    with torch.no_grad():
        labels = model(images).argmax(1)
    exact = single_flip_certificates(model, images, labels)
    radius = certified_radius(model, images, labels)
    assert (radius >= exact.certified * (1 - 1e-12)).all()
    for i in range(images.shape[0]):
        if 0 < radius[i] < math.inf:
            below = float(radius[i]) * (1 - 1e-9)
            assert certified(model, images[i:i + 1], labels[i:i + 1], below)[0]
            assert not certified(model, images[i:i + 1], labels[i:i + 1], float(radius[i]) * (1 + 1e-9))[0]
            assert truth(net, vocab, images[i], int(labels[i]), below)


def test_constant_classifier_is_certified_everywhere() -> None:
    """Worst case for looseness: a network whose logits ignore the input is certified at every radius."""
    net = tiny_net(0)
    net[-1].weight.data.zero_()
    net[-1].bias.data.copy_(torch.tensor([1.0, 0.0, -1.0]))
    model = DiscreteClassifier(net, tiny_vocab(3, 0)).eval()
    images = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(4, dtype=torch.long)
    assert certified(model, images, labels, 3.0, enumeration_limit=0).all()
    assert torch.isinf(certified_radius(model, images, labels, enumeration_limit=0)).all()


def test_one_decisive_patch_gives_its_flip_radius() -> None:
    """Worst case for soundness: the class is decided by the top-left patch alone (token 1 there means
    class 1); the certified radius of a class-0 image is exactly that patch's bisector distance to
    token 1, since every other flip is harmless."""
    tokens = torch.tensor([[0.0] * 4, [1.0] * 4, [0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    vocab = Vocabulary(tokens=tokens, patch_size=2, mode="joint", channels=1, image_size=4, meta={"name": "t"})
    lin = nn.Linear(16, 2)
    lin.weight.data.zero_()
    lin.bias.data.zero_()
    lin.weight.data[1, [0, 1, 4, 5]] = 1.0  # top-left patch pixels (row-major 4x4)
    lin.bias.data[1] = -3.0
    model = DiscreteClassifier(nn.Sequential(nn.Flatten(), lin), vocab).eval()
    image = torch.full((1, 1, 4, 4), 0.1)
    radius = certified_radius(model, image, torch.tensor([0]))
    geo = geometry(image.double(), vocab)
    assert float(radius[0]) == pytest.approx(float(geo.radii[0, 0, 1]), rel=1e-12)


def random_net(seed: int, channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        Normalize([0.5] * channels, [0.3] * channels), nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8),
        nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())), BasicBlock(8, 8, 2),
        nn.AvgPool2d(2), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(32, 5))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 2)
            m.weight.data.uniform_(-1, 1)
    return net.eval()


@pytest.mark.parametrize("seed", range(3))
def test_interval_bounds_contain_sampled_outputs(seed: int) -> None:
    """IBP through every supported layer: outputs at points of the box (corners included) lie in the bounds."""
    net = random_net(seed).double()
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64)
    width = 0.1 * torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64)
    lo, hi = interval(net, center - width, center + width)
    corners = (torch.rand(500, 1, 8, 8, generator=g) < 0.5).double()
    points = torch.cat([center - width + 2 * width * corners,
                        center - width + 2 * width * torch.rand(500, 1, 8, 8, generator=g, dtype=torch.float64)])
    with torch.no_grad():
        out = net(points)
    assert (out >= lo - 1e-9).all() and (out <= hi + 1e-9).all()


@pytest.mark.parametrize(("seed", "mode"), [(0, "joint"), (1, "joint"), (2, "joint"), (0, "per_channel"),
                                            (1, "per_channel")])
def test_budgeted_margin_bound_holds_for_sampled_flips(seed: int, mode: str) -> None:
    """The top-m first-layer bound (one pass per class of patches sharing no output unit; per-channel
    patches of one location share units): any change of at most m patches, each inside its
    deviation box, keeps every logit difference above the bound; a larger budget never tightens it."""
    channels = 1 if mode == "joint" else 3
    d = 16 * channels if mode == "joint" else 16
    vocab = Vocabulary(tokens=torch.rand(16, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)),
                       patch_size=4, mode=mode, channels=channels, image_size=8, meta={"name": "r"})
    net = random_net(seed, channels).double()
    g = torch.Generator().manual_seed(50 + seed)
    images = torch.rand(3, channels, 8, 8, generator=g, dtype=torch.float64)
    geo = geometry(images, vocab)
    num = geo.assignment.shape[1]
    lo, hi, _ = deviation_box(geo, 0.4)
    labels = torch.tensor([0, 1, 2])
    center = unpatchify(geo.own(), 4, mode, channels, 8)
    for m in (1, 2):
        budget = torch.full((3,), m)
        lower = margin_bounds(net, vocab, center, lo, hi, budget, labels)
        for _ in range(200):
            mask = torch.zeros(3, num, 1, dtype=torch.float64)
            for n in range(3):
                mask[n, torch.randperm(num, generator=g)[:m]] = 1
            corner = (torch.rand(lo.shape, generator=g) < 0.5).double()  # corners first: where IBP is tight
            share = corner if _ % 2 else torch.rand(lo.shape, generator=g, dtype=torch.float64)
            dev = lo + (hi - lo) * share
            with torch.no_grad():
                z = net(center + unpatchify(dev * mask, 4, mode, channels, 8))
            margin = z.gather(1, labels.view(-1, 1)) - z
            assert (margin >= lower - 1e-9)[lower.isfinite()].all()
        assert lower.isinf().sum() == 3  # only z_y - z_y
    wider = margin_bounds(net, vocab, center, lo, hi, torch.full((3,), num), labels)
    assert (wider <= lower + 1e-12).all()


@pytest.mark.parametrize("seed", range(4))
def test_combinations_are_every_set_within_the_summed_cost(seed: int) -> None:
    """The enumeration against every assignment of a small problem: each set of changes (one token per
    patch, at most ``most``) whose squared costs sum to at most ``left`` exactly once, with its sum, the
    empty set first and changes in the options' order; ``None`` past the limit."""
    g = torch.Generator().manual_seed(seed)
    options = []
    for p in range(5):
        costs = sorted(torch.rand(int(torch.randint(0, 4, (1,), generator=g)), generator=g).tolist())
        options.append((10 * p, [(100 + j, c) for j, c in enumerate(costs)]))
    for left, most in ((0.0, None), (0.4, None), (0.9, 2), (3.0, None), (3.0, 1)):
        combos = combinations(options, left, 10**6, most)
        expected = {}
        for pick in itertools.product(*[[None, *tokens] for _, tokens in options]):
            changes = tuple((q, t[0]) for (q, _), t in zip(options, pick, strict=True) if t is not None)
            cost = sum(t[1] for t in pick if t is not None)
            if cost <= left and (most is None or len(changes) <= most):
                expected[changes] = cost
        assert combos[0] == ((), 0.0)
        assert len(combos) == len({c for c, _ in combos}) == len(expected)
        for changes, cost in combos:
            assert cost == pytest.approx(expected[changes], abs=1e-12)
        if len(combos) > 1:
            assert combinations(options, left, len(combos) - 1, most) is None
            assert combinations(options, left, len(combos), most) == combos


def test_flip_budget_counts_cheapest_patches() -> None:
    radii = torch.tensor([[0.3, 0.4, 1.0], [2.0, 2.0, 2.0]], dtype=torch.float64)
    assert flip_budget(radii, 0.5).tolist() == [2, 0]
    assert flip_budget(radii, 0.49).tolist() == [1, 0]
    assert flip_budget(radii, torch.tensor([0.0, 3.5])).tolist() == [0, 3]


@pytest.mark.parametrize("classes", [1, 2, 4, 8, 9, 20])
def test_top_sum_keeps_exactly_the_budget_largest_values(classes: int) -> None:
    """Both paths of ``top_sum`` (ranks up to RANK_CLASSES classes, a sort above) against a per-column
    sorted sum, on values with many ties and budgets from 0 past the class count; the gradient marks
    exactly ``min(budget, classes)`` values per column, never a smaller one than a value left out."""
    from tokencert.setcert.ibp import top_sum

    gen = torch.Generator().manual_seed(classes)
    values = torch.randint(0, 4, (12, classes, 30), generator=gen).double().requires_grad_(True)
    budget = torch.arange(12) % (classes + 2)
    out = top_sum(values, budget)
    ordered = values.detach().sort(dim=1, descending=True).values
    for n in range(12):
        assert torch.allclose(out[n], ordered[n, :int(budget[n])].sum(dim=0), rtol=0, atol=1e-12)
    out.sum().backward()
    kept = values.grad == 1
    assert ((values.grad == 0) | kept).all()
    assert torch.equal(kept.sum(dim=1), budget.clamp(max=classes).view(-1, 1).expand(-1, 30))
    left = values.detach().masked_fill(kept, -math.inf).amax(dim=1)
    least = values.detach().masked_fill(~kept, math.inf).amin(dim=1)
    assert (left <= least).all()


def test_bad_input_one_clear_error() -> None:
    model = DiscreteClassifier(tiny_net(0), tiny_vocab(3, 0)).eval()
    x, y = torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="radius must be finite and >= 0"):
        certified(model, x, y, -0.1)
    with pytest.raises(TypeError, match="need a token classifier"):
        certified(tiny_net(0), x, y, 0.1)
    odd = DiscreteClassifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Tanh(), nn.Linear(3, 3)),
                             tiny_vocab(3, 0)).eval()
    with pytest.raises(ValueError, match="unsupported layer Tanh"):
        certified(odd, x, y, 0.1)
    with pytest.raises(ValueError, match="BatchNorm2d in training mode"):
        certified(DiscreteClassifier(tiny_net(0).train(), tiny_vocab(3, 0)), x, y, 0.1)


@pytest.mark.parametrize("mode", ["joint", "per_channel"])
def test_patch_classes_lose_nothing_against_one_pass_per_patch(mode: str, monkeypatch) -> None:
    """Any grouping of patches into passes is sound (a pass sums its patches' non-negative
    contributions); grouping patches that share no output unit is also exact: the bound equals the
    one computed with a pass per patch."""
    import tokencert.setcert.ibp as sc

    channels = 1 if mode == "joint" else 3
    d = 16 * channels if mode == "joint" else 16
    vocab = Vocabulary(tokens=torch.rand(16, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3)),
                       patch_size=4, mode=mode, channels=channels, image_size=16, meta={"name": "r"})
    net = random_net(3, channels).double()
    images = torch.rand(2, channels, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    geo = geometry(images, vocab)
    lo, hi, _ = deviation_box(geo, 0.5)
    center = unpatchify(geo.own(), 4, mode, channels, 16)
    args = (net, vocab, center, lo, hi, torch.tensor([1, 2]), torch.tensor([0, 1]))
    grouped = margin_bounds(*args)
    assert int(sc._patch_classes(net[1], vocab, geo.assignment.shape[1], channels).max()) + 1 == 4 * channels
    monkeypatch.setattr(sc, "_patch_classes", lambda layer, vocab, num, channels: torch.arange(num))
    assert torch.allclose(grouped, margin_bounds(*args), rtol=1e-12, atol=1e-12)


def budgeted_flips(geo, reach: torch.Tensor, budget: int, g: torch.Generator | None = None, samples: int = 0):
    """Per image, token combinations with at most ``budget`` changed patches, each to a reachable
    token: all of them (``samples == 0``) or ``samples`` random ones (full budget, then fewer)."""
    own = geo.own()
    num = own.shape[1]
    for n in range(own.shape[0]):
        options = [torch.nonzero(reach[n, p] & (torch.arange(reach.shape[2]) != geo.assignment[n, p])).flatten()
                   for p in range(num)]
        if samples == 0:
            combos = [c for k in range(budget + 1) for s in itertools.combinations(range(num), k)
                      for c in itertools.product(*[[(p, int(j)) for j in options[p]] for p in s])]
        else:
            combos = []
            for t in range(samples):
                patches = torch.randperm(num, generator=g)[:budget - t % 2].tolist()
                combos.append([(p, int(options[p][torch.randint(len(options[p]), (1,), generator=g)]))
                               for p in patches if len(options[p])])
        batch = own[n].unsqueeze(0).repeat(len(combos), 1, 1)
        for b, combo in enumerate(combos):
            for p, j in combo:
                batch[b, p] = geo.tables[p, j]
        yield n, batch


def margins(net: nn.Module, vocab: Vocabulary, batch: torch.Tensor, label: int, shape) -> torch.Tensor:
    """The smallest ``z_label - z_j`` per class ``j`` over a batch of token combinations."""
    with torch.no_grad():
        z = net(unpatchify(batch, vocab.patch_size, vocab.mode, shape[0], shape[1:]))
    return (z[:, label:label + 1] - z).min(dim=0).values


def overlapping_net(seed: int, channels: int) -> nn.Module:
    """Every layer kind the linear bound walks, with overlapping max-pool windows and in-place ReLUs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        Normalize([0.5] * channels, [0.3] * channels), nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=1, padding=1),
        Residual(nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(6, 6, 3, padding=1))),
        BasicBlock(6, 8, 2), nn.AvgPool2d(2), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 12),
        nn.ReLU(inplace=True), nn.Linear(12, 4)).eval()


@pytest.mark.parametrize(("seed", "mode", "which"), [(0, "joint", "random"), (1, "joint", "overlap"),
                                                     (2, "per_channel", "random"), (3, "per_channel", "overlap")])
def test_linear_bound_holds_for_budgeted_flips(seed: int, mode: str, which: str) -> None:
    """The linear (CROWN-IBP) margin bound through every supported layer: every sampled combination of
    at most ``m`` flips to reachable tokens keeps the margin above it, and it is never below IBP's;
    with a target, exactly the classes IBP leaves at or below it get the linear bound."""
    channels = 1 if mode == "joint" else 3
    d = 16 * channels if mode == "joint" else 16
    vocab = Vocabulary(tokens=torch.rand(12, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)),
                       patch_size=4, mode=mode, channels=channels, image_size=8, meta={"name": "r"})
    net = (random_net(seed, channels) if which == "random" else overlapping_net(seed, channels)).double()
    images = torch.rand(3, channels, 8, 8, generator=torch.Generator().manual_seed(20 + seed), dtype=torch.float64)
    geo = geometry(images, vocab)
    lo, hi, reach = deviation_box(geo, 0.6)
    center = unpatchify(geo.own(), 4, mode, channels, 8)
    labels = torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(seed)
    for m in (1, 2, 3):
        budget = torch.full((3,), m)
        ibp = margin_bounds(net, vocab, center, lo, hi, budget, labels)
        linear = linear_margin_bounds(net, vocab, geo, reach, center, lo, hi, budget, labels)
        assert (linear >= ibp).all()
        target = ibp.masked_fill(ibp.isinf(), math.nan).nanmedian(dim=1).values  # some classes above, some below
        targeted = linear_margin_bounds(net, vocab, geo, reach, center, lo, hi, budget, labels, target=target)
        below = ibp <= target.view(-1, 1)
        assert torch.allclose(targeted[below], linear[below], rtol=1e-12, atol=1e-12)
        assert torch.equal(targeted[~below], ibp[~below])
        for n, batch in budgeted_flips(geo, reach, m, g, samples=300):
            worst = margins(net, vocab, batch, int(labels[n]), (channels, 8, 8))
            assert (worst >= linear[n] - 1e-9)[linear[n].isfinite()].all()


def test_linear_bound_is_exact_for_an_affine_network() -> None:
    """With no nonlinearity the linear bound is the exact minimum over the budgeted token combinations
    (enumerated: the worst case is attained), where IBP's box is strictly looser."""
    vocab = tiny_vocab(4, 5)
    torch.manual_seed(5)
    net = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(12, 6), nn.Linear(6, 3)).eval().double()
    net[2].running_mean.uniform_(-0.5, 0.5)
    images = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    geo = geometry(images, vocab)
    lo, hi, reach = deviation_box(geo, 0.5)
    center = unpatchify(geo.own(), 2, "joint", 1, 4)
    labels = torch.tensor([0, 1, 2, 0])
    looser = 0
    for m in (1, 2, 4):
        budget = torch.full((4,), m)
        linear = linear_margin_bounds(net, vocab, geo, reach, center, lo, hi, budget, labels)
        ibp = margin_bounds(net, vocab, center, lo, hi, budget, labels)
        for n, batch in budgeted_flips(geo, reach, m):
            exact = margins(net, vocab, batch, int(labels[n]), (1, 4, 4))
            finite = exact.isfinite() & (exact != 0)
            assert torch.allclose(linear[n][finite], exact[finite], rtol=1e-10, atol=1e-12)
            looser += int((ibp[n][finite] < exact[finite] - 1e-6).sum())
    assert looser > 0


def test_knapsack_bound_against_every_combination_within_the_cost() -> None:
    """With ``radius=`` the linear bound of an affine network (exact per combination) is never above the
    margin of any token combination whose squared radii sum within ``radius^2`` (all enumerated), never
    below the bound with the flip budget alone, and strictly above it somewhere (the costs bind)."""
    vocab = tiny_vocab(4, 5)
    torch.manual_seed(7)
    net = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 3, 3, padding=1), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(12, 3)).eval().double()
    images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    geo = geometry(images, vocab)
    center = unpatchify(geo.own(), 2, "joint", 1, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    tighter = 0
    for r in (0.1, 0.2, 0.35, 0.6):
        radius = torch.full((6,), r, dtype=torch.float64)
        lo, hi, reach = deviation_box(geo, radius)
        args = (geo, reach, center, lo, hi, flip_budget(geo.patch_radii, radius), labels)
        costed = linear_margin_bounds(net, vocab, *args, radius=radius)
        counted = linear_margin_bounds(net, vocab, *args)
        assert (costed >= counted).all()
        tighter += int((costed > counted + 1e-9).sum())
        for n in range(6):
            combos = combinations(_Options(geo.radii[n]).within(r), r * r, 10**6)
            batch = geo.own()[n].unsqueeze(0).repeat(len(combos), 1, 1)
            for b, (combo, _) in enumerate(combos):
                for p, j in combo:
                    batch[b, p] = geo.tables[p, j]
            exact = margins(net, vocab, batch, int(labels[n]), (1, 4, 4))
            other = torch.arange(3) != labels[n]
            assert (costed[n][other] <= exact[other] + 1e-9).all(), (r, n)
    assert tighter > 0


def test_linear_bound_certifies_more_than_intervals() -> None:
    """On the exhaustive cases (every acceptance checked against the truth above) the linear bound
    accepts everything IBP accepts, and more."""
    gained = 0
    for k, seed in CASES:
        model = DiscreteClassifier(tiny_net(seed), tiny_vocab(k, seed)).eval()
        images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            labels = model(images).argmax(1)
        for radius in (0.05, 0.15, 0.3):
            ibp = certified(model, images, labels, radius, enumeration_limit=0, linear=False)
            linear = certified(model, images, labels, radius, enumeration_limit=0)
            assert (linear | ~ibp).all()
            gained += int((linear & ~ibp).sum())
    assert gained > 0


def test_in_place_relus_give_the_same_bounds() -> None:
    """IBP never applies a ReLU in place: the bounds the linear pass relies on survive."""
    vocab = tiny_vocab(3, 1)
    plain = tiny_net(1).double()
    inplace = copy.deepcopy(plain)
    for i, module in enumerate(inplace):
        if isinstance(module, nn.ReLU):
            inplace[i] = nn.ReLU(inplace=True)
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    geo = geometry(images, vocab)
    lo, hi, reach = deviation_box(geo, 0.3)
    center = unpatchify(geo.own(), 2, "joint", 1, 4)
    args = (geo, reach, center, lo, hi, torch.full((3,), 2), torch.tensor([0, 1, 2]))
    assert torch.equal(linear_margin_bounds(plain, vocab, *args), linear_margin_bounds(inplace, vocab, *args))


def _first_refused(model: nn.Module, one: tuple[torch.Tensor, torch.Tensor], geo, i: int, linear: bool,
                   limit: int) -> tuple[float, bool]:
    """Scanning from 0 every radius where :func:`certified`'s verdict can change (the breakpoints and every
    combination's ``sqrt`` of summed squared radii): the first it refuses (``inf``: none), and whether that
    one lies between breakpoints. One certifier answers every radius as :func:`certified` does, its caches
    shared (their reuse is tested below)."""
    sums = [math.sqrt(c) for _, c in combinations(_Options(geo.radii[i]).within(math.inf), math.inf, 10**6)]
    marks = breakpoints(geo, i).tolist()
    cert = _Certifier(model, *one, None, limit, linear)
    for r in sorted({*marks, *sums}):
        if not cert.reach(torch.tensor([0]), r, r)[0] > r:
            return r, r not in marks
    return math.inf, False


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("seed", [0, 2, 3, 4])  # seeds 1 and 5 scan hundreds of radii (20-50 s)
def test_search_finds_the_first_refused_radius(seed: int, linear: bool) -> None:
    """The search returns, per image, the first radius :func:`certified` refuses after a run of accepted
    ones (the tiny problems' certificates are monotone in the radius), with the enumeration cache on."""
    model, images, labels = tiny_case(4, seed, 6, 40 + seed)
    radius = certified_radius(model, images, labels, linear=linear)
    geo = geometry(images.double(), model.vocab)
    partial = 0
    for i in range(images.shape[0]):
        expected, between = _first_refused(model, (images[i:i + 1], labels[i:i + 1]), geo, i, linear,
                                           ENUMERATION_LIMIT)
        assert float(radius[i]) == pytest.approx(expected, rel=1e-9), (seed, i)
        partial += between
    assert partial or seed != 0  # seed 0 has an image refused between breakpoints


@pytest.mark.parametrize("seed", range(3))
def test_search_with_a_small_limit_stops_no_later(seed: int) -> None:
    """With an enumeration limit that binds, windows too large are skipped (the bounds decide) and the
    search may stop before the scan's first refusal (a query's window, up to the next breakpoint, can
    outgrow the limit where the scan's single radius does not): never after it, and always at a radius
    :func:`certified` accepts just below."""
    model, images, labels = tiny_case(4, seed, 6, 40 + seed)
    radius = certified_radius(model, images, labels, linear=False, enumeration_limit=6)
    geo = geometry(images.double(), model.vocab)
    for i in range(images.shape[0]):
        one = (images[i:i + 1], labels[i:i + 1])
        expected, _ = _first_refused(model, one, geo, i, False, 6)
        assert float(radius[i]) <= expected * (1 + 1e-9)
        if 0 < radius[i] < math.inf:
            assert certified(model, *one, float(radius[i]) * (1 - 1e-9), linear=False, enumeration_limit=6)[0]


def test_enumeration_skips_the_combinations_it_already_classified(monkeypatch) -> None:
    """With the bounds off and one forward pass per window, a second, larger radius classifies exactly the
    combinations the first did not prove (they are a superset), and every verdict is a fresh certifier's."""
    monkeypatch.setattr(_Certifier, "bounds_certify", lambda self, r, radius: torch.zeros(len(r), dtype=torch.bool))
    monkeypatch.setattr(certifier, "forward_batches", lambda count, device: [slice(0, count)])
    model, images, labels = tiny_case(4, 0, 6, 1)
    cert = _Certifier(model, images, labels, None, ENUMERATION_LIMIT, linear=False)
    seen: list[int] = []
    model.net.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    rows = torch.arange(images.shape[0])

    def count(i: int, radius: float) -> int:
        budget = int(flip_budget(cert.geo.patch_radii[i:i + 1], radius)[0])
        return len(combinations(_Options(cert.geo.radii[i]).within(radius), radius ** 2 * (1 + COST_SLACK), 10**6,
                                budget))

    first = cert.reach(rows, 0.2, 0.2) > 0.2
    before = [set(k) for k in cert.known]
    assert sum(seen) == sum(count(i, 0.2) for i in range(len(rows)) if cert.correct[i])
    seen.clear()
    second = cert.reach(rows, 0.3, 0.3) > 0.3
    new = [count(i, 0.3) - len(before[i]) for i in range(len(rows)) if cert.correct[i]]
    assert sum(seen) == sum(new) and 0 < sum(new)
    fresh = _Certifier(model, images, labels, None, ENUMERATION_LIMIT, linear=False)
    assert torch.equal(first, fresh.reach(rows, 0.2, 0.2) > 0.2)
    assert torch.equal(second, fresh.reach(rows, 0.3, 0.3) > 0.3)
    assert first.any() and not torch.equal(first, second)  # an image refused only at the larger radius


def test_deviation_box_against_a_scan_of_every_token() -> None:
    """The box of ``token - own`` over the reachable tokens, per image radius, as a loop over every
    image, patch and token computes it (joint and per-channel vocabularies)."""
    for mode, channels in (("joint", 1), ("per_channel", 3)):
        tokens = torch.rand(7, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        vocab = Vocabulary(tokens=tokens, patch_size=2, mode=mode, channels=channels, image_size=4, meta={"name": "t"})
        images = torch.rand(3, channels, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        geo = geometry(images, vocab)
        radius = torch.tensor([0.0, 0.4, 9.0], dtype=torch.float64)
        lo, hi, reach = deviation_box(geo, radius)
        own = geo.own()
        for n in range(3):
            for p in range(own.shape[1]):
                devs = [geo.tables[p, j] - own[n, p] for j in range(7)
                        if geo.radii[n, p, j] <= radius[n] or j == geo.assignment[n, p]]
                assert int(reach[n, p].sum()) == len(devs)
                assert torch.equal(lo[n, p], torch.stack(devs).amin(0))
                assert torch.equal(hi[n, p], torch.stack(devs).amax(0))


@pytest.mark.parametrize("module", [
    nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Conv2d(2, 4, 2, stride=2),
    nn.Conv2d(2, 4, 3, stride=2, dilation=2, groups=2, bias=False), nn.Linear(50, 7), nn.Flatten(), nn.Identity(),
    nn.BatchNorm2d(2), nn.BatchNorm2d(2, affine=False), Normalize([0.1, 0.2], [0.3, 0.5]), nn.AvgPool2d(2),
    nn.AdaptiveAvgPool2d(3)], ids=lambda m: repr(m))
def test_affine_layers_back_substitute_as_their_vector_jacobian_product(module: nn.Module) -> None:
    """``_backward`` through an affine layer (its transposed weights, no forward pass) gives autograd's
    vector-Jacobian product and the bias term ``coef . layer(0)``, on odd sizes a stride leaves rows of."""
    torch.manual_seed(0)
    module = module.double().eval()
    if isinstance(module, nn.BatchNorm2d):
        module.running_mean.uniform_(-1, 1)
        module.running_var.uniform_(0.5, 2)
    shape = (50,) if isinstance(module, nn.Linear) else (2, 5, 5)
    x = torch.zeros((6, *shape), dtype=torch.float64, requires_grad=True)
    out = module(x)
    coef = torch.randn(2, 3, *out.shape[1:], dtype=torch.float64)
    pulled = torch.autograd.grad(out, x, coef.reshape(6, *out.shape[1:]))[0]
    bounds = torch.zeros((2, *shape), dtype=torch.float64)
    back, shift = _backward(module, coef, {id(module): [(bounds, bounds)]})
    assert torch.allclose(back, pulled.view(2, 3, *shape), rtol=0, atol=1e-12)
    assert torch.allclose(shift, (coef * out.detach()[0]).flatten(2).sum(2), rtol=0, atol=1e-12)
