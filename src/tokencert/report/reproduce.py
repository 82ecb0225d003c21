"""The section "Reproducing the study": the study's published numbers beside ours in pixel and
in normalized units, and which reading of the study's units our numbers support.

The study's numbers come from ``report.reproduce[*].study`` in the parameters (quoted from
the study, method.md section 6); every other number is read from this run's results.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import config as tc
from ..config import Plan
from ..study import WORST
from .collect import DatasetResults, attack_accuracy, test_accuracy

# (key, label, unit-dependent?, is an accuracy?)
METRICS = (
    ("discrete_acc", "Discrete: clean acc.", False, True),
    ("patch_cert", "Discrete: patch cert.", True, False),
    ("img_cert", "Discrete: img. cert. (summed)", True, False),
    ("discrete_attack_acc", "Discrete: SSPGD acc. @ eps", True, True),
    ("discrete_worst_acc", "Discrete: worst-case acc. @ eps (attack suite)", True, True),
    ("baseline_acc", "Baseline: clean acc.", False, True),
    ("rs_acc", "RS: clean acc. @ sigma", True, True),
    ("rs_cert", "RS: avg. certified radius @ sigma", True, False),
    ("baseline_attack_acc", "Baseline: PGD acc. @ eps", True, True),
    ("baseline_worst_acc", "Baseline: worst-case acc. @ eps (attack suite)", True, True),
)


@dataclass
class Comparison:
    """One study dataset: the metric values of the study and ours in both units (None: not computed)."""

    study_dataset: str
    sigma: float
    eps: float
    values: dict[str, dict[str, float | None]]  # metric -> {"study", "pixel", "normalized"}
    std: list[float] | None = None  # per-channel std of the normalized dataset (None: not built)

    def pixel_sizes(self, size: float) -> str:
        """A normalized size in pixel units, per channel (``size * std_c``)."""
        return ", ".join(f"{size * s:.3f}" for s in self.std or [])

    def std_text(self) -> str:
        """The per-channel standard deviations."""
        return ", ".join(f"{s:.4f}" for s in self.std or [])


def ours(d: DatasetResults | None, vocab: str, sigma: float, eps: float) -> dict[str, float | None]:
    """Our values of every metric for dataset ``d`` (all None when the dataset was not run)."""
    if d is None:
        return {key: None for key, *_ in METRICS}
    discrete = tc.DISCRETE_PREFIX + vocab
    cert = d.certify.get(vocab, {})
    smooth = d.smoothing.get(tc.noise_model(sigma), {}).get(sigma)
    return {
        "discrete_acc": test_accuracy(d, discrete),
        "patch_cert": cert.get("patch_cert"),
        "img_cert": cert.get("img_cert_summed"),
        "discrete_attack_acc": attack_accuracy(d, discrete, "sspgd", eps),
        "discrete_worst_acc": attack_accuracy(d, discrete, WORST, eps),
        "baseline_acc": test_accuracy(d, tc.BASELINE),
        "rs_acc": None if smooth is None else smooth["clean_accuracy"],
        "rs_cert": None if smooth is None else smooth["acr"],
        "baseline_attack_acc": attack_accuracy(d, tc.BASELINE, "pgd", eps),
        "baseline_worst_acc": attack_accuracy(d, tc.BASELINE, WORST, eps),
    }


def comparisons(results: list[DatasetResults], plan: Plan) -> list[Comparison]:
    """One :class:`Comparison` per entry of ``report.reproduce``."""
    by_name = {d.name: d for d in results}
    out = []
    for entry in plan.report.reproduce:
        vocab = entry.get("vocab") or plan.report.main_vocab
        sigma, eps = float(entry["sigma"]), float(entry["eps"])
        norm_data = by_name.get(entry["normalized"])
        pixel = ours(by_name.get(entry["pixel"]), vocab, sigma, eps)
        normalized = ours(norm_data, vocab, sigma, eps)
        values = {key: {"study": entry["study"].get(key), "pixel": pixel[key], "normalized": normalized[key]}
                  for key, *_ in METRICS}
        std = None if norm_data is None else [float(v) for v in norm_data.manifest["std"]]
        out.append(Comparison(entry["study_dataset"], sigma, eps, values, std))
    return out


def relative_error(ours_value: float | None, study_value: float | None) -> float | None:
    """``|ours - study| / |study|`` (None when either is missing or the study's value is 0)."""
    if ours_value is None or study_value is None or study_value == 0:
        return None
    return abs(ours_value - study_value) / abs(study_value)


def closer_reading(c: Comparison) -> tuple[int, int, int]:
    """Over the unit-dependent metrics both readings have: how many are closer to the study in
    pixel units, how many in normalized units, and how many could be compared."""
    pixel = normalized = compared = 0
    for key, _, unit_dependent, _ in METRICS:
        if not unit_dependent:
            continue
        v = c.values[key]
        e_pix, e_norm = relative_error(v["pixel"], v["study"]), relative_error(v["normalized"], v["study"])
        if e_pix is None or e_norm is None:
            continue
        compared += 1
        pixel += e_pix < e_norm
        normalized += e_norm < e_pix
    return pixel, normalized, compared


def verdict(c: Comparison) -> list[str]:
    """Sentences generated from the numbers: which reading the data supports, and how much of
    the study's attack robustness survives our attack suite."""
    pixel, normalized, compared = closer_reading(c)
    if compared == 0:
        return [f"{c.study_dataset}: not enough results in both units to compare with the study."]
    if normalized > pixel:
        reading = "the study's sigma, eps and radii were measured in normalized units"
    elif pixel > normalized:
        reading = "the study's sigma, eps and radii were measured in [0,1] pixel units"
    else:
        reading = "neither reading of the study's units"
    out = [f"{c.study_dataset}: of {compared} unit-dependent numbers, {normalized} are closer to the study's "
           f"in normalized units and {pixel} in pixel units; the data supports the reading that {reading}."]
    for model, attack_key in (("discrete", "discrete_attack_acc"), ("baseline", "baseline_attack_acc")):
        worst_key = f"{model}_worst_acc"
        study = c.values[attack_key]["study"]
        for units in ("pixel", "normalized"):
            worst = c.values[worst_key][units]
            if study is None or worst is None:
                continue
            out.append(f"{c.study_dataset}, {model}: the study reports {100 * study:.2f} % under its attack at "
                       f"eps {c.eps:g}; our attack suite leaves {100 * worst:.2f} % in {units} units "
                       f"({100 * (worst - study):+.2f} points).")
    return out


def rows(c: Comparison) -> list[dict[str, str]]:
    """Table rows (metric, study, ours pixel, ours normalized) with '-' for missing values."""
    def fmt(value: float | None, accuracy: bool) -> str:
        if value is None:
            return "-"
        return f"{100 * value:.2f} %" if accuracy else f"{value:.3f}"

    label = {"eps": f"{c.eps:g}", "sigma": f"{c.sigma:g}"}
    return [{"metric": text.replace("@ eps", f"@ {label['eps']}").replace("@ sigma", f"@ {label['sigma']}"),
             **{k: fmt(c.values[key][k], accuracy) for k in ("study", "pixel", "normalized")}}
            for key, text, _, accuracy in METRICS]
