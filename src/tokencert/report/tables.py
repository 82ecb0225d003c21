"""The report's tables as rows of formatted cells, rendered to booktabs LaTeX with jinja2."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import config as tc
from ..certificates import CERTIFICATES
from ..config import Plan
from ..smoothing import chance_level
from ..study import STANDARD_RADII, WORST, study_eps
from .collect import DatasetResults, at, attack_accuracy, test_accuracy
from .outputs import LANDSCAPE_PARTS

TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data
DASH = "-"


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, '-' when missing."""
    return DASH if value is None else f"{100 * value:.2f} %"


def sci(value: float | None) -> str:
    """A small positive number with three significant digits (``3.10e-05``), '-' when missing."""
    return DASH if value is None else f"{value:.2e}"


def num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals, '-' when missing."""
    return DASH if value is None else f"{value:.{digits}f}"


def headline_eps(d: DatasetResults, grid: Sequence[float]) -> float:
    """The study's attack eps for this kind of data (:func:`tokencert.study.study_eps`) if in the
    grid, else the largest eps of the grid."""
    wanted = study_eps(d.manifest["shape"][0], d.manifest["shape"][1])
    return wanted if wanted is not None and any(abs(e - wanted) < 1e-12 for e in grid) else max(grid)


def precision_note(smooth: dict[str, Any] | None) -> str:
    """``", bf16 on cuda"``: the arithmetic and device of a smoothing result (empty before it exists)."""
    if smooth is None:
        return ""
    return f", {smooth.get('precision', 'fp32')} on {smooth.get('device', 'cpu')}"


def main_rows(results: list[DatasetResults], plan: Plan) -> list[dict[str, str]]:
    """The study's main table, filled from our results, plus the honest columns.

    One row for the main discrete classifier, one for the baseline (when trained), and one per
    smoothed classifier and sigma: a smoothing result belongs to the classifier that was smoothed.
    """
    rows = []
    main_vocab = plan.report.main_vocab
    radius = plan.report.cert_radius
    for d in results:
        eps = headline_eps(d, plan.eps)
        common = {"dataset": d.name, "units": d.units, "eps": f"{eps:g}", "patch": DASH, "img": DASH,
                  "rs_acc": DASH, "rs_cert": DASH, "sspgd": DASH, "worst": DASH, "r0": DASH, "r2": DASH}
        if main_vocab is not None:
            model = tc.DISCRETE_PREFIX + main_vocab
            cert = d.certify.get(main_vocab, {})
            rows.append({**common, "classifier": f"Discrete ({main_vocab})", "acc": pct(test_accuracy(d, model)),
                         "patch": num(cert.get("patch_cert")), "img": num(cert.get("img_cert_summed"), 2),
                         "sspgd": pct(attack_accuracy(d, model, "sspgd", eps)),
                         "worst": pct(attack_accuracy(d, model, WORST, eps)),
                         "r0": pct(_cert_at(d.certificate("R0", model), radius)),
                         "r2": pct(_cert_at(d.certificate("R2", model), radius))})
        if tc.BASELINE in plan.datasets[d.name].models:
            rows.append({**common, "classifier": "Baseline", "acc": pct(test_accuracy(d, tc.BASELINE)),
                         "sspgd": pct(attack_accuracy(d, tc.BASELINE, "pgd", eps)),
                         "worst": pct(attack_accuracy(d, tc.BASELINE, WORST, eps))})
        for model, sigma in plan.datasets[d.name].smoothed:
            smooth = d.smoothing.get(model, {}).get(sigma)
            flag = smooth is not None and chance_level(smooth["clean_accuracy"], len(d.manifest.get("classes", [])))
            rows.append({**common, "classifier": f"{model}, smoothed (sigma {sigma:g}{precision_note(smooth)})",
                         "acc": pct(test_accuracy(d, model)),
                         "rs_acc": DASH if smooth is None else pct(smooth["clean_accuracy"]) + (" (chance!)" if flag
                                                                                               else ""),
                         "rs_cert": DASH if smooth is None else f"{smooth['acr']:.3f}"})
    return rows


def main_columns(rows: list[dict[str, str]], radius: float) -> list[tuple[str, str]]:
    """(key, title) of the main table's columns: the attack columns name their eps (in the title
    when every row shares one, else in an eps column), the certificate columns their radius."""
    eps = {r["eps"] for r in rows}
    at_eps = f" @ eps = {eps.pop()}" if len(eps) == 1 else " @ eps (column eps)"
    columns = [("dataset", "Dataset"), ("units", "Units"), ("classifier", "Classifier"), ("acc", "Clean acc."),
               ("patch", "Patch cert."), ("img", "Img. cert. (summed)"), ("rs_acc", "RS clean acc."),
               ("rs_cert", "RS ACR"), ("sspgd", "PGD/SSPGD acc." + at_eps), ("worst", "Worst-case acc." + at_eps)]
    if at_eps.endswith("(column eps)"):
        columns.append(("eps", "eps"))
    return columns + [("r0", f"R_0 cert. acc. @ r = {radius:g}"), ("r2", f"R_2 cert. acc. @ r = {radius:g}")]


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
                "p": DASH if "patch_size" not in q else f"{q['patch_size']}x{q['patch_size']}",
                "psnr": num(q.get("recon_psnr"), 1), "perplexity": num(q.get("perplexity"), 1),
                "dead": pct(q.get("dead_fraction")), "patch": num(cert.get("patch_cert")),
                "r0": sci(cert.get("r0_mean")), "acc": pct(test_accuracy(d, model)),
                "robust": pct(attack_accuracy(d, model, WORST, eps)), "eps": f"{eps:g}",
            })
    return rows


def vocab_columns(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(key, title) of the vocabulary table."""
    eps = {r["eps"] for r in rows}
    at_eps = f" @ eps = {eps.pop()}" if len(eps) == 1 else ""
    return [("dataset", "Dataset"), ("vocab", "Vocabulary"), ("kind", "Kind"), ("K", "K"), ("p", "Patch"),
            ("psnr", "PSNR (dB)"),
            ("perplexity", "Perplexity"), ("dead", "Dead tokens"), ("patch", "Mean patch cert."),
            ("r0", "Mean R_0"), ("acc", "Clean acc."), ("robust", "Worst-case acc." + at_eps)]


def cost_rows(results: list[DatasetResults]) -> list[dict[str, str]]:
    """Seconds and network evaluations per image: exact certificates, randomized smoothing and each
    classifier's attack suite (its attacks summed; the work a job records, ``evaluation.counted``)."""
    rows = []
    for d in results:
        for vocab, cert in d.certify.items():
            rows.append(_cost(d.name, f"token certificate maps ({vocab})", cert["seconds_per_image"], None))
        for name, per_model in d.certs.items():
            for model, summary in sorted(per_model.items()):
                rows.append(_cost(d.name, f"{CERTIFICATES[name].label} certificate ({model})",
                                  summary["seconds_per_image"], summary.get("work")))
        for model, per_sigma in d.smoothing.items():
            for sigma, s in sorted(per_sigma.items()):
                method = (f"randomized smoothing ({model}, sigma={sigma:g}, n={s.get('n', '?')}, "
                          f"{s.get('precision', 'fp32')})")
                rows.append(_cost(d.name, method, s["seconds_per_image"], s.get("work"), s.get("device", "cpu")))
        for model, attacks in d.attacks.items():
            works = [a["work"] for name, a in attacks.items() if name != WORST and "work" in a]
            if works:
                images = max(a["n_images"] for name, a in attacks.items() if name != WORST)
                total = {key: sum(w[key] for w in works) for key in ("seconds", "forward_images", "backward_images")}
                rows.append(_cost(d.name, f"attack suite ({model}, {len(works)} attacks)", total["seconds"] / images,
                                  {"device": "/".join(sorted({w["device"] for w in works})),
                                   "forward_per_image": total["forward_images"] / images,
                                   "backward_per_image": total["backward_images"] / images}))
    return rows


def _cost(dataset: str, method: str, seconds: float, work: dict[str, Any] | None,
          device: str | None = None) -> dict[str, str]:
    """A cost-table row; evaluations (and the device, unless given) are dashes where the job did not
    record its work."""
    return {"dataset": dataset, "method": method, "seconds": f"{seconds:.2e}",
            "forward": DASH if work is None else f"{work['forward_per_image']:,.0f}",
            "backward": DASH if work is None else f"{work['backward_per_image']:,.0f}",
            "device": work["device"] if work is not None else device or DASH}


def near(grid: Sequence[float], point: float) -> int | None:
    """Index of the grid value within 0.1 % of ``point`` (36/255 is written 0.1412)."""
    for i, g in enumerate(grid):
        if abs(g - point) <= 1e-3 * max(abs(point), 1e-12):
            return i
    return None


def certified_at(summary: dict[str, Any] | None, radius: float) -> float | None:
    """Certified accuracy at ``radius`` from a summary's per-image certified radii (any radius): the
    share of the ``n_images`` certified with ``radius_i >= radius``, as on the summary's grid."""
    if summary is None:
        return None
    return float(np.count_nonzero(np.asarray(summary["certified_radii"]) >= radius) / summary["n_images"])


def verified_range(d: DatasetResults, model: str, radius: float) -> tuple[float, float, int] | None:
    """Where the strongest complete verifier computed (``Certificate.complete``) puts ``model``'s robust
    accuracy at ``radius`` on its own images: from the share certified there (lower bound >= radius) to
    the share without a verified adversarial example below it (upper bound >= radius; misclassified
    images have both bounds 0), and its image count; None without a verifier's per-image bounds."""
    for cert in reversed(CERTIFICATES.values()):
        if cert.complete and model in d.brackets.get(cert.label, {}):
            lower, upper = d.brackets[cert.label][model]
            return float(np.mean(lower >= radius)), float(np.mean(upper >= radius)), int(lower.size)
    return None


def certificate_summaries(d: DatasetResults, model: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A classifier's deterministic certificate summaries (those of the landscape) and its smoothing summary."""
    smooth = next(iter(d.smoothing.get(model, {}).values()), None)
    return [c for name, c in d.deterministic(model).items() if CERTIFICATES[name].landscape], smooth


def best_certified(deterministic: list[dict[str, Any]], smooth: dict[str, Any] | None, radius: float
                   ) -> tuple[float | None, str]:
    """The best certified accuracy at ``radius`` and its kind: the deterministic certificates' best, or
    smoothing's (probabilistic, at its alpha) where higher; ``(None, "none")`` without either."""
    best = max((v for v in (certified_at(c, radius) for c in deterministic) if v is not None), default=None)
    options = [(best, "deterministic"),
               (certified_at(smooth, radius), f"probabilistic (alpha {smooth['alpha']:g})" if smooth else "")]
    return max(((v, k) for v, k in options if v is not None), default=(None, "none"))


def landscape_numbers(d: DatasetResults, plan: Plan, model: str) -> dict[str, Any]:
    """The defense-landscape numbers of one classifier: clean accuracy; per standard radius the best
    certified accuracy and its kind (deterministic: the family's certificates, :mod:`tokencert.certificates`,
    without those a computed one refines; probabilistic: smoothing at alpha), the worst-case accuracy
    under the suite and the complete verifier's range on its images (:func:`verified_range`); the worst
    case at the study's eps; the smallest median bracket ratio; the seconds per image of the strongest
    certificate computed."""
    recipe = plan.datasets[d.name].recipes[model]
    radii = STANDARD_RADII.get(tuple(d.manifest["shape"][:2]), ())
    deterministic, smooth = certificate_summaries(d, model)
    worst = d.attacks.get(model, {}).get(WORST)
    out: dict[str, Any] = {"model": model, "input": recipe.input, "objective": recipe.kind,
                           "clean": test_accuracy(d, model), "radii": list(radii), "certified": [],
                           "certificate": [], "worst": [], "verified": [], "seconds_per_image": None}
    for r in radii:
        value, kind = best_certified(deterministic, smooth, r)
        out["certified"].append(value)
        out["certificate"].append(kind)
        out["verified"].append(verified_range(d, model, r))
        i = None if worst is None else near(worst["eps"], r)
        out["worst"].append(None if i is None else worst["robust_accuracy"][i])
    eps = study_eps(*d.manifest["shape"][:2])
    i = None if worst is None or eps is None else near(worst["eps"], eps)
    out["study_eps"], out["worst_study_eps"] = eps, None if i is None else worst["robust_accuracy"][i]
    # the cost of the strongest certificate computed: smoothing where smoothed, else the family's
    # strongest (registry order runs weakest first)
    strongest = [smooth] if smooth is not None else deterministic[::-1]
    if strongest:
        out["seconds_per_image"] = strongest[0]["seconds_per_image"]
    brackets = [c["bracket"] for c in d.certificates(model).values() if "bracket" in c]
    out["bracket_ratio"] = min((r for b in brackets if math.isfinite(r := b["median_gap_ratio"])), default=None)
    out["closed_share"] = max((s for b in brackets if math.isfinite(s := b.get("closed_share", math.nan))),
                              default=None)
    return out


def verified_cell(low: float, high: float, images: int) -> str:
    """A complete verifier's range of robust accuracy and its image count, e.g. ``63.8-65.2 % (1000)``."""
    return f"{100 * low:.1f}-{100 * high:.1f} % ({images})"


def landscape_rows(results: list[DatasetResults], plan: Plan) -> list[dict[str, str]]:
    """The defense landscape: per dataset a row per classifier under the same evaluation. Cells name
    their radius when the datasets' standard radii differ (the titles do otherwise)."""
    numbers = [(d, landscape_numbers(d, plan, m)) for d in results for m in plan.datasets[d.name].models]
    shared = len({tuple(n["radii"]) for _, n in numbers}) == 1
    rows = []
    for d, n in numbers:
        row = {"dataset": d.name, "units": d.units, "classifier": n["model"], "input": n["input"],
               "objective": n["objective"], "clean": pct(n["clean"]), "worst_eps": pct(n["worst_study_eps"]),
               "seconds": DASH if n["seconds_per_image"] is None else f"{n['seconds_per_image']:.2e}",
               "bracket": DASH if n["bracket_ratio"] is None else f"{n['bracket_ratio']:.3g}x",
               "closed": pct(n["closed_share"])}
        for i in range(RADII_COLUMNS):
            r = n["radii"][i] if i < len(n["radii"]) else None
            at_r = "" if shared or r is None else f" @ {r:.3g}"
            value = None if r is None else n["certified"][i]
            kind = "" if value is None else f" ({CERTIFICATE_ABBREVIATIONS[n['certificate'][i].split(' ')[0]]})"
            row[f"cert{i}"] = DASH if value is None else pct(value) + kind + at_r
            row[f"worst{i}"] = DASH if r is None or n["worst"][i] is None else pct(n["worst"][i]) + at_r
            verified = None if r is None else n["verified"][i]
            row[f"verified{i}"] = DASH if verified is None else verified_cell(*verified) + at_r
        rows.append(row)
    return rows


def _our_setting(d: DatasetResults, model: str, smooth: dict[str, Any] | None) -> str:
    final = d.models.get(model)
    if final is None:
        return DASH
    settings = final.get("settings", {})
    text = f"{final['n_train']:,} training images, {settings.get('epochs', '?')} epochs, {settings.get('arch', '?')}"
    if smooth is not None:
        text += f"; n = {smooth['n']:,} on {smooth['n_images']} images"
    return text


def published_rows(results: list[DatasetResults], plan: Plan) -> list[dict[str, str]]:
    """The table "Against the literature": each ``report.published`` number (quoted) beside the same
    number of the named classifier of ours, on every dataset that trains it, with both settings."""
    rows = []
    for entry in plan.report.published:
        for d in results:
            if entry["model"] not in plan.datasets[d.name].models:
                continue
            deterministic, smooth = certificate_summaries(d, entry["model"])
            if entry["metric"] == "acr":
                sigmas = d.smoothing.get(entry["model"], {})
                smooth = next((s for sigma, s in sigmas.items() if abs(float(sigma) - entry["sigma"]) < 1e-9), None)
                what, ours = f"ACR @ sigma {entry['sigma']:g}", num(None if smooth is None else smooth["acr"])
                published = num(entry["value"])
            else:
                value, kind = best_certified(deterministic, smooth, entry["radius"])
                suffix = "" if value is None else f" ({CERTIFICATE_ABBREVIATIONS[kind.split(' ')[0]]})"
                what, ours, published = f"certified @ {entry['radius']:g}", pct(value) + suffix, pct(entry["value"])
            rows.append({"dataset": d.name, "method": entry["method"], "source": entry["source"], "metric": what,
                         "published": published, "published_clean": pct(entry.get("clean")),
                         "model": entry["model"], "ours": ours, "our_clean": pct(test_accuracy(d, entry["model"])),
                         "setting": entry["setting"], "our_setting": _our_setting(d, entry["model"], smooth)})
    return rows


PUBLISHED_COLUMNS = (("dataset", "Dataset"), ("method", "Published method"), ("source", "Source"),
                     ("metric", "Number"), ("published", "Published"), ("published_clean", "Published clean acc."),
                     ("model", "Ours"), ("ours", "Ours: number"), ("our_clean", "Ours: clean acc."),
                     ("setting", "Published setting"), ("our_setting", "Our setting"))
PUBLISHED_TEXT = ("source", "setting", "our_setting")
"""The published table's long-text columns: in the HTML table, listed under the PDF's."""


RADII_COLUMNS = 3  # the standard radii per dataset (tokencert.study.STANDARD_RADII)
CERTIFICATE_ABBREVIATIONS = {"deterministic": "det.", "probabilistic": "prob."}


def landscape_columns(results: list[DatasetResults]) -> list[tuple[str, str]]:
    """Columns of the landscape table: the radii in the titles when every dataset shares them."""
    radii = {STANDARD_RADII.get(tuple(d.manifest["shape"][:2]), ()) for d in results}
    shared = next(iter(radii)) if len(radii) == 1 else ()
    cols = [("dataset", "Dataset"), ("units", "Units"), ("classifier", "Classifier"), ("input", "Input"),
            ("objective", "Objective"), ("clean", "Clean acc.")]
    at_r = [f" @ r = {shared[i]:.3g}" if i < len(shared) else f" (radius {i + 1})" for i in range(RADII_COLUMNS)]
    for i in range(RADII_COLUMNS):
        cols += [(f"cert{i}", "Certified" + at_r[i]), (f"worst{i}", "Worst-case" + at_r[i])]
    cols += [(f"verified{i}", "Verified" + at_r[i]) for i in range(RADII_COLUMNS)]
    return cols + [("worst_eps", "Worst-case @ study eps"), ("bracket", "Bracket (median upper/lower)"),
                   ("closed", "Closed brackets"),
                   ("seconds", "Cert. s/image")]


LANDSCAPE_NAMES = ("classifier", "input", "objective")
"""The columns every part of the landscape in the PDF repeats (parts: ``outputs.LANDSCAPE_PARTS``)."""


def pdf_parts(kind: str, rows: list[dict[str, str]], columns: Sequence[tuple[str, str]], datasets: Sequence[str]
              ) -> list[tuple[str, list[dict[str, str]], list[tuple[str, str]]]]:
    """Table ``kind`` split for the PDF (readable at print size): per dataset (its units, eps and radii
    shared, so the dataset and units columns go to the heading), the landscape further into
    ``LANDSCAPE_PARTS``; the others whole. Returns (name, rows, columns) per part (names:
    :func:`.outputs.pdf_table_names`)."""
    if kind == "published":  # the numbers; the report lists the settings (long text) below the table
        return [(kind, rows, [(k, t) for k, t in columns if k not in PUBLISHED_TEXT])]
    if kind not in ("main", "landscape"):
        return [(kind, rows, list(columns))]
    kept = [(k, t) for k, t in columns if k not in ("dataset", "units")]
    out = []
    for dataset in datasets:
        mine = [r for r in rows if r["dataset"] == dataset]
        if kind == "main":
            out.append((f"main-{dataset}", mine, kept))
            continue
        for part, keys in LANDSCAPE_PARTS.items():
            out.append((f"landscape-{dataset}-{part}", mine, [(k, t) for k, t in kept if k in LANDSCAPE_NAMES
                                                              or k.rstrip("0123456789") in keys]))
    return out


COST_COLUMNS = (("dataset", "Dataset"), ("method", "Method"), ("seconds", "Seconds per image"),
                ("forward", "Forward / image"), ("backward", "Backward / image"), ("device", "Device"))


def markdown(rows: list[dict[str, str]], columns: Sequence[tuple[str, str]]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (for README files and quick reading)."""
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r[key] for key, _ in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def environment() -> jinja2.Environment:
    """jinja2 with LaTeX-safe delimiters (``\\VAR{...}``, ``\\BLOCK{...}``)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}", comment_start_string=r"\#{",
        comment_end_string="}", trim_blocks=True, lstrip_blocks=True, autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


HEADER_WIDTH = 16  # characters per line of a LaTeX column title (titles wider than their cells set a table's width)


def latex_title(title: str) -> str:
    """A plain column title in LaTeX: symbols for sigma, eps, R_0 and R_2, broken into lines of at most
    ``HEADER_WIDTH`` characters, its ``@ <budget>`` on a line of its own (a bottom-aligned inner tabular)."""
    name, at_sign, budget = title.partition(" @ ")
    lines = []
    for line in textwrap.wrap(name, HEADER_WIDTH, break_long_words=False) + ([f"@ {budget}"] if at_sign else []):
        text = latex_escape(line)
        for plain, symbol in (("sigma", r"$\\sigma$"), ("eps", r"$\\varepsilon$"), (r"R\\_0", "$R_0$"),
                              (r"R\\_2", "$R_2$")):
            text = re.sub(rf"\b{plain}\b", symbol, text)
        lines.append(text)
    return "".join(lines) if len(lines) <= 1 else r"\begin{tabular}[b]{@{}l@{}}" + r"\\".join(lines) + r"\end{tabular}"


def html(rows: list[dict[str, str]], columns: Sequence[tuple[str, str]], caption: str) -> str:
    """A rendered HTML table (for the HTML report, where LaTeX source would show as text)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(HTML_TABLE).render(rows=rows, columns=columns, caption=caption)


HTML_TABLE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
table {border-collapse: collapse; font-family: sans-serif; font-size: 13px}
th, td {border-bottom: 1px solid #ccc; padding: 3px 8px; text-align: left}
caption {caption-side: top; text-align: left; padding: 4px 0}
</style></head><body><table>
<caption>{{ caption }}</caption>
<thead><tr>{% for key, title in columns %}<th>{{ title }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in rows %}<tr>{% for key, title in columns %}<td>{{ r[key] }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table></body></html>
"""


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
    env.filters["texhead"] = latex_title
    return env.get_template(template).render(**context)
