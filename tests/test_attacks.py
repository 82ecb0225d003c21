"""Attacks: budgets respected, undefended models broken, masking exposed, flips verified."""

from __future__ import annotations

import pytest
import torch

from tests.attack_fixtures import trained_models, vocabulary
from tokencert.attacks import check_attack_params, clean_accuracy, norms, pgd, project, run_attack, worst_case
from tokencert.attacks.apgd import apgd
from tokencert.attacks.base import image_noise, image_seed
from tokencert.attacks.fab import fab
from tokencert.attacks.pgd import random_start
from tokencert.attacks.square import square
from tokencert.attacks.suite import sanity_warnings
from tokencert.attacks.tokenflip import tokenflip
from tokencert.models import DiscreteClassifier, StraightThrough
from tokencert.vocab import Vocabulary

PARAMS = {"pgd": {"steps": 20, "restarts": 1, "step_size": 2.5}, "apgd": {"steps": 20}, "sspgd": {"taus": [0.05]},
          "square": {"queries": 200, "p_init": 0.8}, "tokenflip": {"max_flips": 24, "candidates": 28}}


@pytest.fixture(scope="module")
def models():
    return trained_models()


def test_fixture_models_are_accurate(models):
    baseline, discrete, x, y = models
    assert clean_accuracy(baseline, x, y) > 0.95 and clean_accuracy(discrete, x, y) > 0.95


def test_projection_respects_ball_and_box():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(10, 3, 4, 4, generator=gen)
    x = x0 + torch.randn(10, 3, 4, 4, generator=gen)
    scale = torch.tensor([0.2, 0.5, 1.0])
    for s in (None, scale):
        out = project(x0, x, 0.3, s)
        assert (norms(out - x0, s) <= 0.3 + 1e-6).all() and out.min() >= 0 and out.max() <= 1


def test_pgd_breaks_undefended_model_and_stays_in_budget(models):
    baseline, _, x, y = models
    adv = pgd(baseline, x, y, eps=4.0, steps=20, step_size=2.5, restarts=1, seed=0)
    assert (norms(adv - x) <= 4.0 + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    assert clean_accuracy(baseline, adv, y) <= 0.05
    small = pgd(baseline, x, y, eps=0.05, steps=10, step_size=2.5, restarts=1, seed=0)
    assert clean_accuracy(baseline, small, y) > 0.5  # a tiny budget cannot break it


def float64_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """An untrained 4-class float64 MLP, 12 random 8x8 images and its own predictions as labels: batched
    and smaller passes agree to rounding, so per-image results can be compared across batches."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 4)).double().eval()
    x = torch.rand(12, 1, 8, 8, dtype=torch.float64)
    return net, x, net(x).argmax(1).detach()


def test_pgd_result_of_an_image_does_not_depend_on_its_batch():
    """Random starts seeded per image (seed, key, restart): the same images in another batch, in another
    order, get the same adversarial images (float64: batched and smaller passes agree to rounding); another
    seed or restart, another start."""
    net, x, y = float64_problem()
    keys = torch.arange(50, 62)
    full = pgd(net, x, y, eps=2.0, steps=10, step_size=2.5, restarts=2, seed=1, keys=keys)
    assert 0 < (net(full).argmax(1) != y).sum() < 12
    part = torch.tensor([9, 0, 4])
    assert torch.allclose(pgd(net, x[part], y[part], 2.0, 10, 2.5, 2, 1, keys=keys[part]), full[part], atol=1e-9)
    starts = [random_start(x, 1.0, None, s, keys, r) for s, r in ((1, 0), (1, 0), (2, 0), (1, 1))]
    assert torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], starts[2])
    assert not torch.equal(starts[0], starts[3])
    assert (norms(starts[0] - x) <= 1.0 + 1e-9).all()


def test_pgd_on_discrete_model_is_masked_but_bpda_and_sspgd_are_not(models):
    _, discrete, x, y = models
    eps = [4.0]
    plain = run_attack("pgd", discrete, x, y, eps, PARAMS, seed=0).robust_accuracy()[0]
    bpda = run_attack("bpda", discrete, x, y, eps, PARAMS, seed=0).robust_accuracy()[0]
    sspgd = run_attack("sspgd", discrete, x, y, eps, PARAMS, seed=0).robust_accuracy()[0]
    assert plain > 0.9  # no gradient: PGD only tries its random start
    assert bpda < 0.1 and sspgd < 0.1


def test_apgd_ce_breaks_undefended_and_token_models_through_the_surrogate(models):
    baseline, discrete, x, y = models
    adv = apgd(baseline, x, y, eps=4.0, loss="ce", steps=20, restarts=1, seed=0)
    assert (norms(adv - x) <= 4.0 + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    assert clean_accuracy(baseline, adv, y) <= 0.05
    assert clean_accuracy(baseline, apgd(baseline, x, y, 0.05, "ce", 10, 1, 0), y) > 0.5
    # on the token classifier the suite differentiates the straight-through surrogate
    outcome = run_attack("apgd-ce", discrete, x, y, [4.0], PARAMS, seed=0)
    assert outcome.robust_accuracy()[0] < 0.1 and all(outcome.checks.values())
    # torchattacks restores the mode it found: the classifier must still be in eval mode (batch norm)
    assert not any(m.training for m in discrete.modules()) and not StraightThrough(discrete, None).training


def test_fab_finds_smaller_examples_than_the_grid_and_breaks_both_models(models):
    """FAB is a minimum-norm attack: on the undefended model it breaks what PGD breaks at eps 4, with
    smaller examples than PGD's at that eps (the bracket's upper bound below the grid), and reaches the token
    classifier through the straight-through surrogate; its examples stay in the box and the budget."""
    baseline, discrete, x, y = models
    params = {**PARAMS, "fab": {"steps": 20}}
    plain = run_attack("fab", baseline, x, y, [4.0], params, seed=0)
    assert plain.robust_accuracy()[0] <= 0.05 and all(plain.checks.values())
    grid = run_attack("pgd", baseline, x, y, [4.0], params, seed=0)  # its examples sit near the grid's eps
    assert float(plain.min_norm.median()) < 0.9 * float(grid.min_norm.median())
    # through the straight-through surrogate it breaks the token classifier too, if less reliably than
    # BPDA-PGD (measured: 41 % left against < 10 %): one attack of the suite, not the suite
    assert run_attack("fab", discrete, x, y, [4.0], params, seed=0).robust_accuracy()[0] < 0.75
    adv = fab(baseline, x, y, 4.0, 20, 1, 0)
    assert adv.min() >= 0 and adv.max() <= 1 and (norms(adv - x) <= 4.0 + 1e-5).all()


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_equals_torchattacks_run_on_each_image_alone_with_its_seed(loss):
    """Random starts are seeded per image: each image's result is torchattacks' APGD on that image alone,
    seeded with ``image_seed(seed, key)``, and does not depend on which images share its batch (the eps
    walk and the cascade attack subsets). float64, so batched and single-image passes agree to rounding."""
    import torchattacks

    net, x, y = float64_problem()
    keys = torch.arange(100, 112)
    batch = apgd(net, x, y, eps=2.0, loss=loss, steps=10, restarts=1, seed=3, keys=keys)
    fooled = (net(batch).argmax(1) != y).sum()
    assert 0 < fooled < 12  # some images broken, some not: both outcomes are compared
    for i in range(12):
        alone = torchattacks.APGD(net, norm="L2", eps=2.0, steps=10, n_restarts=1, seed=image_seed(3, 100 + i),
                                  loss=loss, rho=0.75)(x[i:i + 1], y[i:i + 1])
        assert torch.allclose(batch[i:i + 1], alone.clamp(0, 1), atol=1e-9), i
    part = torch.tensor([7, 2, 9])  # another batch, another order: the same images' results
    assert torch.allclose(apgd(net, x[part], y[part], 2.0, loss, 10, 1, 3, keys=keys[part]), batch[part], atol=1e-9)
    # a second restart attacks only what the first left standing, from fresh per-image starts
    two = apgd(net, x, y, eps=2.0, loss=loss, steps=10, restarts=2, seed=3, keys=keys)
    assert (net(two).argmax(1) != y).sum() >= fooled
    assert torch.equal(two[net(batch).argmax(1) != y], batch[net(batch).argmax(1) != y])


def test_image_noise_rows_are_each_images_own_stream():
    keys = torch.tensor([5, 9])
    rows = image_noise((2, 1, 3, 3), seed=1, keys=keys)
    torch.manual_seed(image_seed(1, 9))
    assert torch.equal(rows[1:], torch.randn((1, 1, 3, 3)))
    assert not torch.equal(rows, image_noise((2, 1, 3, 3), seed=1, keys=keys, restart=1))
    assert image_seed(0, 1) != image_seed(1, 0)


def test_apgd_dlr_on_three_classes_and_refused_on_two(models):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    x = torch.rand(30, 1, 8, 8)
    y = net(x).argmax(1).detach()
    adv = apgd(net, x, y, eps=2.0, loss="dlr", steps=20, restarts=1, seed=0)
    assert (norms(adv - x) <= 2.0 + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    assert clean_accuracy(net, adv, y) < 1.0
    baseline, _, x2, y2 = models
    with pytest.raises(ValueError, match="at least 3 classes"):
        apgd(baseline, x2, y2, eps=1.0, loss="dlr", steps=5, restarts=1, seed=0)
    with pytest.raises(ValueError, match="loss must be one of"):
        apgd(baseline, x2, y2, eps=1.0, loss="margin", steps=5, restarts=1, seed=0)


def test_tokenflip_examples_really_fool_the_hard_model(models):
    _, discrete, x, y = models
    x, y = x[:12], y[:12]
    adv, found = tokenflip(discrete, x, y, max_eps=8.0, max_flips=24, candidates=28)
    fooled = torch.isfinite(found)
    assert fooled.sum() >= 6
    assert (discrete(adv[fooled]).argmax(1) != y[fooled]).all()
    assert torch.allclose(norms(adv[fooled] - x[fooled]).double(), found[fooled], rtol=1e-4, atol=1e-5)
    outcome = run_attack("tokenflip", discrete, x, y, [0.5, 2.0, 8.0],
                         {"tokenflip": {"max_flips": 24, "candidates": 28}}, seed=0)
    assert outcome.robust_accuracy() == sorted(outcome.robust_accuracy(), reverse=True)
    assert outcome.robust_accuracy()[-1] <= 1 - fooled.double().mean() + 1e-12


def test_tokenflip_skips_duplicate_tokens():
    """A vocabulary holding copies of a token (learned ones do) gives no NaN image and still finds flips."""
    base = vocabulary()
    doubled = Vocabulary(torch.cat([base.tokens, base.tokens[:3]]), 4, "joint", 1, 8, {"name": "doubled"})
    baseline, discrete, x, y = trained_models()
    model = DiscreteClassifier(discrete.net, doubled).eval()
    x, y = x[:12], y[:12]
    adv, found = tokenflip(model, x, y, max_eps=8.0, max_flips=24, candidates=28)
    assert torch.isfinite(adv).all() and torch.isfinite(found).sum() >= 6


def rgb_token_classifier(mode: str) -> tuple[DiscreteClassifier, torch.Tensor, torch.Tensor]:
    """A random 3-channel token classifier (8x8 images, 4x4 patches) and images it labels itself."""
    gen = torch.Generator().manual_seed(3)
    shape = (3, 6, 16) if mode == "per_channel_separate" else ((6, 48) if mode == "joint" else (6, 16))
    vocab = Vocabulary(torch.rand(*shape, generator=gen, dtype=torch.float64), 4, mode, 3, 8, {"name": "rgb"})
    torch.manual_seed(3)
    model = DiscreteClassifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4)), vocab).eval()
    x = torch.rand(24, 3, 8, 8, generator=gen)
    return model, x, model(x).argmax(1)


@pytest.mark.parametrize("mode", ["joint", "per_channel", "per_channel_separate"])
def test_tokenflip_images_step_as_they_would_alone(mode, monkeypatch):
    """All images of a chunk step together: each one's flips, norm and image are those it finds alone (chunks of
    one image), in every vocabulary mode and in normalized units."""
    import tokencert.attacks.tokenflip as module
    model, x, y = rgb_token_classifier(mode)
    scale = torch.tensor([0.2, 0.25, 0.3])
    together = tokenflip(model, x, y, max_eps=6.0, max_flips=12, candidates=16, scale=scale)
    monkeypatch.setattr(module, "ELEMENTS", 1)
    alone = tokenflip(model, x, y, max_eps=6.0, max_flips=12, candidates=16, scale=scale)
    assert torch.equal(together[0], alone[0])  # the norms to float64 rounding (summed in batches of other sizes)
    assert torch.allclose(together[1], alone[1], rtol=1e-12, atol=0.0)
    fooled = torch.isfinite(together[1])
    assert fooled.sum() >= 6 and (model(together[0][fooled]).argmax(1) != y[fooled]).all()
    assert torch.allclose(norms(together[0][fooled] - x[fooled], scale).double(), together[1][fooled], rtol=1e-4)


def test_transfer_and_square_and_worst_case(models):
    baseline, discrete, x, y = models
    eps = [0.0, 2.0]
    transfer = run_attack("transfer", discrete, x, y, eps, PARAMS, seed=0, baseline=baseline)
    square = run_attack("square", discrete, x[:40], y[:40], eps, PARAMS, seed=0)
    assert transfer.robust_accuracy()[0] == pytest.approx(clean_accuracy(discrete, x, y))
    assert square.checks["eps_ball_respected"] and square.checks["in_box"]
    both = worst_case({"a": transfer, "b": run_attack("bpda", discrete, x, y, eps, PARAMS, seed=0)})
    assert all(w <= min(a, b) + 1e-12 for w, a, b in zip(both.robust_accuracy(), transfer.robust_accuracy(),
                                                          run_attack("bpda", discrete, x, y, eps, PARAMS,
                                                                     seed=0).robust_accuracy()))


def test_sanity_warnings_flag_weak_attacks(models):
    baseline, _, x, y = models
    weak = run_attack("pgd", baseline, x, y, [4.0], {"pgd": {"steps": 1, "step_size": 0.01}}, seed=0)
    warnings = sanity_warnings("baseline", False, (1, 28), {"pgd": weak})
    assert any("step_budget_ok" in w for w in warnings)
    assert any("undefended baseline keeps" in w for w in warnings)
    assert not any("undefended" in w for w in sanity_warnings("baseline", False, (1, 28), {"pgd": weak}, "normalized"))


def test_bad_attack_parameters():
    with pytest.raises(ValueError, match="eps must be >= 0"):
        check_attack_params(eps=-0.1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        check_attack_params(steps=0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        check_attack_params(tau=0.0)
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        check_attack_params(name="cw")


def test_square_accepts_channels_last_rgb_images_and_a_budget_per_row():
    """Images stored channels-last work; every row stays within its own eps and in the box."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3)).eval()
    x = torch.rand(4, 8, 8, 3, generator=torch.Generator().manual_seed(0)).permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    eps = torch.tensor([0.0, 0.25, 0.5, 3.0])
    adv = square(net, x, net(x).argmax(1), eps, queries=10, p_init=0.8, seed=0)
    assert adv.shape == x.shape and (norms(adv - x) <= eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(adv[0], x[0])


class Band(torch.nn.Module):
    """Two classes; class 1 exactly when the image is between ``low`` and ``high`` away from ``center``."""

    def __init__(self, center: torch.Tensor, low: float, high: float):
        super().__init__()
        self.center, self.low, self.high = center, low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = (x - self.center).flatten(1).norm(dim=1)
        fooled = ((distance >= self.low) & (distance <= self.high)).float()
        return torch.stack([1 - 2 * fooled, torch.zeros_like(distance)], 1)


def test_square_row_stops_when_its_image_falls_at_a_smaller_eps():
    """The same image at eps 0.5 and 1.0: Square's first step (the full budget) fools the model at 0.5, not
    at 1.0; grouped, the 1.0 row is decided by the 0.5 one and costs no query; apart, it spends them all."""
    x = torch.full((2, 1, 28, 28), 0.5)
    y = torch.zeros(2, dtype=torch.long)
    model, calls = Band(x[:1], 0.4, 0.6), []
    model.register_forward_hook(lambda module, inputs, output: calls.append(output.shape[0]))
    eps = torch.tensor([0.5, 1.0])
    adv = square(model, x, y, eps, queries=30, p_init=0.8, seed=0, groups=torch.tensor([0, 0]))
    assert sum(calls) == 2 and model(adv).argmax(1).tolist() == [1, 0]
    calls.clear()
    square(model, x, y, eps, queries=30, p_init=0.8, seed=0)
    assert sum(calls) == 2 + 30


def test_square_is_as_strong_as_torchattacks_square(models):
    """The batched Square breaks the undefended baseline as often as torchattacks' Square (the reference it
    follows) at every eps of the walk, within 3 of 60 images, with one batch for all eps."""
    import torchattacks

    baseline, _, x, y = models
    x, y, eps = x[:60], y[:60], [3.0, 4.0]
    ours = run_attack("square", baseline, x, y, eps, PARAMS, seed=0)
    assert ours.checks["eps_ball_respected"] and ours.checks["in_box"] and (~ours.correct[-1]).sum() >= 5
    for i, e in enumerate(eps):
        reference = torchattacks.Square(baseline, norm="L2", eps=e, n_queries=200, p_init=0.8, loss="margin",
                                        resc_schedule=True, seed=0)(x, y)
        assert (norms(reference - x) <= e + 1e-5).all()
        broken = int((baseline(reference).argmax(1) != y).sum())
        assert int((~ours.correct[i]).sum()) >= broken - 3, (e, broken)


def test_straight_through_forward_is_exactly_the_hard_model(models):
    _, discrete, x, _ = models
    for tau in (None, 0.05):
        assert torch.equal(StraightThrough(discrete, tau)(x + 0.01), discrete(x + 0.01))


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce", "fab", "bpda", "sspgd", "transfer"])
def test_grid_outcomes_are_nested_and_witnessed(models, attack):
    """Robust accuracy never rises with eps (an unsorted grid included), clean mistakes are
    broken at eps 0, and every eps where a sample fell has a verified example within it."""
    baseline, discrete, x, y = models
    x = x.clone()
    x[:5] = 1.0 - x[:5]  # mirrored images: some become clean mistakes
    grid = [2.0, 0.0, 0.5, 1.0, 4.0]
    outcome = run_attack(attack, discrete, x, y, grid, {**PARAMS, "sspgd": {"taus": [0.05, 1.0]}}, seed=0,
                         baseline=baseline)
    order = sorted(range(len(grid)), key=lambda i: grid[i])
    acc = [outcome.robust_accuracy()[i] for i in order]
    assert acc == sorted(acc, reverse=True) and acc[0] == pytest.approx(clean_accuracy(discrete, x, y))
    for i, eps in enumerate(grid):
        fell = ~outcome.correct[i]
        assert (outcome.min_norm[fell] <= eps * (1 + 1e-5) + 1e-6).all()
        assert (outcome.min_norm[~fell] > eps).all()
    assert all(outcome.checks.values())
