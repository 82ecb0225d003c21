"""Certified-accuracy summaries (tokencert.certacc)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokencert.certacc import curve, summarize

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
        ([1.0], [True], [False], {"method": ""}, "method"),
        ([1.0], [True], [False], {"grid": []}, "grid"),
        ([1.0], [True], [False], {"grid": [-1.0]}, "grid"),
    ],
)
def test_bad_input_is_rejected(radii, correct, abstain, kw, match):
    with pytest.raises(ValueError, match=match):
        _summary(radii, correct, abstain, **kw)
