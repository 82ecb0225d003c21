"""Units: a size in normalized units is the same set of pixel perturbations, per channel.

In normalized units a pixel perturbation ``delta`` has size ``||delta / s||`` with ``s`` the
per-channel std of the training set. These tests check that every algorithm that takes the
scale agrees with that one definition: certificates and attack budgets (smoothing noise of
``sigma * s_c`` per channel: ``tests/test_smoothing.py``).
"""

from __future__ import annotations

import pytest
import torch

from tokencert.certify import image_certificates, pairwise_radii
from tokencert.flips import patch_geometry
from tokencert.units import channel_scale, describe, norms, project
from tokencert.vocab import Vocabulary, tokenize

REL = 1e-6
STD = [0.2470, 0.2435, 0.2616]


def manifest(std: list[float]) -> dict:
    return {"shape": [len(std), 8, 8], "std": std}


def test_channel_scale():
    assert channel_scale("pixel", manifest(STD)) is None
    assert torch.equal(channel_scale("normalized", manifest(STD)), torch.tensor(STD, dtype=torch.float64))
    with pytest.raises(ValueError, match="3 positive values"):
        channel_scale("normalized", manifest([0.2, 0.0, 0.3]))
    with pytest.raises(ValueError, match="units must be one of"):
        channel_scale("inches", manifest(STD))
    assert "normalized" in describe("normalized") and "pixel" in describe("pixel")


def test_norm_is_the_pixel_norm_of_the_rescaled_perturbation():
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(5, 3, 8, 8, generator=gen, dtype=torch.float64)
    scale = torch.tensor(STD, dtype=torch.float64)
    expected = (delta / scale.view(1, 3, 1, 1)).flatten(1).norm(dim=1)
    assert torch.allclose(norms(delta, scale), expected)
    assert torch.allclose(norms(delta, None), delta.flatten(1).norm(dim=1))
    # one channel: normalized size = pixel size / std exactly
    one = delta[:, :1]
    assert torch.allclose(norms(one, scale[:1]), norms(one, None) / STD[0])


def test_grayscale_radii_scale_by_one_over_std():
    gen = torch.Generator().manual_seed(1)
    vocab = Vocabulary(torch.rand(16, 16, generator=gen, dtype=torch.float64), 4, "joint", 1, 8, {"name": "v"})
    images = torch.rand(6, 1, 8, 8, generator=gen, dtype=torch.float64)
    s = torch.tensor([0.3081], dtype=torch.float64)
    pixel, normalized = image_certificates(images, vocab), image_certificates(images, vocab, s)
    assert torch.allclose(normalized.radii, pixel.radii / 0.3081, rtol=1e-12)


@pytest.mark.parametrize("mode", ["joint", "per_channel", "per_channel_separate"])
def test_normalized_r0_is_sound_and_tight_in_pixel_space(mode):
    """R_0 in normalized units: every pixel perturbation with ||delta / s|| just below it keeps
    every token (random directions, drawn in normalized space and mapped to pixels), and the
    worst-case direction (in the scaled metric) just beyond it flips the closest patch."""
    gen = torch.Generator().manual_seed(2)
    shape = {"joint": (12, 48), "per_channel": (12, 16), "per_channel_separate": (3, 12, 16)}[mode]
    vocab = Vocabulary(torch.rand(*shape, generator=gen, dtype=torch.float64), 4, mode, 3, 8, {"name": "v"})
    images = torch.rand(8, 3, 8, 8, generator=gen, dtype=torch.float64)
    s = torch.tensor(STD, dtype=torch.float64)
    cert = image_certificates(images, vocab, s)
    _, index = tokenize(images, vocab)
    for _ in range(10):
        u = torch.randn(images.shape, generator=gen, dtype=torch.float64)
        u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (cert.r0 * (1 - REL)).view(-1, 1, 1, 1)
        delta = u * s.view(1, 3, 1, 1)  # normalized -> pixel
        assert torch.allclose(norms(delta, s), cert.r0 * (1 - REL))
        assert torch.equal(tokenize(images + delta, vocab)[1], index)
    for n in range(images.shape[0]):  # worst case: the closest bisector of the closest patch
        g = patch_geometry(images[n], vocab, s)
        flat = int(g.radii.flatten().argmin())
        i, j = divmod(flat, g.radii.shape[1])
        r = float(g.radii[i, j])
        assert r == pytest.approx(float(cert.r0[n]), rel=1e-9)
        w = g.tables[i, j] - g.tables[i, g.assignment[i]]
        direction = g.dim_scale[i] ** 2 * w
        direction = direction / (direction / g.dim_scale[i]).norm()
        inside = g.patches.clone()
        inside[i] += r * (1 - REL) * direction
        outside = g.patches.clone()
        outside[i] += r * (1 + REL) * direction
        table = g.tables[i]
        nearest = [int(((table - p[i]) ** 2).sum(1).argmin()) for p in (inside, outside)]
        assert nearest[0] == int(g.assignment[i]) and nearest[1] == j
        assert float(pairwise_radii(g.patches[i:i + 1], table, g.dim_scale[i])[0, j]) == pytest.approx(r, rel=1e-9)


def test_attack_projection_respects_the_normalized_ball():
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 3, 8, 8, generator=gen)
    x = x0 + torch.randn(4, 3, 8, 8, generator=gen)
    s = torch.tensor(STD)
    out = project(x0, x, 0.5, s)
    assert (norms(out - x0, s) <= 0.5 * (1 + 1e-5)).all() and out.min() >= 0 and out.max() <= 1
    # the same ball is larger in pixel space by about the std: pixel norms stay below 0.5 * max(std)
    assert (norms(out - x0, None) <= 0.5 * max(STD) * (1 + 1e-5)).all()
