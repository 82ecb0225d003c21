"""Report tables: formatting, LaTeX safety, and missing results rendered as '-'."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import REPO
from tokencert.config import resolve_plan
from tokencert.io import write_json
from tokencert.report import reproduce, tables
from tokencert.report.collect import DatasetResults, at, collect


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
    assert [r["classifier"] for r in rows] == ["Discrete (gauss)", "Baseline"]
    assert all(v == "-" for r in rows for k, v in r.items() if k not in ("dataset", "units", "eps", "classifier"))
    tex = tables.render("main_table.tex", rows=rows, radius="0.05")
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\\") == 3


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
    tex = tables.render("report.tex", radius="0.05", units={"m": "pixel"}, figures=[], findings=[],
                        settings=["s"], models="baseline", study=[(c, rows, reproduce.verdict(c))])
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
    assert methods == ["randomized smoothing (discrete-gauss, sigma=0.25, n=2000)",
                       "randomized smoothing (discrete-gauss, sigma=1, n=2000)"]


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
