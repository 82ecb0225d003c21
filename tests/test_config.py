"""Parameter validation: every bad value is named by its key."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.helpers import REPO
from tokencert import config as tc


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def broken(params: dict, path: str, value) -> dict:
    out = copy.deepcopy(params)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return out


def test_default_params_valid(params):
    tc.validate(params)


@pytest.mark.parametrize("override", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_override_files_valid(params, override):
    merged = tc.deep_merge(params, yaml.safe_load((REPO / "config" / override).read_text()))
    tc.validate(merged)


@pytest.mark.parametrize(
    "path, value, key",
    [
        ("patch_size", 0, "patch_size"),
        ("patch_size", "4", "patch_size"),
        ("datasets.mnist5k.source", "ftp", "datasets.mnist5k.source"),
        ("datasets.mnist5k.channels", 2, "datasets.mnist5k.channels"),
        ("vocabularies.gauss.K", 1, "vocabularies.gauss.K"),
        ("vocabularies.gauss.kind", "magic", "vocabularies.gauss.kind"),
        ("smoothing.alpha", 1.5, "smoothing.alpha"),
        ("smoothing.n", 0, "smoothing.n"),
        ("units", "inches", "units"),
        ("seed", -1, "seed"),
    ],
)
def test_schema_errors_name_the_key(params, path, value, key):
    with pytest.raises(tc.ConfigError, match=f"'{key}'"):
        tc.validate(broken(params, path, value))


def test_patch_size_must_divide_image(params):
    with pytest.raises(tc.ConfigError, match="patch_size 5 does not divide datasets.mnist5k.image_size"):
        tc.validate(broken(params, "patch_size", 5))


def test_unknown_references(params):
    with pytest.raises(tc.ConfigError, match="study.datasets names 'nope'"):
        tc.validate(broken(params, "study.datasets", ["nope"]))
    with pytest.raises(tc.ConfigError, match="classifiers.discrete names 'nope'"):
        tc.validate(broken(params, "classifiers.discrete", ["nope"]))
    bad = broken(params, "datasets.extra", {"source": "imagefolder", "channels": 1, "image_size": 28})
    with pytest.raises(tc.ConfigError, match="datasets.extra.path is required"):
        tc.validate(bad)


def test_study_plan(params):
    names = tc.model_names(params)
    assert names[0] == "baseline"
    assert all(tc.parse_model(n)[0] in {"baseline", "discrete", "noise"} for n in names)
    assert tc.parse_model("noise-0.25") == ("noise", 0.25)
    assert tc.parse_model("discrete-gauss-k16") == ("discrete", "gauss-k16")
    with pytest.raises(tc.ConfigError):
        tc.parse_model("resnet")
    sweep = tc.sweep_vocabularies(params)
    recipes = tc.vocabulary_recipes(params)
    ks = [recipes[v]["K"] for v in sweep]
    assert ks == sorted(ks) and set(sweep) <= set(recipes)
    assert tc.resolve_mode("auto", 1) == "joint" and tc.resolve_mode("auto", 3) == "per_channel"
