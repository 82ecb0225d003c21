"""The certificate family: every deterministic certificate of the study, registered once.

A :class:`Certificate` names its method (the summary's ``method``), its results folder
(``results/<dataset>/<folder>/<model>.{json,csv}``), its label in the report, which classifiers
it applies to, its parameter section (with defaults) and the function that computes it
(``"module:function"``, imported only by the job, so reading the registry stays cheap). The
rule template (``rules/certificate.smk``), the report's collection, tables, figures and
``metrics.json`` all derive from :data:`CERTIFICATES`; a new certificate is its module and one
:func:`register` call (from a ``plugins:`` module for a certificate outside the package).

The function's contract (:mod:`tokencert.certificates.job` calls it):
``compute(net, data, settings) -> Radii``: ``net`` the loaded classifier (eval mode, CPU),
``data`` an :class:`tokencert.evaluation.EvalSet`, ``settings`` its parameter section; it returns
the certified radius of each image's *predicted* class (float64, >= 0, ``inf`` allowed) and any
extra per-image CSV columns and summary fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PER_MODEL = "models"  # a certificate section's per-classifier overrides: <folder>.models.<model>.<key>
TOKEN_CLASSIFIERS = "tokens"
LIPSCHITZ_NETWORKS = "lipschitz"
ANY_CLASSIFIER = "any"
APPLIES = (TOKEN_CLASSIFIERS, LIPSCHITZ_NETWORKS, ANY_CLASSIFIER)


@dataclass(frozen=True)
class Certificate:
    """One deterministic certificate of the family."""

    name: str  # the summary's "method" (R0, R2, Rset, lipschitz)
    folder: str  # results/<dataset>/<folder>/<model>.{json,csv}; also the params section
    label: str  # in the report (LaTeX math allowed)
    compute: str | Callable[..., Any]  # "module:function" or the function itself (a plugin's)
    applies: str = TOKEN_CLASSIFIERS  # tokens | lipschitz | any
    attacked_only: bool = False  # only on classifiers the suite attacks (R2: for its bracket)
    bracket: bool = True  # joined with the suite's per-image worst case where the classifier is attacked
    defaults: Mapping[str, Any] = field(default_factory=lambda: {"n_images": 200})  # params (no n_images: all)
    refines: tuple[str, ...] = ()  # certificates it dominates image by image (dropped where it is computed)
    panel: str = "beyond"  # the certified figure's panel: "flip" (token invariance, one flip) | "beyond"
    metric: str | None = None  # metrics.json key prefix of its ACR (``<metric>/<model>``), if any
    gpu: bool = False  # the job may use a GPU
    schema: Mapping[str, Any] | None = None  # JSON schema of its params section (built-ins: params.schema.yaml)
    landscape: bool = True  # its certified accuracy competes in the landscape (False: a few images, bracket only)
    complete: bool = False  # a complete verifier (returns Radii.upper): the frontier figure draws its interval

    def settings(self, config: Mapping[str, Any], model: str | None = None) -> dict[str, Any]:
        """Its parameter section for ``model``: the defaults, overridden by ``config[folder]``, overridden
        by that section's ``models.<model>`` (e.g. more images for one classifier)."""
        section = dict(config.get(self.folder) or {})
        own = dict((section.pop(PER_MODEL, None) or {}).get(model) or {})
        return {**self.defaults, **section, **own}

    @property
    def module(self) -> str:
        """The module of the compute function (its code is part of the job's, :mod:`tokencert.provenance`)."""
        return self.compute.partition(":")[0] if isinstance(self.compute, str) else self.compute.__module__

    def function(self) -> Callable[..., Any]:
        """The compute function (imported on first use)."""
        if callable(self.compute):
            return self.compute
        import importlib

        module, _, attr = self.compute.partition(":")
        return getattr(importlib.import_module(module), attr)


CERTIFICATES: dict[str, Certificate] = {}
"""Registered certificates by name, weakest first (the report takes the last computed as the strongest)."""

RESERVED_FOLDERS = ("attacks", "certify", "models", "smooth", "vocab")


@dataclass
class Radii:
    """What a certificate function returns: per image the certified radius of the predicted class
    (float64 tensor), extra per-image CSV columns and extra summary fields."""

    radius: Any
    columns: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    upper: Any = None  # per image a verified adversarial norm of its own (a complete verifier's), if any


def register(cert: Certificate) -> Certificate:
    """Add ``cert`` to the family (a plugin module calls this on import); returns it."""
    if cert.applies not in APPLIES:
        raise ValueError(f"certificate {cert.name!r}: applies must be one of {APPLIES}, got {cert.applies!r}")
    if cert.folder in RESERVED_FOLDERS or any(c.folder == cert.folder and c.name != cert.name
                                              for c in CERTIFICATES.values()):
        raise ValueError(f"certificate {cert.name!r}: results folder {cert.folder!r} is taken")
    if not cert.folder.isidentifier():
        raise ValueError(f"certificate {cert.name!r}: folder {cert.folder!r} must be a plain name")
    CERTIFICATES[cert.name] = cert
    return cert


def by_folder(folder: str) -> Certificate:
    """The certificate whose results live in ``folder``."""
    for cert in CERTIFICATES.values():
        if cert.folder == folder:
            return cert
    raise KeyError(f"no certificate writes to results folder {folder!r} (known: "
                   f"{', '.join(c.folder for c in CERTIFICATES.values())})")


def applies(cert: Certificate, token_classifier: bool, lipschitz: bool, attacked: bool) -> bool:
    """Whether ``cert`` runs on a classifier of this kind."""
    kind = {TOKEN_CLASSIFIERS: token_classifier, LIPSCHITZ_NETWORKS: lipschitz, ANY_CLASSIFIER: True}[cert.applies]
    return kind and (attacked or not cert.attacked_only)


register(Certificate("R0", "certacc", "$R_0$", "tokencert.certificates.invariance:token_invariance_radius",
                     bracket=False, defaults={"batch_size": 256}, panel="flip", gpu=True))
register(Certificate("R2", "exact", "$R_2$", "tokencert.certificates.single_flip:single_flip_radius",
                     attacked_only=True, defaults={"n_images": 200, "batch_size": 512}, refines=("R0",),
                     panel="flip", metric="acr_r2", gpu=True))
register(Certificate("exactflip", "exactflip", "$R_{exact}$", "tokencert.certificates.exact_flip:exact_flip_radius",
                     attacked_only=True, defaults={"n_images": 10, "max_radius": 4.0}, panel="beyond",
                     metric="acr_exactflip", landscape=False, complete=True))
register(Certificate("Rset", "setcert", "$R_{set}$", "tokencert.certificates.flip_set:flip_set_radius",
                     defaults={"n_images": 200, "enumeration_limit": 512, "relaxation": "linear"},
                     refines=("R0", "R2")))
register(Certificate("lipschitz", "lipcert", "Lipschitz", "tokencert.certificates.margin:lipschitz_radius",
                     applies=LIPSCHITZ_NETWORKS))
