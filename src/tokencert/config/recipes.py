"""What each classifier and vocabulary of the study is: the recipes, the shorthand names and the
per-dataset sections (one home for each name the workflow derives from the parameters)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..study import LIPSCHITZ_ARCHS, LIPSCHITZ_OBJECTIVES, OBJECTIVE_KEYS, SIGMA_OBJECTIVES
from .errors import ConfigError

BASELINE = "baseline"
DISCRETE_PREFIX = "discrete-"
NOISE_PREFIX = "noise-"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def vocabulary_recipes(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The vocabulary recipes the study builds, by name, including ``<base>-k<K>`` from ``k_sweep``.

    ``study.vocabularies``, when given, picks which of ``vocabularies`` are built.
    """
    picked = config["study"].get("vocabularies")
    recipes = {name: dict(r) for name, r in config["vocabularies"].items() if picked is None or name in picked}
    for name, r in recipes.items():
        check_margin(name, r)
    sweep = config.get("k_sweep")
    if sweep:
        base = config["vocabularies"].get(sweep["base"])
        if base is None:
            raise ConfigError(f"params: k_sweep.base '{sweep['base']}' is not in vocabularies")
        for k in sweep["K"]:
            if k != base["K"]:
                recipes.setdefault(sweep_name(sweep["base"], k), {**base, "K": k})
    return recipes


def patch_size(config: Mapping[str, Any], recipe: Mapping[str, Any]) -> int:
    """The patch size of a vocabulary ``recipe``: its own ``patch_size``, else the top-level one."""
    return int(recipe.get("patch_size", config["patch_size"]))


def sweep_vocabularies(config: Mapping[str, Any]) -> list[str]:
    """Names of the K-sweep vocabularies, base included, ordered by K."""
    sweep = config.get("k_sweep")
    if not sweep or not sweep["K"]:
        return []
    base = config["vocabularies"][sweep["base"]]
    ks = sorted(set(sweep["K"]) | {base["K"]})
    return [sweep["base"] if k == base["K"] else sweep_name(sweep["base"], k) for k in ks]


def sweep_name(base: str, k: int) -> str:
    """The K-sweep vocabulary derived from ``base`` with ``k`` tokens."""
    return f"{base}-k{k}"


def check_margin(name: str, recipe: Mapping[str, Any], mode: str | None = None) -> None:
    """Margin design (``min_separation``, ``background``, ``spread``) needs one token table: not
    ``per_channel_separate`` (``mode``: the resolved mode, default the recipe's); ``spread`` needs a separation."""
    if recipe.get("spread", 0) and not recipe.get("min_separation", 0) > 0:
        raise ConfigError(f"params: vocabularies.{name}.spread needs min_separation > 0 (it spreads tokens under it)")
    designed = recipe.get("min_separation", 0) > 0 or recipe.get("background", False)
    if designed and (mode or recipe.get("mode")) == "per_channel_separate":
        raise ConfigError(f"params: vocabularies.{name}: min_separation and background need one token table "
                          "(mode joint or per_channel), not per_channel_separate")


def discrete_vocabularies(config: Mapping[str, Any]) -> list[str]:
    """Vocabularies that get a discrete classifier (listed ones, then the K sweep)."""
    names = list(config["classifiers"]["discrete"])
    names += [v for v in sweep_vocabularies(config) if v not in names]
    return names


def format_sigma(sigma: float) -> str:
    """Canonical text of a noise level, as used in file and model names."""
    return f"{float(sigma):g}"


def noise_model(sigma: float) -> str:
    """Name of the noise-augmented classifier trained at ``sigma``."""
    return f"{NOISE_PREFIX}{format_sigma(sigma)}"


@dataclass(frozen=True)
class Recipe:
    """How one classifier is built: what it sees, its training overrides, what it minimises."""

    name: str
    vocab: str | None  # ``input: tokens:<vocab>``; None for ``input: pixels``
    objective: dict[str, Any]  # {"objective": kind, and its parameters} (``objectives.Objective.from_recipe``)
    training: dict[str, Any] = field(default_factory=dict)  # overrides of the dataset's training section
    defense: bool = False  # named in classifiers.recipes or classifiers.external: always attacked
    external: dict[str, Any] | None = None  # classifiers.external: loaded from a checkpoint, not trained

    @property
    def kind(self) -> str:
        """The objective's name."""
        return str(self.objective["objective"])

    @property
    def sigma(self) -> float | None:
        """The noise level it is trained (and smoothed) at, for the noise objectives."""
        noisy = self.kind in SIGMA_OBJECTIVES or (self.external is not None and "sigma" in self.objective)
        return float(self.objective["sigma"]) if noisy else None

    @property
    def lipschitz(self) -> bool:
        """A Lipschitz network (certified by its margin)."""
        return self.kind in LIPSCHITZ_OBJECTIVES or self.training.get("arch") in LIPSCHITZ_ARCHS

    @property
    def input(self) -> str:
        """``pixels`` or ``tokens:<vocab>``."""
        return "pixels" if self.vocab is None else f"tokens:{self.vocab}"


def noise_token_model(vocab: str, sigma: float) -> str:
    """Name of the token classifier trained under noise ``sigma`` (what ``smoothing.discrete`` smooths)."""
    return f"{DISCRETE_PREFIX}{vocab}-{noise_model(sigma)}"


def _recipe(name: str, spec: Mapping[str, Any], defense: bool) -> Recipe:
    kind = spec["input"]
    training = dict(spec.get("training", {}))
    if "arch" in spec:
        training["arch"] = spec["arch"]
    return Recipe(name, None if kind == "pixels" else kind.split(":", 1)[1],
                  {k: spec[k] for k in ("objective", *OBJECTIVE_KEYS) if k in spec}, training, defense)


def dataset_recipes(config: Mapping[str, Any], dataset: str) -> dict[str, Recipe]:
    """Every classifier trained on ``dataset``, by name: the shorthands (``baseline``,
    ``discrete-<vocab>``, ``noise-<sigma>`` per smoothing sigma, ``discrete-<vocab>-noise-<sigma>``
    for ``smoothing.discrete``, these two for ``smoothing.epochs_factor`` times the dataset's epochs),
    then ``classifiers.recipes``."""
    sigmas = dataset_section(config, dataset, "smoothing")
    out = {}
    if config["classifiers"]["baseline"]:
        out[BASELINE] = _recipe(BASELINE, {"input": "pixels", "objective": "standard"}, False)
    for v in discrete_vocabularies(config):
        name = DISCRETE_PREFIX + v
        out[name] = _recipe(name, {"input": f"tokens:{v}", "objective": "standard"}, False)
    factor = int(sigmas.get("epochs_factor", 1))  # noise training converges slower than clean training
    longer = {"training": {"epochs": factor * int(training_params(config, dataset)["epochs"])}} if factor > 1 else {}
    for s in sigmas["sigmas"]:
        out[noise_model(s)] = _recipe(noise_model(s), {"input": "pixels", "objective": "noise", "sigma": s,
                                                       **longer}, False)
    for v in sigmas.get("discrete", []):
        for s in sigmas["sigmas"]:
            name = noise_token_model(v, s)
            out[name] = _recipe(name, {"input": f"tokens:{v}", "objective": "noise", "sigma": s, **longer}, False)
    for name, spec in config["classifiers"].get("recipes", {}).items():
        if config["classifiers"].get("defenses", True) and dataset in spec.get("datasets", [dataset]):
            out[name] = _recipe(name, spec, True)
    for name, spec in config["classifiers"].get("external", {}).items():
        if dataset in spec.get("datasets", [dataset]):
            out[name] = external_recipe(name, spec)
    return out


EXTERNAL = "external"
"""The objective column of a classifier loaded from a checkpoint (``classifiers.external``)."""


def external_recipe(name: str, spec: Mapping[str, Any]) -> Recipe:
    """A classifier the researcher already has: evaluated like every other one, never trained."""
    objective = {"objective": EXTERNAL, **({"sigma": spec["sigma"]} if "sigma" in spec else {})}
    vocab = None if spec["input"] == "pixels" else spec["input"].split(":", 1)[1]
    training = {"arch": spec["arch"]} if "arch" in spec else {}
    return Recipe(name, vocab, objective, training, True, dict(spec))


def study_recipes(config: Mapping[str, Any]) -> dict[str, Recipe]:
    """Every classifier of the study by name (a name means the same recipe on every dataset)."""
    out: dict[str, Recipe] = {}
    for dataset in config["study"]["datasets"]:
        out.update(dataset_recipes(config, dataset))
    return out


def dataset_section(config: Mapping[str, Any], dataset: str, key: str) -> dict[str, Any]:
    """Section ``key`` (``training`` or ``smoothing``) for ``dataset``: the global one, merged with
    the aliased dataset's override (for an alias) and the dataset's own."""
    spec = config["datasets"][dataset]
    out = dict(config[key])
    if spec["source"] == "alias":
        out = deep_merge(out, config["datasets"][spec["of"]].get(key, {}))
    return deep_merge(out, spec.get(key, {}))


def training_params(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Training settings of ``dataset`` (see :func:`dataset_section`)."""
    return dataset_section(config, dataset, "training")


def dataset_units(config: Mapping[str, Any], dataset: str) -> str:
    """Units of ``dataset``'s sigma, eps and radii: its own ``units`` or the top-level one."""
    return config["datasets"][dataset].get("units", config["units"])


DATASET_EVALUATION_KEYS = ("units", "training", "smoothing")


def data_spec(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """What decides ``dataset``'s tensors: its spec without the units, training and smoothing
    overrides (changing those re-evaluates the dataset but must not rebuild it)."""
    return {k: v for k, v in config["datasets"][dataset].items() if k not in DATASET_EVALUATION_KEYS}


def data_dependencies(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Built datasets the data stage of ``dataset`` reads (the target of an alias)."""
    spec = config["datasets"][dataset]
    return [spec["of"]] if spec["source"] == "alias" else []
