"""Report tables: formatting, LaTeX safety, and missing results rendered as '-'."""

from __future__ import annotations

import yaml

from tests.helpers import REPO
from tokencert.report import tables
from tokencert.report.collect import DatasetResults, at, collect


def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_formatting_helpers():
    assert tables.pct(0.9797) == "97.97 %" and tables.pct(None) == "-"
    assert tables.num(0.0912, 2) == "0.09" and tables.num(None) == "-"
    assert tables.latex_escape("a_b 5% & #1") == r"a\_b 5\% \& \#1"
    assert at([0.1, 0.2], [0.0, 0.5], 0.5) == 0.2 and at([0.1], [0.0], 1.0) is None


def test_missing_results_render_as_dashes(tmp_path):
    assert collect(params(), tmp_path) == []  # nothing built yet
    d = DatasetResults("toy", {"shape": [1, 28, 28]})
    rows = tables.main_rows([d], params())
    assert [r["classifier"] for r in rows] == ["Discrete (gauss)", "Baseline"]
    assert all(v == "-" for r in rows for k, v in r.items() if k not in ("dataset", "classifier"))
    tex = tables.render("main_table.tex", rows=rows, radius="0.05")
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\\") == 3


def test_study_eps_follows_the_data():
    grid = [0.5, 1.0, 4.0]
    assert tables.study_eps(DatasetResults("m", {"shape": [1, 28, 28]}), grid) == 4.0
    assert tables.study_eps(DatasetResults("c", {"shape": [3, 32, 32]}), grid) == 0.5
    assert tables.study_eps(DatasetResults("c", {"shape": [3, 32, 32]}), [1.0, 2.0]) == 2.0
