"""The resolved study plan: every job the workflow runs and every setting the report states."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..certificates import CERTIFICATES, PER_MODEL, Certificate, applies
from ..study import CERT_RADIUS, FIGURE_KINDS, attack_applies, cascade_order
from .errors import ConfigError
from .params import validate
from .recipes import (
    Recipe,
    dataset_recipes,
    dataset_section,
    dataset_units,
    discrete_vocabularies,
    sweep_vocabularies,
    training_params,
    vocabulary_recipes,
)


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
    published: tuple[dict[str, Any], ...] = ()  # report.published: the literature's numbers beside ours
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
    radii: tuple[float, ...]
    eps: tuple[float, ...]  # the attack budget grid
    report: ReportPlan
    notes: tuple[str, ...] = ()  # what the parameters leave out without an error (printed at start-up)

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

    @property
    def cascade(self) -> bool:
        """Whether each attack starts from what the attacks before it found (``attacks.cascade``)."""
        return bool(self.config["attacks"].get("cascade", False))

    def cascade_of(self, model: str) -> list[str] | None:
        """The order a cascade attacks ``model`` in (AutoAttack's, :func:`tokencert.study.cascade_order`);
        ``None`` without a cascade."""
        return cascade_order(self.attacks_on(model)) if self.cascade else None

    def attacked_before(self, model: str, attack: str) -> str | None:
        """In a cascade, the attack whose cumulative outcome ``attack`` starts from on ``model``; ``None`` for
        the first and without a cascade."""
        order = self.cascade_of(model) or [attack]
        position = order.index(attack)
        return order[position - 1] if position else None

    def certified_models(self, dataset: str, cert: Certificate, *, if_attacked: bool = False) -> list[str]:
        """The classifiers of ``dataset`` that certificate ``cert`` runs on (``if_attacked``: would run on, were
        every classifier attacked)."""
        attacked = self.attacked_models()
        return [m for m, r in self.datasets[dataset].recipes.items()
                if applies(cert, r.vocab is not None, r.lipschitz, if_attacked or m in attacked)]


def certificate_overrides(plan: Plan) -> list[str]:
    """Check every ``<folder>.models.<classifier>``: a classifier of the study its certificate can never
    run on (another kind) is refused; one the study does not have, or does not attack where the certificate
    needs attacks, is a note, as a config stacked on ``params.yaml`` may drop or stop attacking the
    classifier its overrides name; ``null`` (a stacked config dropping ``params.yaml``'s overrides) is neither."""
    notes = []
    for cert in CERTIFICATES.values():
        runs = sorted({m for d in plan.datasets for m in plan.certified_models(d, cert)})
        kind = {m for d in plan.datasets for m in plan.certified_models(d, cert, if_attacked=True)}
        for name, own in ((plan.config.get(cert.folder) or {}).get(PER_MODEL) or {}).items():
            if own is None:  # dropped by a stacked config
                continue
            key = f"{cert.folder}.{PER_MODEL}.{name}"
            if name not in plan.models:
                notes.append(f"note: {key} names no classifier of this study: the override is unused")
            elif name not in kind:
                raise ConfigError(f"params: {key}: certificate {cert.name} does not run on {name} (it runs on: "
                                  f"{', '.join(runs) or 'none'})")
            elif name not in runs:
                notes.append(f"note: {key}: {name} is not attacked in this study, so {cert.name} does not run on "
                             "it: the override is unused")
    return notes


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
    plan = Plan(
        config=config, datasets=datasets, vocabularies=vocabs, sweep=tuple(sweep_vocabularies(config)),
        discrete=tuple(discrete), attacked=tuple(attacked_pairs(config, recipes)),
        radii=tuple(float(r) for r in config["radii"]), eps=tuple(float(e) for e in config["attacks"]["eps"]),
        report=ReportPlan(float(report.get("cert_radius", CERT_RADIUS)), int(report.get("example_images", 6)),
                          main, main or next(iter(vocabs)), tuple(report.get("reproduce", [])),
                          tuple(report.get("published", []))),
        notes=tuple(restricted_recipes(config)),
    )
    return dataclasses.replace(plan, notes=plan.notes + tuple(certificate_overrides(plan)))


def restricted_recipes(config: Mapping[str, Any]) -> list[str]:
    """One line per recipe whose ``datasets`` leave out a dataset of the study: trained on fewer of them,
    or nowhere (a config stacked on ``params.yaml`` inherits its recipes, so this is said, not refused).
    Printed at start-up and in the report's run settings."""
    study = config["study"]["datasets"]
    sections = [("recipes", config["classifiers"].get("recipes", {}) if config["classifiers"].get("defenses", True)
                 else {}), ("external", config["classifiers"].get("external", {}))]
    out = []
    for kind, section in sections:
        for name, spec in section.items():
            left_out = [d for d in study if d not in spec.get("datasets", study)]
            if not left_out:
                continue
            key = f"classifiers.{kind}.{name}"
            if len(left_out) == len(study):
                out.append(f"note: {key} is restricted to datasets {spec['datasets']}, none of which the study "
                           f"runs (study.datasets {study}): it is not trained, attacked or reported")
            else:
                out.append(f"note: {key} is restricted to datasets {spec['datasets']}: "
                           f"not trained on {left_out}")
    return out
