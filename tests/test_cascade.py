"""The attack cascade (``attacks.cascade``): same per-image worst case as the independent suite, fewer
evaluations, each attack alone on the check images, and the per-image gradient-masking check."""

from __future__ import annotations

import pytest
import torch

from tests.attack_fixtures import trained_models
from tokencert.attacks import AttackOutcome, run_attack, worst_case
from tokencert.attacks.cascade import alone_outcomes, cascaded, masking_warnings, prior_outcome
from tokencert.config import resolve_plan
from tokencert.evaluation import counted
from tokencert.outcomes import write_outcome
from tokencert.study import cascade_order

PARAMS = {"pgd": {"steps": 20, "restarts": 1, "step_size": 2.5}, "apgd": {"steps": 20}, "fab": {"steps": 10},
          "tokenflip": {"max_flips": 24, "candidates": 28}}
EPS = [2.0, 2.5, 3.0, 4.0]
CHAIN = ["tokenflip", "fab", "apgd-ce"]  # random starts seeded per image or none: batch-independent results


@pytest.fixture(scope="module")
def models():
    return trained_models()


def test_cascade_gives_the_independent_suites_worst_case_with_fewer_evaluations(models):
    """Each attack's result on an image does not depend on its batch, so attacking only what the earlier
    attacks left standing changes no per-image verdict: the cascade's last (cumulative) outcome is the
    independent suite's per-image worst case, eps by eps, for fewer evaluations."""
    _, discrete, x, y = models
    with counted(discrete) as alone_work:
        independent = {a: run_attack(a, discrete, x, y, EPS, PARAMS, seed=0) for a in CHAIN}
    prior = None
    with counted(discrete) as cascade_work:
        for a in CHAIN:
            prior = run_attack(a, discrete, x, y, EPS, PARAMS, seed=0, prior=prior)
    worst = worst_case(independent)
    assert 0 < worst.correct.sum() < worst.correct.numel()  # both verdicts occur
    assert torch.equal(prior.correct, worst.correct)
    assert ((prior.min_norm <= torch.tensor(EPS).max()) == (worst.min_norm <= max(EPS))).all()
    spent, alone = cascade_work.forward + cascade_work.backward, alone_work.forward + alone_work.backward
    assert spent < 0.85 * alone  # measured: 0.77 (the walk skips what the token flips broke at 3 and 4)


def test_a_cascaded_attack_never_attacks_what_the_prior_decided(models):
    """Images the prior broke at every eps are not evaluated at all; at an eps where the prior broke an
    image, the outcome keeps it broken (cumulative), whatever the attack finds."""
    _, discrete, x, y = models
    n = x.shape[0]
    broken = torch.zeros((len(EPS), n), dtype=torch.bool)
    broken[:, : n // 2] = True  # the first half decided everywhere
    broken[2:, n // 2:] = True  # the rest decided at the two largest eps
    prior = AttackOutcome(EPS, ~broken, torch.where(broken.all(0), 0.3, 2.8).to(torch.float64))
    seen = []
    handle = discrete.net.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        out = run_attack("apgd-ce", discrete, x, y, EPS, PARAMS, seed=0, prior=prior)
    finally:
        handle.remove()
    assert not out.correct[broken].any()
    assert seen[0] == n and len(seen) > 1 and max(seen[1:]) <= n - n // 2  # the clean pass, then the second half
    with pytest.raises(ValueError, match="not this attack's"):
        run_attack("apgd-ce", discrete, x, y, EPS[:2], PARAMS, seed=0, prior=prior)


def test_cascaded_records_alone_runs_and_what_each_attack_newly_broke(models):
    _, discrete, x, y = models
    clean = discrete(x).argmax(1) == y

    def run(rows=slice(None), prior=None):
        return run_attack(chain_attack, discrete, x[rows], y[rows], EPS, PARAMS, 0, None, None, None, prior)

    chain_attack = "tokenflip"
    first, extra = cascaded(run, None, None, clean, check_images=12)
    assert extra["cascade"] == {"after": None, "broken": (clean & ~first.correct).sum(1).tolist()}
    assert extra["alone"]["correct"] == first.correct[:, :12].to(torch.int64).tolist()  # the first ran alone
    chain_attack = "apgd-ce"
    second, extra = cascaded(run, first, "tokenflip", clean, check_images=12)
    assert extra["cascade"]["broken"] == (first.correct & ~second.correct).sum(1).tolist()
    own = run_attack("apgd-ce", discrete, x[:12], y[:12], EPS, PARAMS, seed=0)
    assert extra["alone"] == {"n_images": 12, "robust_accuracy": own.robust_accuracy(),
                              "correct": own.correct.to(torch.int64).tolist()}
    _, none = cascaded(run, first, "tokenflip", clean, check_images=0)
    assert none["alone"] == {"n_images": 0, "robust_accuracy": None, "correct": [[] for _ in EPS]}
    summary = {"eps": EPS, "alone": none["alone"], "sanity": {"in_box": True}}
    assert alone_outcomes({"apgd-ce": summary})["apgd-ce"].correct.shape == (len(EPS), 0)


def test_prior_is_read_from_the_previous_attacks_csv_for_the_same_images(tmp_path):
    outcome = AttackOutcome([1.0], torch.tensor([[True, False]]), torch.tensor([torch.inf, 0.5], dtype=torch.float64))
    write_outcome(tmp_path / "a.csv", tmp_path / "a.json", outcome, torch.tensor([4, 7]), torch.tensor([0, 1]), {})
    read = prior_outcome(tmp_path / "a.csv", torch.tensor([4, 7]))
    assert torch.equal(read.correct, outcome.correct) and torch.equal(read.min_norm, outcome.min_norm)
    with pytest.raises(ValueError, match="other test images"):
        prior_outcome(tmp_path / "a.csv", torch.tensor([4, 8]))


def test_masking_warning_when_a_black_box_attack_breaks_what_every_white_box_one_left():
    def summary(name, broken, after="fab"):
        return {"attack": name, "eps": [1.0, 2.0], "n_images": 100, "cascade": {"after": after, "broken": broken}}

    quiet = {"fab": summary("fab", [40, 9], after=None), "square": summary("square", [3, 0])}
    assert masking_warnings(quiet) == []  # 3 % is the slack; white-box finds are no warning
    loud = masking_warnings({"square": summary("square", [0, 4])})
    assert len(loud) == 1 and "square broke 4 of 100 images at eps 2" in loud[0]


def test_cascade_order_runs_black_box_attacks_last_and_the_plan_chains_them():
    assert cascade_order(["square", "pgd", "transfer", "fab"]) == ["pgd", "fab", "square", "transfer"]
    from tokencert.config import load_params

    config = load_params("params.yaml")
    plain = resolve_plan(config)  # params.yaml runs each attack alone
    assert plain.cascade_of("baseline") is None and plain.attacked_before("baseline", "square") is None
    config["attacks"]["cascade"] = True
    plan = resolve_plan(config)
    order = plan.cascade_of("baseline")
    assert order == ["pgd", "apgd-ce", "apgd-dlr", "fab", "square"]
    assert [plan.attacked_before("baseline", a) for a in order] == [None, *order[:-1]]
    assert plan.cascade_of("discrete-gauss")[-2:] == ["transfer", "square"]
