"""Flip-set certificates: sound certificates of a token classifier beyond one token flip.

Perturbations of distinct patches are orthogonal, so a perturbation that moves patch ``p`` into
the cell of token ``j`` costs at least ``r_pj`` (the bisector distance, :mod:`tokencert.certify`)
and a set ``S`` of changed patches at least ``sqrt(sum_{p in S} r_p^2)``. Within a radius ``r``:

* patch ``p`` can only take its own token or a token ``j`` with ``r_pj <= r`` (its reachable set);
* at most ``m`` patches change, ``m`` the largest count whose smallest squared patch radii sum to
  at most ``r^2``.

The network sees the tokenized image. Its first linear layer (after the input normalization) is
bounded per output unit by the ``m`` largest per-patch contributions, each maximized over the box
spanned by the patch's reachable tokens (computed in one pass per class of patches that share no
output unit: 4 classes for a 3 x 3 convolution over 4 x 4 patches); every later layer by interval
bound propagation (IBP), the last one on the logit differences ``z_y - z_j`` directly. On these
intermediate bounds a linear bound of each margin is then back-substituted to the input image
(CROWN-IBP), whose minimum over the budgeted token choices is exact per patch; the larger of the
two bounds counts. When the token combinations the bounds cover (at most ``m`` changed patches,
each to a reachable token) are few, they are all enumerated and classified instead: exact for that
relaxation, which contains every combination a perturbation within ``r`` can produce. Bounds are
computed in float64 on a float64 copy of the network and a certificate needs a margin above
:data:`MARGIN_SLACK` (relative), which absorbs the difference between that copy and the deployed
float32 network.

The relaxation only grows with ``r`` and changes only at the radii ``r_pj`` and the budget
thresholds ``sqrt(r_(1)^2 + ... + r_(k)^2)``, so certification is constant between these
breakpoints and the certified radius is found by bisection over them (IBP's bound and the
enumeration are monotone in ``r``, so then the radius is exact for the relaxation).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from .flips import own_tokens, token_radii
from .models import BasicBlock, DiscreteClassifier, Normalize, Residual, layers
from .tokens import patchify, unpatchify
from .vocab import Vocabulary

MARGIN_SLACK = 1e-5  # a certified logit margin must exceed this times (1 + largest |logit|)
ENUMERATION_LIMIT = 512  # token combinations enumerated exactly, else bounds
MONOTONE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
            nn.Identity, Normalize)
SUPPORTED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Sequential, Residual, BasicBlock, *MONOTONE)


@dataclass
class Geometry:
    """Patches of N images: own tokens (N x P), pairwise radii (N x P x K, ``inf`` for the own
    token), per-patch token tables (P x K x d) and the patch radii sorted per image."""

    assignment: torch.Tensor
    radii: torch.Tensor
    tables: torch.Tensor

    @property
    def patch_radii(self) -> torch.Tensor:
        return self.radii.min(dim=2).values

    def own(self) -> torch.Tensor:
        """N x P x d tokens the classifier sees."""
        rows = torch.arange(self.tables.shape[0])
        return self.tables[rows.unsqueeze(0), self.assignment]


def geometry(images: torch.Tensor, vocab: Vocabulary, scale: torch.Tensor | None = None) -> Geometry:
    """Token geometry of N x C x H x W images in [0,1] (float64); radii in the units of ``scale``."""
    _, radii, tables = token_radii(images.cpu(), vocab, None if scale is None else scale.cpu())
    return Geometry(own_tokens(radii), radii, tables)


def _per_image(radius: float | torch.Tensor, n: int) -> torch.Tensor:
    return torch.as_tensor(radius, dtype=torch.float64).expand(n).clone()


def tokenized(geo: Geometry, vocab: Vocabulary, size: tuple[int, int]) -> torch.Tensor:
    """The images the classifier sees (N x C x H x W, float64): every patch replaced by its own token."""
    return unpatchify(geo.own(), vocab.patch_size, vocab.mode, vocab.channels, size)


def flip_budget(patch_radii: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Per image (rows of N x P patch radii) the most patches whose tokens can change within ``radius``
    (one radius, or one per image)."""
    thresholds = _budget_thresholds(patch_radii)
    r = _per_image(radius, patch_radii.shape[0]).to(thresholds)
    return (thresholds <= r.unsqueeze(1)).sum(dim=1)


def _budget_thresholds(patch_radii: torch.Tensor) -> torch.Tensor:
    """``sqrt(r_(1)^2 + ... + r_(k)^2)`` per image and ``k``: the radii at which the budget grows (the
    budget compares radii with these very floats, so it changes exactly at the breakpoints)."""
    return torch.sort(patch_radii, dim=-1).values.square().cumsum(dim=-1).sqrt()


def breakpoints(geo: Geometry, index: int) -> torch.Tensor:
    """The sorted radii at which the reachable sets or the flip budget of image ``index`` change."""
    radii = geo.radii[index]
    pair = radii[torch.isfinite(radii)]
    budget = _budget_thresholds(geo.patch_radii[index])
    return torch.unique(torch.cat([pair, budget, torch.zeros(1, dtype=torch.float64)]))


def _check_layers(net: nn.Module) -> None:
    for module in net.modules():
        if not isinstance(module, SUPPORTED):
            raise ValueError(f"unsupported layer {type(module).__name__} for flip-set certificates "
                             f"(supported: {', '.join(t.__name__ for t in SUPPORTED)})")
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(f"{type(module).__name__} in training mode: certificates need eval mode")


def _affine(module: nn.Module, mid: torch.Tensor, rad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval (centre, radius) through a linear layer: centre exactly, radius through ``|W|``."""
    if isinstance(module, nn.Conv2d):
        out_rad = nn.functional.conv2d(rad, module.weight.abs(), None, module.stride, module.padding,
                                       module.dilation, module.groups)
    elif isinstance(module, nn.Linear):
        out_rad = nn.functional.linear(rad, module.weight.abs())
    else:  # batch norm: a per-channel affine map
        shape = (1, -1) + (1,) * (rad.ndim - 2)
        if module.training:  # certified training: the centres' batch statistics, running statistics untouched
            dims = [0, *range(2, mid.ndim)]
            mean, var = mid.mean(dim=dims), mid.var(dim=dims, unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        a = module.weight / torch.sqrt(var + module.eps)
        return (mid - mean.view(shape)) * a.view(shape) + module.bias.view(shape), rad * a.abs().view(shape)
    return module(mid), out_rad


Trace = dict[object, list[tuple[torch.Tensor, torch.Tensor]]]


def interval(module: nn.Module, lo: torch.Tensor, hi: torch.Tensor, trace: Trace | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound elementwise bounds of ``module``'s output over the box ``[lo, hi]`` (IBP). With ``trace``,
    every leaf's input bounds (and a basic block's pre-activation sum) are recorded in call order,
    for :func:`_backward`."""
    if isinstance(module, nn.Sequential):
        for child in module:
            lo, hi = interval(child, lo, hi, trace)
        return lo, hi
    if isinstance(module, Residual):
        b_lo, b_hi = interval(module.body, lo, hi, trace)
        return lo + b_lo, hi + b_hi
    if isinstance(module, BasicBlock):
        m_lo, m_hi = interval(nn.Sequential(module.conv1, module.conv2), lo, hi, trace)
        s_lo, s_hi = interval(module.shortcut, lo, hi, trace)
        lo, hi = m_lo + s_lo, m_hi + s_hi
        if trace is not None:
            trace.setdefault((id(module), "sum"), []).append((lo, hi))
        return torch.relu(lo), torch.relu(hi)
    if trace is not None:
        trace.setdefault(id(module), []).append((lo, hi))
    if isinstance(module, nn.ReLU):  # never in place: the recorded bounds must survive
        return torch.relu(lo), torch.relu(hi)
    if isinstance(module, MONOTONE):  # monotone non-decreasing in every input
        return module(lo), module(hi)
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
        mid, rad = _affine(module, (hi + lo) / 2, (hi - lo) / 2)
        return mid - rad, mid + rad
    raise ValueError(f"unsupported layer {type(module).__name__} for flip-set certificates")


def _first_layer(leaves: list[nn.Module], center: torch.Tensor, dev_lo: torch.Tensor, dev_hi: torch.Tensor,
                 budget: torch.Tensor, shape: tuple[int, int, int], vocab: Vocabulary,
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Bounds after the first linear layer with at most ``budget[n]`` changed patches per image.

    ``center``: N x C x H x W tokenized images; ``dev_lo``/``dev_hi``: N x P x d per-patch token
    deviation box (containing 0). Leading normalization layers map the centre and scale the
    deviations (by ``1 / std > 0``). Returns (lo, hi, index of the next layer)."""
    n, num, d = dev_lo.shape
    c, h, w = shape
    i = 0
    inv_std = torch.ones(1, c, 1, 1, dtype=center.dtype, device=center.device)
    while i < len(leaves) and isinstance(leaves[i], (Normalize, nn.Identity)):
        if isinstance(leaves[i], Normalize):
            inv_std = inv_std / leaves[i].std.to(center)
        center = leaves[i](center)
        i += 1
    if i + 1 < len(leaves) and isinstance(leaves[i], nn.Flatten) and isinstance(leaves[i + 1], nn.Linear):
        i += 1  # a dense first layer flattens its inputs itself
    layer = leaves[i] if i < len(leaves) else None
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):  # no linear layer first: the plain box
        whole_lo = center + unpatchify(dev_lo, vocab.patch_size, vocab.mode, c, (h, w)) * inv_std
        whole_hi = center + unpatchify(dev_hi, vocab.patch_size, vocab.mode, c, (h, w)) * inv_std
        return whole_lo, whole_hi, i
    members = nn.functional.one_hot(_patch_classes(layer, vocab, num, c), -1).T.to(center)  # classes x P
    classes = members.shape[0]

    def per_class(dev: torch.Tensor) -> torch.Tensor:  # each class's patch deviations as an image
        group = (members.view(1, classes, num, 1) * dev.unsqueeze(1)).reshape(n * classes, num, d)
        return unpatchify(group, vocab.patch_size, vocab.mode, c, (h, w)) * inv_std

    hi_img, lo_img = per_class(dev_hi), per_class(dev_lo)
    weight_pos, weight_neg = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
    if isinstance(layer, nn.Conv2d):
        def lin(x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
            return nn.functional.conv2d(x, wt, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    else:
        def lin(x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
            return nn.functional.linear(x.flatten(1), wt)
    up = (lin(hi_img, weight_pos) + lin(lo_img, weight_neg)).view(n, classes, -1)  # >= 0 per class and unit
    down = (lin(lo_img, weight_pos) + lin(hi_img, weight_neg)).view(n, classes, -1)  # <= 0
    base = layer(center if isinstance(layer, nn.Conv2d) else center.flatten(1))
    return (base + _top_sum(down.neg(), budget).neg().view_as(base),
            base + _top_sum(up, budget).view_as(base), i + 1)


def _patch_classes(layer: nn.Module, vocab: Vocabulary, num: int, channels: int) -> torch.Tensor:
    """A class per patch such that no output unit of ``layer`` sees two patches of one class: then
    one pass per class gives every unit's contribution of each patch (at most one per class). Any
    grouping would be sound (a pass sums its patches' non-negative contributions, at least the
    largest of them); this one is also exact (``tests/test_setcert.py`` compares a pass per patch).

    A ``k x k`` convolution (dilated extent ``k'``) sees at most ``q = (k' - 2) // p + 2`` patch rows
    and columns, so patches ``q`` apart in the grid never share a unit: classes are the grid
    position modulo ``q`` (times the channel in the per-channel modes, where channels share
    units). A linear layer sees everything: one class per patch."""
    if not isinstance(layer, nn.Conv2d):
        return torch.arange(num)
    p = vocab.patch_size
    extent = max(layer.dilation[0] * (layer.kernel_size[0] - 1) + 1, layer.dilation[1] * (layer.kernel_size[1] - 1) + 1)
    q = (extent - 2) // p + 2
    groups = 1 if vocab.mode == "joint" else channels
    side = math.isqrt(num // groups)
    if side * side * groups != num:
        raise ValueError(f"{num} patches do not make a square grid per channel")
    index = torch.arange(num)
    within, channel = index % (side * side), index // (side * side)
    return (channel * q + (within // side) % q) * q + (within % side) % q


def _top_sum(values: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """Per image and unit, the sum of the ``budget[n]`` largest values over classes (N x G x U -> N x U)."""
    top = torch.sort(values, dim=1, descending=True).values.cumsum(dim=1)
    top = torch.cat([torch.zeros_like(top[:, :1]), top], dim=1)
    index = budget.clamp(max=values.shape[1]).view(-1, 1, 1).expand(-1, 1, values.shape[2])
    return top.gather(1, index).squeeze(1)


def _propagate(net: nn.Module, vocab: Vocabulary, center: torch.Tensor, dev_lo: torch.Tensor, dev_hi: torch.Tensor,
               budget: torch.Tensor, trace: Trace | None = None,
               ) -> tuple[list[nn.Module], torch.Tensor, torch.Tensor, int]:
    """The budgeted first layer, then IBP up to the last layer: (layers, bounds of the last layer's
    input, index after the first linear layer)."""
    leaves = layers(net)
    lo, hi, i = _first_layer(leaves, center, dev_lo, dev_hi, budget, tuple(center.shape[1:]), vocab)
    if not isinstance(leaves[-1], nn.Linear):
        raise ValueError("flip-set certificates need a network that ends in a Linear layer, "
                         f"not {type(leaves[-1]).__name__}")
    for module in leaves[i:-1]:
        lo, hi = interval(module, lo, hi, trace)
    return leaves, lo, hi, i


def margin_bounds(net: nn.Module, vocab: Vocabulary, center: torch.Tensor, dev_lo: torch.Tensor,
                  dev_hi: torch.Tensor, budget: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lower bounds (N x classes) of ``z_y - z_j`` over every tokenized image with at most ``budget``
    changed patches, each within its deviation box (``+inf`` at ``j = y``). Differentiable in the
    network's weights (certified training uses it); the caller chooses dtype and device."""
    leaves, lo, hi, i = _propagate(net, vocab, center, dev_lo, dev_hi, budget)
    return _interval_margin(leaves, lo, hi, i, labels)


def _interval_margin(leaves: list[nn.Module], lo: torch.Tensor, hi: torch.Tensor, i: int,
                     labels: torch.Tensor) -> torch.Tensor:
    """IBP's margin bound from the bounds of the last layer's input (of its output when ``i`` is past it)."""
    mask = nn.functional.one_hot(labels, leaves[-1].out_features).bool()
    if i == len(leaves):  # the first linear layer is the last: bounds of the logits themselves
        return (lo.gather(1, labels.view(-1, 1)) - hi).masked_fill(mask, math.inf)
    diff, bias = _logit_differences(leaves[-1], labels)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    lower = torch.einsum("ncf,nf->nc", diff, mid) - torch.einsum("ncf,nf->nc", diff.abs(), rad) + bias
    return lower.masked_fill(mask, math.inf)


def _logit_differences(last: nn.Linear, labels: torch.Tensor, classes: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor | float]:
    """The last layer as ``z_y - z_j``: weights (N x S x features) and biases (N x S) for the classes
    ``j`` (N x S indices; every class when ``None``, by broadcasting: certified training
    differentiates this, and an index would change its gradients' rounding)."""
    weight = last.weight.unsqueeze(0) if classes is None else last.weight[classes]
    diff = last.weight[labels].unsqueeze(1) - weight
    if last.bias is None:
        return diff, 0.0
    return diff, last.bias[labels].unsqueeze(1) - (last.bias.unsqueeze(0) if classes is None else last.bias[classes])


def linear_margin_bounds(net: nn.Module, vocab: Vocabulary, geo: Geometry, reach: torch.Tensor,
                         center: torch.Tensor, dev_lo: torch.Tensor, dev_hi: torch.Tensor, budget: torch.Tensor,
                         labels: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Like :func:`margin_bounds`, and at least as tight: the larger of IBP's bound and a linear one
    (CROWN-IBP, Zhang et al. 2020) over the same relaxation.

    The margin ``z_y - z_j`` is bounded below by a linear function of the tokenized image, back-
    substituted from the last layer to the input through linear relaxations of ReLU and max pooling
    (built on the intermediate bounds of :func:`_propagate`, which hold for every covered token
    combination). A linear function of the image is a sum of per-patch terms, so its minimum over
    at most ``budget`` changed patches, each to a reachable token (``reach``: N x P x K), is exact:
    the ``budget`` most negative per-patch minima over the reachable tokens themselves (not their box).
    With ``target`` (one per image), only the classes whose IBP bound is at most ``target`` get the
    linear bound (the others keep IBP's): enough to decide whether every bound exceeds ``target``."""
    trace: Trace = {}
    leaves, lo, hi, i = _propagate(net, vocab, center, dev_lo, dev_hi, budget, trace)
    ibp = _interval_margin(leaves, lo, hi, i, labels)
    need = ibp <= (math.inf if target is None else target.view(-1, 1))  # never the label's own (+inf)
    rows = torch.nonzero(need.any(dim=1)).flatten()
    if rows.numel() == 0:
        return ibp
    need = need[rows]
    classes = torch.sort(need.to(torch.uint8), dim=1, descending=True, stable=True).indices
    classes = classes[:, :int(need.sum(dim=1).max())]  # the needed classes first, padded with others
    trace = {key: [(a[rows], b[rows]) for a, b in entries] for key, entries in trace.items()}
    x = center[rows]
    for module in leaves[:min(i, len(leaves) - 1)]:  # the leading affine layers: their input shapes
        trace.setdefault(id(module), []).append((x, x))
        x = module(x)
    coef, const = _logit_differences(leaves[-1], labels[rows], classes)
    for module in reversed(leaves[:-1]):
        coef, shift = _backward(module, coef, trace)
        const = const + shift
    linear = const + (coef * center[rows].unsqueeze(1)).flatten(2).sum(2) - _top_sum(
        _patch_minima(coef, vocab, geo, reach, rows).neg(), budget[rows])
    linear = linear.masked_fill(~need.gather(1, classes), -math.inf)
    out = ibp.clone()
    out[rows] = torch.maximum(ibp[rows], torch.full_like(ibp[rows], -math.inf).scatter(1, classes, linear))
    return out


def _patch_minima(coef: torch.Tensor, vocab: Vocabulary, geo: Geometry, reach: torch.Tensor,
                  rows: torch.Tensor) -> torch.Tensor:
    """Per image, patch and spec (N x P x S) the smallest change of ``coef . image`` when that patch
    alone takes one of its reachable tokens (<= 0: its own token is reachable)."""
    n, specs = coef.shape[:2]
    grad = patchify(coef.reshape(n * specs, *coef.shape[2:]), vocab.patch_size, vocab.mode)
    grad = grad.view(n, specs, *grad.shape[1:])  # N x S x P x d
    own = geo.own()[rows]
    minima = torch.empty(n, grad.shape[2], specs, dtype=coef.dtype)
    for p in range(grad.shape[2]):  # one patch at a time: N x S x K
        change = torch.einsum("nsd,kd->nsk", grad[:, :, p], geo.tables[p]) - torch.einsum(
            "nsd,nd->ns", grad[:, :, p], own[:, p]).unsqueeze(2)
        change = change.masked_fill(~reach[rows, p].unsqueeze(1), math.inf)
        minima[:, p] = change.min(dim=2).values.clamp(max=0)
    return minima


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
    out, pull = torch.func.vjp(module, torch.zeros((n * s, *lo.shape[1:]), dtype=coef.dtype))
    flat = coef.reshape(n * s, *out.shape[1:])
    return pull(flat)[0].view(n, s, *lo.shape[1:]), (flat * out).flatten(1).sum(1).view(n, s)


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


def deviation_box(geo: Geometry, radius: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and patch the box of ``token - own token`` over the reachable tokens (N x P x d each,
    containing 0), and the reachable mask (N x P x K, own token included); one radius or one per image."""
    r = _per_image(radius, geo.radii.shape[0]).to(geo.radii).view(-1, 1, 1)
    reach = (geo.radii <= r) | geo.radii.isinf()
    own = geo.own()
    lo = torch.zeros_like(own)
    hi = torch.zeros_like(own)
    for p in range(own.shape[1]):  # P x K x d at a time keeps memory at one patch's tables
        dev = geo.tables[p].unsqueeze(0) - own[:, p].unsqueeze(1)  # N x K x d
        mask = reach[:, p].unsqueeze(2)
        lo[:, p] = torch.where(mask, dev, torch.inf).min(dim=1).values
        hi[:, p] = torch.where(mask, dev, -torch.inf).max(dim=1).values
    return lo, hi, reach


def _combinations(radii: torch.Tensor, radius: float, budget: int, limit: int) -> list[list[tuple[int, int]]] | None:
    """Every set of at most ``budget`` (patch, token) changes, one token per patch, each with
    ``r_pj <= radius``: the combinations the bounds cover; ``None`` when there are more than ``limit``.
    ``radii``: P x K of one image."""
    reach = radii <= radius
    counts = [0] * (budget + 1)  # combinations by size: elementary symmetric sums of the option counts
    counts[0] = 1
    for c in reach.sum(dim=1).tolist():
        for k in range(budget, 0, -1):
            counts[k] += counts[k - 1] * c
    if sum(counts) > limit:
        return None
    options = [[(p, int(j)) for j in torch.nonzero(row).flatten()] for p, row in enumerate(reach)]
    options = [o for o in options if o]
    out: list[list[tuple[int, int]]] = []

    def walk(k: int, chosen: list[tuple[int, int]]) -> bool:
        if len(out) > limit:
            return False
        out.append(list(chosen))
        if len(chosen) < budget:
            for q in range(k, len(options)):
                for change in options[q]:
                    if not walk(q + 1, [*chosen, change]):
                        return False
        return True

    return out if walk(0, []) else None


def _exact(net: nn.Module, geo: Geometry, index: int, label: int, radius: float, vocab: Vocabulary,
           shape: tuple[int, int, int], limit: int) -> bool | None:
    """Whether every token combination within the budget is classified ``label`` (None: too many) by
    ``net``, the deployed network (its own precision: the classifier's actual decisions)."""
    budget = int(flip_budget(geo.patch_radii[index:index + 1], radius)[0])
    combos = _combinations(geo.radii[index], radius, budget, limit)
    if combos is None:
        return None
    own = geo.own()[index]
    param = next(net.parameters())
    for start in range(0, len(combos), 512):
        batch = own.unsqueeze(0).repeat(len(combos[start:start + 512]), 1, 1)
        for b, combo in enumerate(combos[start:start + 512]):
            for p, j in combo:
                batch[b, p] = geo.tables[p, j]
        images = unpatchify(batch, vocab.patch_size, vocab.mode, shape[0], shape[1:])
        with torch.no_grad():
            if (net(images.to(device=param.device, dtype=param.dtype)).argmax(1) != label).any():
                return False
    return True


def _prepare(model: nn.Module) -> nn.Module:
    if not isinstance(model, DiscreteClassifier):
        raise TypeError("flip-set certificates need a token classifier (DiscreteClassifier), "
                        f"got {type(model).__name__}")
    _check_layers(model.net)
    net = copy.deepcopy(model.net).to(dtype=torch.float64, memory_format=torch.contiguous_format).cpu()
    return net.eval()


class _Certifier:
    """One image batch's geometry and the float64 network, for repeated radius queries."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None,
                 enumeration_limit: int, linear: bool) -> None:
        self.net = _prepare(model)
        self.linear = linear
        self.deployed = model.net
        self.vocab = model.vocab
        self.x = x.detach().cpu().to(torch.float64)
        self.y = y.detach().cpu().long()
        if self.x.ndim != 4 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"x must be N x C x H x W with one label each, got {tuple(x.shape)}, {tuple(y.shape)}")
        self.shape = tuple(self.x.shape[1:])
        self.geo = geometry(self.x, self.vocab, scale)
        self.limit = enumeration_limit
        with torch.no_grad():
            self.center = tokenized(self.geo, self.vocab, self.shape[1:])
            logits = self.net(self.center)
        self.correct = logits.argmax(1) == self.y
        self.target = MARGIN_SLACK * (1 + logits.abs().max(dim=1).values)  # a certified margin exceeds it

    @torch.no_grad()
    def bounds_certify(self, rows: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        geo = Geometry(self.geo.assignment[rows], self.geo.radii[rows], self.geo.tables)
        lo, hi, reach = deviation_box(geo, radius)
        budget = flip_budget(geo.patch_radii, radius)
        args = (self.center[rows], lo, hi, budget, self.y[rows])
        lower = (linear_margin_bounds(self.net, self.vocab, geo, reach, *args, target=self.target[rows])
                 if self.linear else margin_bounds(self.net, self.vocab, *args))
        return lower.min(dim=1).values > self.target[rows]

    def certify(self, rows: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
        """Certified per image of ``rows`` at ``radius`` (one, or one per row): the bounds, else
        exact enumeration where the combinations are few."""
        radius = _per_image(radius, len(rows))
        out = self.correct[rows] & self.bounds_certify(rows, radius)
        for k in torch.nonzero(self.correct[rows] & ~out).flatten().tolist():
            exact = _exact(self.deployed, self.geo, int(rows[k]), int(self.y[rows[k]]), float(radius[k]), self.vocab,
                           self.shape, self.limit)
            out[k] = bool(exact)
        return out


def certified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, scale: torch.Tensor | None = None,
              *, enumeration_limit: int = ENUMERATION_LIMIT, batch: int = 16, linear: bool = True) -> torch.Tensor:
    """Per image of the float batch ``x`` (N x C x H x W in [0,1]) with labels ``y``: True only if the
    token classifier ``model`` predicts ``y`` at ``x`` and at every ``x + delta`` with
    ``||delta / scale||_2 <= radius`` (``scale``: per-channel unit scale, ``None`` for pixel units).
    ``linear``: the linear (CROWN-IBP) bound beside IBP's (:func:`linear_margin_bounds`); ``False``
    for IBP alone."""
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and >= 0, got {radius}")
    out = []
    for start in range(0, x.shape[0], batch):
        certifier = _Certifier(model, x[start:start + batch], y[start:start + batch], scale, enumeration_limit, linear)
        out.append(certifier.certify(torch.arange(certifier.x.shape[0]), float(radius)))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def certified_radius(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None = None, *,
                     enumeration_limit: int = ENUMERATION_LIMIT, batch: int = 16, linear: bool = True,
                     ) -> torch.Tensor:
    """Per image the flip-set certified radius (float64; 0 when misclassified): the supremum of the
    radii :func:`certified` accepts, by bisection over the image's breakpoints (certification is
    constant between breakpoints, so the result is sound whatever the bisection meets; with IBP
    alone it is also monotone and the radius the largest, with the linear bound nearly always: its
    relaxation can, rarely, be tighter at a larger radius). ``inf`` when no breakpoint breaks it."""
    out = []
    for start in range(0, x.shape[0], batch):
        certifier = _Certifier(model, x[start:start + batch], y[start:start + batch], scale, enumeration_limit, linear)
        out.append(_bisect(certifier))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _bisect(certifier: _Certifier) -> torch.Tensor:
    """Certified radius of every image of ``certifier``: all images bisect together, one query per step."""
    n = certifier.x.shape[0]
    rows = torch.arange(n)
    points = [breakpoints(certifier.geo, i) for i in range(n)]
    count = torch.tensor([p.numel() for p in points])
    ok0 = certifier.certify(rows, 0.0)  # breakpoint 0 is radius 0
    low = torch.where(ok0, 0, -1)  # index of the last breakpoint known certified (-1: none)
    high = torch.where(ok0, count, 0)  # index of the first known uncertified (count: none is)
    while bool((high - low > 1).any()):
        active = torch.nonzero(high - low > 1).flatten()
        mid = (low[active] + high[active]) // 2
        radius = torch.stack([points[k][m] for k, m in zip(active.tolist(), mid.tolist(), strict=True)])
        ok = certifier.certify(active, radius)
        low[active] = torch.where(ok, mid, low[active])
        high[active] = torch.where(ok, high[active], mid)
    out = torch.zeros(n, dtype=torch.float64)
    for k in range(n):
        if low[k] >= 0:  # certified on [points[low], points[high]): the supremum is points[high]
            out[k] = points[k][high[k]] if high[k] < count[k] else math.inf
    return out
