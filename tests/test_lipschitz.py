"""Lipschitz-margin certificates: the constant is a true bound, the radius is sound and, for a linear
classifier, exact; the 1-Lipschitz architecture is 1-Lipschitz; bad layers are refused by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tokencert.lipschitz import lipschitz_constant, margin_radius
from tokencert.models import MaxMin, Normalize, build_model


def test_constant_of_dense_layers_is_the_product_of_spectral_norms():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 5), nn.Linear(5, 3)
    net = nn.Sequential(Normalize([0.5], [0.25]), nn.Flatten(), a, MaxMin(), b)
    with torch.no_grad():
        norms = [torch.linalg.matrix_norm(layer.weight.double(), 2) for layer in (a, b)]
    expected = 4.0 * float(norms[0] * norms[1])
    assert lipschitz_constant(net) == pytest.approx(expected, rel=1e-8)
    assert lipschitz_constant(net) >= expected


@pytest.mark.parametrize("seed", range(3))
def test_constant_bounds_every_sampled_quotient(seed):
    """||f(x) - f(x')|| <= L ||x - x'|| for random pairs (the bound's geometric meaning)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), MaxMin(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    lip = lipschitz_constant(net)
    x, x2 = torch.randn(2000, 8), torch.randn(2000, 8)
    with torch.no_grad():
        quotient = (net(x) - net(x2)).norm(dim=1) / (x - x2).norm(dim=1)
    assert float(quotient.max()) <= lip


def test_lipmlp_is_one_lipschitz_and_maxmin_preserves_norms():
    torch.manual_seed(0)
    net = build_model("lipmlp", 1, 10, [0.13], [0.31], image_size=8)
    assert lipschitz_constant(net) == pytest.approx(1.0, abs=1e-5)
    x = torch.randn(16, 6)
    assert torch.allclose(MaxMin()(x).norm(dim=1), x.norm(dim=1))


def test_radius_of_a_linear_classifier_is_the_distance_to_its_boundary_and_sound():
    """Two classes, logits (w.x, -w.x): the decision boundary w.x = 0 is at |w.x| / ||w||, and the
    certificate margin / (sqrt(2) L) equals it (L = sqrt(2) ||w||). Every point strictly inside keeps
    the class; the boundary point just beyond flips it."""
    w = torch.tensor([[3.0, -4.0]])
    lin = nn.Linear(2, 2, bias=False)
    lin.weight.data = torch.cat([w, -w])
    net = nn.Sequential(nn.Flatten(), lin)
    x = torch.tensor([[1.0, -1.0], [0.1, 0.2]])
    y = torch.tensor([0, 1])
    radius = margin_radius(net, x, y)
    exact = (x @ w.T).abs().squeeze(1) / 5.0
    assert torch.allclose(radius, exact.double(), rtol=1e-4)
    assert (radius <= exact.double()).all()
    direction = -torch.sign(x @ w.T) * w / 5.0
    with torch.no_grad():
        inside = net(x + direction * (radius.float().unsqueeze(1) * 0.999)).argmax(1)
        beyond = net(x + direction * (exact.unsqueeze(1) * 1.001)).argmax(1)
    assert torch.equal(inside, y) and not torch.equal(beyond, y)


def test_radius_in_scaled_units_and_zero_when_wrong():
    lin = nn.Linear(2, 2, bias=False)
    lin.weight.data = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    net = nn.Sequential(nn.Flatten(), lin)
    x, y = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1])
    pixel = margin_radius(net, x, y)
    scaled = margin_radius(net, x, y, scale=torch.tensor([2.0]))
    assert pixel[1] == 0 and scaled[0] == pytest.approx(float(pixel[0]) / 2)
    assert pixel[0] == pytest.approx(2 / (math.sqrt(2) * math.sqrt(2)), rel=1e-4)


def test_unsupported_layer_is_named():
    with pytest.raises(ValueError, match="unsupported layer Conv2d for Lipschitz certificates"):
        lipschitz_constant(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(4, 2)))


def test_nominal_constant_trusts_only_orthogonal_parametrizations():
    torch.manual_seed(0)
    net = build_model("lipmlp", 1, 10, [0.13], [0.31], image_size=8)
    assert lipschitz_constant(net, nominal=True) == 1.0
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    assert lipschitz_constant(plain, nominal=True) == lipschitz_constant(plain)
