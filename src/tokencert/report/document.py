"""Build the report: tables, figures, the LaTeX document and (with latexmk) the PDF."""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..certificates import CERTIFICATES
from ..config import BASELINE, DISCRETE_PREFIX, Plan
from ..io import atomic_path, write_json, write_text
from ..models import resolve_arch
from ..smoothing import chance_level, max_radius
from ..study import STANDARD_RADII, WORST
from ..units import describe
from . import figures, reproduce, tables
from .captions import caption, rst_to_latex
from .collect import DatasetResults, cascade_images, collect, test_accuracy

log = logging.getLogger("tokencert")


def findings(results: list[DatasetResults], plan: Plan) -> list[str]:
    """Short sentences generated from the numbers (no number is written here by hand)."""
    out = []
    for row in tables.main_rows(results, plan):
        if row["worst"] != tables.DASH:
            out.append(f"{row['dataset']}, {row['classifier']}: test accuracy {row['acc']}, worst-case accuracy "
                       f"under the attack suite {row['worst']} at eps {row['eps']} ({row['units']} units).")
    for d in results:
        classes = len(d.manifest.get("classes", []))
        for model, per_sigma in sorted(d.smoothing.items()):
            for sigma, s in sorted(per_sigma.items()):
                if chance_level(s["clean_accuracy"], classes):
                    out.append(f"{d.name}, {model} smoothed at sigma {sigma:g}: SANITY WARNING: clean accuracy "
                               f"{100 * s['clean_accuracy']:.1f} % is chance level for {classes} classes: the "
                               f"smoothed classifier predicts (nearly) a constant, and its certified radii (ACR "
                               f"{s['acr']:.3f}) say nothing about robustness.")
        out += classifier_findings(d, plan)
        sweep = [v for v in plan.sweep if v in d.certify]
        if len(sweep) > 1:
            parts = [f"K = {d.vocab[v]['K']}: mean {d.certify[v]['patch_cert']:.3f}, most common patch radius "
                     f"{d.certify[v]['mode_radius']:.3f} ({100 * d.certify[v]['mode_share']:.0f} % of patches), "
                     f"mean of the other patches {d.certify[v]['patch_cert_rest']:.3f}"
                     for v in sweep if "patch_cert_rest" in d.certify[v]]
            if parts:
                out.append(f"{d.name}, patch certificate over the K sweep ({d.units} units): " + "; ".join(parts)
                           + ". The patch certificate is set by the few tokens nearest to the most common "
                           "patches, for a Gaussian vocabulary one random draw per K: it need not fall "
                           "monotonically in K.")
        for name, per_model in d.certs.items():
            for model, s in sorted(per_model.items()):
                if "bracket" in s:
                    out.append(bracket_finding(d.name, model, name, s))
        checked = cascade_images(d)
        if checked is not None:
            out.append(f"{d.name}: the attacks ran as a cascade (attacks.cascade, AutoAttack's order: white-box "
                       "attacks as listed, black-box ones last): each attacked an image at an eps only where every "
                       "attack before it had left it standing, so the robust-accuracy figure's curves are "
                       "cumulative (the accuracy after that attack and every one before it) and the last is the "
                       f"worst case. Each attack also ran alone on the first {checked} test images: the tables' "
                       "per-attack accuracies (PGD, SSPGD) and the gradient-masking check are from those runs.")
        for model, attacks in sorted(d.attacks.items()):
            warnings = attacks.get(WORST, {}).get("sanity", {}).get("warnings", [])
            for w in warnings:
                out.append(f"{d.name}, {model}: SANITY WARNING: {w}.")
    return [tables.latex_escape(s).replace(r"\_", "_") if "$" in s else tables.latex_escape(s) for s in out]


BASE_GAP = 0.10
"""A smoothed classifier's base classifier more than this below its clean counterpart (same input) is said."""
SHIFT = 0.02
"""Accuracy under its training noise this far above the clean one: the gap is a distribution shift."""


def classifier_findings(d: DatasetResults, plan: Plan) -> list[str]:
    """Per classifier: a SANITY WARNING at chance level (any classifier: its robust and certified
    accuracies say nothing); a base classifier of smoothing far below its clean counterpart; the
    landscape's standard radii the attacks' eps grid leaves out (their worst-case cells are dashes)."""
    out, classes = [], len(d.manifest.get("classes", []))
    recipes = plan.datasets[d.name].recipes
    for model in plan.datasets[d.name].models:
        acc = test_accuracy(d, model)
        if acc is not None and classes and chance_level(acc, classes):
            out.append(f"{d.name}, {model}: SANITY WARNING: test accuracy {100 * acc:.1f} % is chance level for "
                       f"{classes} classes: it predicts (nearly) a constant, so its robust and certified accuracies "
                       "say nothing about robustness (training diverged or was too short).")
    for model, sigma in plan.datasets[d.name].smoothed:
        clean = DISCRETE_PREFIX + recipes[model].vocab if recipes[model].vocab else BASELINE
        acc, ref = test_accuracy(d, model), test_accuracy(d, clean)
        if acc is not None and ref is not None and acc < ref - BASE_GAP:
            noisy = d.models[model].get("noisy_test_accuracy")
            head = (f"{d.name}, {model}: clean test accuracy {100 * acc:.1f} %, {100 * (ref - acc):.1f} points below "
                    f"{clean} ({100 * ref:.1f} %)")
            if noisy is not None and noisy > acc + SHIFT:
                out.append(f"{head}, but {100 * noisy:.1f} % under its own training noise (sigma {sigma:g}): clean "
                           "images are off the distribution it was trained on; its smoothed classifier (noisy "
                           "copies) is the one to compare with the baseline.")
            else:
                under = "" if noisy is None else f" and {100 * noisy:.1f} % under its own training noise"
                out.append(f"{head}{under}: the base classifier smoothed at sigma {sigma:g} is under-trained for "
                           "its noise (more epochs or training images usually close part of the gap), so its "
                           "smoothed accuracies understate what noise training can reach.")
    radii = STANDARD_RADII.get(tuple(d.manifest["shape"][:2]), ())
    missing = [r for r in radii if tables.near(plan.eps, r) is None]
    if missing and any(m in d.attacks for m in plan.datasets[d.name].models):
        out.append(f"{d.name}: the landscape's worst-case columns at r = {', '.join(f'{r:.3g}' for r in missing)} "
                   f"are dashes: attacks.eps {[float(f'{e:g}') for e in plan.eps]} does not hold "
                   f"{'it' if len(missing) == 1 else 'them'} (add {'it' if len(missing) == 1 else 'them'} to attack "
                   "there).")
    return out


def bracket_finding(dataset: str, model: str, name: str, s: dict[str, Any]) -> str:
    """One certificate's bracket in a sentence (``R_2`` also states ``R_0``'s ACR on the same images)."""
    b, acr = s["bracket"], f"{s['acr']:.4f} with {CERTIFICATES[name].label}"
    if "acr_r0" in s:
        acr = f"{s['acr_r0']:.4f} with $R_0$ and {acr}"
    if not b["images_with_upper_bound"]:
        return (f"{dataset}, {model}: mean certified radius (ACR) {acr}; no attack found an adversarial example "
                "on its certified images within the largest eps, so no certified radius has an upper bound "
                "(no bracket).")
    return (f"{dataset}, {model}: mean certified radius (ACR) {acr}; every certified radius stays below "
            f"the smallest adversarial perturbation the attacks found ({b['images_with_upper_bound']} images with a "
            f"verified adversarial example; median certified radius {b['median_lower']:.4f}, median smallest "
            f"adversarial norm {b['median_upper']:.4f}; median ratio {b['median_gap_ratio']:.3g}x"
            + (f", {100 * b['closed_share']:.0f} % of them closed: the minimal adversarial perturbation known"
               if math.isfinite(b.get("closed_share", math.nan)) else "") + ").")


def metrics(results: list[DatasetResults], plan: Plan) -> dict[str, dict[str, float]]:
    """Flat headline numbers per dataset (for ``dvc metrics show/diff``), the defense landscape's included."""
    out: dict[str, dict[str, float]] = {}
    for d in results:
        m = out.setdefault(d.name, {})
        for model in plan.datasets[d.name].models:
            n = tables.landscape_numbers(d, plan, model)
            for r, cert, worst in zip(n["radii"], n["certified"], n["worst"], strict=True):
                for key, value in (("cert", cert), ("worst", worst)):
                    if value is not None:
                        m[f"landscape/{key}/{model}@{r:.3g}"] = value
            for r, verified in zip(n["radii"], n["verified"], strict=True):
                if verified is not None:  # the complete verifier's range on its images
                    low, high, images = verified
                    m[f"landscape/verified/{model}@{r:.3g}"] = low
                    m[f"landscape/verified_upper/{model}@{r:.3g}"] = high
                    m[f"landscape/verified_images/{model}"] = images
            if n["bracket_ratio"] is not None:
                m[f"landscape/bracket/{model}"] = n["bracket_ratio"]
            if n["closed_share"] is not None:
                m[f"landscape/closed/{model}"] = n["closed_share"]
        for model, final in d.models.items():
            m[f"acc/{model}"] = final["test_accuracy"]
        for vocab, cert in d.certify.items():
            m[f"patch_cert/{vocab}"] = cert["patch_cert"]
        for name, per_model in d.certs.items():
            if CERTIFICATES[name].metric is not None:
                m.update({f"{CERTIFICATES[name].metric}/{model}": s["acr"] for model, s in per_model.items()})
        for model, per_sigma in d.smoothing.items():
            for sigma, s in per_sigma.items():
                m[f"rs_acr/{model}@{sigma:g}"] = s["acr"]
        for model, attacks in d.attacks.items():
            if WORST in attacks:
                w = attacks[WORST]
                m[f"worst_acc/{model}@{max(w['eps']):g}"] = w["robust_accuracy"][-1]
    return out


def build(plan: Plan, files: Mapping[str, Sequence[str | Path]], out_dir: Path, captions_dir: Path,
          pdf: bool = True) -> dict[str, list[Path]]:
    """Write tables, figures and report.tex under ``out_dir`` from the result ``files`` of the plan
    (:func:`tokencert.report.collect.collect`), with the captions of ``captions_dir``; compile the
    PDF when asked."""
    results = collect(plan, files)
    radius = plan.report.cert_radius
    written: dict[str, list[Path]] = {"tables": [], "figures": []}
    main_rows, vocab_rows = tables.main_rows(results, plan), tables.vocab_rows(results, plan)
    published = tables.published_rows(results, plan)
    pdf_tables: dict[str, list[str]] = {}
    for name, rows, columns in (("main", main_rows, tables.main_columns(main_rows, radius)),
                                ("landscape", tables.landscape_rows(results, plan), tables.landscape_columns(results)),
                                ("vocab", vocab_rows, tables.vocab_columns(vocab_rows)),
                                ("cost", tables.cost_rows(results), tables.COST_COLUMNS),
                                ("published", published, tables.PUBLISHED_COLUMNS)):
        stem = out_dir / "tables" / name
        write_text(stem.with_suffix(".html"), tables.html(rows, columns, caption(f"{name}_table", captions_dir)))
        written["tables"].append(stem.with_suffix(".html"))
        for stem, part_rows, part_columns in tables.pdf_parts(name, rows, columns, [d.name for d in results]):
            write_text(out_dir / "tables" / f"{stem}.tex", tables.render("table.tex", rows=part_rows,
                                                                          columns=part_columns))
            written["tables"].append(out_dir / "tables" / f"{stem}.tex")
            pdf_tables.setdefault(name, []).append(stem)
    main_md = out_dir / "tables" / "main.md"
    write_text(main_md, tables.markdown(main_rows, tables.main_columns(main_rows, radius)))
    written["tables"].append(main_md)
    figure_names = []
    for d in results:
        for kind in plan.report.figures:
            fig = figures.make(kind, d, plan)
            written["figures"] += figures.save(fig, out_dir / "figures" / f"{d.name}-{kind}")
            figure_names.append((d.name, kind))
    write_json(out_dir / "metrics.json", metrics(results, plan))
    written["metrics"] = [out_dir / "metrics.json"]
    study = [(c, reproduce.rows(c), [tables.latex_escape(v) for v in reproduce.verdict(c)])
             for c in reproduce.comparisons(results, plan)]
    units = {d.name: latex_units(d.units) for d in results}
    captions = {kind: rst_to_latex(caption(kind, captions_dir))
                for kind in (*plan.report.figures, "main_table", "landscape_table", "vocab_table", "cost_table",
                             "published_table")}
    tex = tables.render("report.tex", radius=f"{radius:g}", units=units, captions=captions,
                        figures=figure_names, findings=findings(results, plan), study=study, published=published,
                        settings=[tables.latex_escape(s) for s in run_settings(results, plan)], tables=pdf_tables,
                        datasets=[d.name for d in results], landscape_parts=len(tables.LANDSCAPE_PARTS),
                        models=", ".join(plan.models))
    write_text(out_dir / "report.tex", tex)
    written["tex"] = [out_dir / "report.tex"]
    if pdf:
        pdf = compile_pdf(out_dir / "report.tex")
        written["pdf"] = [pdf, pdf.with_suffix(".log")]
    return written


def every(step: int) -> str:
    """``every``, ``every 2nd``, ``every 20th`` (of the test images)."""
    if step == 1:
        return "every"
    suffix = "th" if 10 <= step % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(step % 10, "th")
    return f"every {step}{suffix}"


def plural(count: int, noun: str) -> str:
    """``1 restart``, ``2 restarts``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def latex_units(units: str) -> str:
    """The units' description, LaTeX-safe."""
    return tables.latex_escape(describe(units))


def run_settings(results: list[DatasetResults], plan: Plan) -> list[str]:
    """What this run did, per dataset: data, architecture and epochs, smoothing samples, attack budget;
    then the recipes restricted to some of the study's datasets (the plan's notes)."""
    out = []
    attacks, pgd = plan.config["attacks"], plan.config["attacks"].get("pgd", {})
    for d in results:
        train = plan.datasets[d.name].training
        arch = resolve_arch(train["arch"], int(d.manifest["shape"][0]))
        smooth = plan.datasets[d.name].smoothing
        out.append(f"{d.name} ({describe(d.units)}): {d.manifest['counts']['train']} training and "
                   f"{d.manifest['counts']['test']} test images ({d.manifest['source']}: "
                   f"{d.manifest.get('location') or 'embedded'}); "
                   f"classifiers {arch}, {train['epochs']} epochs; randomized smoothing with n0 = {smooth['n0']}, "
                   f"n = {smooth['n']}, alpha = {smooth['alpha']} on {every(int(smooth['every']))} test image "
                   f"(no certified radius can exceed {max_radius(1.0, smooth['n'], smooth['alpha']):.2f} sigma); "
                   f"attacks on {attacks['n_images']} test images (PGD {pgd.get('steps', 50)} steps, "
                   f"{plural(pgd.get('restarts', 1), 'restart')}).")
    return out + [note.removeprefix("note: ") + "." for note in plan.notes]


TABLE_FONT = re.compile(r"^tokencert table (\S+): ([0-9.]+)pt$", re.M)
"""The template's \\fittable reports each table's font size (10 pt, less when shrunk to the line width)."""


def table_font_sizes(log: str) -> dict[str, float]:
    """Font size in pt of every table of the PDF, from the LaTeX log (``report.log``)."""
    return {name: float(size) for name, size in TABLE_FONT.findall(log)}


def compile_pdf(tex: Path) -> Path:
    """``latexmk -pdf`` of the report, built in a temporary directory and moved into place only
    when complete (a killed build leaves no half-written PDF nor auxiliary files behind), its LaTeX
    log beside it (``report.log``: the tables' font sizes, LaTeX's warnings); raises with the log on failure."""
    if shutil.which("latexmk") is None:
        raise RuntimeError("latexmk not found: install a TeX distribution (see README) to build the PDF")
    target = tex.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix=".latex-", dir=tex.parent) as build:
        proc = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                               f"-outdir={Path(build).name}", tex.name], cwd=tex.parent, capture_output=True, text=True)
        built = Path(build) / target.name
        if proc.returncode != 0 or not built.is_file():
            raise RuntimeError(f"latexmk failed:\n{proc.stdout[-3000:]}")
        for source, dest in ((built.with_suffix(".log"), tex.with_suffix(".log")), (built, target)):
            with atomic_path(dest) as tmp:
                shutil.copyfile(source, tmp)
    return target
