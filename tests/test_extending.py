"""README "Extending it": a researcher's architecture, vocabulary kind, objective, attack, certificate and
trained classifier, none of them in the package, run through the whole workflow and found in the report."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from tests.helpers import REPO
from tests.workflow_copy import copy_workflow, snakemake, tiny_config
from tokencert.models import build_model


@pytest.mark.slow
def test_every_extension_point_from_a_user_module_reaches_the_report(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    shutil.copy(REPO / "tests/toyplugins.py", work / "toyplugins.py")
    torch.save(build_model("cnn", 1, 10, [0.0], [1.0])[1].state_dict(), work / "mine.pt")
    params = tiny_config(work)
    params["plugins"] = ["toyplugins"]
    params["vocabularies"]["toyvocab"] = {"kind": "randompatches", "K": 16, "fit_patches": 2000}
    params["study"]["vocabularies"] = ["gauss", "toyvocab"]
    params["k_sweep"]["K"] = []
    params["classifiers"] = {
        "baseline": True, "discrete": ["toyvocab"],
        "recipes": {"toyobj": {"input": "pixels", "objective": "smoothce", "arch": "toyplugins:tiny_net"}},
        "external": {"mine": {"checkpoint": "mine.pt", "input": "pixels", "arch": "cnn", "normalization": "none"}}}
    params["smoothing"]["discrete"] = []
    params["report"]["published"] = []  # the tiny config's literature entries name classifiers replaced above
    params["attacks"].update(models=["baseline"], suite=["pgd", "noise"])
    params["zerocert"] = {"n_images": 10}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    snakemake(work, "--cores", "2", "--resources", "gpu=0")
    res, report = work / "results/mnist5k", work / "results/report"
    assert json.loads((res / "vocab/toyvocab.json").read_text())["kind"] == "randompatches"
    assert json.loads((res / "models/toyobj/final.json").read_text())["objective"]["kind"] == "smoothce"
    assert json.loads((res / "models/mine/final.json").read_text())["objective"]["kind"] == "external"
    for model in ("baseline", "toyobj", "mine"):
        assert json.loads((res / f"attacks/{model}/noise.json").read_text())["attack"] == "noise"
    zero = {p.stem: json.loads(p.read_text()) for p in (res / "zerocert").glob("*.json")}
    assert set(zero) == {"baseline", "discrete-toyvocab", "noise-0.5", "toyobj", "mine"}
    assert all(s["n_images"] == 10 for s in zero.values())
    assert {m for m, s in zero.items() if "bracket" in s} == {"baseline", "toyobj", "mine"}  # the attacked ones
    landscape = (report / "tables/landscape-mnist5k-radii.tex").read_text()
    assert "toyobj" in landscape and "smoothce" in landscape and "mine" in landscape and "external" in landscape
    assert "Zero certificate (mine)" in (report / "tables/cost.tex").read_text()
    metrics = json.loads((report / "metrics.json").read_text())["mnist5k"]
    assert metrics["landscape/cert/mine@0.5"] == 0.0 and "acc/mine" in metrics
