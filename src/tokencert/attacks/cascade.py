"""The cascade (``attacks.cascade``): each attack starts from what the attacks before it found.

In AutoAttack's order (white-box attacks as listed, black-box ones last: :func:`tokencert.study.cascade_order`)
each attack attacks an image at an eps only if no earlier attack broke it there, and its outcome is
cumulative, so the last one is the suite's per-image worst case, at a fraction of the evaluations.
Two things an independent suite gives would be lost, and are kept:

- each attack's own robust accuracy, and with it the gradient-masking check (a black-box attack ahead of
  every white-box one): every attack also runs alone on the first ``attacks.check_images`` images;
- the per-image view of masking: a black-box attack that breaks images every white-box attack left
  standing, counted by what each attack newly broke (``broken``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..outcomes import AttackOutcome, read_outcome, summary_checks
from ..study import BLACK_BOX_ATTACKS
from .suite import BLACK_BOX_SLACK

log = logging.getLogger("tokencert")


def prior_outcome(csv_path: str | os.PathLike[str], indices: torch.Tensor) -> AttackOutcome:
    """The cumulative outcome of the attack before this one (its per-sample CSV), checked to be about the
    same test images in the same order."""
    outcome, keys, _ = read_outcome(csv_path)
    if not torch.equal(keys, indices.cpu().to(keys.dtype)):
        raise ValueError(f"{csv_path}: the cascade's previous attack ran on other test images; rerun it")
    return outcome


def cascaded(run: Callable[[slice, AttackOutcome | None], AttackOutcome], prior: AttackOutcome | None,
             after: str | None, clean: torch.Tensor, check_images: int) -> tuple[AttackOutcome, dict[str, Any]]:
    """One attack of a cascade: ``run(rows, prior)`` on every image from the ``prior`` cumulative outcome
    (``None``: the first attack, whose prior is the clean predictions, ``clean``: correct or not), then by
    itself on the first ``check_images`` images. Returns the cumulative outcome and what the summary adds:
    ``cascade`` (the attack before it, and per eps the images it newly broke) and ``alone`` (its own
    outcome on the check images)."""
    outcome = run(slice(None), prior)
    n = min(check_images, clean.numel())
    own = run(slice(0, n), None) if prior is not None and n else outcome  # the first attack ran alone already
    before = clean.expand(len(outcome.eps), -1) if prior is None else prior.correct
    return outcome, {
        "cascade": {"after": after, "broken": (before & ~outcome.correct).sum(dim=1).tolist()},
        "alone": {"n_images": n,
                  "robust_accuracy": own.correct[:, :n].to(torch.float64).mean(dim=1).tolist() if n else None,
                  "correct": own.correct[:, :n].to(torch.int64).tolist()},
    }


def alone_outcomes(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, AttackOutcome]:
    """Each cascaded attack's run by itself on the check images, with its checks, for :func:`sanity_warnings`
    (no check images: empty outcomes, whose accuracies compare with nothing)."""
    return {name: AttackOutcome(list(s["eps"]), torch.tensor(s["alone"]["correct"], dtype=torch.bool).view(
        len(s["eps"]), -1), torch.empty(0), summary_checks(s)) for name, s in summaries.items()}


def masking_warnings(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A black-box attack that, in the cascade, broke more than ``BLACK_BOX_SLACK`` of the images at an eps
    although every white-box attack before it had left them standing: the gradients mislead."""
    warnings = []
    for name, s in summaries.items():
        if name in BLACK_BOX_ATTACKS and s.get("cascade", {}).get("after") is not None:
            for eps, broken in zip(s["eps"], s["cascade"]["broken"], strict=True):
                if broken > BLACK_BOX_SLACK * s["n_images"]:
                    warnings.append(f"{name} broke {broken} of {s['n_images']} images at eps {eps:g} that every "
                                    "attack before it in the cascade left standing: possible gradient masking")
    for w in warnings:
        log.warning("SANITY: %s", w)
    return warnings
