"""The report's tables as rows of formatted cells, rendered to booktabs LaTeX with jinja2."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from .. import config as tc
from ..config import Plan
from ..study import WORST, study_eps
from .collect import DatasetResults, at, attack_accuracy, test_accuracy

TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data
DASH = "-"


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, '-' when missing."""
    return DASH if value is None else f"{100 * value:.2f} %"


def num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals, '-' when missing."""
    return DASH if value is None else f"{value:.{digits}f}"


def headline_eps(d: DatasetResults, grid: Sequence[float]) -> float:
    """The study's attack eps for this kind of data (:func:`tokencert.study.study_eps`) if in the
    grid, else the largest eps of the grid."""
    wanted = study_eps(d.manifest["shape"][0], d.manifest["shape"][1])
    return wanted if wanted is not None and any(abs(e - wanted) < 1e-12 for e in grid) else max(grid)


def main_rows(results: list[DatasetResults], plan: Plan) -> list[dict[str, str]]:
    """The study's main table, filled from our results, plus the honest columns."""
    rows = []
    main_vocab = plan.report.main_vocab
    radius = plan.report.cert_radius
    for d in results:
        eps = headline_eps(d, plan.eps)
        sigma = max(plan.datasets[d.name].sigmas)
        if main_vocab is not None:
            model = tc.DISCRETE_PREFIX + main_vocab
            cert, exact = d.certify.get(main_vocab, {}), d.exact.get(model, {})
            rows.append({
                "dataset": d.name, "units": d.units, "eps": f"{eps:g}", "classifier": f"Discrete ({main_vocab})",
                "acc": pct(test_accuracy(d, model)),
                "patch": num(cert.get("patch_cert")), "img": num(cert.get("img_cert_summed"), 2),
                "rs_acc": DASH, "rs_cert": DASH,
                "sspgd": pct(attack_accuracy(d, model, "sspgd", eps)),
                "worst": pct(attack_accuracy(d, model, WORST, eps)),
                "r0": pct(_cert_at(d.certacc.get(model), radius)),
                "r2": pct(_cert_at(exact.get("R2"), radius)),
            })
        if tc.BASELINE not in plan.datasets[d.name].models:
            continue
        smooth = d.smoothing.get(tc.noise_model(sigma), {}).get(sigma)
        rows.append({
            "dataset": d.name, "units": d.units, "eps": f"{eps:g}", "classifier": "Baseline",
            "acc": pct(test_accuracy(d, tc.BASELINE)),
            "patch": DASH, "img": DASH,
            "rs_acc": DASH if smooth is None else f"{pct(smooth['clean_accuracy'])} @ {sigma:g}",
            "rs_cert": DASH if smooth is None else f"{smooth['acr']:.2f} @ {sigma:g}",
            "sspgd": pct(attack_accuracy(d, tc.BASELINE, "pgd", eps)),
            "worst": pct(attack_accuracy(d, tc.BASELINE, WORST, eps)),
            "r0": DASH, "r2": DASH,
        })
    return rows


def _cert_at(summary: dict[str, Any] | None, radius: float) -> float | None:
    if summary is None:
        return None
    return at(summary["certified_accuracy"], summary["radii"], radius)


def vocab_rows(results: list[DatasetResults], plan: Plan) -> list[dict[str, str]]:
    """One row per dataset and vocabulary: reconstruction, usage, radii, downstream accuracy, robustness."""
    rows = []
    for d in results:
        eps = headline_eps(d, plan.eps)
        for name, q in d.vocab.items():
            model = tc.DISCRETE_PREFIX + name
            cert = d.certify.get(name, {})
            rows.append({
                "dataset": d.name, "vocab": name, "kind": q.get("kind", DASH), "K": str(q.get("K", DASH)),
                "psnr": num(q.get("recon_psnr"), 1), "perplexity": num(q.get("perplexity"), 1),
                "dead": pct(q.get("dead_fraction")), "patch": num(cert.get("patch_cert")),
                "r0": num(cert.get("r0_mean"), 4), "acc": pct(test_accuracy(d, model)),
                "robust": pct(attack_accuracy(d, model, WORST, eps)),
            })
    return rows


def cost_rows(results: list[DatasetResults]) -> list[dict[str, str]]:
    """Seconds per certified image: exact certificates against randomized smoothing."""
    rows = []
    for d in results:
        for vocab, cert in d.certify.items():
            rows.append({"dataset": d.name, "method": f"token certificate maps ({vocab})",
                         "seconds": f"{cert['seconds_per_image']:.2e}"})
        for model, summary in d.exact.items():
            rows.append({"dataset": d.name, "method": f"single-flip R2 certificate ({model})",
                         "seconds": f"{summary['R2']['seconds_per_image']:.2e}"})
        for model, per_sigma in d.smoothing.items():
            for sigma, s in sorted(per_sigma.items()):
                method = f"randomized smoothing ({model}, sigma={sigma:g}, n={s.get('n', '?')})"
                rows.append({"dataset": d.name, "method": method, "seconds": f"{s['seconds_per_image']:.2e}"})
    return rows


MAIN_COLUMNS = (("dataset", "Dataset"), ("units", "Units"), ("classifier", "Classifier"), ("acc", "Acc."),
                ("patch", "Patch Cert."), ("img", "Img. Cert. (summed)"), ("rs_acc", "RS Acc. @ sigma"),
                ("rs_cert", "RS ACR @ sigma"), ("sspgd", "PGD/SSPGD Acc. @ eps"), ("worst", "Worst Acc. @ eps"),
                ("eps", "eps"), ("r0", "R_0 cert. Acc."), ("r2", "R_2 cert. Acc."))


def markdown(rows: list[dict[str, str]], columns: Sequence[tuple[str, str]] = MAIN_COLUMNS) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (for README files and quick reading)."""
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r[key] for key, _ in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def environment() -> jinja2.Environment:
    """jinja2 with LaTeX-safe delimiters (``\\VAR{...}``, ``\\BLOCK{...}``)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}", comment_start_string=r"\#{",
        comment_end_string="}", trim_blocks=True, lstrip_blocks=True, autoescape=False, undefined=jinja2.StrictUndefined,
    )


def latex_escape(text: str) -> str:
    """Escape characters LaTeX treats specially (leaves $...$ math alone)."""
    for char, repl in (("%", r"\%"), ("_", r"\_"), ("&", r"\&"), ("#", r"\#"),
                       ("<", r"\textless{}"), (">", r"\textgreater{}")):
        text = text.replace(char, repl)
    return text


def render(template: str, **context: Any) -> str:
    """Render a template of ``tokencert/report/templates`` (package data)."""
    env = environment()
    env.filters["tex"] = latex_escape
    return env.get_template(template).render(**context)
