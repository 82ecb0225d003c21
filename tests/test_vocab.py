"""Vocabulary builders, file format and quality metrics."""

from __future__ import annotations

import math

import pytest
import torch

from tokencert.certify import certify_dataset, pairwise_radii
from tokencert.config import ConfigError
from tokencert.tokens import assign as tokenize_nearest
from tokencert.vocab import Vocabulary, build_vocabulary, quality_metrics, tokenize, usage_statistics
from tokencert.vocab.kmeans import kmeans_tokens
from tokencert.vocab.learned import sobel_magnitude
from tokencert.vocab.margin import separated, spread


def images(n=64, channels=1, size=8, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)


def test_save_load_roundtrip(tmp_path):
    vocab = build_vocabulary("g", {"kind": "gaussian", "K": 8}, images(), 4, seed=0)
    vocab.save(tmp_path / "v.pt")
    back = Vocabulary.load(tmp_path / "v.pt")
    assert torch.equal(back.tokens, vocab.tokens) and back.sha256() == vocab.sha256()
    assert (back.mode, back.patch_size, back.channels, back.image_size) == ("joint", 4, 1, 8)
    assert back.meta["kind"] == "gaussian" and back.name == "g"
    torch.save({"tokens": vocab.tokens}, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="not a vocabulary"):
        Vocabulary.load(tmp_path / "broken.pt")


def test_gaussian_fit_and_seed():
    x = images(256)
    a = build_vocabulary("g", {"kind": "gaussian", "K": 2000, "fit_patches": 100000}, x, 4, seed=1)
    b = build_vocabulary("g", {"kind": "gaussian", "K": 2000, "fit_patches": 100000}, x, 4, seed=1)
    c = build_vocabulary("g", {"kind": "gaussian", "K": 2000, "fit_patches": 100000}, x, 4, seed=2)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    # uniform pixels: mean 0.5, std ~ 0.29 per dimension
    assert abs(float(a.tokens.mean()) - 0.5) < 0.02 and abs(float(a.tokens.std()) - 0.289) < 0.02


def test_kmeans_recovers_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]], dtype=torch.float64)
    points = torch.cat([c + 0.1 * torch.randn(100, 2, generator=gen, dtype=torch.float64) for c in centres])
    found = kmeans_tokens(points, 3, 10, gen)
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.05


@pytest.mark.parametrize("mode, shape", [("joint", (16, 48)), ("per_channel", (16, 16)),
                                         ("per_channel_separate", (3, 16, 16))])
def test_modes_shapes(mode, shape):
    vocab = build_vocabulary("k", {"kind": "kmeans", "K": 16, "iters": 2, "mode": mode}, images(32, 3), 4, seed=0)
    assert tuple(vocab.tokens.shape) == shape


def test_learned_vocabulary_improves_reconstruction():
    x = images(128)
    recipe = {"kind": "learned", "K": 16, "epochs": 4, "batch_size": 32, "lr": 0.05, "init": "gaussian"}
    start = build_vocabulary("g", {"kind": "gaussian", "K": 16}, x, 4, seed=0)
    learned = build_vocabulary("l", recipe, x, 4, seed=0)
    assert quality_metrics(learned, x)["recon_mse"] < quality_metrics(start, x)["recon_mse"]


@pytest.mark.parametrize("switch", [{"temperature": 0.1}, {"negentropy_weight": 0.1}, {"sobel_weight": 1.0},
                                    {"noise_sigma": 0.1}, {"mode": "per_channel_separate"}])
def test_learned_switches_run(switch):
    recipe = {"kind": "learned", "K": 8, "epochs": 1, "batch_size": 16, **switch}
    vocab = build_vocabulary("l", recipe, images(32, 3), 4, seed=0)
    assert torch.isfinite(vocab.tokens).all() and vocab.meta["recipe"] == recipe


def test_dead_tokens_are_reseeded():
    x = torch.zeros(32, 1, 8, 8, dtype=torch.uint8)
    x[:16] = 255
    recipe = {"kind": "learned", "K": 6, "epochs": 1, "batch_size": 8, "init": "gaussian"}
    vocab = build_vocabulary("l", recipe, x, 4, seed=0)
    # dead tokens were replaced by real patches (all 0 or all 1)
    values = vocab.tokens.flatten()
    assert ((values - 0).abs() < 1e-6).any() or ((values - 1).abs() < 1e-6).any()


def test_usage_statistics():
    vocab = Vocabulary(torch.rand(4, 16, dtype=torch.float64), 4, "joint", 1, 8)
    counts, perplexity, dead = usage_statistics(torch.tensor([[0, 1], [0, 1]]), vocab)
    assert counts.tolist() == [[2, 2, 0, 0]]
    assert perplexity == pytest.approx(2.0) and dead == 0.5


def test_quality_metrics():
    x = images(16)
    vocab = build_vocabulary("g", {"kind": "gaussian", "K": 8}, x, 4, seed=0)
    m = quality_metrics(vocab, x)
    tokenized, _ = tokenize(x.double() / 255, vocab)
    mse = float(((tokenized.clamp(0, 1) - x.double() / 255) ** 2).mean())
    assert m["recon_mse"] == pytest.approx(mse)
    assert m["recon_psnr"] == pytest.approx(10 * math.log10(1 / mse))
    assert 1 <= m["perplexity"] <= 8 and 0 <= m["dead_fraction"] < 1
    assert not {"patch_cert_mean", "patch_cert_min", "r0_mean"} & set(m)  # the certify stage's numbers
    certs, summary = certify_dataset(vocab, x)
    assert 0 <= float(certs.radii.min()) <= summary["r0_mean"] <= summary["patch_cert"]


def test_sobel_magnitude_of_edge():
    x = torch.zeros(1, 1, 5, 5)
    x[..., 3:] = 1.0
    mag = sobel_magnitude(x)
    assert mag[0, 0, 2, 2] > 3.9 and mag[0, 0, 2, 0] < 0.01


def test_bad_recipes():
    with pytest.raises(ValueError, match="kind must be one of"):
        build_vocabulary("x", {"kind": "magic", "K": 4}, images(), 4, seed=0)
    with pytest.raises(ValueError, match="K must be >= 2"):
        build_vocabulary("x", {"kind": "gaussian", "K": 1}, images(), 4, seed=0)
    with pytest.raises(ValueError, match="does not divide"):
        build_vocabulary("x", {"kind": "gaussian", "K": 4}, images(size=10), 4, seed=0)


def test_separated_vocabulary_keeps_its_minimum_distance_most_used_first():
    """Pruning keeps every pair at least ``min_separation`` apart, puts the exact zero token first, and
    keeps the most used token; a token farther than that from every kept one is never dropped."""
    g = torch.Generator().manual_seed(0)
    table = torch.rand(40, 4, generator=g, dtype=torch.float64)
    patches = table[torch.randint(40, (2000,), generator=g)] + 0.01 * torch.randn(2000, 4, generator=g)
    counts = torch.bincount(tokenize_nearest(patches, table), minlength=40)
    for delta in (0.0, 0.3, 0.6):
        kept = separated(table, patches, delta, background=True)
        assert torch.equal(kept[0], torch.zeros(4, dtype=torch.float64))
        assert torch.equal(kept[1], table[int(counts.argmax())]) or float(table[int(counts.argmax())].norm()) < delta
        gaps = torch.cdist(kept, kept) + torch.eye(len(kept)) * 1e9
        assert float(gaps.min()) >= delta
        dropped = [t for t in table if not (kept == t).all(dim=1).any()]
        assert all(float(torch.cdist(t.unsqueeze(0), kept).min()) < delta for t in dropped)  # maximal
    assert len(separated(table, patches, 0.0, background=False)) == 40


def test_separated_vocabulary_certifies_background_to_half_the_separation():
    """The geometric point of the design: an all-zero patch sits on the exact zero token, so its
    certificate radius is half the distance to the nearest other token, at least delta / 2."""
    imgs = images(n=64)
    imgs[:16] = 0  # some all-background images
    recipe = {"kind": "kmeans", "K": 32, "iters": 5, "min_separation": 0.8, "background": True}
    vocab = build_vocabulary("margin", recipe, imgs, 4, seed=0)
    assert vocab.K < 32 and float((torch.cdist(vocab.tokens, vocab.tokens) + 1e9 * torch.eye(vocab.K)).min()) >= 0.8
    radius = pairwise_radii(torch.zeros(1, vocab.dim, dtype=torch.float64), vocab.tokens).min()
    assert float(radius) == pytest.approx(float(vocab.tokens[1:].norm(dim=1).min()) / 2, rel=1e-12)
    assert float(radius) >= 0.4
    with pytest.raises(ValueError, match="per_channel_separate"):
        build_vocabulary("m", {**recipe, "mode": "per_channel_separate"}, images(channels=3), 4, seed=0)


def test_spreading_refits_kept_tokens_to_their_patches_means():
    """Two far-apart clusters whose k-means tokens are off-centre (as after pruning): each spreading
    round is a Lloyd step, so the tokens become the clusters' means exactly; with no round they stay."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.2] * 4, [0.8] * 4], dtype=torch.float64)
    patches = (centres.repeat_interleave(500, 0) + 0.02 * torch.randn(1000, 4, generator=g, dtype=torch.float64))
    table = centres + torch.tensor([[0.05, -0.05, 0.0, 0.0], [0.0, 0.0, 0.05, 0.05]], dtype=torch.float64)
    assert torch.equal(spread(table, patches, 0.5, False, 0), separated(table, patches, 0.5, False))
    moved = spread(table, patches, 0.5, False, 3)
    means = torch.stack([patches[:500].mean(0), patches[500:].mean(0)])
    assert torch.allclose(moved, means, atol=1e-12)


def test_spreading_pushes_close_means_apart_to_exactly_the_separation():
    """Worst case for the separation: two clusters whose means are 1.0 apart under delta = 2. Each round's
    Lloyd step pulls the tokens to the means, the repulsion pushes them back to exactly delta apart,
    both halfway, symmetric about the means' midpoint, inside [0, 1]^d."""
    d, delta = 16, 2.0
    a, b = torch.full((d,), 0.375, dtype=torch.float64), torch.full((d,), 0.625, dtype=torch.float64)  # 1.0 apart
    g = torch.Generator().manual_seed(1)
    patches = torch.cat([a.expand(300, d), b.expand(300, d)])
    patches = patches + 0.01 * torch.randn(patches.shape, generator=g, dtype=torch.float64)
    out = spread(torch.stack([a - 0.3, b + 0.3]), patches, delta, False, 5)  # 3.4 apart: both kept first
    assert len(out) == 2 and float(torch.dist(out[0], out[1])) == pytest.approx(delta, rel=1e-9)
    assert torch.allclose(out.mean(0), patches.mean(0), atol=1e-9)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_spreading_never_moves_the_background_token():
    """A cluster 1.5 from the all-zero background token under delta = 2: the background token stays
    exactly zero, the other token takes the whole shortfall (ending exactly delta from zero, along its mean)."""
    d, delta = 16, 2.0
    a = torch.full((d,), 0.375, dtype=torch.float64)  # norm 1.5
    patches = torch.cat([torch.zeros(300, d, dtype=torch.float64), a.expand(300, d)])
    out = spread(torch.stack([a + 0.2]), patches, delta, True, 4)  # 2.3 from zero: kept first
    assert len(out) == 2 and torch.equal(out[0], torch.zeros(d, dtype=torch.float64))
    assert torch.allclose(out[1], a * delta / 1.5, atol=1e-9)


def test_spreading_is_a_recipe_key_that_needs_a_separation():
    recipe = {"kind": "kmeans", "K": 16, "iters": 3, "min_separation": 0.8, "background": True, "spread": 2}
    vocab = build_vocabulary("spread", recipe, images(n=64), 4, seed=0)
    assert float((torch.cdist(vocab.tokens, vocab.tokens) + 1e9 * torch.eye(vocab.K)).min()) >= 0.8
    assert torch.equal(vocab.tokens[0], torch.zeros(vocab.dim, dtype=torch.float64))
    with pytest.raises(ConfigError, match="vocabularies.bad.spread needs min_separation"):
        build_vocabulary("bad", {"kind": "kmeans", "K": 16, "spread": 2}, images(n=64), 4, seed=0)


def test_a_vocabulary_of_7x7_patches_tokenizes_and_certifies_by_its_own_patch_size():
    """A recipe's own patch size (issue: vocabularies for large radii): 7x7 k-means tokens with the margin
    design on 28x28 images: 16 patches per image, every kept token at least min_separation from the others,
    tokenizing is idempotent, and each patch's radius is its smallest bisector distance, as for 4x4."""
    from tokencert.tokens import patchify

    x = images(48, size=28, seed=3)
    vocab = build_vocabulary("p7", {"kind": "kmeans", "K": 24, "iters": 3, "min_separation": 3.0,
                                    "background": True}, x, 7, seed=0)
    assert vocab.patch_size == 7 and vocab.tokens.shape[-1] == 49
    gaps = torch.cdist(vocab.tokens.reshape(-1, 49), vocab.tokens.reshape(-1, 49)).fill_diagonal_(torch.inf)
    assert vocab.K > 1 and gaps.min() >= 3.0
    flat = x.to(torch.float64) / 255
    tokenized = tokenize(flat, vocab)[0]
    assert torch.allclose(tokenize(tokenized, vocab)[0], tokenized)
    certs, summary = certify_dataset(vocab, x)  # uint8 images, as the certify stage reads them
    assert summary["patches_per_image"] == 16 and certs.map_shape == (4, 4)
    patches = patchify(flat, 7, vocab.mode).reshape(-1, 49)
    assert torch.equal(certs.assignment.reshape(-1), tokenize_nearest(patches, vocab.tokens.reshape(-1, 49)))
    expected = pairwise_radii(patches, vocab.tokens.reshape(-1, 49)).min(1).values  # inf at the own token
    assert torch.allclose(certs.radii.reshape(-1), expected, atol=1e-12)
    assert quality_metrics(vocab, x)["patch_size"] == 7
