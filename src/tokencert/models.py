"""Classifiers by name, the discrete classifier ``f(Q(x))`` and safe checkpoint files.

Every network takes images in ``[0,1]`` pixel space: normalization ``(x - mean) / std``
is its first layer, so noise, attacks and certificates never see normalized inputs.
Architectures: ``cnn`` (small CNN for 28x28 grayscale), ``resnet9`` (a half-width
ResNet-9 for CPU runs on 32x32 RGB), ``resnet18`` (CIFAR-style ResNet-18) and ``lipmlp`` (a
1-Lipschitz network: orthogonal dense layers and MaxMin activations; its normalization only
centres, so the whole network is 1-Lipschitz in L2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .io import load_torch, save_torch
from .plugins import SPEC, load_callable
from .study import ARCHITECTURES as ARCHITECTURE_NAMES
from .study import LIPSCHITZ_ARCHS
from .vocab import Vocabulary, soft_tokenize, tokenize

KINDS = ("baseline", "discrete", "noise")
META_KEYS = (
    "arch", "channels", "num_classes", "image_size", "mean", "std", "dataset", "kind", "sigma", "vocabulary",
    "test_accuracy",
)


FORWARD_BATCH = {"cpu": 64}
"""Images per forward pass of the attacks' searches, by device type: 64 on a CPU, where a batch's activations
stay in cache (tokensearch on the MNIST CNN 1.4-1.6x faster than with 1,024 on 100 images, tokenflip on ResNet-9
1.5x than with 512; identical results; benchmarks/README.md); 1,024 elsewhere (a GPU's passes cost latency; not
timed)."""


def forward_batches(count: int, device: torch.device) -> list[slice]:
    """The rows of ``count`` images, one slice per forward pass on ``device`` (:data:`FORWARD_BATCH`)."""
    size = FORWARD_BATCH.get(device.type, 1024)
    return [slice(start, start + size) for start in range(0, count, size)]


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{k != y} z_k`` per row (<= 0: misclassified), in the logits' precision."""
    own = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    return own - logits.scatter(1, labels.unsqueeze(1), -torch.inf).max(dim=1).values


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers saved with the weights."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if mean_t.shape != std_t.shape or not torch.all(std_t > 0):
            raise ValueError(f"mean and std need one value per channel and std > 0, got {mean}, {std}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Residual(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def small_cnn(channels: int, num_classes: int) -> nn.Sequential:
    """Three conv-BN-ReLU stages (16, 32, 64 channels) and a two-layer head; about 2.3 MMAC at 28x28."""
    return nn.Sequential(
        _conv_bn(channels, 16), nn.MaxPool2d(2),
        _conv_bn(16, 32), nn.MaxPool2d(2),
        _conv_bn(32, 64), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes),
    )


def resnet9(channels: int, num_classes: int, width: int = 32) -> nn.Sequential:
    """ResNet-9 (DAWNBench style) with base width ``width`` (64 is the original)."""

    def residual(c: int) -> Residual:
        return Residual(nn.Sequential(_conv_bn(c, c), _conv_bn(c, c)))

    w = width
    return nn.Sequential(
        _conv_bn(channels, w),
        _conv_bn(w, 2 * w), nn.MaxPool2d(2), residual(2 * w),
        _conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
        _conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), residual(8 * w),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes),
    )


def resnet18(channels: int, num_classes: int, width: int = 64) -> nn.Sequential:
    """CIFAR-style ResNet-18: 3x3 stem without max-pooling, four stages of two basic blocks."""
    layers: list[nn.Module] = [_conv_bn(channels, width)]
    cin = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        cout = width * 2**stage
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class MaxMin(nn.Module):
    """``(max(a, b), min(a, b))`` over feature pairs: 1-Lipschitz and gradient-norm preserving (Anil et
    al. 2019's GroupSort with groups of 2). torch has no such activation; it is three lines."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.unflatten(1, (-1, 2)).unbind(2)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)


def layers(net: nn.Module) -> list[nn.Module]:
    """``net`` as a list of layers, nested ``nn.Sequential`` flattened (what the certificates walk)."""
    if isinstance(net, nn.Sequential):
        return [leaf for child in net for leaf in layers(child)]
    return [net]


def frozen(net: nn.Module) -> nn.Module:
    """``net`` (changed in place) with every parametrization replaced by the weight it gives: a loaded
    classifier is evaluated, not trained, and the orthogonal map of ``lipmlp`` would otherwise be
    recomputed on every forward pass (a Square attack on it: 224 s instead of about 20 s)."""
    for module in list(net.modules()):
        if nn.utils.parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                nn.utils.parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return net


def lipschitz_mlp(channels: int, num_classes: int, width: int = 512, image_size: int = 28) -> nn.Sequential:
    """A 1-Lipschitz classifier (L2): dense layers kept orthogonal by torch's Cayley parametrization
    (``torch.nn.utils.parametrizations.orthogonal``), MaxMin between them."""
    def dense(fan_in: int, fan_out: int) -> nn.Linear:
        return nn.utils.parametrizations.orthogonal(nn.Linear(fan_in, fan_out), orthogonal_map="cayley")

    return nn.Sequential(nn.Flatten(), dense(channels * image_size * image_size, width), MaxMin(),
                         dense(width, width), MaxMin(), dense(width, num_classes))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"cnn": small_cnn, "resnet9": resnet9, "resnet18": resnet18,
                                                      "lipmlp": lipschitz_mlp}
assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES, "tokencert.study.ARCHITECTURES names the built-ins"
"""The built-in architectures (their names: :data:`tokencert.study.ARCHITECTURES`); any other is a
``"<module>:<callable>"`` factory ``(channels, num_classes) -> nn.Module`` (:mod:`tokencert.plugins`)."""


def channels_last(net: nn.Module) -> nn.Module:
    """``net`` with its weights in channels-last memory format (in place), so that its convolutions and
    pooling run channels-last whatever the input's format: on a CPU the forward pass of the study's
    networks is 1.4-2.6x faster and forward + backward 1.2-1.6x, logits equal within 2e-7
    (``benchmarks/bench_channels_last.py``)."""
    return net.to(memory_format=torch.channels_last)


def resolve_arch(arch: str, channels: int) -> str:
    """Architecture with ``auto`` resolved from the image shape (cnn for one channel, else resnet9)."""
    if arch != "auto":
        return arch
    return "cnn" if channels == 1 else "resnet9"


def build_model(arch: str, channels: int, num_classes: int, mean: Sequence[float], std: Sequence[float],
                image_size: int = 28) -> nn.Module:
    """The network ``arch`` for ``channels``-channel images in ``[0,1]``, normalization included
    (``image_size``: the side of the images, for the dense ``lipmlp``)."""
    if arch not in ARCHITECTURES and not SPEC.match(arch):
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)}, or '<module>:<callable>')")
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"{channels} channels need {channels} mean/std values, got {len(mean)}/{len(std)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if arch in LIPSCHITZ_ARCHS:
        return nn.Sequential(Normalize(mean, [1.0] * channels),
                             ARCHITECTURES[arch](channels, num_classes, image_size=image_size))
    factory = ARCHITECTURES.get(arch) or load_callable(arch, "training.arch", channels, num_classes)
    net = factory(channels, num_classes)
    if not isinstance(net, nn.Module):
        raise ValueError(f"params: training.arch '{arch}' returned {type(net).__name__}, not a torch.nn.Module")
    return nn.Sequential(Normalize(mean, std), net)


class DiscreteClassifier(nn.Module):
    """``g(x) = f(Q(x))``: the network ``net`` applied to the tokenized image (hard, no gradient through Q).

    ``dedup``: the tokenizer scores distinct patches only; switch it off for noisy inputs
    (smoothing), where every patch is distinct and the search costs more than it saves.
    """

    def __init__(self, net: nn.Module, vocab: Vocabulary, *, dedup: bool = True) -> None:
        super().__init__()
        self.net = net
        self.vocab = vocab
        self.dedup = dedup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(tokenize(x, self.vocab, dedup=self.dedup)[0].to(x.dtype))


class StraightThrough(nn.Module):
    """Gradients for ``g(x) = f(Q(x))``, whose own gradient is zero almost everywhere: the forward
    value is exactly the hard ``f(Q(x))``; the backward pass goes through the soft tokenizer
    ``S_tau`` (softmax over ``-||x_i - t_j||^2 / tau``; SSPGD) or, with ``tau=None``, through the
    identity (BPDA). Used by the adaptive attacks and by adversarial training of token classifiers.
    """

    def __init__(self, model: DiscreteClassifier, tau: float | None) -> None:
        super().__init__()
        self.model = model
        self.tau = tau
        # the wrapper takes the wrapped model's mode: libraries that restore "the model's mode" after
        # an attack (torchattacks) would otherwise put the classifier's batch norms in training mode
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hard = tokenize(x.detach(), self.model.vocab)[0].to(x.dtype)
        surrogate = x if self.tau is None else soft_tokenize(x, self.model.vocab, self.tau)
        return self.model.net(hard + (surrogate - surrogate.detach()))  # exactly `hard`, forward


def differentiable(model: nn.Module) -> nn.Module:
    """``model`` with a useful input gradient: a token classifier through the straight-through identity
    (BPDA; its forward value unchanged), any other model as it is."""
    return StraightThrough(model, None) if isinstance(model, DiscreteClassifier) else model


def model_meta(
    *,
    arch: str,
    channels: int,
    num_classes: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    dataset: str,
    kind: str,
    sigma: float | None = None,
    vocab: Vocabulary | None = None,
    test_accuracy: float | None = None,
) -> dict[str, Any]:
    """The ``meta`` record of a classifier file (see ``docs/design.md``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if (kind == "discrete") != (vocab is not None):
        raise ValueError("a vocabulary is required for, and only for, a discrete classifier")
    if (kind == "noise" and sigma is None) or (kind == "baseline" and sigma is not None):
        raise ValueError("sigma is required for a noise classifier and meaningless for a baseline")
    return {
        "arch": arch, "channels": int(channels), "num_classes": int(num_classes), "image_size": int(image_size),
        "mean": [float(v) for v in mean], "std": [float(v) for v in std], "dataset": dataset, "kind": kind,
        "sigma": None if sigma is None else float(sigma),
        "vocabulary": None if vocab is None else {"name": vocab.meta["name"], "sha256": vocab.sha256()},
        "test_accuracy": test_accuracy,
    }


def save_classifier(path: str | os.PathLike[str], net: nn.Module, meta: Mapping[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (the inner network of a :class:`DiscreteClassifier`)."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"classifier meta lacks {', '.join(missing)}")
    if isinstance(net, DiscreteClassifier):
        net = net.net
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_torch(path, {"state_dict": state, "meta": dict(meta)})


def load_classifier(
    path: str | os.PathLike[str],
    vocab: Vocabulary | None = None,
    map_location: str | torch.device = "cpu",
    *,
    dataset: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a classifier in eval mode (wrapped in :class:`DiscreteClassifier` when discrete).

    Raises ``ValueError`` when the file is not a classifier, its weights do not fit its
    architecture, it was trained on another ``dataset`` (if given), or a discrete model gets
    no vocabulary or one whose sha256 differs from the one it was trained with.
    """
    obj = load_torch(path, map_location="cpu")
    if not isinstance(obj, dict) or not {"state_dict", "meta"} <= obj.keys():
        raise ValueError(f"{path}: not a classifier file (expected state_dict and meta)")
    meta = dict(obj["meta"])
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: classifier meta lacks {', '.join(missing)}")
    if dataset is not None and meta["dataset"] != dataset:
        raise ValueError(f"{path}: classifier trained on dataset {meta['dataset']!r}, not {dataset!r}")
    net = build_model(meta["arch"], meta["channels"], meta["num_classes"], meta["mean"], meta["std"],
                      meta["image_size"])
    try:
        net.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit architecture {meta['arch']!r} ({exc})") from exc
    net = channels_last(frozen(net).to(map_location)).eval()
    if meta["kind"] != "discrete":
        return net, meta
    expected = meta["vocabulary"]
    if vocab is None:
        raise ValueError(f"{path}: discrete classifier needs vocabulary {expected['name']!r}")
    if vocab.sha256() != expected["sha256"]:
        raise ValueError(
            f"{path}: trained with vocabulary {expected['name']!r} (sha256 {expected['sha256'][:12]}), "
            f"got {vocab.meta.get('name')!r} (sha256 {vocab.sha256()[:12]})"
        )
    vocab.check_compatible(meta["channels"], meta["image_size"])
    return DiscreteClassifier(net, vocab).eval(), meta
