"""Every method reads the target layer's output as the layer produced it: an in-place operation after
the layer (torchvision ResNet's ``out += identity`` and in-place ReLU after ``bn2``) must not change
any map. A twin of the network with the same weights and logits but out-of-place operations gives the
reference; every registered method (Grad-CAM family, CASE and its variants, Score-CAM, Ablation-CAM,
EigenCAM, the input-gradient methods, the random control) must give the same maps on both."""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from case_saliency.core.capture import ActivationCapture
from case_saliency.methods import get_method, method_names
from case_saliency.methods.eigencam import first_component_projection

LAYER = "layer4.1.bn2"


def _out_of_place_forward(self: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)  # torchvision writes `out += identity` (into bn2's output)


@pytest.fixture(scope="module")
def twins() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    in_place = torchvision.models.resnet18(num_classes=10).eval()
    out_of_place = copy.deepcopy(in_place)
    for module in out_of_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
        if isinstance(module, BasicBlock):
            module.forward = types.MethodType(_out_of_place_forward, module)
    return in_place, out_of_place


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_the_twins_have_the_same_logits_and_differ_at_the_layer(twins, images):
    in_place, out_of_place = twins
    with torch.no_grad():
        torch.testing.assert_close(in_place(images), out_of_place(images))
    kept: list[torch.Tensor] = []
    layer = dict(in_place.named_modules())[LAYER]
    handle = layer.register_forward_hook(lambda m, i, o: kept.append(o))  # the tensor, not a copy
    with torch.no_grad():
        in_place(images)
    handle.remove()
    true = ActivationCapture(out_of_place, LAYER)(images).activations
    assert (kept[0] - true).abs().max() > 0.5  # the in-place network overwrites bn2's output


def test_the_engine_reads_the_true_output_without_and_with_gradients(twins, images):
    in_place, out_of_place = twins
    true = ActivationCapture(out_of_place, LAYER)(images).activations
    engine = ActivationCapture(in_place, LAYER)
    for _ in range(2):  # the first pass finds the overwrite (and reruns), the second copies from the start
        torch.testing.assert_close(engine(images).activations, true)
    assert engine.copy_output
    capture = engine(images, torch.tensor([[1], [2]]))
    reference = ActivationCapture(out_of_place, LAYER)(images, torch.tensor([[1], [2]]))
    torch.testing.assert_close(capture.activations, true)
    assert capture.gradients is not None and reference.gradients is not None
    torch.testing.assert_close(capture.gradients, reference.gradients)
    # a layer whose output nothing overwrites is read without a copy
    clean = ActivationCapture(in_place, "layer4")
    clean(images)
    assert not clean.copy_output


def test_eigencam_is_the_projection_of_bn2_not_of_the_block_output(twins, images):
    in_place, out_of_place = twins
    true = ActivationCapture(out_of_place, LAYER)(images).activations
    maps = get_method("eigencam", in_place, target_layer=LAYER).explain(images, "top1", relu=False, upsample=False)
    torch.testing.assert_close(maps.raw, first_component_projection(true))


SLOW = {"scorecam", "case:scorecam", "integrated_gradients", "smoothgrad"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in method_names()])
def test_every_method_gives_the_same_maps_on_both_twins(name, twins, images):
    pytest.importorskip("captum") if name in ("saliency", "inputxgradient", "integrated_gradients", "smoothgrad",
                                             "guided_gradcam") else None
    in_place, out_of_place = twins
    x = images[:1] if name in SLOW else images
    results = []
    for network in (in_place, out_of_place):
        method = get_method(name, network, target_layer=LAYER)
        if hasattr(method, "batch_size"):
            method.batch_size = 256
        results.append(method.explain(x, "top1", normalize=True))
    first, second = results
    torch.testing.assert_close(first.targets, second.targets)
    difference = (first.maps - second.maps).abs().max().item()
    assert difference < 1e-4, f"{name}: maps differ by {difference:.3g} between the in-place and out-of-place twins"
