"""Interval bounds of the margins: the budgeted first layer (top-``m`` per-patch contributions over the
reachable-token box, one pass per class of patches sharing no output unit), then interval bound
propagation (IBP) through every later layer, the last one on the logit differences."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import BasicBlock, Normalize, Residual, layers
from ..tokens import unpatchify
from ..vocab import Vocabulary

MONOTONE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
            nn.Identity, Normalize)
SUPPORTED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Sequential, Residual, BasicBlock, *MONOTONE)


def check_layers(net: nn.Module) -> None:
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


def first_layer(leaves: list[nn.Module], center: torch.Tensor, dev_lo: torch.Tensor, dev_hi: torch.Tensor,
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
    return (base + top_sum(down.neg(), budget).neg().view_as(base),
            base + top_sum(up, budget).view_as(base), i + 1)


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


RANK_CLASSES = 8
"""Up to this many classes :func:`top_sum` ranks by pairwise comparison instead of sorting."""


def top_sum(values: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """Per image and unit, the sum of the ``budget[n]`` largest values over classes (N x G x U -> N x U).

    A convolution's patch classes are few (4 for the study's 3x3 kernels on 4x4 patches): there each
    value's rank comes from ``G (G - 1)`` comparisons (ties broken by class index, so exactly
    ``budget`` values are kept) and the sum is a masked sum, about 2x faster than a sort along the strided
    class dimension, forward and backward (certified training spent a third of its step in the sort). Only
    images whose budget is neither 0 nor at least ``G`` are ranked (certified training: 17 % of them)."""
    classes = values.shape[1]
    if classes > RANK_CLASSES:
        top = torch.sort(values, dim=1, descending=True).values.cumsum(dim=1)
        top = torch.cat([torch.zeros_like(top[:, :1]), top], dim=1)
        index = budget.clamp(max=classes).view(-1, 1, 1).expand(-1, 1, values.shape[2])
        return top.gather(1, index).squeeze(1)
    with torch.no_grad():
        mask = (budget >= classes).view(-1, 1, 1).expand_as(values).clone()  # a budget of them all: every value
        partial = torch.nonzero((budget > 0) & (budget < classes)).flatten()  # ranked only where it decides
        column, keep = values[partial].unbind(1), budget[partial].view(-1, 1)
        mask[partial] = torch.stack([  # value i is kept when fewer than budget values outrank it
            sum(((column[j] > column[i]) if j > i else (column[j] >= column[i]) for j in range(classes) if j != i),
                torch.zeros_like(column[i], dtype=torch.uint8)) < keep for i in range(classes)], dim=1)
    return torch.where(mask, values, 0.0).sum(dim=1)


def propagate(net: nn.Module, vocab: Vocabulary, center: torch.Tensor, dev_lo: torch.Tensor, dev_hi: torch.Tensor,
               budget: torch.Tensor, trace: Trace | None = None,
               ) -> tuple[list[nn.Module], torch.Tensor, torch.Tensor, int]:
    """The budgeted first layer, then IBP up to the last layer: (layers, bounds of the last layer's
    input, index after the first linear layer)."""
    leaves = layers(net)
    lo, hi, i = first_layer(leaves, center, dev_lo, dev_hi, budget, tuple(center.shape[1:]), vocab)
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
    leaves, lo, hi, i = propagate(net, vocab, center, dev_lo, dev_hi, budget)
    return interval_margin(leaves, lo, hi, i, labels)


def interval_margin(leaves: list[nn.Module], lo: torch.Tensor, hi: torch.Tensor, i: int,
                     labels: torch.Tensor) -> torch.Tensor:
    """IBP's margin bound from the bounds of the last layer's input (of its output when ``i`` is past it)."""
    mask = nn.functional.one_hot(labels, leaves[-1].out_features).bool()
    if i == len(leaves):  # the first linear layer is the last: bounds of the logits themselves
        return (lo.gather(1, labels.view(-1, 1)) - hi).masked_fill(mask, math.inf)
    diff, bias = logit_differences(leaves[-1], labels)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    lower = torch.einsum("ncf,nf->nc", diff, mid) - torch.einsum("ncf,nf->nc", diff.abs(), rad) + bias
    return lower.masked_fill(mask, math.inf)


def logit_differences(last: nn.Linear, labels: torch.Tensor, classes: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor | float]:
    """The last layer as ``z_y - z_j``: weights (N x S x features) and biases (N x S) for the classes
    ``j`` (N x S indices; every class when ``None``, by broadcasting: certified training
    differentiates this, and an index would change its gradients' rounding)."""
    weight = last.weight.unsqueeze(0) if classes is None else last.weight[classes]
    diff = last.weight[labels].unsqueeze(1) - weight
    if last.bias is None:
        return diff, 0.0
    return diff, last.bias[labels].unsqueeze(1) - (last.bias.unsqueeze(0) if classes is None else last.bias[classes])
