"""A researcher's own classifier (classifiers.external) and code (plugins, arch "<module>:<callable>")."""

from __future__ import annotations

import copy
import sys
import textwrap

import pytest
import torch
import yaml

from tests.helpers import REPO
from tokencert import config as tc
from tokencert.data.store import Split, build_manifest, write_dataset
from tokencert.external import import_classifier
from tokencert.io import read_json
from tokencert.models import build_model, load_classifier
from tokencert.plugins import load_callable


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def toy_data(tmp_path, n: int = 20):
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 2,
                  ["a", "b"])
    write_dataset(tmp_path / "data", build_manifest("toy", {"source": "mlxtend"}, {"train": split, "test": split}),
                  {"train": split, "test": split})
    return tmp_path / "data"


def test_a_checkpoint_becomes_a_classifier_of_the_study(tmp_path):
    data = toy_data(tmp_path)
    net = build_model("cnn", 1, 2, [0.0], [1.0])
    torch.save({"state_dict": net[1].state_dict()}, tmp_path / "mine.pt")
    final = import_classifier(dataset="toy", model="mine", spec={"checkpoint": str(tmp_path / "mine.pt"),
                              "input": "pixels", "arch": "cnn", "normalization": "none"}, data_dir=data,
                              units="pixel", vocab_path=None, out_dir=tmp_path / "out")
    assert read_json(tmp_path / "out/final.json") == final
    assert final["objective"]["kind"] == "external" and final["kind"] == "baseline"
    loaded, meta = load_classifier(tmp_path / "out/model.pt", dataset="toy")
    x = torch.rand(4, 1, 8, 8)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
    assert meta["mean"] == [0.0] and meta["std"] == [1.0]
    ours = build_model("cnn", 1, 2, [0.0], [1.0])[1].eval()
    ours.load_state_dict(net[1].state_dict())
    with torch.no_grad():
        expected = (ours(torch.load(data / "test.pt")["images"].float() / 255).argmax(1) == torch.arange(20) % 2)
    assert final["test_accuracy"] == pytest.approx(float(expected.double().mean()))


@pytest.mark.parametrize("write, match", [
    (lambda p: torch.save(build_model("cnn", 1, 3, [0.0], [1.0])[1].state_dict(), p), "do not fit architecture 'cnn'"),
    (lambda p: p.write_bytes(b"not a checkpoint"), "cannot be read as a weights-only checkpoint"),
    (lambda p: torch.save([1, 2], p), "holds no state_dict"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line_naming_the_key(tmp_path, write, match):
    data = toy_data(tmp_path)
    write(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=match) as info:
        import_classifier(dataset="toy", model="mine", spec={"checkpoint": str(tmp_path / "bad.pt"), "input": "pixels",
                          "arch": "cnn"}, data_dir=data, units="pixel", vocab_path=None, out_dir=tmp_path / "out")
    assert "classifiers.external.mine.checkpoint" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out/model.pt").exists()


def test_external_classifiers_are_planned_attacked_and_smoothed(params, tmp_path):
    (tmp_path / "mine.pt").write_bytes(b"")
    config = copy.deepcopy(params)
    config["classifiers"]["external"] = {"mine": {"checkpoint": str(tmp_path / "mine.pt"), "input": "tokens:gauss",
                                                  "sigma": 0.25}}
    plan = tc.resolve_plan(config)
    recipe = plan.datasets["mnist5k"].recipes["mine"]
    assert recipe.kind == "external" and recipe.vocab == "gauss" and recipe.sigma == 0.25
    assert "mine" in plan.attacked_models() and ("mine", 0.25) in plan.datasets["mnist5k"].smoothed
    for spec, match in (({"checkpoint": str(tmp_path / "none.pt"), "input": "pixels"}, "checkpoint .* is not a file"),
                        ({"checkpoint": str(tmp_path / "mine.pt"), "input": "tokens:nope"}, "vocabulary 'nope'"),
                        ({"checkpoint": str(tmp_path / "mine.pt"), "input": "pixels", "arch": "cnn", "x": 1}, "'x'")):
        config["classifiers"]["external"] = {"mine": spec}
        with pytest.raises(tc.ConfigError, match=match):
            tc.resolve_plan(config)
    config["classifiers"]["external"] = {"baseline": {"checkpoint": str(tmp_path / "mine.pt"), "input": "pixels"}}
    with pytest.raises(tc.ConfigError, match="classifiers.external.baseline: the name is taken"):
        tc.resolve_plan(config)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A researcher's module on the import path (the workflow's directory)."""
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        import torch
        def tiny(channels, num_classes):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))
        def wrong(channels):
            return None
        def not_a_module(channels, num_classes):
            return 3
        broken = 3
    """))
    monkeypatch.chdir(tmp_path)
    yield "mynets"
    sys.modules.pop("mynets", None)


def test_an_architecture_from_a_user_module(params, user_module):
    net = build_model(f"{user_module}:tiny", 1, 10, [0.5], [0.25])
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    config = copy.deepcopy(params)
    config["training"]["arch"] = f"{user_module}:tiny"
    tc.resolve_plan(config)
    for arch, match in ((f"{user_module}:wrong", "must accept 2 arguments"), (f"{user_module}:broken", "not callable"),
                        ("nomodule:f", "cannot be loaded: ModuleNotFoundError"), ("mynet", "is not one of")):
        config["training"]["arch"] = arch
        with pytest.raises(tc.ConfigError, match=match) as info:
            tc.resolve_plan(config)
        assert "training.arch" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="returned int, not a torch.nn.Module"):
        build_model(f"{user_module}:not_a_module", 1, 10, [0.5], [0.25])
    with pytest.raises(ValueError, match="params: k 'a:b:c' is not '<module>:<callable>'"):
        load_callable("a:b:c", "k")


def test_a_plugin_module_is_imported_first_and_a_bad_one_named(params, tmp_path, monkeypatch):
    (tmp_path / "myplugin.py").write_text("raise RuntimeError('broken\\nplugin')\n")
    monkeypatch.chdir(tmp_path)
    config = copy.deepcopy(params)
    config["plugins"] = ["myplugin"]
    with pytest.raises(tc.ConfigError, match=r"plugins\[0\] 'myplugin' cannot be imported: RuntimeError: broken p"):
        tc.resolve_plan(config)
    sys.modules.pop("myplugin", None)
