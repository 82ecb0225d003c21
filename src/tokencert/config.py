"""Study parameters: loading, schema validation and the derived study plan.

``params.yaml`` is the single source of parameters. This module validates it against
``schemas/params.schema.yaml`` (naming the offending key on error) and derives what the
workflow runs: vocabulary recipes (including the K sweep), classifier names and the
training settings of each dataset.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "params.schema.yaml"

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
    """Read the parameter schema."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


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
    for key in ("classifiers", "smoothing"):
        for vocab in config[key].get("discrete", []):
            if vocab not in vocabs:
                raise ConfigError(f"params: {key}.discrete names '{vocab}', which is not in vocabularies")
    known = set(model_names(config))
    for model in config["attacks"]["models"]:
        if model not in known:
            raise ConfigError(
                f"params: attacks.models names '{model}', which is not a classifier of the study "
                f"(known: {', '.join(sorted(known))})"
            )


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


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Every classifier the study trains, per dataset."""
    names = [BASELINE] if config["classifiers"]["baseline"] else []
    names += [DISCRETE_PREFIX + v for v in discrete_vocabularies(config)]
    names += [noise_model(s) for s in config["smoothing"]["sigmas"]]
    return names


def parse_model(name: str) -> tuple[str, str | float | None]:
    """Split a classifier name into its kind and argument.

    ``baseline`` -> ("baseline", None); ``discrete-gauss`` -> ("discrete", "gauss");
    ``noise-0.25`` -> ("noise", 0.25).
    """
    if name == BASELINE:
        return "baseline", None
    if name.startswith(DISCRETE_PREFIX) and len(name) > len(DISCRETE_PREFIX):
        return "discrete", name[len(DISCRETE_PREFIX):]
    if name.startswith(NOISE_PREFIX):
        try:
            return "noise", float(name[len(NOISE_PREFIX):])
        except ValueError:
            pass
    raise ConfigError(f"unknown classifier name '{name}' (baseline, discrete-<vocab>, noise-<sigma>)")


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


def resolve_mode(mode: str | None, channels: int) -> str:
    """Token mode with ``auto`` resolved: joint for one channel, per_channel otherwise."""
    if mode in (None, "auto"):
        return "joint" if channels == 1 else "per_channel"
    if mode not in ("joint", "per_channel", "per_channel_separate"):
        raise ConfigError(f"unknown token mode '{mode}'")
    return mode


def resolve_arch(arch: str, channels: int, image_size: int) -> str:
    """Architecture with ``auto`` resolved from the image shape."""
    if arch != "auto":
        return arch
    return "cnn" if channels == 1 else "resnet9"


ATTACKS_WITH_GRADIENT_FREE = ("pgd", "square")


def attacked_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(model, attack) pairs the study runs: surrogate, transfer and token-flip attacks need a
    discrete model (transfer also the baseline); PGD and Square apply to every model."""
    pairs = []
    for model in config["attacks"]["models"]:
        discrete = parse_model(model)[0] == "discrete"
        for attack in config["attacks"]["suite"]:
            if attack == "transfer" and not config["classifiers"]["baseline"]:
                continue
            if discrete or attack in ATTACKS_WITH_GRADIENT_FREE:
                pairs.append((model, attack))
    return pairs


def exact_models(config: Mapping[str, Any]) -> list[str]:
    """Discrete models that get the exact single-flip certificate (the attacked ones, for the bracket)."""
    return [m for m in config["attacks"]["models"] if parse_model(m)[0] == "discrete"]
