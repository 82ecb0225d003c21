"""The study's fixed facts, each defined here once and imported wherever it is needed.

Attack names and which classifiers each applies to, the study's headline attack eps per
kind of data, the report's default certificate radius and the report's figure kinds. The
parameter schema, the rules, the attack suite and the report all read them from here.
"""

from __future__ import annotations

ATTACKS = ["pgd", "apgd-ce", "apgd-dlr", "fab", "sspgd", "bpda", "transfer", "square", "tokenflip", "tokensearch"]
"""Every attack of the suite, in the order the suite runs and reports them (a plugin's appended:
:func:`tokencert.attacks.suite.register_attack`)."""

BLACK_BOX_ATTACKS = ["transfer", "square"]
"""Attacks that use no gradient of the attacked classifier: the gradient-masking check weighs them against
the white-box ones, and a cascade (``attacks.cascade``) runs them last."""

CLOSED_BRACKET = 1e-3
"""A robustness bracket is closed (the minimal adversarial norm known) where the certified radius is within
this of the smallest verified adversarial norm, relative."""

PIXEL_ATTACKS = ["pgd", "apgd-ce", "apgd-dlr", "fab", "square"]
"""Attacks that need only the classifier (no tokenizer): they apply to every classifier (APGD and
FAB differentiate a token classifier through the straight-through identity, as BPDA does).
The others need a token classifier (surrogates, token flips); ``transfer`` also needs the
baseline, whose adversarial examples it transfers."""

OBJECTIVE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "standard": (),
    "noise": ("sigma",),
    "pgd_at": ("eps", "steps"),
    "trades": ("eps", "steps", "beta"),
    "consistency": ("sigma", "lam", "eta", "copies"),
    "flipset": ("eps", "warmup", "ramp", "clean_weight"),
    "gloro": ("eps", "warmup", "ramp"),
}
"""Training objectives of a classifier recipe (``tokencert.objectives`` implements them) and the
recipe parameters each one uses (a plugin's added: :func:`tokencert.objectives.register_objective`)."""

OBJECTIVE_CODE = {"flipset": "tokencert.objectives.flipset", "gloro": "tokencert.objectives.gloro"}
"""Objectives whose loss lives outside :mod:`tokencert.objectives` (imported by name on first use): the
module, whose code only their training jobs run (``rules/common.smk: code``); a plugin's is recorded."""

OBJECTIVE_KEYS = ("sigma", "eps", "steps", "beta", "lam", "eta", "copies", "warmup", "ramp", "clean_weight")
"""Every objective parameter a recipe may set (the fields of ``tokencert.objectives.Objective``)."""

SCHEDULE = {"warmup": 0.2, "ramp": 0.5, "clean_weight": 0.5}
"""The certified-training schedule's defaults (``flipset``, ``gloro``; shares of training and kappa's floor):
clean training for the first 20 %, the radius ramped to ``eps`` over the next half, kappa from 1 to 0.5."""

SIGMA_OBJECTIVES = ["noise", "consistency"]
"""Objectives trained under Gaussian noise of a ``sigma``: their classifier is smoothed at it."""

EPS_OBJECTIVES = ["pgd_at", "trades", "flipset", "gloro"]
"""Objectives against perturbations of L2 budget ``eps`` (an inner adversary, or certified bounds)."""

TOKEN_OBJECTIVES = ["flipset"]
"""Objectives that need a token classifier (``input: tokens:<vocab>``)."""

ARCHITECTURES = ("cnn", "resnet9", "resnet18", "lipmlp")
"""The built-in architectures (:data:`tokencert.models.ARCHITECTURES`); ``auto`` picks one by the image
shape, and ``"<module>:<callable>"`` names a researcher's own (:mod:`tokencert.plugins`)."""

LIPSCHITZ_ARCHS = ("lipmlp",)
"""1-Lipschitz architectures (``tokencert.models``): their normalization only centres, they train with a
Lipschitz objective and are certified by their logit margin."""

LIPSCHITZ_OBJECTIVES = ("gloro",)
"""Objectives that need a Lipschitz network (``arch: lipmlp``, pixel input); certified by their margin."""

VOCABULARY_KINDS: dict[str, dict[str, object]] = {"gaussian": {}, "kmeans": {}, "learned": {}}
"""Vocabulary kinds (``tokencert.vocab.build`` builds them) and the JSON schema of the recipe keys a
plugin kind adds (:func:`tokencert.vocab.build.register_kind`); the built-ins' are in the schema."""


def register_objective_name(name: str, parameters: tuple[str, ...], *, sigma: bool, eps: bool,
                            tokens: bool) -> None:
    """The plan's side of a new objective (its implementation registers through :mod:`tokencert.objectives`)."""
    unknown = [p for p in parameters if p not in OBJECTIVE_KEYS]
    if unknown:
        raise ValueError(f"objective {name!r}: parameters {unknown} are not among {OBJECTIVE_KEYS}")
    OBJECTIVE_PARAMETERS[name] = tuple(parameters)
    for flag, family in ((sigma, SIGMA_OBJECTIVES), (eps, EPS_OBJECTIVES), (tokens, TOKEN_OBJECTIVES)):
        if flag and name not in family:
            family.append(name)


def register_attack_name(name: str, *, pixel: bool, black_box: bool = False) -> None:
    """The plan's side of a new attack (``pixel``: it needs only the classifier, so it runs on every one;
    ``black_box``: it uses no gradient of the attacked classifier)."""
    if name not in ATTACKS:
        ATTACKS.append(name)
    if pixel and name not in PIXEL_ATTACKS:
        PIXEL_ATTACKS.append(name)
    if black_box and name not in BLACK_BOX_ATTACKS:
        BLACK_BOX_ATTACKS.append(name)


def cascade_order(attacks: list[str]) -> list[str]:
    """The order a cascade runs ``attacks`` in (AutoAttack's): the white-box attacks as listed, then the
    black-box ones, which are slow and are also the gradient-masking check: in a cascade each attacks
    only what every white-box attack left standing."""
    return [a for a in attacks if a not in BLACK_BOX_ATTACKS] + [a for a in attacks if a in BLACK_BOX_ATTACKS]


WORST = "worst"
"""Name of the per-sample worst case over every attack run on a classifier."""

STUDY_EPS = {(1, 28): 4.0, (3, 32): 0.5}
"""(channels, image size) -> the study's headline attack eps (MNIST 4.0, CIFAR-10 0.5)."""

STANDARD_RADII = {(1, 28): (0.5, 1.0, 1.58), (3, 32): (36 / 255, 0.25, 0.5)}
"""(channels, image size) -> the radii the certified-defense literature reports (MNIST: GloRo,
Cohen et al.; CIFAR-10: 36/255 of the Lipschitz networks, 0.25 / 0.5 of smoothing); the
defense-landscape table gives certified and worst-case accuracy at them."""

CERT_RADIUS = 0.05
"""Default radius at which the report's main table gives R_0 / R_2 certified accuracy."""

FIGURE_KINDS = ("certified", "robust", "bracket", "frontier", "usage", "ktradeoff", "examples")
"""The report's figures, one of each kind per dataset (``<dataset>-<kind>.{pdf,png}``)."""


def attack_applies(attack: str, token_classifier: bool, baseline_trained: bool = True) -> bool:
    """Whether the suite runs ``attack`` on a classifier (``token_classifier``: it sees tokens)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack '{attack}' (known: {', '.join(ATTACKS)})")
    if attack == "transfer" and not baseline_trained:
        return False
    return token_classifier or attack in PIXEL_ATTACKS


def study_eps(channels: int, image_size: int) -> float | None:
    """The study's headline eps for images of this shape (None: the study has none)."""
    return STUDY_EPS.get((int(channels), int(image_size)))
