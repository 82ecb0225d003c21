"""The report's figures (matplotlib; PDF for LaTeX and PNG for the HTML report)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .. import config as tc  # noqa: E402
from ..certacc import curve  # noqa: E402
from ..certificates import CERTIFICATES  # noqa: E402
from ..config import Plan  # noqa: E402
from ..data import load_split, to_float  # noqa: E402
from ..io import atomic_path  # noqa: E402
from ..study import WORST  # noqa: E402
from ..units import describe  # noqa: E402
from ..vocab import Vocabulary, tokenize  # noqa: E402
from .collect import DatasetResults, test_accuracy  # noqa: E402
from .tables import landscape_numbers  # noqa: E402


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


def _legend_below(ax: plt.Axes, ncol: int = 2) -> None:
    """The axes' legend under the x-axis label, never over the data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=8, frameon=False)


def _panels(count: int, width: float = 5.2, height: float = 4.4) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``count`` panels, at most two per row (readable on a page), and its used axes."""
    cols = min(2, max(1, count))
    rows = (max(1, count) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[max(1, count):]:
        ax.set_visible(False)
    return fig, flat[:max(1, count)]


def _style(i: int) -> dict[str, Any]:
    """Distinct colour and line style for the i-th curve of a panel."""
    return {"color": PALETTE[i % len(PALETTE)], "ls": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


PALETTE = plt.get_cmap("tab10").colors
LINESTYLES = ("-", "--", ":", "-.")


def _envelope(summaries: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The pointwise best of certified-accuracy step functions, as a step function."""
    curves = [curve(s) for s in summaries]
    xs = np.unique(np.concatenate([c[0] for c in curves]))
    best = [max(float(ys[np.searchsorted(cx, x, side="right") - 1]) for cx, ys in curves) for x in xs]
    return xs, np.asarray(best)


def defense_families(d: DatasetResults, plan: Plan) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per family (input and objective, e.g. ``tokens / noise``): the certificate summaries of its
    members (smoothing, else the deterministic ones no other refines) and the worst-case attack summaries."""
    families: dict[str, dict[str, list[dict[str, Any]]]] = {}
    planned = plan.datasets.get(d.name)
    for model, recipe in ({} if planned is None else planned.recipes).items():
        family = families.setdefault(f"{recipe.input.split(':')[0]} / {recipe.kind}", {"cert": [], "attack": []})
        certs = list(d.smoothing.get(model, {}).values()) or list(d.deterministic(model).values())
        family["cert"] += [c for c in certs if "certified_radii" in c]
        if WORST in d.attacks.get(model, {}):
            family["attack"].append(d.attacks[model][WORST])
    return {name: f for name, f in families.items() if f["cert"] or f["attack"]}


def _envelope_panel(ax: plt.Axes, d: DatasetResults, plan: Plan) -> None:
    """Each defense family's best certified accuracy (solid) and its attack upper bound (dashed:
    the best worst-case accuracy of its attacked members, clean accuracy at eps 0)."""
    for i, (name, family) in enumerate(defense_families(d, plan).items()):
        color = PALETTE[i % len(PALETTE)]
        if family["cert"]:
            xs, ys = _envelope(family["cert"])
            ax.step(np.append(xs, xs[-1] * 1.5 + 1e-6), np.append(ys, ys[-1]), where="post", lw=1.8, color=color,
                    label=f"{name}: certified")
        if family["attack"]:
            eps = [0.0, *family["attack"][0]["eps"]]
            best = np.max([[a.get("clean_accuracy", np.nan), *a["robust_accuracy"]] for a in family["attack"]], axis=0)
            ax.plot(eps, best, ls="--", marker="o", ms=4, lw=1.4, color=color, label=f"{name}: attack bound")
    ax.set(xlabel=f"radius / eps ({describe(d.units)})", ylabel="accuracy", ylim=(0, 1.02),
           title="defense families: best certified (solid), attack upper bound (dashed)")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    _legend_below(ax, ncol=2)


CERTIFICATE_PANELS = {"flip": "deterministic: token invariance and one flip",
                      "beyond": "deterministic: any number of flips, Lipschitz margin, others"}
"""The certified figure's deterministic panels (:attr:`tokencert.certificates.Certificate.panel`)."""


def certified_accuracy(d: DatasetResults, plan: Plan | None = None) -> plt.Figure:
    """Certified accuracy vs radius as step functions of the per-image radii: one panel per
    :data:`CERTIFICATE_PANELS` (the family's certificates by their ``panel``), one per smoothing sigma and,
    with the ``plan``'s recipes, one with the envelope of each defense family."""
    curves = {panel: [(f"{c.label} {m}", summary) for c in CERTIFICATES.values() if c.panel == panel
                      for m, summary in sorted(d.certs.get(c.name, {}).items())] for panel in CERTIFICATE_PANELS}
    sigmas = sorted({sigma for per_sigma in d.smoothing.values() for sigma in per_sigma})
    panels = [(title, curves[panel]) for panel, title in CERTIFICATE_PANELS.items() if curves[panel] or panel == "flip"]
    panels += [(f"randomized smoothing, $\\sigma$ = {sigma:g}",
                [(m, per_sigma[sigma]) for m, per_sigma in sorted(d.smoothing.items()) if sigma in per_sigma])
               for sigma in sigmas]
    envelope = plan is not None and bool(defense_families(d, plan))
    fig, axes = _panels(len(panels) + envelope)
    for ax, (title, curves) in zip(axes, panels, strict=False):
        for i, (label, summary) in enumerate(curves):
            if "certified_radii" not in summary:
                continue
            xs, ys = curve(summary)
            ax.step(np.append(xs, xs[-1] * 1.5 + 1e-6), np.append(ys, ys[-1]), where="post", lw=1.6,
                    label=label, **_style(i))
        ax.set(xlabel=f"radius ({describe(d.units)})", ylabel="certified accuracy", ylim=(0, 1.02), title=title)
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        if curves:
            _legend_below(ax, ncol=1 if len(curves) < 4 else 2)
    if envelope:
        _envelope_panel(axes[len(panels)], d, plan)
    fig.suptitle(f"{d.name}: certified accuracy against radius (test images)")
    return fig


def robust_accuracy(d: DatasetResults) -> plt.Figure:
    """Robust accuracy vs eps, one panel per attacked model: the worst case as a wide grey band,
    each attack on top of it with its own colour, line style and marker (in a cascade, cumulative: "+ name"
    is the accuracy after that attack and every one before it); eps 0 is clean accuracy."""
    models = sorted(d.attacks)
    fig, axes = _panels(len(models))
    markers = "os^vDP*X"
    for ax, model in zip(axes, models, strict=False):
        runs = d.attacks[model]
        cascade = "cascade" in runs.get(WORST, {})  # cumulative curves, in the order the cascade ran
        order = runs[WORST]["cascade"]["order"] if cascade else sorted(a for a in runs if a != WORST)
        for i, attack in enumerate([WORST, *order] if WORST in runs else order):
            s = runs[attack]
            eps = [0.0, *s["eps"]]
            acc = [s["clean_accuracy"], *s["robust_accuracy"]]
            if attack == WORST:
                ax.plot(eps, acc, color="0.55", lw=7, alpha=0.45, solid_capstyle="round", label="worst case", zorder=1)
            else:
                ax.plot(eps, acc, marker=markers[i % len(markers)], ms=5, lw=1.4, zorder=2, **_style(i - 1),
                        label=f"+ {attack}" if cascade and s["cascade"]["after"] else attack)
        ax.set(title=model, xlabel=f"eps ({describe(d.units)})", ylabel="robust accuracy", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        _legend_below(ax, ncol=3)
    fig.suptitle(f"{d.name}: robust accuracy under attack (judged on the hard model)")
    return fig


def k_tradeoff(d: DatasetResults, plan: Plan) -> plt.Figure:
    """Downstream accuracy and patch certificate (mean, and mean without the most common patch) over K."""
    sweep = [v for v in plan.sweep if v in d.vocab]
    ks = [d.vocab[v]["K"] for v in sweep]
    acc = [test_accuracy(d, tc.DISCRETE_PREFIX + v) for v in sweep]
    fig, ax = plt.subplots(figsize=(6.0, 4.4), layout="constrained")
    lines = ax.plot(ks, [np.nan if a is None else a for a in acc], marker="o", color="tab:blue",
                    label="test accuracy of f(Q(x)) (left axis)")
    ax.set(xscale="log", xlabel="vocabulary size K", ylabel="test accuracy of f(Q(x))")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax2 = ax.twinx()
    for key, marker, label in (("patch_cert", "s", "mean patch cert."),
                               ("patch_cert_rest", "^", "mean over all but the most common patch")):
        values = [d.certify.get(v, {}).get(key) for v in sweep]
        lines += ax2.plot(ks, [np.nan if c is None else c for c in values], marker=marker, color="tab:red",
                          ls="-" if key == "patch_cert" else "--", label=f"{label} (right axis)")
    ax2.set(ylabel=f"patch certificate ({describe(d.units)})")
    ax2.set_ylim(bottom=0)
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.18),
              ncol=1, fontsize=8, frameon=False)
    ax.set_title(f"{d.name}: accuracy vs certificate over K")
    return fig


def token_usage(d: DatasetResults) -> plt.Figure:
    """Histogram of token usage on the test set per vocabulary (sorted counts, log scale)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.4), layout="constrained")
    for i, (name, q) in enumerate(sorted(d.vocab.items())):
        counts = np.sort(np.asarray(q["usage_counts"], dtype=float).ravel())[::-1]
        ax.plot(np.arange(1, counts.size + 1), counts / counts.sum(), label=f"{name} (K={q['K']})", **_style(i))
    ax.set(xscale="log", yscale="log", xlabel="token rank", ylabel="share of test patches",
           title=f"{d.name}: token usage")
    _legend_below(ax, ncol=3)
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
    fig, axes = plt.subplots(3, count, figsize=(1.7 * count + 1.2, 5.6), squeeze=False, layout="constrained")
    top = float(radii.max())  # one colour scale for every map
    for i in range(count):
        img = x[i].permute(1, 2, 0).squeeze(-1).numpy()
        tok = tokenized[i].clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
        axes[0, i].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(tok, cmap="gray", vmin=0, vmax=1)
        shown = axes[2, i].imshow(radii[i].numpy(), cmap="viridis", vmin=0.0, vmax=top)
        axes[2, i].set_xlabel(f"$R_0$={float(radii[i].min()):.2e}", fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("original", f"tokenized ({vocab.name})", "patch certificate")):
        axes[row, 0].set_ylabel(label, fontsize=8)
    bar = fig.colorbar(shown, ax=axes[2, :], location="right", shrink=0.9)
    bar.set_label(f"patch radius\n({describe(d.units)})", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{d.name}: images, tokenization and certificate maps")
    return fig


def bracket(d: DatasetResults) -> plt.Figure:
    """Per image, the certified radius (lower bound on the minimal adversarial norm) against the
    smallest norm at which an attack of the suite succeeded (upper bound), log-log, one panel per
    certificate and a colour per classifier; the diagonal is where the two meet (every point lies
    on or above it, or the certificate would be unsound), dotted lines mark 10x and 100x gaps."""
    panels = [(c.label, d.brackets[c.label]) for c in CERTIFICATES.values() if c.label in d.brackets]
    fig, axes = _panels(len(panels))
    for ax, (method, per_model) in zip(axes, panels, strict=False):
        lows, highs = [], []
        for i, (model, (lower, upper)) in enumerate(sorted(per_model.items())):
            keep = (lower > 0) & np.isfinite(upper)
            ratio = np.median(upper[keep] / lower[keep]) if keep.any() else float("nan")
            ax.scatter(lower[keep], upper[keep], s=12, alpha=0.6, color=PALETTE[i % len(PALETTE)],
                       label=f"{model}: {keep.sum()} images, median ratio {ratio:.3g}")
            lows.append(lower[keep])
            highs.append(upper[keep])
        values = np.concatenate(lows + highs) if lows else np.array([])
        span = (values.min() / 2, values.max() * 2) if values.size else (1e-3, 10.0)
        line = np.geomspace(*span, 50)
        ax.plot(line, line, color="black", lw=1, label="upper = lower")
        for factor in (10, 100):
            ax.plot(line, factor * line, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlim=span, ylim=span, title=f"{method}: certified vs attacked",
               xlabel=f"certified radius ({describe(d.units)})", ylabel=f"smallest attack norm ({describe(d.units)})")
        ax.grid(alpha=0.3, which="both")
        _legend_below(ax, ncol=1)
    if not panels:
        axes[0].text(0.5, 0.5, "no attacked classifier with a certificate", ha="center", va="center")
        axes[0].set_axis_off()
    fig.suptitle(f"{d.name}: the robustness bracket per image (test images classified correctly)")
    return fig


FAMILIES = ("token classifier", "Lipschitz", "randomized smoothing", "adversarial training", "standard")
"""The frontier figure's families, one colour each."""


def family(plan: Plan, dataset: str, model: str) -> str:
    """The family of a classifier in the frontier figure (from its recipe)."""
    recipe = plan.datasets[dataset].recipes[model]
    if recipe.vocab is not None:
        return FAMILIES[0]
    if recipe.lipschitz:
        return FAMILIES[1]
    if recipe.sigma is not None:
        return FAMILIES[2]
    return FAMILIES[3] if recipe.kind in ("pgd_at", "trades") else FAMILIES[4]


VERIFIED_STYLE = {"lw": 7, "alpha": 0.3, "solid_capstyle": "butt", "zorder": 2}
"""The frontier figure's bar of a complete verifier's range (:func:`tokencert.report.tables.verified_range`)."""
VERIFIED_MIN_HEIGHT = 0.01  # a closed range (low = high) still shows as a short bar


def frontier(d: DatasetResults, plan: Plan) -> plt.Figure:
    """Clean accuracy against certified accuracy at each standard radius (a panel each), one point per
    classifier coloured by family and numbered (the legend names the numbers): a filled dot where it is
    certified (deterministic, or smoothing's probabilistic certificate: a ring round the dot), a triangle
    at its worst case under the attack suite, joined by a line: the true robust accuracy lies on that
    line (up is better, right is better); a wide pale bar where a complete verifier bounds it on its own
    (fewer) images."""
    numbers = [landscape_numbers(d, plan, m) for m in plan.datasets[d.name].models]
    numbers = [n for n in numbers if n["clean"] is not None]
    radii = numbers[0]["radii"] if numbers else []
    fig, axes = _panels(max(len(radii), 1))
    left = min((n["clean"] for n in numbers), default=0.0)
    left = max(0.0, np.floor((left - 0.05) * 10) / 10)
    for i, (ax, r) in enumerate(zip(axes, radii, strict=False)):
        for k, n in enumerate(numbers, start=1):
            colour = PALETTE[FAMILIES.index(family(plan, d.name, n["model"]))]
            cert, worst = n["certified"][i], n["worst"][i]
            if cert is not None and worst is not None:
                ax.plot([n["clean"]] * 2, [cert, worst], color=colour, lw=1, alpha=0.6)
            if cert is not None:
                probabilistic = n["certificate"][i].startswith("probabilistic")
                ax.scatter(n["clean"], cert, s=36, color=colour, zorder=3,
                           edgecolors="black" if probabilistic else colour, linewidths=1.2)
            if worst is not None:
                ax.scatter(n["clean"], worst, s=36, marker="^", facecolors="none", edgecolors=colour, zorder=3)
            if n["verified"][i] is not None:
                low, high, _ = n["verified"][i]
                ax.plot([n["clean"]] * 2, [low, high + VERIFIED_MIN_HEIGHT * (high == low)], color=colour,
                        **VERIFIED_STYLE, gid="verified")
            if cert is not None or worst is not None:
                top = max(v for v in (cert, worst) if v is not None)
                ax.annotate(str(k), (n["clean"], top), textcoords="offset points", xytext=(3, 2), fontsize=8,
                            color=colour)
        ax.set(xlim=(left, 1.0), ylim=(-0.02, 1.02), xlabel="clean accuracy", ylabel="accuracy at radius",
               title=f"r = {r:.3g} ({describe(d.units)})")
        ax.grid(alpha=0.3)
    names = [plt.Line2D([], [], ls="", marker="o", color=PALETTE[FAMILIES.index(family(plan, d.name, n["model"]))],
                        label=f"{k} {n['model']}") for k, n in enumerate(numbers, start=1)]
    markers = [plt.Line2D([], [], ls="", marker="o", color="grey", label="certified (deterministic)"),
               plt.Line2D([], [], ls="", marker="o", color="grey", markeredgecolor="black",
                          label="certified (smoothing, probabilistic)"),
               plt.Line2D([], [], ls="", marker="^", markerfacecolor="none", color="grey",
                          label="worst case under the attack suite")]
    counts = sorted({v[2] for n in numbers for v in n["verified"] if v is not None})
    if counts:
        images = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        markers.append(plt.Line2D([], [], color="grey", **VERIFIED_STYLE,
                                  label=f"exact verifier ({images} images): robust accuracy in the bar"))
    families = [plt.Line2D([], [], ls="", marker="o", color=PALETTE[i], label=name) for i, name in enumerate(FAMILIES)]
    if radii:
        fig.legend(handles=names, loc="outside right upper", fontsize=8, frameon=False, title="classifiers")
        fig.legend(handles=families + markers, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    else:
        axes[0].text(0.5, 0.5, "no standard radii for this image shape", ha="center", va="center")
        axes[0].set_axis_off()
    fig.suptitle(f"{d.name}: clean accuracy against certified and attacked accuracy")
    return fig


def make(kind: str, d: DatasetResults, plan: Plan) -> plt.Figure:
    """The figure of ``kind`` (one of :data:`tokencert.study.FIGURE_KINDS`) for dataset ``d``."""
    makers = {
        "certified": lambda: certified_accuracy(d, plan),
        "robust": lambda: robust_accuracy(d),
        "bracket": lambda: bracket(d),
        "frontier": lambda: frontier(d, plan),
        "usage": lambda: token_usage(d),
        "ktradeoff": lambda: k_tradeoff(d, plan),
        "examples": lambda: examples(d, plan.report.example_images),
    }
    if kind not in makers:
        raise ValueError(f"unknown figure kind '{kind}' (known: {', '.join(makers)})")
    return makers[kind]()
