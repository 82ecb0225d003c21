"""Token classifiers judged exactly: cell distances against a brute-force QP, realised points on the
float32 tokenizer, the multi-flip search where the greedy attack fails, and the complete verifier against
exhaustive enumeration of token assignments with exact cell-within-box costs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.tiny_problems import brute_distance, tiny_case
from tokencert.attacks.suite import run_attack, worst_case
from tokencert.attacks.tokenflip import tokenflip
from tokencert.cells import cell_distances
from tokencert.exactflip import VerifierSettings, minimal_flip_radius
from tokencert.flipsearch import SearchSettings, token_search
from tokencert.flipsearch.candidates import candidate_flips
from tokencert.models import DiscreteClassifier, Normalize
from tokencert.outcomes import AttackOutcome
from tokencert.setcert import certified_radius
from tokencert.tokens import patchify, unpatchify
from tokencert.units import norms
from tokencert.vocab import Vocabulary, tokenize


@pytest.mark.parametrize(("k", "seed"), [(k, seed) for k in (2, 3, 5) for seed in range(4)])
def test_cell_distance_is_the_exact_qp_within_the_box(k: int, seed: int) -> None:
    """Lower and upper bounds bracket the brute-force distance (the upper within the realiser's margin); the
    realised point lies in the box and, rounded to float32, in the target's cell by the tokenizer's own rule."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.rand(k, 4, generator=g, dtype=torch.float64) * 1.4 - 0.2  # some tokens outside the box
    x = torch.rand(6, 4, generator=g, dtype=torch.float64)
    s = torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=torch.float64) if seed % 2 else torch.ones(4, dtype=torch.float64)
    for j in range(k):
        targets = torch.full((6,), j)
        out = cell_distances(x, tokens, targets, s)
        for i in range(6):
            truth = brute_distance(x[i].numpy(), tokens.numpy(), j, s.numpy())
            assert out.lower[i] <= truth * (1 + 1e-9) + 1e-12, (i, j)
            if math.isfinite(truth):
                assert math.isfinite(out.upper[i]) and out.upper[i] <= truth * (1 + 1e-5) + 2e-6, (i, j, truth)
                point = out.points[i]
                assert ((point >= 0) & (point <= 1)).all()
                scores = ((point.float().double().unsqueeze(0) - tokens) ** 2).sum(dim=1)
                assert int(scores.argmin()) == j and (scores[j] < scores[torch.arange(k) != j]).all()
            else:
                assert out.upper[i] == math.inf


def test_cell_distance_on_ties_and_duplicates() -> None:
    """A patch exactly on a bisector, one 1e-9 from it, and a duplicate token (its cell is the first copy's)."""
    tokens = torch.tensor([[0.2, 0.2], [0.8, 0.8], [0.8, 0.8]], dtype=torch.float64)
    x = torch.tensor([[0.5, 0.5], [0.5 - 1e-9, 0.5], [0.1, 0.1]], dtype=torch.float64)
    out = cell_distances(x, tokens, torch.tensor([1, 1, 2]))
    assert out.upper[0] < 1e-5 and out.upper[1] < 1e-5  # a step across the tie, no more
    assert out.lower[2] == math.inf and out.upper[2] == math.inf  # the duplicate's cell is empty
    for point in out.points[:2]:  # strictly on the target's side after float32 rounding
        scores = ((point.float().double() - tokens[:2]) ** 2).sum(dim=1)
        assert scores[1] < scores[0]
    truth = brute_distance(x[2].numpy(), tokens.numpy(), 1, np.ones(2))
    assert abs(float(cell_distances(x[2:], tokens, torch.tensor([1])).upper[0]) - truth) < 1e-5


@pytest.mark.parametrize(("mode", "units"), [("joint", None), ("per_channel", "scaled"), ("joint", "scaled")])
def test_realised_flips_give_the_intended_tokens_at_their_cost(mode: str, units: str | None) -> None:
    """Every candidate flip, realised as a float32 image, tokenizes to exactly the intended tokens and has
    exactly its cost as norm (joint and per-channel vocabularies, pixel and scaled units)."""
    g = torch.Generator().manual_seed(3)
    c = 3
    d = 4 if mode == "per_channel" else 4 * c
    tokens = torch.rand(6, d, generator=g, dtype=torch.float64)
    vocab = Vocabulary(tokens=tokens, patch_size=2, mode=mode, channels=c, image_size=4, meta={"name": "t"})
    scale = None if units is None else torch.tensor([0.3, 0.25, 0.2], dtype=torch.float64)
    x = torch.rand(3, c, 4, 4, generator=g)
    flips = candidate_flips(x, vocab, scale, max_radius=10.0, per_patch=5)
    for i in range(3):
        for f in torch.nonzero(torch.isfinite(flips.cost[i])).flatten().tolist():
            image = flips.realise(i, torch.tensor([f]), vocab, tuple(x.shape[1:]))
            intended = flips.assignment[i].clone()
            intended[flips.patch[i, f]] = flips.token[i, f]
            assert torch.equal(tokenize(image.unsqueeze(0), vocab)[1][0], intended)
            size = float(norms((image.double() - x[i].double()).unsqueeze(0), scale)[0])
            assert abs(size ** 2 - float(flips.cost[i, f])) <= 1e-6 * (1 + float(flips.cost[i, f]))
            assert float(flips.lower[i, f]) <= float(flips.cost[i, f]) * (1 + 1e-12)


def pair_detector() -> nn.Module:
    """Class 1 only when patches 0 and 1 (2x2, the top row) are both bright: ``z_1 = 10 relu(m_0 + m_1 - 1.5)``
    of the patch means, ``z_0 = 1``; no single flip moves the logits at all."""
    mean = nn.Conv2d(1, 1, 2, stride=2, bias=False)
    both = nn.Linear(4, 1)
    out = nn.Linear(1, 2)
    with torch.no_grad():
        mean.weight.fill_(0.25)
        both.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
        both.bias.fill_(-1.5)
        out.weight.copy_(torch.tensor([[0.0], [10.0]]))
        out.bias.copy_(torch.tensor([1.0, 0.0]))
    return nn.Sequential(Normalize([0.0], [1.0]), mean, nn.Flatten(), both, nn.ReLU(), out).eval()


def pair_problem() -> tuple[DiscreteClassifier, torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[0.0] * 4, [1.0] * 4], dtype=torch.float64)
    vocab = Vocabulary(tokens=tokens, patch_size=2, mode="joint", channels=1, image_size=4, meta={"name": "pair"})
    model = DiscreteClassifier(pair_detector(), vocab).eval()
    return model, torch.full((2, 1, 4, 4), 0.1), torch.zeros(2, dtype=torch.long)


def test_search_finds_what_greedy_single_flips_cannot() -> None:
    """Two flips are needed together; each alone leaves the logits unchanged, so the greedy attack stops
    at its first step while the search finds the pair, realised and verified, at its exact cost."""
    model, x, y = pair_problem()
    _, greedy = tokenflip(model, x, y, max_eps=4.0, max_flips=8, candidates=8)
    assert torch.isinf(greedy).all()
    found = token_search(model, x, y, 4.0, settings=SearchSettings(beam=4, expand=4, per_patch=2))
    assert found.verified and torch.isfinite(found.norm).all()
    assert (model(found.images).argmax(1) != y).all()
    # each patch moves from 0.1 to just past the bisector at 0.5: 4 pixels x 0.4, two patches
    assert torch.allclose(found.norm, torch.full((2,), math.sqrt(2 * 4 * 0.4 ** 2), dtype=torch.float64), rtol=1e-5)
    truth = minimal_flip_radius(model, x, y, max_radius=4.0)
    assert truth.closed.all() and (truth.lower <= found.norm).all()


def test_searches_pass_their_images_in_forward_batches(monkeypatch) -> None:
    """``forward_batches`` covers every row once, in order, sized by device; the search's margins and its result
    are the same with one image per pass as with all of them in one."""
    from tokencert import models
    from tokencert.flipsearch.search import margins

    cpu = torch.device("cpu")
    assert models.forward_batches(130, cpu) == [slice(0, 64), slice(64, 128), slice(128, 192)]
    assert models.forward_batches(0, cpu) == []
    assert models.forward_batches(130, torch.device("meta")) == [slice(0, 1024)]
    model, x, y = pair_problem()
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(70, 1, 4, 4, generator=gen), torch.randint(0, 2, (70,), generator=gen)
    settings = SearchSettings(beam=4, expand=4, per_patch=2)
    whole, found = margins(model.net, images, labels), token_search(model, x, y, 4.0, settings=settings)
    monkeypatch.setitem(models.FORWARD_BATCH, "cpu", 1)
    assert torch.allclose(margins(model.net, images, labels), whole, rtol=1e-6, atol=1e-7)
    assert (whole > 0).any() and (whole < 0).any()
    alone = token_search(model, x, y, 4.0, settings=settings)
    assert torch.equal(alone.images, found.images) and torch.equal(alone.norm, found.norm)


def test_search_judges_each_flip_set_once(monkeypatch) -> None:
    """The eps walk's searches and the refinement meet flip sets again: the network judges each set once per
    search, and the result is what judging every set every time gives."""
    from tokencert.flipsearch.search import Search, margins

    model, images, labels = tiny_case(4, 0, 8, 50)
    seen = []
    model.net.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].shape[0]))
    walk = {"eps_grid": [0.25, 0.5, 0.75, 1.0], "settings": SearchSettings(beam=4, expand=4, per_patch=3, refine=2)}
    once = token_search(model, images, labels, 10.0, **walk)
    judged_once = sum(seen)

    def every_time(self, beam):
        return margins(self.net, self.flips.token_images(beam.assignment, self.vocab, self.shape),
                       self.labels[beam.image])

    monkeypatch.setattr(Search, "_margins", every_time)
    seen.clear()
    again = token_search(model, images, labels, 10.0, **walk)
    assert torch.equal(once.norm, again.norm) and torch.equal(once.images, again.images)
    assert torch.isfinite(once.norm).all()  # the walk found them at several eps (norms 0.42-0.88)
    assert judged_once < sum(seen)


def test_descent_finds_cheaper_sets_and_never_loses_one(monkeypatch) -> None:
    """Descent rounds (an adversarial set within DESCENT of the best, from the root) lower norms a narrow search
    left high, never raise one and never go below the enumerated minimum; every round after the first searches
    only the images the round before improved."""
    from tokencert.flipsearch.search import Search

    model, images, labels = tiny_case(3, 4, 40, 54)
    narrow = {"beam": 1, "expand": 1, "per_patch": 3, "refine": 3}
    plain = token_search(model, images, labels, 10.0, settings=SearchSettings(**narrow, descent=0))
    calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
    run = Search.run

    def spy(self, rows, budget, first):
        calls.append((rows.clone(), budget[rows].clone(), first))
        return run(self, rows, budget, first)

    monkeypatch.setattr(Search, "run", spy)
    deeper = token_search(model, images, labels, 10.0, settings=SearchSettings(**narrow, descent=8))
    assert deeper.verified and (deeper.norm <= plain.norm).all() and (deeper.norm < plain.norm).sum() >= 3
    for i in torch.nonzero(deeper.norm < plain.norm).flatten().tolist():
        assert deeper.norm[i] >= exhaustive_minimum(model, images[i], int(labels[i])) * (1 - 1e-9)
        assert int(model(deeper.images[i:i + 1]).argmax(1)[0]) != int(labels[i])
    # the walk's one search (eps = max_eps), the refine rounds, the descent rounds: within a phase an image is
    # searched again only under a lower budget (an unchanged one finds the same sets)
    refine = [call for call in calls[1:] if not call[2]]
    descent = calls[1 + len(refine):]
    assert len(refine) == 3 and len(descent) >= 2 and all(call[2] for call in descent)
    for phase in (refine, descent):
        for (rows, budget, _), (later, lower, _) in itertools.pairwise(phase):
            before = dict(zip(rows.tolist(), budget.tolist(), strict=True))
            assert all(i in before and b < before[i] for i, b in zip(later.tolist(), lower.tolist(), strict=True))
    assert len(descent[-1][0]) < len(descent[0][0])


def exhaustive_minimum(model: DiscreteClassifier, image: torch.Tensor, label: int) -> float:
    """The smallest adversarial norm by enumerating every token assignment with brute-force exact costs."""
    vocab = model.vocab
    patches = patchify(image.unsqueeze(0).double(), 2, "joint")[0].numpy()
    tokens = vocab.tokens.numpy()
    cost = np.array([[brute_distance(p, tokens, j, np.ones(4)) ** 2 for j in range(len(tokens))] for p in patches])
    combos = list(itertools.product(range(len(tokens)), repeat=len(patches)))
    batch = unpatchify(torch.stack([vocab.tokens[list(c)] for c in combos]), 2, "joint", 1, 4).float()
    with torch.no_grad():
        wrong = (model.net(batch).argmax(1) != label).numpy()
    totals = [sum(cost[p, j] for p, j in enumerate(c)) for c in combos]
    return math.sqrt(min((t for t, w in zip(totals, wrong, strict=True) if w), default=math.inf))


CASES = [(k, seed) for k in (2, 3, 4) for seed in range(4)]


@pytest.mark.parametrize(("k", "seed"), CASES)
def test_verifier_against_exhaustive_enumeration(k: int, seed: int) -> None:
    """On 4x4 images with 2x2 patches, K = 2-4 and a conv / max-pool / ReLU network: the verifier's interval
    contains the enumerated minimum and is closed; its adversarial images fool the model at their norm;
    the search never reports a norm below the verifier's lower bound."""
    model, images, labels = tiny_case(k, seed, 4, 50 + seed)
    out = minimal_flip_radius(model, images, labels, max_radius=10.0,
                              settings=VerifierSettings(nodes=2000, decisions=8))
    search = token_search(model, images, labels, 10.0)
    for i in range(4):
        truth = exhaustive_minimum(model, images[i], int(labels[i]))
        assert out.lower[i] <= truth * (1 + 1e-6) + 1e-9, (i, truth)
        assert out.upper[i] >= truth * (1 - 1e-6) - 1e-9, (i, truth)
        assert search.norm[i] >= out.lower[i] * (1 - 1e-9)
        if math.isfinite(truth):
            assert out.closed[i], (i, float(out.lower[i]), truth, float(out.upper[i]))
            adv = out.adversarial[i:i + 1]
            assert int(model(adv).argmax(1)[0]) != int(labels[i])
            size = float(norms(adv.double() - images[i:i + 1].double())[0])
            assert abs(size - float(out.upper[i])) <= 1e-6


@pytest.mark.parametrize("limit", [0, 512])
def test_flip_set_radius_in_the_box_is_below_the_enumerated_minimum(limit: int) -> None:
    """The flip-set certificate on the candidate flips' cell-within-box costs (the verifier's start) never
    exceeds the enumerated minimum with those costs, by its bounds alone (limit 0) and with enumeration, on
    every tiny case; and it certifies more than on the bisector radii on some images."""
    larger = 0
    for k, seed in CASES:
        model, images, labels = tiny_case(k, seed, 4, 50 + seed)
        flips = candidate_flips(images, model.vocab, None, max_radius=10.0, per_patch=k)
        box = certified_radius(model, images, labels, radii=flips.cost_radii(), enumeration_limit=limit)
        plain = certified_radius(model, images, labels, enumeration_limit=limit)
        for i in range(4):
            truth = exhaustive_minimum(model, images[i], int(labels[i]))
            assert box[i] <= truth * (1 + 1e-9) + 1e-12, (k, seed, i, float(box[i]), truth)
        larger += int((box > plain * (1 + 1e-6)).sum())
    assert larger > 0


def test_flip_set_radius_refuses_costs_below_the_bisector_radii() -> None:
    model, images, labels = tiny_case(3, 0, 2, 50)
    radii = candidate_flips(images, model.vocab, None, max_radius=10.0, per_patch=3).cost_radii()
    with pytest.raises(ValueError, match="at least the bisector radii"):
        certified_radius(model, images, labels, radii=radii * 0.5)


def test_verifier_cases_are_not_vacuous() -> None:
    """The enumerated minima above are finite for most images and differ between images."""
    seen = set()
    for k, seed in CASES[::3]:
        model, images, labels = tiny_case(k, seed, 4, 50 + seed)
        seen |= {round(exhaustive_minimum(model, images[i], int(labels[i])), 6) for i in range(4)}
    assert len({v for v in seen if math.isfinite(v)}) >= 4


def test_tokensearch_in_the_suite_counts_only_verified_examples() -> None:
    model, x, y = pair_problem()
    outcome = run_attack("tokensearch", model, x, y, [0.5, 2.0], {"tokensearch": {"beam": 4, "per_patch": 2}}, seed=0)
    assert outcome.checks["tokens_verified"] and outcome.checks["in_box"]
    assert outcome.robust_accuracy() == [1.0, 0.0]  # the pair costs 1.13


def test_worst_case_counts_smaller_examples_of_any_attack_at_every_eps() -> None:
    """An image an attack broke at norm 0.3 (a minimum-norm attack, or a run at another eps) is not robust at
    0.5 even where the run at 0.5 left it correct."""
    eps = [0.5, 1.0]
    f64 = torch.float64
    a = AttackOutcome(eps, torch.tensor([[True, True], [True, True]]), torch.tensor([0.3, math.inf], dtype=f64))
    b = AttackOutcome(eps, torch.tensor([[True, True], [False, True]]), torch.tensor([0.9, math.inf], dtype=f64))
    worst = worst_case({"a": a, "b": b})
    assert worst.correct.tolist() == [[False, True], [False, True]]
    assert worst.min_norm.tolist() == [0.3, math.inf]
