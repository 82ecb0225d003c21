"""Architectures, the discrete classifier and classifier files (tokencert.models)."""

from __future__ import annotations

import pytest
import torch

from tokencert.io import load_torch, save_torch
from tokencert.models import (
    DiscreteClassifier,
    Normalize,
    build_model,
    channels_last,
    load_classifier,
    logit_margin,
    model_meta,
    save_classifier,
)
from tokencert.vocab import Vocabulary, tokenize

MEAN, STD = [0.13], [0.31]


def meta_for(arch="cnn", channels=1, size=28, **kw):
    args = dict(arch=arch, channels=channels, num_classes=10, image_size=size, mean=[0.5] * channels,
                std=[0.25] * channels, dataset="toy", kind="baseline")
    return model_meta(**{**args, **kw})


@pytest.mark.parametrize("arch, channels, size", [("cnn", 1, 28), ("cnn", 3, 32), ("resnet9", 3, 32),
                                                  ("resnet18", 3, 32), ("resnet9", 1, 28)])
def test_architectures_classify_images(arch, channels, size):
    net = build_model(arch, channels, 10, [0.5] * channels, [0.25] * channels).eval()
    with torch.no_grad():
        out = net(torch.rand(2, channels, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_normalization_is_the_first_layer():
    net = build_model("cnn", 1, 10, MEAN, STD).eval()
    assert isinstance(net[0], Normalize)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(x), net[1]((x - MEAN[0]) / STD[0]), atol=1e-6)


@pytest.mark.parametrize(
    "args, match",
    [
        (("vgg", 1, 10, MEAN, STD), "unknown architecture"),
        (("cnn", 3, 10, MEAN, STD), "mean/std"),
        (("cnn", 1, 1, MEAN, STD), "num_classes"),
        (("cnn", 1, 10, MEAN, [0.0]), "std > 0"),
    ],
)
def test_build_model_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        build_model(*args)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = build_model("cnn", 1, 10, [0.5], [0.25]).eval()
    meta = meta_for(test_accuracy=0.5)
    save_classifier(tmp_path / "model.pt", net, meta)
    loaded, loaded_meta = load_classifier(tmp_path / "model.pt", dataset="toy")
    assert loaded_meta == meta and not loaded.training
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)  # loaded in channels-last: other float sums
        assert torch.equal(loaded(x), channels_last(net)(x))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    stored = load_torch(tmp_path / "model.pt")
    assert all(isinstance(v, torch.Tensor) for v in stored["state_dict"].values())


def test_load_refuses_another_architecture_or_dataset(tmp_path):
    net = build_model("cnn", 1, 10, [0.5], [0.25])
    save_classifier(tmp_path / "model.pt", net, meta_for(test_accuracy=None))
    with pytest.raises(ValueError, match="dataset 'toy', not 'mnist'"):
        load_classifier(tmp_path / "model.pt", dataset="mnist")
    save_classifier(tmp_path / "lying.pt", net, meta_for(arch="resnet9", test_accuracy=None))
    with pytest.raises(ValueError, match="do not fit architecture 'resnet9'"):
        load_classifier(tmp_path / "lying.pt")


def test_load_refuses_pickled_objects_and_foreign_files(tmp_path):
    torch.save(build_model("cnn", 1, 10, [0.5], [0.25]), tmp_path / "module.pt")
    with pytest.raises(ValueError, match="cannot load tensors safely"):
        load_classifier(tmp_path / "module.pt")
    save_torch(tmp_path / "other.pt", {"weights": torch.zeros(3)})
    with pytest.raises(ValueError, match="not a classifier file"):
        load_classifier(tmp_path / "other.pt")


def test_save_requires_complete_meta(tmp_path):
    with pytest.raises(ValueError, match="lacks test_accuracy"):
        save_classifier(tmp_path / "m.pt", build_model("cnn", 1, 10, [0.5], [0.25]),
                        {k: v for k, v in meta_for().items() if k != "test_accuracy"})


@pytest.mark.parametrize(
    "kw, match",
    [({"kind": "other"}, "kind"), ({"kind": "noise"}, "sigma"), ({"sigma": 0.5}, "sigma"),
     ({"kind": "discrete"}, "vocabulary")],
)
def test_meta_is_consistent_with_kind(kw, match):
    with pytest.raises(ValueError, match=match):
        meta_for(**kw)


def toy_vocab(k: int = 8, seed: int = 0, name: str = "toy") -> Vocabulary:
    g = torch.Generator().manual_seed(seed)
    return Vocabulary(tokens=torch.rand(k, 16, generator=g, dtype=torch.float64), patch_size=4, mode="joint",
                      channels=1, image_size=28, meta={"name": name})


def test_discrete_classifier_classifies_the_tokenized_image_without_gradient_through_q():
    vocab = toy_vocab()
    net = build_model("cnn", 1, 10, [0.5], [0.25]).eval()
    model = DiscreteClassifier(net, vocab)
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    out = model(x)
    assert torch.equal(out, net(tokenize(x.detach(), vocab)[0]))
    assert torch.autograd.grad(out.sum(), x, allow_unused=True)[0] is None
    assert list(model.state_dict()) == ["net." + k for k in net.state_dict()]


def test_discrete_checkpoint_records_and_enforces_its_vocabulary(tmp_path):
    vocab, other = toy_vocab(seed=0), toy_vocab(seed=1)
    net = build_model("cnn", 1, 10, [0.5], [0.25]).eval()
    meta = meta_for(kind="discrete", vocab=vocab, test_accuracy=0.9)
    assert meta["vocabulary"] == {"name": "toy", "sha256": vocab.sha256()}
    save_classifier(tmp_path / "model.pt", DiscreteClassifier(net, vocab), meta)
    with pytest.raises(ValueError, match="needs vocabulary 'toy'"):
        load_classifier(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="trained with vocabulary 'toy'"):
        load_classifier(tmp_path / "model.pt", other)
    model, _ = load_classifier(tmp_path / "model.pt", vocab)
    assert isinstance(model, DiscreteClassifier) and not model.training and model.vocab is vocab
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), channels_last(net)(tokenize(x, vocab)[0]))


def test_logit_margin_is_the_own_logit_minus_the_best_other():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, 2.0], [1.0, 1.0, -4.0]], dtype=torch.float64)
    margin = logit_margin(logits, torch.tensor([0, 1, 2]))
    assert margin.dtype == torch.float64
    assert margin.tolist() == [0.5, 0.0, -5.0]  # correct, a tie (not certified), misclassified
