"""Running the attack suite over an eps grid, the per-sample worst case, and sanity checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..flipsearch import SearchSettings, token_search
from ..models import DiscreteClassifier, StraightThrough, differentiable
from ..outcomes import AttackOutcome
from ..study import BLACK_BOX_ATTACKS, attack_applies, register_attack_name, study_eps
from .apgd import apgd
from .base import check_attack_params, judge, predict
from .fab import fab
from .pgd import pgd
from .square import square
from .tokenflip import tokenflip

log = logging.getLogger("tokencert")

UNDEFENDED_MAX_ACCURACY = 0.05
BLACK_BOX_SLACK = 0.03


AttackRun = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
KeyedRun = Callable[[torch.Tensor, torch.Tensor, float, torch.Tensor], torch.Tensor]
"""A run of the eps walk: ``(images, labels, eps, keys) -> adversarial images``; ``keys`` are the images'
test-set indices, which seed each image's random starts (:func:`tokencert.attacks.base.image_seed`)."""

PLUGINS: dict[str, Callable[[nn.Module, Mapping[str, Any], int, torch.Tensor | None], AttackRun]] = {}
"""Attacks added by plugin modules (:func:`register_attack`), by name."""


def register_attack(name: str, factory: Callable[[nn.Module, Mapping[str, Any], int, torch.Tensor | None], AttackRun],
                    *, pixel: bool = True, black_box: bool = False) -> None:
    """Add an attack to the suite (a plugin module calls this on import): ``factory(model, params, seed,
    scale)`` returns a run ``(images, labels, eps) -> adversarial images``, judged on the hard model like
    every attack (nested eps walk, verified norms, sanity checks); its settings are ``attacks.<name>``
    (in ``params``). ``pixel``: it needs only the classifier (else only token classifiers get it);
    ``black_box``: it joins the gradient-masking check against the white-box attacks."""
    register_attack_name(name, pixel=pixel, black_box=black_box)
    PLUGINS[name] = factory


def pgd_settings(params: Mapping[str, Any]) -> tuple[int, int, float]:
    """``(steps, restarts, relative step size)`` of the PGD-type attacks, checked."""
    pgd_params = dict(params.get("pgd", {}))
    steps, restarts = int(pgd_params.get("steps", 50)), int(pgd_params.get("restarts", 1))
    check_attack_params(steps=steps)
    return steps, restarts, float(pgd_params.get("step_size", 2.5))


def _runs(name: str, model: nn.Module, params: Mapping[str, Any], seed: int, scale: torch.Tensor | None,
          baseline: nn.Module | None) -> list[KeyedRun]:
    """The attack as one or more runs (SSPGD: one per tau); PGD-type and APGD runs draw each image's random
    starts from its own seed (``seed``, its key, the restart), so an image's result does not depend on its batch."""
    if name in PLUGINS:
        run = PLUGINS[name](model, params, seed, scale)
        return [lambda x, y, eps, keys: run(x, y, eps)]
    if name.startswith("apgd-"):
        ap = params.get("apgd", {})
        steps, restarts = int(ap.get("steps", pgd_settings(params)[0])), int(ap.get("restarts", 1))
        check_attack_params(steps=steps)
        loss = name.split("-", 1)[1]
        return [lambda x, y, eps, keys: apgd(differentiable(model), x, y, eps, loss, steps, restarts, seed, scale,
                                             keys)]
    steps, restarts, step_size = pgd_settings(params)
    taus = [None] if name != "sspgd" else [float(t) for t in params.get("sspgd", {}).get("taus", [0.1])]
    for tau in taus:
        check_attack_params(tau=tau)
    if name == "transfer" and baseline is None:
        raise ValueError("attack 'transfer' needs the baseline model")
    source = baseline if name == "transfer" else model

    def run(grad_model: nn.Module | None, run_seed: int) -> KeyedRun:
        return lambda x, y, eps, keys: pgd(source, x, y, eps, steps, step_size, restarts, run_seed, scale,
                                           grad_model, keys)

    # each tau its own starts: the run's seed offset by its position
    return [run(StraightThrough(model, tau) if name in ("sspgd", "bpda") else None, seed + i)
            for i, tau in enumerate(taus)]


def _single_shot(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float],
                 params: Mapping[str, Any], seed: int,
                 scale: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, bool]]:
    """Norms of the verified adversarial examples (inf: none) of an attack that decides every eps of the grid in
    one run (token flips up to the largest eps, the exact search with its own eps walk, minimum-norm FAB),
    and its checks."""
    if name == "tokenflip":
        flip = params.get("tokenflip", {})
        _, found = tokenflip(model, x, y, max(eps_grid), int(flip.get("max_flips", 32)),
                             int(flip.get("candidates", 32)), scale)
        return found, {}
    if name == "tokensearch":  # exact costs: its eps walk and verification are its own (tokencert.flipsearch)
        search = token_search(model, x, y, max(eps_grid), scale,
                              SearchSettings.from_params(params.get("tokensearch", {})), list(eps_grid), seed)
        return search.norm, {"in_box": bool(((search.images >= 0) & (search.images <= 1)).all()),
                             "tokens_verified": search.verified}
    fb = params.get("fab", {})
    steps, restarts = int(fb.get("steps", 20)), int(fb.get("restarts", 1))
    check_attack_params(steps=steps)
    top = max(eps_grid)
    adv = fab(differentiable(model), x, y, top, steps, restarts, seed, scale)
    _, size, checks = judge(model, x, adv, y, top, scale)
    return size.cpu().to(torch.float64), checks


def _still_correct(min_norm: torch.Tensor, eps_grid: list[float], decided: torch.Tensor) -> torch.Tensor:
    """Per eps and image (eps x N): no verified example within eps and not decided there by an earlier attack."""
    return torch.stack([min_norm > e for e in eps_grid]) & ~decided


def _square_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float],
                 params: Mapping[str, Any], seed: int, scale: torch.Tensor | None, min_norm: torch.Tensor,
                 decided: torch.Tensor, checks: dict[str, bool]) -> AttackOutcome:
    """Square on every (image, eps) pair still open, all in one batch (one forward pass per query step; a pair
    stops when its image falls at an eps no larger than its own), judged on the hard model."""
    sq = params.get("square", {})
    level, image = _still_correct(min_norm, eps_grid, decided).nonzero(as_tuple=True)
    if image.numel():
        eps = torch.tensor(eps_grid, dtype=torch.float64)[level]
        rows = image.to(x.device)
        adv = square(model, x[rows], y[rows], eps.float(), int(sq.get("queries", 500)), float(sq.get("p_init", 0.8)),
                     seed, scale, groups=image)
        _, size, c = judge(model, x[rows], adv, y[rows], eps.to(x.device), scale)
        min_norm.scatter_reduce_(0, image, size.cpu().to(torch.float64), "amin")
        checks.update({key: checks[key] and value for key, value in c.items()})
    return AttackOutcome(list(eps_grid), _still_correct(min_norm, eps_grid, decided), min_norm, checks)


SINGLE_SHOT = ("tokenflip", "tokensearch", "fab")
"""Attacks run once for the whole eps grid (:func:`_single_shot`), not once per eps."""


def run_attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float],
               params: Mapping[str, Any], seed: int, scale: torch.Tensor | None = None,
               baseline: nn.Module | None = None, keys: torch.Tensor | None = None,
               prior: AttackOutcome | None = None) -> AttackOutcome:
    """Attack ``model`` at every eps; judge on the hard model; record sanity checks.

    The eps balls are nested, so a verified adversarial example of norm ``<= eps`` (a clean
    mistake has norm 0) already decides every larger eps: the grid is walked in increasing
    order and each run only attacks the samples no earlier run has broken within eps.
    Robust accuracy is therefore non-increasing in eps. ``keys``: the images' test-set indices
    (default: their positions), which seed per-image random starts. ``prior``: in a cascade, the
    cumulative outcome of the attacks before this one; what it decided is not attacked again, and
    the outcome returned is cumulative too (this attack's findings and the prior's).
    """
    check_attack_params(eps=list(eps_grid), name=name)
    discrete = isinstance(model, DiscreteClassifier)
    if not attack_applies(name, discrete):
        raise ValueError(f"attack '{name}' needs a discrete classifier")
    checks = {"step_budget_ok": pgd_settings(params)[2] >= 1.0, "eps_ball_respected": True, "in_box": True}
    min_norm = torch.full((x.shape[0],), torch.inf, dtype=torch.float64)
    min_norm[(predict(model, x) != y).cpu()] = 0.0
    decided = torch.zeros((len(eps_grid), x.shape[0]), dtype=torch.bool)  # broken there by an earlier attack
    if prior is not None:
        if list(prior.eps) != list(eps_grid) or prior.min_norm.shape != min_norm.shape:
            raise ValueError(f"the cascade's prior outcome (eps {prior.eps}, {prior.min_norm.numel()} images) is "
                             f"not this attack's (eps {list(eps_grid)}, {x.shape[0]} images)")
        min_norm, decided = torch.minimum(min_norm, prior.min_norm), ~prior.correct
    if name in SINGLE_SHOT:  # the images some eps still leaves open
        todo = ((min_norm > min(eps_grid)) & ~decided.all(0)).nonzero().squeeze(1)
        if todo.numel():
            found, c = _single_shot(name, model, x[todo.to(x.device)], y[todo.to(y.device)], list(eps_grid),
                                    params, seed, scale)
            min_norm[todo] = torch.minimum(min_norm[todo], found.cpu().to(torch.float64))
            checks.update({key: checks.get(key, True) and value for key, value in c.items()})
        return AttackOutcome(list(eps_grid), _still_correct(min_norm, eps_grid, decided), min_norm, checks)
    if name == "square":
        return _square_grid(model, x, y, list(eps_grid), params, seed, scale, min_norm, decided, checks)
    runs = _runs(name, model, params, seed, scale, baseline)
    keys = torch.arange(x.shape[0]) if keys is None else keys.cpu()
    correct: list[torch.Tensor | None] = [None] * len(eps_grid)
    for i in tqdm(sorted(range(len(eps_grid)), key=lambda i: eps_grid[i]), desc=f"{name} (eps grid)",
                  mininterval=2.0):
        eps = eps_grid[i]
        standing = (min_norm > eps) & ~decided[i]
        for attack in runs:
            todo = standing.nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            idx = todo.to(x.device)
            ok, size, c = judge(model, x[idx], attack(x[idx], y[idx], eps, keys[todo]), y[idx], eps, scale)
            standing[todo] = ok.cpu()
            min_norm[todo] = torch.minimum(min_norm[todo], size.cpu().to(torch.float64))
            for key, value in c.items():
                checks[key] = checks[key] and value
        correct[i] = standing
    return AttackOutcome(list(eps_grid), torch.stack(correct), min_norm, checks)


def worst_case(outcomes: Mapping[str, AttackOutcome]) -> AttackOutcome:
    """Per-sample worst case: correct at eps only if every attack left it correct and no attack verified an
    adversarial example of norm ``<= eps`` at any eps (a smaller one found by a minimum-norm attack or
    at another eps decides this eps too: the balls are nested)."""
    first = next(iter(outcomes.values()))
    min_norm = torch.stack([o.min_norm for o in outcomes.values()]).min(dim=0).values
    correct = torch.stack([o.correct for o in outcomes.values()]).all(dim=0)
    correct &= torch.stack([min_norm > e for e in first.eps])
    keys = dict.fromkeys(k for o in outcomes.values() for k in o.checks)
    checks = {k: all(o.checks.get(k, True) for o in outcomes.values()) for k in keys}
    return AttackOutcome(first.eps, correct, min_norm, checks)


def sanity_warnings(model_name: str, discrete: bool, shape: tuple[int, int], outcomes: Mapping[str, AttackOutcome],
                    units: str = "pixel") -> list[str]:
    """Loud warnings: undefended model not broken at the study's eps (pixel units, MNIST- and
    CIFAR-shaped data, :func:`tokencert.study.study_eps`); a black-box attack far ahead of every
    white-box one (a sign of gradient masking); broken checks."""
    warnings = []
    for name, o in outcomes.items():
        for key, ok in o.checks.items():
            if not ok:
                warnings.append(f"{name}: sanity check '{key}' failed")
    eps = study_eps(*shape) if units == "pixel" else None
    if model_name == "baseline" and eps is not None and "pgd" in outcomes and eps in outcomes["pgd"].eps:
        acc = outcomes["pgd"].robust_accuracy()[outcomes["pgd"].eps.index(eps)]
        if acc > UNDEFENDED_MAX_ACCURACY:
            warnings.append(f"undefended baseline keeps {acc:.1%} under PGD at eps {eps} "
                            f"(expected <= {UNDEFENDED_MAX_ACCURACY:.0%}): the attack is too weak")
    white = [o for n, o in outcomes.items() if n not in BLACK_BOX_ATTACKS and (discrete or n == "pgd")]
    for name in BLACK_BOX_ATTACKS:
        if name in outcomes and white:
            for i, eps in enumerate(outcomes[name].eps):
                best_white = min(o.robust_accuracy()[i] for o in white)
                if outcomes[name].robust_accuracy()[i] < best_white - BLACK_BOX_SLACK:
                    warnings.append(f"{name} beats every white-box attack at eps {eps} "
                                    f"({outcomes[name].robust_accuracy()[i]:.1%} < {best_white:.1%}): "
                                    "possible gradient masking")
    for w in warnings:
        log.warning("SANITY: %s", w)
    return warnings


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the hard model on unperturbed images."""
    return float((predict(model, x) == y).to(torch.float64).mean())
