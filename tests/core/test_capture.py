"""The engine's promises: one pass, backward stopped at the layer, model left as found, clear errors."""

import logging
import os

import pytest
import torch
import torchvision
from torch import nn

from case_saliency import CASE, GradCAM, TopLogits, vit_reshape
from case_saliency.core.capture import ActivationCapture


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.features = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)
        self.stem_grad_modes: list[bool] = []
        self.stem.register_forward_hook(lambda m, i, o: self.stem_grad_modes.append(torch.is_grad_enabled()))

    def forward(self, x):
        return self.fc(self.pool(self.features(self.stem(x))).flatten(1))


def make_tiny(seed=0):
    torch.manual_seed(seed)
    return TinyCNN()


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_one_forward_and_backward_stops_at_layer():
    model = make_tiny()
    calls = []
    model.register_forward_pre_hook(lambda m, i: calls.append(1))
    images = torch.randn(3, 3, 16, 16, requires_grad=True)
    cap = ActivationCapture(model, "features")(images, torch.tensor([[0, 1, 2, 3]] * 3))
    assert len(calls) == 1  # one forward for 4 classes x 3 images
    assert cap.gradients.shape == (3, 4, 16, 8, 8)
    assert model.stem_grad_modes == [False]  # the part before the layer ran without autograd
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients
    assert images.grad is None  # no gradient to the input
    # The gradients equal those of a plain autograd computation per image and class.
    for b in range(3):
        for j, cls in enumerate([0, 1, 2, 3]):
            act = model.features(model.stem(images[b : b + 1].detach())).detach().requires_grad_(True)
            logit = model.fc(model.pool(act).flatten(1))[0, cls]
            (grad,) = torch.autograd.grad(logit, act)
            assert torch.allclose(cap.gradients[b, j], grad[0], atol=1e-6)


def test_model_state_restored_after_failing_call():
    model = make_tiny()
    model.train()
    model.fc.eval()
    model.stem[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    flags = [m.training for m in model.modules()]
    grads_before = model.fc.weight.grad.clone()
    cam = GradCAM(model, target_layer="features")
    with pytest.raises(IndexError, match="out of range"):
        cam(torch.randn(2, 3, 16, 16), [0, 99])
    assert [m.training for m in model.modules()] == flags
    assert not model.stem[0].weight.requires_grad and model.stem[0].bias.requires_grad
    assert torch.equal(model.fc.weight.grad, grads_before)
    assert hook_count(model) == 1  # only the model's own hook
    assert torch.is_grad_enabled()
    with torch.no_grad():  # and the caller's grad mode is kept as well
        cam(torch.randn(2, 3, 16, 16), [0, 1])
        assert not torch.is_grad_enabled()


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_thousand_calls_do_not_leak_memory_or_hooks():
    model = make_tiny()
    cam = CASE(model, target_layer="features", contrast=TopLogits(k=2))
    images = torch.randn(4, 3, 16, 16)
    for _ in range(100):  # warm up allocator caches
        cam(images, "topk:2")
    before = _rss_mb()
    for _ in range(1000):
        cam(images, "topk:2")
    assert hook_count(model) == 1
    assert _rss_mb() - before < 25, "memory grew over 1,000 calls"


def test_default_layer_is_last_spatial_block_and_logged(caplog, resnet18, random_images):
    cam = GradCAM(resnet18)
    with caplog.at_level(logging.INFO, logger="case_saliency"):
        maps = cam(random_images[:1], "top1")
    assert cam.engine.layer_name == "layer4"
    assert "layer4" in caplog.text
    assert maps.shape == (1, 224, 224)


def random_vit():
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16().eval()
    nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision initialises the head to zero
    return vit


@pytest.mark.slow
def test_vision_transformer_with_default_reshape():
    from pytorch_grad_cam import GradCAM as RefGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    vit = random_vit()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    cam = CASE(vit, contrast=TopLogits(k=1))
    result = cam.explain(images, "topk:2")
    assert cam.engine.layer_name == "encoder.layers.encoder_layer_11.ln_1"
    assert result.maps.shape == (2, 2, 224, 224) and result.raw.shape == (2, 2, 14, 14)
    assert torch.isfinite(result.maps).all() and not result.degenerate.any()
    explicit = CASE(vit, target_layer="encoder.layers[-1].ln_1", reshape=vit_reshape, contrast=TopLogits(k=1))
    assert torch.allclose(explicit(images, "topk:2"), result.maps)
    # Grad-CAM through the reshape agrees with pytorch-grad-cam's reshape_transform route.
    classes = result.targets[:, 0].tolist()
    mine = GradCAM(vit, target_layer="encoder.layers[-1].ln_1", reshape=vit_reshape)(images, classes, normalize=True)
    ref_cam = RefGradCAM(vit, [vit.encoder.layers[-1].ln_1], reshape_transform=vit_reshape)
    try:
        ref = torch.from_numpy(ref_cam(images, [ClassifierOutputTarget(c) for c in classes]))
    finally:
        ref_cam.activations_and_grads.release()
    assert (mine - ref).abs().max().item() < 1e-4


def test_output_options(resnet18, random_images):
    cam = GradCAM(resnet18, target_layer="layer4")
    raw = cam.explain(random_images, "top1", relu=False, upsample=False)
    assert raw.maps.shape == (2, 7, 7) and torch.equal(raw.maps, raw.raw)  # signed, layer resolution
    default = cam(random_images, "top1")
    upsampled = torch.nn.functional.interpolate(raw.raw[:, None], size=(224, 224), mode="bilinear")[:, 0]
    assert default.shape == (2, 224, 224) and torch.allclose(default, upsampled.clamp_min(0), atol=1e-6)
    norm = cam(random_images, "top1", normalize=True)
    assert torch.allclose(norm.flatten(1).amax(1), torch.ones(2))
    assert torch.allclose(norm.flatten(1).amin(1), torch.zeros(2))


def test_constant_map_is_flagged_not_noise():
    model = make_tiny()
    with torch.no_grad():
        model.fc.weight.zero_()  # every class gradient is zero: the Grad-CAM map is all zero
    result = GradCAM(model, target_layer="features").explain(torch.randn(2, 3, 16, 16), [0, 1], normalize=True)
    assert result.degenerate.tolist() == [True, True]
    assert torch.equal(result.maps, torch.zeros_like(result.maps))


def test_targets_shorthands_and_count_errors(resnet18, random_images):
    cam = GradCAM(resnet18, target_layer="layer4")
    result = cam.explain(random_images, "top2")
    order = result.logits.argsort(1, descending=True)
    assert torch.equal(result.targets, order[:, 1])
    assert cam.explain(random_images, "topk:3").targets.tolist() == order[:, :3].tolist()
    assert cam.explain(random_images, 4).targets.tolist() == [4, 4]
    with pytest.raises(ValueError, match="3 targets for a batch of 2"):
        cam(random_images, [1, 2, 3])
    with pytest.raises(IndexError, match="1000 classes"):
        cam(random_images, [1, 1000])
    with pytest.raises(ValueError, match="unknown target spec"):
        cam(random_images, "best")


def test_errors_name_the_bad_input_and_the_fix(resnet18):
    with pytest.raises(ValueError, match="closest module names: layer4"):
        GradCAM(resnet18, target_layer="layer_4")
    cam = GradCAM(resnet18, target_layer="layer4")
    with pytest.raises(ValueError, match=r"add a batch dimension"):
        cam(torch.randn(3, 224, 224))
    with pytest.raises(TypeError, match="floating-point"):
        cam(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="not \\(B, C, h, w\\); pass reshape=vit_reshape"):
        GradCAM(resnet18, target_layer="fc")(torch.randn(1, 3, 64, 64))
    vit = random_vit()
    with pytest.raises(ValueError, match="reshape=vit_reshape"):
        GradCAM(vit, target_layer="encoder.layers[11]")(torch.randn(1, 3, 224, 224))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_device_follows_model_on_cuda(random_images):
    model = make_tiny().cuda()
    maps = CASE(model, target_layer="features")(torch.randn(2, 3, 16, 16), "top1")  # CPU input moved to the model
    assert maps.device.type == "cuda"


def test_cli_lists_every_method_with_its_summary():
    from typer.testing import CliRunner

    from case_saliency.cli import app
    from case_saliency.methods import METHODS, method_names

    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert set(lines) == set(method_names()) > set(METHODS)  # the contrastive variants too
    assert "scorecam" in lines["case:scorecam"]
    assert "projection" in lines["case"] and "Grad-CAM" in lines["gradcam"]
    assert all(len(line.split(None, 1)) == 2 for line in lines.values())  # every name has a description
