"""Certified-accuracy summaries (tokencert.certacc)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokencert.certacc import certacc_r0, curve, summarize, token_invariance
from tokencert.certify import image_certificates
from tokencert.data.store import Split, build_manifest, write_dataset
from tokencert.io import read_json, save_torch, write_json
from tokencert.models import DiscreteClassifier, build_model, model_meta, save_classifier
from tokencert.vocab import Vocabulary, tokenize

GRID = [0.0, 0.5, 1.0, 2.0]


def _summary(radii, correct, abstain, **kw):
    args = dict(method="smoothing", dataset="d", model="m", units="pixel", grid=GRID, sigma=0.5, seconds_per_image=0.1)
    args.update(kw)
    return summarize(radii=radii, correct=correct, abstain=abstain, **args)


def test_counts_correct_unabstained_images_at_each_radius():
    radii = torch.tensor([0.0, 0.6, 1.0, 3.0, 5.0])
    correct = torch.tensor([True, True, True, False, True])
    abstain = torch.tensor([False, False, False, False, True])
    s = _summary(radii, correct, abstain)
    assert s["n_images"] == 5
    assert s["clean_accuracy"] == pytest.approx(3 / 5)
    assert s["abstain_rate"] == pytest.approx(1 / 5)
    assert s["certified_accuracy"] == pytest.approx([3 / 5, 2 / 5, 1 / 5, 0.0])
    assert s["acr"] == pytest.approx((0.0 + 0.6 + 1.0) / 5)  # wrong and abstained images count 0
    assert s["radii"] == GRID and s["sigma"] == 0.5 and s["method"] == "smoothing"


def test_format_matches_design_and_accepts_numpy_and_lists():
    s = _summary(np.array([1.0, 2.0]), [True, False], [False, False], method="R0", sigma=None)
    assert list(s) == [
        "method", "dataset", "model", "sigma", "units", "n_images", "clean_accuracy", "abstain_rate",
        "radii", "certified_accuracy", "certified_radii", "acr", "seconds_per_image",
    ]
    assert s["certified_radii"] == [1.0]  # the correct images' radii, sorted
    assert s["sigma"] is None and s["acr"] == pytest.approx(0.5)


def test_certified_accuracy_is_non_increasing_and_starts_at_clean_accuracy():
    rng = np.random.default_rng(0)
    radii = rng.exponential(1.0, 200)
    correct = rng.random(200) < 0.8
    s = _summary(radii, correct, np.zeros(200, bool), grid=sorted(rng.random(10) * 3) + [0.0])
    acc = s["certified_accuracy"][:-1]
    assert all(a >= b for a, b in zip(acc, acc[1:]))
    assert s["certified_accuracy"][-1] == s["clean_accuracy"]


@pytest.mark.parametrize("seed", range(5))
def test_the_step_curve_is_the_certified_accuracy_between_radii(seed):
    """The plotted step function equals the summary's certified accuracy at every radius that is
    not itself an image's radius, starts at clean accuracy, never increases and ends at 0."""
    rng = np.random.default_rng(seed)
    radii = np.round(rng.exponential(1.0, 60), 1)  # ties on purpose
    correct, abstain = rng.random(60) < 0.8, rng.random(60) < 0.1
    grid = sorted(set(np.round(rng.random(30) * 4, 3)) - set(radii))
    s = _summary(radii, correct, abstain, grid=grid)
    xs, ys = curve(s)
    assert ys[0] == pytest.approx(s["clean_accuracy"]) and ys[-1] == 0 and np.all(np.diff(ys) <= 0)
    for r, expected in zip(grid, s["certified_accuracy"], strict=True):
        value = ys[np.searchsorted(xs, r, side="right") - 1]  # steps-post: value on [x_k, x_{k+1})
        assert value == pytest.approx(expected), r


def test_infinite_radius_of_a_wrong_image_does_not_poison_acr():
    s = _summary([math.inf, 1.0], [False, True], [False, False])
    assert s["acr"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "radii, correct, abstain, kw, match",
    [
        ([-0.1], [True], [False], {}, ">= 0"),
        ([math.nan], [True], [False], {}, "NaN"),
        ([1.0, 2.0], [True], [False, False], {}, "length"),
        ([], [], [], {}, "no images"),
        ([[1.0]], [[True]], [[False]], {}, "1-D"),
        ([1.0], [True], [False], {"method": "other"}, "method"),
        ([1.0], [True], [False], {"grid": []}, "grid"),
        ([1.0], [True], [False], {"grid": [-1.0]}, "grid"),
    ],
)
def test_bad_input_is_rejected(radii, correct, abstain, kw, match):
    with pytest.raises(ValueError, match=match):
        _summary(radii, correct, abstain, **kw)


class FirstPixel(torch.nn.Module):
    """Class 1 when the first pixel of the (tokenized) image is above 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] > 0.5).long(), 2).float()


def r0_setup(n: int = 7):
    g = torch.Generator().manual_seed(0)
    tokens = torch.rand(6, 16, generator=g, dtype=torch.float64)
    vocab = Vocabulary(tokens=tokens, patch_size=4, mode="joint", channels=1, image_size=8, meta={"name": "v"})
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    tokenized, assignment = tokenize(images.float() / 255, vocab)
    labels = (tokenized[:, 0, 0, 0] > 0.5).long()
    labels[:2] = 1 - labels[:2]  # two misclassified images
    radii = torch.rand(n, 4, generator=g, dtype=torch.float64)
    return DiscreteClassifier(FirstPixel(), vocab), images, labels, {"assignment": assignment, "radii": radii}


def test_token_invariance_gives_min_patch_radius_and_correctness():
    model, images, labels, cert = r0_setup()
    r0, correct, seconds = token_invariance(model, images, labels, cert, device=torch.device("cpu"), batch_size=3)
    assert np.array_equal(r0, cert["radii"].min(dim=1).values.numpy())
    assert correct.tolist() == [False, False] + [True] * 5
    assert seconds > 0
    s = summarize("R0", "d", "discrete-v", "pixel", r0, correct, np.zeros(7, bool), [0.0, 0.5], None, seconds)
    assert s["clean_accuracy"] == pytest.approx(5 / 7)
    assert s["certified_accuracy"][1] == pytest.approx(np.mean(correct & (r0 >= 0.5)))


def test_token_invariance_refuses_a_certificate_of_another_tokenization():
    model, images, labels, cert = r0_setup()
    stale = {**cert, "assignment": (cert["assignment"] + 1) % 6}
    with pytest.raises(ValueError, match="another vocabulary or test set"):
        token_invariance(model, images, labels, stale, device=torch.device("cpu"))
    short = {k: v[:5] for k, v in cert.items()}
    with pytest.raises(ValueError, match="certificate of 5 images"):
        token_invariance(model, images, labels, short, device=torch.device("cpu"))


def test_certacc_r0_writes_the_summary_of_the_certify_stage_maps(tmp_path):
    model, images, labels, _ = r0_setup(n=6)
    split = Split(images, labels, ["a", "b"])
    write_dataset(tmp_path / "data", build_manifest("toy", {"source": "mlxtend"}, {"train": split, "test": split}),
                  {"train": split, "test": split})
    model.vocab.save(tmp_path / "v.pt")
    net = build_model("cnn", 1, 2, [0.5], [0.25])
    meta = model_meta(arch="cnn", channels=1, num_classes=2, image_size=8, mean=[0.5], std=[0.25], dataset="toy",
                      kind="discrete", vocab=model.vocab, test_accuracy=None)
    save_classifier(tmp_path / "m.pt", net, meta)
    certs = image_certificates(images.float() / 255, model.vocab)
    save_torch(tmp_path / "c.pt", {"assignment": certs.assignment, "radii": certs.radii,
                                   "map_shape": list(certs.map_shape)})
    write_json(tmp_path / "c.json", {"seconds_per_image": 0.25})
    summary = certacc_r0(dataset="toy", model="discrete-v", model_path=tmp_path / "m.pt", vocab_path=tmp_path / "v.pt",
                         certificate_path=tmp_path / "c.pt", certify_summary_path=tmp_path / "c.json",
                         data_dir=tmp_path / "data", units="pixel", grid=[0.0, 0.01], device=torch.device("cpu"),
                         json_path=tmp_path / "out.json")
    assert read_json(tmp_path / "out.json") == summary
    assert summary["method"] == "R0" and summary["sigma"] is None and summary["n_images"] == 6
    net.eval()
    with torch.no_grad():
        correct = (net(tokenize(images.float() / 255, model.vocab)[0]).argmax(1) == labels).numpy()
    r0 = certs.r0.numpy()
    assert summary["acr"] == pytest.approx(float(np.mean(np.where(correct, r0, 0.0))))
    assert summary["certified_accuracy"][1] == pytest.approx(float(np.mean(correct & (r0 >= 0.01))))
    assert summary["seconds_per_image"] > 0.25
