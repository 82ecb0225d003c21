"""The linear (CROWN-IBP) bound of the margins: ReLU and max-pool relaxations on the interval bounds,
back-substituted to the input image and minimized exactly per patch over the reachable tokens."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from ..models import BasicBlock, Normalize, Residual
from ..tokens import patchify
from ..vocab import Vocabulary
from .geometry import Geometry
from .ibp import Trace, interval_margin, logit_differences, propagate, top_sum


def linear_margin_bounds(net: nn.Module, vocab: Vocabulary, geo: Geometry, reach: torch.Tensor,
                         center: torch.Tensor, dev_lo: torch.Tensor, dev_hi: torch.Tensor, budget: torch.Tensor,
                         labels: torch.Tensor, target: torch.Tensor | None = None,
                         radius: torch.Tensor | None = None) -> torch.Tensor:
    """Like :func:`margin_bounds`, and at least as tight: the larger of IBP's bound and a linear one
    (CROWN-IBP, Zhang et al. 2020) over the same relaxation.

    The margin ``z_y - z_j`` is bounded below by a linear function of the tokenized image, back-
    substituted from the last layer to the input through linear relaxations of ReLU and max pooling
    (built on the intermediate bounds of :func:`propagate`, which hold for every covered token
    combination). A linear function of the image is a sum of per-patch terms, so its minimum over
    at most ``budget`` changed patches, each to a reachable token (``reach``: N x P x K), is exact:
    the ``budget`` most negative per-patch minima over the reachable tokens themselves (not their box).
    With ``target`` (one per image), only the classes whose IBP bound is at most ``target`` get the
    linear bound (the others keep IBP's): enough to decide whether every bound exceeds ``target``.
    With ``radius`` (one per image), the linear function's minimum is also bounded under the summed
    squared costs ``sum_p geo.radii[p, j]^2 <= radius^2`` (its Lagrangian relaxation, a multiple-choice
    knapsack: :func:`_knapsack_minimum`), which is tighter than the count of changed patches alone."""
    trace: Trace = {}
    leaves, lo, hi, i = propagate(net, vocab, center, dev_lo, dev_hi, budget, trace)
    ibp = interval_margin(leaves, lo, hi, i, labels)
    need = ibp <= (math.inf if target is None else target.view(-1, 1))  # never the label's own (+inf)
    rows = torch.nonzero(need.any(dim=1)).flatten()
    if rows.numel() == 0:
        return ibp
    need = need[rows]
    classes = torch.sort(need.to(torch.uint8), dim=1, descending=True, stable=True).indices
    classes = classes[:, :int(need.sum(dim=1).max())]  # the needed classes first, padded with others
    trace = {key: [(a[rows], b[rows]) for a, b in entries] for key, entries in trace.items()}
    linear = relaxed_margins(leaves, i, trace, vocab, geo.take(rows), reach[rows], center[rows], budget[rows],
                             labels[rows], classes, None if radius is None else radius[rows])
    linear = linear.masked_fill(~need.gather(1, classes), -math.inf)
    out = ibp.clone()
    out[rows] = torch.maximum(ibp[rows], torch.full_like(ibp[rows], -math.inf).scatter(1, classes, linear))
    return out


def relaxed_margins(leaves: list[nn.Module], first: int, trace: Trace, vocab: Vocabulary, geo: Geometry,
                    reach: torch.Tensor, center: torch.Tensor, budget: torch.Tensor, labels: torch.Tensor,
                    classes: torch.Tensor | None = None, radius: torch.Tensor | None = None) -> torch.Tensor:
    """The linear bounds (N x S) of the margins ``z_y - z_j`` of N images (``geo``, ``reach``, ``center``,
    ``budget``, ``labels``, ``radius``: one row each) for the classes ``classes`` (N x S; every class when
    ``None``), on the bounds ``trace`` holds for the input of every layer from ``leaves[first]`` on
    (:func:`propagate`'s, or any others: they are consumed). The layers before ``first`` are affine (the first
    linear one and what leads to it); their input shapes are recorded here."""
    record_inputs(leaves[:min(first, len(leaves) - 1)], center, trace)
    coef, const = logit_differences(leaves[-1], labels, classes)
    return budgeted_minimum(leaves[:-1], coef, const, trace, vocab, geo, reach, center, budget, radius)


def record_inputs(modules: list[nn.Module], x: torch.Tensor, trace: Trace) -> None:
    """Records in ``trace`` the input of each of ``modules`` (affine layers in order, from ``x``) as its own
    bounds: :func:`_backward` needs only their shapes."""
    for module in modules:
        trace.setdefault(id(module), []).append((x, x))
        x = module(x)


def budgeted_minimum(modules: list[nn.Module], coef: torch.Tensor, const: torch.Tensor | float, trace: Trace,
                     vocab: Vocabulary, geo: Geometry, reach: torch.Tensor, center: torch.Tensor, budget: torch.Tensor,
                     radius: torch.Tensor | None = None) -> torch.Tensor:
    """A lower bound (N x S) of ``coef . y + const``, ``y`` the output of ``modules`` (in order) on the token
    combinations N images can reach (``geo``, ``reach``, ``center``, ``budget``, ``radius``: one row each):
    back-substituted through ``modules`` (on the bounds of ``trace``, consumed) to the tokenized image, whose
    linear function is minimised exactly per patch over the reachable tokens under at most ``budget`` changed
    patches and, with ``radius``, also under the summed squared costs (:func:`_knapsack_minimum`)."""
    for module in reversed(modules):
        coef, shift = _backward(module, coef, trace)
        const = const + shift
    per_patch = _patch_changes(coef, vocab, geo, reach)
    if radius is None:  # one patch's N x S x K changes at a time: each patch's best reachable change
        minima = torch.stack([c.min(dim=2).values.clamp(max=0) for c in per_patch], dim=1)
        change = -top_sum(minima.neg(), budget)
    else:  # the knapsack bound needs every patch's changes at once (N x P x S x K)
        changes = torch.stack(list(per_patch), dim=1)
        change = -top_sum(changes.min(dim=3).values.clamp(max=0).neg(), budget)
        change = torch.maximum(change, _knapsack_minimum(changes, geo.radii, radius))
    return const + (coef * center.unsqueeze(1)).flatten(2).sum(2) + change


def _patch_changes(coef: torch.Tensor, vocab: Vocabulary, geo: Geometry, reach: torch.Tensor,
                   ) -> Iterator[torch.Tensor]:
    """Per patch, per image, spec and token (N x S x K) the change of ``coef . image`` when that patch alone
    takes the token (``inf`` where it is not reachable; 0 for its own token), one patch at a time."""
    n, specs = coef.shape[:2]
    grad = patchify(coef.reshape(n * specs, *coef.shape[2:]), vocab.patch_size, vocab.mode)
    grad = grad.view(n, specs, *grad.shape[1:])  # N x S x P x d
    own = geo.own()
    for p in range(grad.shape[2]):
        change = torch.einsum("nsd,kd->nsk", grad[:, :, p], geo.tables[p]) - torch.einsum(
            "nsd,nd->ns", grad[:, :, p], own[:, p]).unsqueeze(2)
        yield change.masked_fill(~reach[:, p].unsqueeze(1), math.inf)


KNAPSACK_MULTIPLIERS = torch.logspace(-6, 6, 49, dtype=torch.float64)
"""Multipliers of the cost constraint tried, relative to the row's scale (the best is kept)."""


def _knapsack_minimum(changes: torch.Tensor, radii: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """A lower bound (N x S) of ``sum_p change[p, T_p]`` over token choices with ``sum_p r[p, T_p]^2 <= radius^2``
    (own token: change 0, cost 0): for every ``mu >= 0`` it is at least
    ``sum_p min(0, min_j (change[p, j] + mu r[p, j]^2)) - mu radius^2`` (weak duality), maximised over a grid."""
    cost = torch.where(torch.isinf(radii), 0.0, radii.square()).unsqueeze(2)  # N x P x 1 x K
    reachable = torch.isfinite(changes[:, :, :1])  # N x P x 1 x K, the same for every spec
    width = int(reachable.sum(dim=3).max())
    if width < changes.shape[3]:  # the reachable tokens first: the minima below never see the others (inf)
        keep = torch.sort(reachable.to(torch.uint8), dim=3, descending=True, stable=True).indices[..., :width]
        changes = changes.gather(3, keep.expand(-1, -1, changes.shape[2], -1))
        cost = cost.gather(3, keep)
    budget = radius.square().view(-1, 1)
    scale = changes.masked_fill(torch.isinf(changes), 0.0).abs().amax(dim=(1, 3)) / budget.clamp(min=1e-12)
    best = torch.full((changes.shape[0], changes.shape[2]), -math.inf, dtype=changes.dtype)
    for mu in KNAPSACK_MULTIPLIERS.tolist():
        m = (mu * scale).unsqueeze(1).unsqueeze(3)  # N x 1 x S x 1
        value = (changes + m * cost).min(dim=3).values.clamp(max=0).sum(dim=1) - (mu * scale) * budget
        best = torch.maximum(best, value)
    return best


AFFINE = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
          nn.Identity, Normalize)


def _backward(module: nn.Module, coef: torch.Tensor, trace: Trace) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear lower bound ``coef . out + 0`` of ``module``'s output, valid where its input lies in the
    recorded bounds, as ``coef' . in + shift``: (``coef'`` N x S x input shape, ``shift`` N x S)."""
    if isinstance(module, nn.Sequential):
        total = 0.0
        for child in reversed(module):
            coef, shift = _backward(child, coef, trace)
            total = total + shift
        return coef, total
    if isinstance(module, Residual):
        body, shift = _backward(module.body, coef, trace)
        return coef + body, shift
    if isinstance(module, BasicBlock):
        lo, hi = trace[(id(module), "sum")].pop()
        coef, s0 = _relu_backward(coef, lo, hi)
        main, s1 = _backward(nn.Sequential(module.conv1, module.conv2), coef, trace)
        short, s2 = _backward(module.shortcut, coef, trace)
        return main + short, s0 + s1 + s2
    lo, hi = trace[id(module)].pop()
    if isinstance(module, nn.ReLU):
        return _relu_backward(coef, lo, hi)
    if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return _maxpool_backward(module, coef, lo, hi)
    if not isinstance(module, AFFINE):
        raise ValueError(f"unsupported layer {type(module).__name__} for flip-set certificates")
    n, s = coef.shape[:2]
    flat = coef.reshape(n * s, *coef.shape[2:])
    offset = module(torch.zeros((1, *lo.shape[1:]), dtype=coef.dtype))  # the layer's image of 0: its bias terms
    shift = (flat * offset).flatten(1).sum(1).view(n, s)
    return _transpose(module, flat, tuple(lo.shape[1:])).view(n, s, *lo.shape[1:]), shift


def _transpose(module: nn.Module, coef: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``coef`` (M x output shape) through the transpose of the affine ``module``'s linear part (M x
    ``shape``): the layer's own weights, transposed, with no forward pass."""
    if isinstance(module, nn.Linear):
        return coef.flatten(1) @ module.weight
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        extra = [size - ((out - 1) * stride - 2 * pad + dil * (k - 1) + 1) for size, out, stride, pad, dil, k in
                 zip(shape[1:], coef.shape[2:], module.stride, module.padding, module.dilation, module.kernel_size,
                     strict=True)]  # the rows and columns the convolution's stride left out
        return nn.functional.conv_transpose2d(coef, module.weight, None, module.stride, module.padding, extra,
                                              module.groups, module.dilation)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):  # eval mode (check_layers): per-channel scale
        scale = torch.rsqrt(module.running_var + module.eps)
        scale = scale if module.weight is None else scale * module.weight
        return coef * scale.view(1, -1, *(1,) * (coef.ndim - 2))
    if isinstance(module, Normalize):
        return coef / module.std
    if isinstance(module, (nn.Flatten, nn.Identity)):
        return coef.reshape(coef.shape[0], *shape)
    # average pooling: autograd's vector-Jacobian product (the CNN's one adaptive pool costs 1 % of the
    # bound; torch.autograd, not torch.func.vjp, which imports torch._dynamo: 2.5 s per job)
    x = torch.zeros((coef.shape[0], *shape), dtype=coef.dtype, requires_grad=True)
    with torch.enable_grad():
        return torch.autograd.grad(module(x), x, coef)[0]


def _relu_backward(coef: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU on ``[lo, hi]``: the chord above where the sign is open, below ``x`` or ``0`` (the closer
    one, CROWN's adaptive choice); exact where the sign is fixed."""
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    active = (lo >= 0).to(coef)
    open_ = (lo < 0) & (hi > 0)
    upper = torch.where(open_, hi / (hi - lo).clamp(min=torch.finfo(coef.dtype).tiny), active)
    lower = torch.where(open_, (hi >= -lo).to(coef), active)
    neg = coef.clamp(max=0)
    shift = (neg * torch.where(open_, -upper * lo, 0.0)).flatten(2).sum(2)
    return coef.clamp(min=0) * lower + neg * upper, shift


def _maxpool_backward(module: nn.Module, coef: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pooling on ``[lo, hi]``: below, the window's input with the largest lower bound; above, the
    window's largest upper bound (a constant)."""
    if isinstance(module, nn.MaxPool2d):
        _, index = nn.functional.max_pool2d(lo, module.kernel_size, module.stride, module.padding,
                                            module.dilation, module.ceil_mode, return_indices=True)
    else:
        _, index = nn.functional.adaptive_max_pool2d(lo, module.output_size, return_indices=True)
    n, s, c = coef.shape[:3]
    pos = coef.clamp(min=0).flatten(3)
    spread = torch.zeros(n, s, c, lo.shape[2] * lo.shape[3], dtype=coef.dtype)
    spread.scatter_add_(3, index.flatten(2).unsqueeze(1).expand_as(pos), pos)
    shift = (coef.clamp(max=0) * module(hi).unsqueeze(1)).flatten(2).sum(2)
    return spread.view(n, s, *lo.shape[1:]), shift
