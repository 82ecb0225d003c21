"""The report's figures (matplotlib; PDF for LaTeX and PNG for the HTML report)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .. import config as tc  # noqa: E402
from ..config import Plan  # noqa: E402
from ..data import load_split, to_float  # noqa: E402
from ..io import atomic_path  # noqa: E402
from ..units import describe  # noqa: E402
from ..vocab import Vocabulary, tokenize  # noqa: E402
from .collect import DatasetResults, test_accuracy  # noqa: E402


def save(fig: plt.Figure, stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``stem.pdf`` and ``stem.png`` atomically; close the figure."""
    paths = []
    for ext in ("pdf", "png"):
        path = Path(f"{stem}.{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def certified_accuracy(d: DatasetResults) -> plt.Figure:
    """Certified accuracy vs radius: randomized smoothing and the discrete classifiers' R_0 / R_2."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model, per_sigma in sorted(d.smoothing.items()):
        for sigma, s in sorted(per_sigma.items()):
            if model.startswith(tc.NOISE_PREFIX) or model.startswith(tc.DISCRETE_PREFIX):
                ax.plot(s["radii"], s["certified_accuracy"], marker=".", label=f"RS {model} sigma={sigma:g}")
    for model, s in sorted(d.certacc.items()):
        ax.plot(s["radii"], s["certified_accuracy"], ls="--", marker="x", label=f"$R_0$ {model}")
    for model, s in sorted(d.exact.items()):
        ax.plot(s["R2"]["radii"], s["R2"]["certified_accuracy"], ls="-.", marker="+", label=f"$R_2$ {model}")
    ax.set(xlabel=f"radius ({describe(d.units)})", ylabel="certified accuracy", ylim=(0, 1.02),
           title=f"{d.name}: certified accuracy vs radius")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(left=0)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    return fig


def robust_accuracy(d: DatasetResults) -> plt.Figure:
    """Robust accuracy vs eps, one panel per attacked model, one line per attack (worst in black)."""
    models = sorted(d.attacks)
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(4.2 * max(1, len(models)), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        for attack, s in sorted(d.attacks[model].items()):
            style = {"color": "black", "lw": 2.5} if attack == "worst" else {"marker": "."}
            ax.plot(s["eps"], s["robust_accuracy"], label=attack, **style)
        ax.set(title=model, xlabel=f"eps ({describe(d.units)})", ylabel="robust accuracy", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{d.name}: robust accuracy under attack (judged on the hard model)")
    return fig


def k_tradeoff(d: DatasetResults, plan: Plan) -> plt.Figure:
    """Downstream accuracy and mean patch certificate over vocabulary size K."""
    sweep = [v for v in plan.sweep if v in d.vocab]
    ks = [d.vocab[v]["K"] for v in sweep]
    acc = [test_accuracy(d, tc.DISCRETE_PREFIX + v) for v in sweep]
    cert = [d.certify.get(v, {}).get("patch_cert") for v in sweep]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(ks, [np.nan if a is None else a for a in acc], marker="o", color="tab:blue", label="test accuracy")
    ax.set(xscale="log", xlabel="vocabulary size K", ylabel="test accuracy of f(Q(x))")
    ax2 = ax.twinx()
    ax2.plot(ks, [np.nan if c is None else c for c in cert], marker="s", color="tab:red", label="mean patch cert.")
    ax2.set(ylabel=f"mean patch certificate ({d.units} units)")
    fig.legend(loc="lower center", fontsize=7, ncol=2)
    ax.set_title(f"{d.name}: accuracy vs certificate over K")
    return fig


def token_usage(d: DatasetResults) -> plt.Figure:
    """Histogram of token usage on the test set per vocabulary (sorted counts, log scale)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for name, q in sorted(d.vocab.items()):
        counts = np.sort(np.asarray(q["usage_counts"], dtype=float).ravel())[::-1]
        ax.plot(np.arange(1, counts.size + 1), counts / counts.sum(), label=f"{name} (K={q['K']})")
    ax.set(xscale="log", yscale="log", xlabel="token rank", ylabel="share of test patches",
           title=f"{d.name}: token usage")
    ax.legend(fontsize=6)
    return fig


def examples(d: DatasetResults, count: int) -> plt.Figure:
    """Original images (one per class), their tokenization and their certificate maps."""
    vocab = Vocabulary.load(d.examples["vocab"])
    maps_path = d.examples["maps"]
    test = load_split(d.examples["test"].parent, "test")
    pick = torch.tensor([int(torch.nonzero(test.labels == c)[0]) for c in torch.unique(test.labels)][:count])
    count = pick.numel()
    x = to_float(test.images[pick])
    tokenized, _ = tokenize(x, vocab)
    maps = torch.load(maps_path, weights_only=True)
    radii = maps["radii"][pick].reshape(count, *maps["map_shape"])
    if radii.ndim == 4:  # per channel: show the smallest radius over channels
        radii = radii.min(dim=1).values
    fig, axes = plt.subplots(3, count, figsize=(1.6 * count, 5.2), squeeze=False)
    for i in range(count):
        img = x[i].permute(1, 2, 0).squeeze(-1).numpy()
        tok = tokenized[i].clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
        axes[0, i].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(tok, cmap="gray", vmin=0, vmax=1)
        shown = axes[2, i].imshow(radii[i].numpy(), cmap="viridis")
        fig.colorbar(shown, ax=axes[2, i], fraction=0.046)
        axes[2, i].set_xlabel(f"$R_0$={float(radii[i].min()):.3f}", fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("original", f"tokenized ({vocab.name})", "patch certificate")):
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"{d.name}: images, tokenization and certificate maps")
    return fig


def make(kind: str, d: DatasetResults, plan: Plan) -> plt.Figure:
    """The figure of ``kind`` (one of :data:`tokencert.study.FIGURE_KINDS`) for dataset ``d``."""
    makers = {
        "certified": lambda: certified_accuracy(d),
        "robust": lambda: robust_accuracy(d),
        "usage": lambda: token_usage(d),
        "ktradeoff": lambda: k_tradeoff(d, plan),
        "examples": lambda: examples(d, plan.report.example_images),
    }
    if kind not in makers:
        raise ValueError(f"unknown figure kind '{kind}' (known: {', '.join(makers)})")
    return makers[kind]()
