"""The single-flip certificate R_2: sound, never below R_0, bracketed by the token-flip attack."""

from __future__ import annotations

import torch

from tests.attack_fixtures import trained_models
from tokencert.attacks.tokenflip import tokenflip
from tokencert.exact import single_flip_certificates
from tokencert.flips import patch_geometry
from tokencert.tokens import unpatchify


def test_r2_at_least_r0_and_certified_only_when_correct():
    _, discrete, x, y = trained_models()
    res = single_flip_certificates(discrete, x[:40], y[:40])
    assert (res.r2 >= res.r0).all()
    assert (res.certified[res.prediction != y[:40]] == 0).all()
    assert ((res.certified == res.r2) | (res.certified == res.r0) | (res.certified == 0)).all()


def test_r2_certificate_survives_worst_case_single_flips():
    """For every image certified at R_2, each reachable flip, executed for real just across its
    bisector (norm below R_2), leaves the prediction unchanged."""
    _, discrete, x, y = trained_models()
    res = single_flip_certificates(discrete, x[:25], y[:25])
    checked = 0
    for n in torch.nonzero(res.flip_safe).flatten().tolist():
        geometry = patch_geometry(x[n], discrete.vocab)
        for i, j in torch.nonzero(geometry.radii < res.r2[n] / (1 + 1e-3)).tolist():
            w = geometry.tables[i, j] - geometry.tables[i, geometry.assignment[i]]
            step = (geometry.radii[i, j] * (1 + 1e-4) + 1e-9) * w / w.norm()
            patches = geometry.patches.clone()
            patches[i] += step
            moved = unpatchify(patches.unsqueeze(0), 4, "joint", 1, 8).float()
            assert int(discrete(moved).argmax(1)) == int(res.prediction[n])
            checked += 1
    assert checked > 0


def test_bracket_lower_never_above_upper():
    _, discrete, x, y = trained_models()
    res = single_flip_certificates(discrete, x[:12], y[:12])
    _, upper = tokenflip(discrete, x[:12], y[:12], max_eps=10.0, max_flips=24, candidates=28)
    assert torch.isfinite(upper).any()
    assert (res.certified <= upper).all()
