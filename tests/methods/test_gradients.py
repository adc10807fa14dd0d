"""The Captum adapters: same answers as calling Captum directly, the documented channel rules,
the call shape of the CAMs, seeded SmoothGrad, and the model left as found."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Saliency as CaptumSaliency
from conftest import photo_batch
from torch import nn

from case_saliency import (GuidedGradCAM, InputXGradient, IntegratedGradients, Saliency, SmoothGrad,
                           get_method)


class TinyCNN(nn.Module):
    """ReLUs as modules (guided backpropagation replaces their backward)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="module")
def lite0_photo() -> torch.Tensor:
    return photo_batch(("coffee",), size=128, resize=146)


def images(n=2, size=16, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_integrated_gradients_matches_captum_on_lite0_real_photo(lite0, lite0_photo):
    ours = IntegratedGradients(lite0, n_steps=8, internal_batch_size=8)
    result = ours.explain(lite0_photo, "top1", relu=False)
    direct = CaptumIG(lite0).attribute(lite0_photo, baselines=0.0, target=result.targets, n_steps=8,
                                       internal_batch_size=8)
    expected = direct.sum(dim=1)  # the documented channel rule: sum over colour channels
    assert result.maps.shape == (1, 128, 128)
    # Same Captum computation on the same batches: equal up to float32 rounding.
    assert (result.raw - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


def test_integrated_gradients_completeness(tiny):
    # An independent check of the integral and of the channel rule (a sum keeps completeness):
    # each map sums to logit(x) - logit(baseline), to the quadrature error of 128 points.
    x = images()
    result = IntegratedGradients(tiny, n_steps=128).explain(x, "top1", relu=False)
    with torch.no_grad():
        rows = torch.arange(2)
        gap = tiny(x)[rows, result.targets] - tiny(torch.zeros_like(x))[rows, result.targets]
    assert torch.allclose(result.raw.sum(dim=(1, 2)), gap, rtol=1e-2, atol=1e-4)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")  # from the direct Captum call
def test_captum_adapters_match_direct_calls_and_channel_rules(tiny):
    x = images()
    classes = torch.tensor([1, 3])
    grad = CaptumSaliency(tiny).attribute(x.clone().requires_grad_(True), target=classes, abs=True)
    assert torch.allclose(Saliency(tiny).explain(x, classes).raw, grad.sum(1), atol=1e-7)
    assert torch.allclose(Saliency(tiny, channels="max_abs").explain(x, classes).raw, grad.amax(1), atol=1e-7)
    ixg = InputXGradient(tiny, channels="abs_sum").explain(x, classes).raw
    assert torch.allclose(ixg, (grad * x).abs().sum(1), atol=1e-6)  # |grad| * |x| = |grad * x|
    ggc = GuidedGradCAM(tiny, target_layer="features.2").explain(x, classes, relu=False).raw
    direct = CaptumGuidedGradCam(tiny, tiny.features[2]).attribute(x.clone().requires_grad_(True), target=classes)
    assert torch.allclose(ggc, direct.sum(1), atol=1e-7)
    with pytest.raises(ValueError, match="channel rule"):
        Saliency(tiny, channels="mean")


@pytest.mark.parametrize("name", ["saliency", "inputxgradient", "integrated_gradients", "smoothgrad",
                                  "guided_gradcam"])
def test_call_shape_targets_and_state_restored(name, tiny):
    tiny.train()
    tiny.fc.eval()
    tiny.features[0].weight.requires_grad_(False)
    tiny.fc.weight.grad = torch.ones_like(tiny.fc.weight)
    flags = [m.training for m in tiny.modules()]
    grads_flags = [p.requires_grad for p in tiny.parameters()]
    options = {"n_steps": 4} if name == "integrated_gradients" else {"samples": 3} if name == "smoothgrad" else {}
    method = get_method(name, tiny, **options)
    x = images()
    result = method.explain(x, "topk:2", normalize=True)
    assert result.maps.shape == (2, 2, 16, 16) and result.targets.shape == (2, 2)
    assert torch.equal(result.targets, tiny.eval()(x).topk(2, dim=1).indices)
    tiny.train()
    tiny.fc.eval()
    assert method(x, "top2").shape == (2, 16, 16)
    one = method.explain(x, result.targets[:, 1], normalize=True).maps
    if name != "smoothgrad":  # SmoothGrad draws new noise on every call
        assert torch.allclose(one, result.maps[:, 1], atol=1e-6)
    assert result.maps.min() >= 0 and result.maps.max() <= 1
    assert [m.training for m in tiny.modules()] == flags
    assert [p.requires_grad for p in tiny.parameters()] == grads_flags
    assert torch.equal(tiny.fc.weight.grad, torch.ones_like(tiny.fc.weight))
    assert all(p.grad is None for n, p in tiny.named_parameters() if n != "fc.weight")
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in tiny.modules()) == 0
    assert x.grad is None and not x.requires_grad


def test_smoothgrad_is_seeded_and_leaves_the_global_rng_alone(tiny):
    x = images()
    state = torch.get_rng_state()
    first = SmoothGrad(tiny, samples=4, seed=1)(x, "top1")
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, SmoothGrad(tiny, samples=4, seed=1)(x, "top1"))
    assert not torch.equal(first, SmoothGrad(tiny, samples=4, seed=2)(x, "top1"))
    # Averaged noisy gradients are not the plain gradient.
    plain = Saliency(tiny)(x, "top1")
    assert not torch.allclose(first, plain)
