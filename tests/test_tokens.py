"""Patches and the tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokencert.tokens import assign, patchify, unique_rows, unpatchify
from tokencert.vocab import Vocabulary, soft_tokenize, tokenize

MODES = ("joint", "per_channel", "per_channel_separate")


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(MODES), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_unpatchify_inverts_patchify(mode, channels, p, rows, cols):
    images = torch.rand(2, channels, rows * p, cols * p)
    patches = patchify(images, p, mode)
    per = rows * cols
    assert patches.shape == ((2, per, channels * p * p) if mode == "joint" else (2, channels * per, p * p))
    assert torch.equal(unpatchify(patches, p, mode, channels, (rows * p, cols * p)), images)


def test_patch_layout():
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    joint = patchify(image, 2, "joint")
    # first patch: top-left 2x2 of channel 0, then of channel 1
    assert joint[0, 0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]
    per = patchify(image, 2, "per_channel")
    assert per[0, 0].tolist() == [0, 1, 4, 5] and per[0, 4].tolist() == [16, 17, 20, 21]  # index c * L + l


def test_assign_nearest_with_ties_to_lowest_index():
    tokens = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    patches = torch.tensor([[0.9, 0.0], [0.0, 0.1], [0.25, 0.0], [0.75, 0.0]], dtype=torch.float64)
    # [0.25, 0] is equidistant from t0, t2 (duplicates) and t3: lowest index wins
    assert assign(patches, tokens).tolist() == [1, 0, 0, 1]


def test_assign_matches_brute_force_in_chunks():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.rand(50, 9, generator=gen, dtype=torch.float64)
    patches = torch.rand(1000, 9, generator=gen, dtype=torch.float64)
    brute = torch.cdist(patches, tokens, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)
    assert torch.equal(assign(patches, tokens, chunk_size=7), brute)


@pytest.mark.parametrize("mode", MODES)
def test_tokenize_output(mode):
    gen = torch.Generator().manual_seed(0)
    d = 3 * 16 if mode == "joint" else 16
    shape = (3, 5, d) if mode == "per_channel_separate" else (5, d)
    vocab = Vocabulary(torch.rand(*shape, generator=gen, dtype=torch.float64), 4, mode, 3, 8, {"name": "v"})
    images = torch.rand(4, 3, 8, 8, generator=gen)
    tokenized, index = tokenize(images, vocab)
    assert tokenized.dtype == images.dtype and tokenized.shape == images.shape
    assert index.shape == ((4, 4) if mode == "joint" else (4, 12))
    # every tokenized patch is a token, the one named by the index
    patches = patchify(tokenized.double(), 4, mode)
    table = vocab.tokens if mode != "per_channel_separate" else None
    for i in range(index.shape[1]):
        tab = table if table is not None else vocab.tokens[i // 4]
        assert torch.allclose(patches[:, i], tab[index[:, i]].to(torch.float32).double())
    # tokenizing is idempotent: a tokenized image is its own tokenization
    again, index2 = tokenize(tokenized.double(), vocab)
    assert torch.equal(index2, index)


def test_soft_tokenize_limits_and_gradient():
    gen = torch.Generator().manual_seed(0)
    vocab = Vocabulary(torch.rand(6, 16, generator=gen, dtype=torch.float64), 4, "joint", 1, 8, {"name": "v"})
    images = torch.rand(3, 1, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    hard, _ = tokenize(images.detach(), vocab)
    assert torch.allclose(soft_tokenize(images, vocab, 1e-9), hard)
    mean_token = vocab.tokens.mean(0)
    flat = soft_tokenize(images, vocab, 1e9)
    assert torch.allclose(patchify(flat, 4, "joint"), mean_token.expand(3, 4, 16), atol=1e-6)
    soft_tokenize(images, vocab, 0.1).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="tau must be > 0"):
        soft_tokenize(images, vocab, 0.0)


def test_bad_input():
    tokens = torch.rand(4, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not divide"):
        patchify(torch.rand(1, 1, 30, 30), 4, "joint")
    with pytest.raises(ValueError, match="token mode"):
        patchify(torch.rand(1, 1, 8, 8), 4, "diagonal")
    with pytest.raises(ValueError, match="K >= 2"):
        Vocabulary(tokens[:1], 4, "joint", 1, 28)
    with pytest.raises(ValueError, match="dimension 16"):
        Vocabulary(torch.rand(4, 16, dtype=torch.float64), 4, "joint", 3, 32)
    bad = tokens.clone()
    bad[1, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        Vocabulary(bad, 4, "joint", 1, 28)
    vocab = Vocabulary(tokens, 4, "joint", 1, 28, {"name": "v"})
    images = torch.rand(1, 1, 28, 28)
    images[0, 0, 3, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        tokenize(images, vocab)
    with pytest.raises(ValueError, match="is for 1x28x28"):
        tokenize(torch.rand(1, 1, 32, 32), vocab)


def test_soft_tokenize_matches_the_distance_softmax():
    """The softmax of 2<x,t> - ||t||^2 equals the softmax of -||x - t||^2 (the ||x||^2 term cancels)."""
    gen = torch.Generator().manual_seed(5)
    vocab = Vocabulary(torch.rand(3, 6, 16, generator=gen, dtype=torch.float64), 4, "per_channel_separate", 3, 8,
                       {"name": "v"})
    images = torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    patches = patchify(images, 4, "per_channel_separate").reshape(2, 3, 4, 16)
    expected = torch.empty_like(patches)
    for g in range(3):
        w = torch.softmax(-torch.cdist(patches[:, g], vocab.tokens[g].unsqueeze(0).expand(2, -1, -1)).pow(2) / 0.05, -1)
        expected[:, g] = w @ vocab.tokens[g]
    ref = unpatchify(expected.reshape(2, 12, 16), 4, "per_channel_separate", 3, 8)
    assert torch.allclose(soft_tokenize(images, vocab, 0.05), ref, atol=1e-12)


@pytest.mark.parametrize("dedup", [True, False])
def test_assign_with_and_without_dedup_agree_on_repeated_and_distinct_rows(dedup):
    torch.manual_seed(0)
    tokens = torch.rand(40, 4, dtype=torch.float64)
    distinct = torch.rand(30, 4, dtype=torch.float64)
    patches = torch.cat([distinct, distinct[:10], torch.zeros(5, 4), -torch.zeros(5, 4)])[torch.randperm(50)]
    expected = torch.cdist(patches, tokens).argmin(1)
    assert torch.equal(assign(patches.reshape(5, 10, 4), tokens, dedup=dedup).reshape(-1), expected)


def test_unique_rows_finds_every_repeat_and_maps_back():
    rows = torch.tensor([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0], [3.0, 1e-300], [0.0, 0.0]], dtype=torch.float64)
    distinct, inverse = unique_rows(rows)
    assert distinct.shape[0] == 3 and torch.equal(distinct[inverse], rows)
