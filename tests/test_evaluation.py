"""What a job spent: images through its networks forward and backward (``evaluation.counted``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from tests.tiny_problems import tiny_case
from tokencert.evaluation import counted
from tokencert.models import StraightThrough
from tokencert.smoothing import certify_images


def test_forward_and_backward_images_are_counted_per_network() -> None:
    """A batch of b counts b forward; a backward pass through the network counts b more; a token
    classifier's surrogate (which calls its ``net`` directly) and the float64 copies made inside
    the block are counted too; nothing is counted once the block ends."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(5, 1, 4, 4)
    with counted(net, None) as work:
        with torch.no_grad():
            net(x)
        out = net(x[:3].requires_grad_())
        out.sum().backward()
        copy.deepcopy(net).double()(x[:2].double())  # as the flip-set certificate's float64 copy
    assert (work.forward, work.backward) == (10, 3) and work.seconds > 0
    assert (work.forward_calls, work.backward_calls) == (3, 1)
    net(x)
    assert work.forward == 10
    model, images, labels = tiny_case(3, 0, 4, 1)
    with counted(model, device="cpu") as work:
        with torch.no_grad():
            model(images)
        StraightThrough(model, 0.1)(images.requires_grad_()).sum().backward()
    summary = work.summary(4)
    assert summary["forward_images"] == 8 and summary["backward_images"] == 4
    assert summary["forward_per_image"] == 2.0 and summary["device"] == "cpu"
    assert (summary["forward_calls"], summary["backward_calls"]) == (2, 1)


def test_smoothing_spends_n0_plus_n_evaluations_per_image() -> None:
    """Cohen et al.'s CERTIFY: n0 noisy copies to select the class and n to estimate its probability,
    per image, whatever the batch size."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images = (torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labels = torch.zeros(6, dtype=torch.long)
    with counted(net) as work:
        certify_images(net, images, labels, [0, 2, 5], 0.25, 10, 70, 0.001, 32, seed=0, device=torch.device("cpu"),
                       progress=False)
    assert work.forward == 3 * (10 + 70) and work.backward == 0
