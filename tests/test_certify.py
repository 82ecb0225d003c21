"""Certificates: exactness against a brute-force reference and soundness at the boundary."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tokencert.certify import certify_dataset, image_certificates, pairwise_radii, patch_certificates
from tokencert.tokens import assign
from tokencert.vocab import Vocabulary, tokenize

REL = 1e-6


@st.composite
def problems(draw, max_k: int = 8, max_d: int = 6):
    """A patch and a vocabulary with distinct tokens, values in [0, 1]."""
    d = draw(st.integers(1, max_d))
    k = draw(st.integers(2, max_k))
    unit = st.floats(0, 1, allow_nan=False, width=64)
    tokens = draw(arrays(np.float64, (k, d), elements=unit, unique=False))
    x = draw(arrays(np.float64, (d,), elements=unit))
    tokens_t = torch.from_numpy(tokens)
    assume(torch.pdist(tokens_t).min() > 1e-3)
    return torch.from_numpy(x), tokens_t


def brute_force(x: torch.Tensor, tokens: torch.Tensor, a: int) -> list[float]:
    """The literal formula for the token ``a`` a patch was assigned: one token pair at a time
    ("minimum over triple-wise")."""
    dist = [float(((x - t) ** 2).sum()) for t in tokens]
    radii = []
    for j, t in enumerate(tokens):
        if j == a:
            radii.append(math.inf)
            continue
        gap = float((t - tokens[a]).norm())
        radii.append(0.0 if gap == 0 else (dist[j] - dist[a]) / (2 * gap))
    return radii


def exact_squared_distances(x: torch.Tensor, tokens: torch.Tensor) -> list[Fraction]:
    """``||x - t_j||^2`` for every token, exactly."""
    xs = [Fraction(v) for v in x.tolist()]
    return [sum((xi - Fraction(ti)) ** 2 for xi, ti in zip(xs, t, strict=True)) for t in tokens.tolist()]


def closest_bisector_step(x, tokens, scale=None):
    """Assignment, certificate radius, and the unit (in the scaled metric) worst-case direction."""
    a, r = patch_certificates(x[None], tokens, scale)
    radii = pairwise_radii(x[None], tokens, scale)[0]
    j = int(radii.argmin())
    s = torch.ones_like(x) if scale is None else scale
    w = tokens[j] - tokens[int(a)]
    direction = s * s * w  # steepest way towards t_j's side in the metric ||delta / s||
    direction = direction / (direction / s).norm()
    return int(a), float(r), j, direction


@settings(max_examples=300, deadline=None)
@given(problems())
def test_matches_brute_force(problem):
    x, tokens = problem
    a, r = patch_certificates(x[None], tokens)
    a_ref = int(a)
    # the nearest token up to float64 rounding of the squared distances (exact arithmetic: a float
    # reference misorders near-ties itself); exact ties go to the lowest index (test below)
    sq = exact_squared_distances(x, tokens)
    assert sq[a_ref] - min(sq) <= 1e-12 * (1 + max(sq))
    radii_ref = brute_force(x, tokens, a_ref)
    radii = pairwise_radii(x[None], tokens)[0]
    np.testing.assert_allclose(radii.numpy(), np.array(radii_ref), rtol=0, atol=1e-9)
    assert float(r) == pytest.approx(min(radii_ref), abs=1e-9)
    assert not_above_exact(float(r), x, tokens, a_ref)  # never above the exact value


def not_above_exact(r: float, x: torch.Tensor, tokens: torch.Tensor, a: int) -> bool:
    """Whether ``r <= min_j (||x - t_j||^2 - ||x - t_a||^2) / (2 ||t_j - t_a||)`` holds exactly.

    In rational arithmetic, because the float reference rounds too: by more than the
    certificate's safety margin where two squared distances nearly cancel. With ``r >= 0`` and
    a non-negative numerator, ``r <= num / (2 gap)`` iff ``4 r^2 gap^2 <= num^2``; a negative
    numerator (a float near-tie resolved the other way) allows only ``r = 0``.
    """
    sq = exact_squared_distances(x, tokens)
    ts = [[Fraction(v) for v in t] for t in tokens.tolist()]
    for j, t in enumerate(ts):
        gap2 = sum((tj - ta) ** 2 for tj, ta in zip(t, ts[a], strict=True))
        num = sq[j] - sq[a]
        if j != a and (4 * Fraction(r) ** 2 * gap2 > num**2 or (r > 0 and (gap2 == 0 or num < 0))):
            return False  # a duplicate of the own token (gap 0) allows no radius at all
    return r >= 0


@settings(max_examples=300, deadline=None)
@given(problems(), st.booleans())
def test_worst_case_perturbation_inside_radius_never_flips(problem, scaled):
    x, tokens = problem
    scale = torch.linspace(0.2, 0.9, x.numel(), dtype=torch.float64) if scaled else None
    a, r, _, direction = closest_bisector_step(x, tokens, scale)
    assume(r > 1e-8)
    inside = x + r * (1 - REL) * direction
    assert int(assign(inside[None], tokens)) == a
    outside = x + r * (1 + REL) * direction
    assert int(assign(outside[None], tokens)) != a


@settings(max_examples=200, deadline=None)
@given(problems(), st.integers(0, 2**31 - 1))
def test_random_perturbations_inside_radius_never_flip(problem, seed):
    x, tokens = problem
    a, r = patch_certificates(x[None], tokens)
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(256, x.numel(), generator=gen, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    moved = x + float(r) * (1 - REL) * u
    assert (assign(moved, tokens) == int(a)).all()


def test_known_geometry():
    tokens = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    x = torch.tensor([[0.2, 0.0]], dtype=torch.float64)
    radii = pairwise_radii(x, tokens)[0]
    assert radii[0] == math.inf
    assert float(radii[1]) == pytest.approx(0.3)  # bisector x = 0.5
    assert float(radii[2]) == pytest.approx(1.5)  # bisector y = 1.5
    a, r = patch_certificates(x, tokens)
    assert int(a) == 0 and float(r) == pytest.approx(0.3)
    # in units where the first dimension counts double, the same bisector is twice as far
    _, r_scaled = patch_certificates(x, tokens, torch.tensor([0.5, 1.0], dtype=torch.float64))
    assert float(r_scaled) == pytest.approx(0.6)


def test_duplicates_and_ties():
    tokens = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[0.1, 0.2]], dtype=torch.float64)
    radii = pairwise_radii(x, tokens)[0]
    assert int(assign(x, tokens)) == 0  # tie between the duplicates: lowest index
    assert float(radii[2]) == 0.0 and radii[0] == math.inf
    # a patch exactly on a bisector: the lowest index wins and the radius is 0
    tokens = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    a, r = patch_certificates(torch.tensor([[0.5]], dtype=torch.float64), tokens)
    assert int(a) == 0 and float(r) == 0.0


@pytest.mark.parametrize("mode, shape", [("joint", (16, 48)), ("per_channel", (16, 16)),
                                         ("per_channel_separate", (3, 16, 16))])
def test_image_certificates_match_tokenizer_and_summaries(mode, shape):
    gen = torch.Generator().manual_seed(1)
    vocab = Vocabulary(torch.rand(*shape, generator=gen, dtype=torch.float64), 4, mode, 3, 8, {"name": "v"})
    images = torch.rand(5, 3, 8, 8, generator=gen)
    cert = image_certificates(images, vocab)
    _, index = tokenize(images, vocab)
    assert torch.equal(cert.assignment, index)
    expected_map = (2, 2) if mode == "joint" else (3, 2, 2)
    assert cert.maps().shape == (5, *expected_map)
    assert torch.allclose(cert.summed, cert.radii.sum(1)) and torch.equal(cert.r0, cert.radii.min(1).values)
    assert cert.radii.dtype == torch.float64 and (cert.radii >= 0).all()


def test_image_certificate_r0_is_sound_for_whole_images():
    """A perturbation of the whole image with norm just below R_0 never changes any token."""
    gen = torch.Generator().manual_seed(2)
    vocab = Vocabulary(torch.rand(8, 16, generator=gen, dtype=torch.float64), 4, "joint", 1, 8, {"name": "v"})
    images = torch.rand(20, 1, 8, 8, generator=gen, dtype=torch.float64)
    cert = image_certificates(images, vocab)
    _, index = tokenize(images, vocab)
    for _ in range(20):
        delta = torch.randn(images.shape, generator=gen, dtype=torch.float64)
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (cert.r0 * (1 - REL)).view(-1, 1, 1, 1)
        assert torch.equal(tokenize(images + delta, vocab)[1], index)


def test_per_channel_scale_divides_radii():
    gen = torch.Generator().manual_seed(3)
    vocab = Vocabulary(torch.rand(8, 16, generator=gen, dtype=torch.float64), 4, "per_channel", 3, 8, {"name": "v"})
    images = torch.rand(4, 3, 8, 8, generator=gen)
    scale = torch.tensor([0.25, 0.5, 2.0], dtype=torch.float64)
    plain, scaled = image_certificates(images, vocab), image_certificates(images, vocab, scale)
    assert torch.allclose(scaled.maps(), plain.maps() / scale.view(1, 3, 1, 1))


def test_bad_input():
    tokens = torch.rand(4, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="K >= 2"):
        patch_certificates(torch.rand(3, 16, dtype=torch.float64), tokens[:1])
    with pytest.raises(ValueError, match="NaN"):
        patch_certificates(torch.full((3, 16), math.nan, dtype=torch.float64), tokens)
    bad = tokens.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        patch_certificates(torch.rand(3, 16, dtype=torch.float64), bad)
    with pytest.raises(ValueError, match="expected M x d"):
        patch_certificates(torch.rand(3, 8, dtype=torch.float64), tokens)
    vocab = Vocabulary(tokens, 4, "joint", 1, 28, {"name": "v"})
    with pytest.raises(ValueError, match="is for 1x28x28 images"):
        image_certificates(torch.rand(2, 3, 32, 32), vocab)
    images = torch.rand(2, 1, 28, 28)
    images[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        image_certificates(images, vocab)


def test_certify_summary_separates_the_most_common_patch():
    """The background patch (all zero) dominates the mean; the summary names its radius and share
    and gives the mean of the other patches."""
    gen = torch.Generator().manual_seed(0)
    images = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    images[:, :, :4, :4] = torch.randint(0, 256, (6, 1, 4, 4), generator=gen, dtype=torch.uint8)
    vocab = Vocabulary(torch.rand(12, 16, generator=gen, dtype=torch.float64), 4, "joint", 1, 8, {"name": "v"})
    certs, summary = certify_dataset(vocab, images)
    background = certs.radii[:, 1:]  # three of every four patches are zero
    assert torch.unique(background).numel() == 1
    assert summary["mode_radius"] == float(background[0, 0]) and summary["mode_share"] == 0.75
    assert summary["patch_cert_rest"] == pytest.approx(float(certs.radii[:, 0].mean()))
    assert summary["patch_cert"] == pytest.approx(0.75 * summary["mode_radius"] + 0.25 * summary["patch_cert_rest"])
