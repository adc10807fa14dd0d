"""CASE as a contrast wrapper over any channel-weight CAM: each variant against a slow per-class
reference built from that method's own weights, as pytorch-grad-cam computes them (an independent
implementation, one full run per class), and each variant with an empty contrast equal to its base."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import AblationCAM as RefAblationCAM
from pytorch_grad_cam import GradCAM as RefGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
from pytorch_grad_cam import ScoreCAM as RefScoreCAM
from pytorch_grad_cam import XGradCAM as RefXGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from case_saliency import CASE, TopLogits, get_method
from case_saliency.core.layers import resolve_layer
from case_saliency.methods import channel_weight_bases, method_names

REFERENCES = {"gradcam": RefGradCAM, "gradcam++": RefGradCAMPlusPlus, "xgradcam": RefXGradCAM,
              "scorecam": RefScoreCAM, "ablationcam": RefAblationCAM}


@pytest.fixture(scope="module")
def small_images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def reference_weights(base: str, model, layer_name: str, image: torch.Tensor, cls: int):
    """pytorch-grad-cam's channel weights (C,) of ``base`` for one image and one class, and the
    layer activations (C, h, w) it computed them from: one full run of that method per class."""
    layer, _ = resolve_layer(model, layer_name)
    ref = REFERENCES[base](model, [layer])
    seen = {}
    original = ref.get_cam_weights

    def spy(input_tensor, target_layer, targets, activations, grads):
        weights = original(input_tensor, target_layer, targets, activations, grads)
        seen.update(weights=weights, activations=activations)
        return weights

    ref.get_cam_weights = spy
    try:
        ref(image[None], [ClassifierOutputTarget(int(cls))])
    finally:
        ref.activations_and_grads.release()
    return torch.as_tensor(seen["weights"][0]).float(), torch.as_tensor(seen["activations"][0]).float()


def slow_contrastive_map(base, model, layer_name, image, target, contrast):
    """CASE's projection on ``base``'s weights, class by class: ReLU(sum_c w_perp[c] A[c]), upsampled."""
    weights, activations = reference_weights(base, model, layer_name, image, target)
    others = torch.stack([reference_weights(base, model, layer_name, image, c)[0] for c in contrast])
    direction = others.mean(0)
    w_perp = weights - (weights @ direction) / (direction @ direction + 1e-8) * direction
    cam = torch.relu((w_perp[:, None, None] * activations).sum(0))
    return F.interpolate(cam[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def test_the_variants_are_the_channel_weight_cams_and_have_names():
    assert channel_weight_bases() == ["ablationcam", "gradcam", "gradcam++", "scorecam", "xgradcam"]
    assert {"case:gradcam++", "case:xgradcam", "case:scorecam", "case:ablationcam"} <= set(method_names())
    with pytest.raises(ValueError, match="not a channel-weight CAM"):
        CASE(torch.nn.Conv2d(3, 3, 1), base="layercam")  # a map rule, not channel weights
    with pytest.raises(ValueError, match="unknown method 'case:hirescam'"):
        get_method("case:hirescam", torch.nn.Conv2d(3, 3, 1))


# The perturbation bases cost one masked forward per channel (256 at layer3): in the full suite.
PERTURBATION = [pytest.param(base, marks=pytest.mark.slow) for base in ("scorecam", "ablationcam")]


@pytest.mark.parametrize("base", ["gradcam", "gradcam++", "xgradcam", *PERTURBATION])
def test_variant_equals_slow_per_class_reference(base, resnet18, small_images):
    # layer3 of a ResNet ends with a ReLU, so its activations reach 0: there pytorch-grad-cam's
    # Ablation-CAM ablates with 0, as ours does (see AblationCAM's docstring).
    method = get_method(f"case:{base}", resnet18, target_layer="layer3", contrast=TopLogits(k=2))
    assert method.name == ("case" if base == "gradcam" else f"case:{base}")
    # The reference of a perturbation CAM costs one masked forward per channel and class: one image.
    images = small_images[:1] if base in ("scorecam", "ablationcam") else small_images
    result = method.explain(images, "top1")
    assert result.contrast.shape == (len(images), 2)
    for i in range(len(images)):
        ref = slow_contrastive_map(base, resnet18, "layer3", images[i], int(result.targets[i]),
                                   result.contrast[i].tolist())
        scale = ref.abs().max().item()
        assert scale > 0
        assert (result.maps[i] - ref).abs().max().item() < 1e-4 * scale, (base, i)


@pytest.mark.parametrize("base", ["gradcam", "gradcam++", "xgradcam", *PERTURBATION])
def test_variant_with_an_empty_contrast_is_its_base(base, resnet18, small_images):
    plain = get_method(base, resnet18, target_layer="layer3").explain(small_images, "topk:2")
    with pytest.warns(UserWarning, match="empty contrast"):
        contrastive = CASE(resnet18, target_layer="layer3", base=base, contrast=TopLogits(k=0)).explain(
            small_images, "topk:2")
    assert torch.equal(plain.targets, contrastive.targets)
    assert torch.allclose(plain.maps, contrastive.maps, atol=1e-6 * plain.maps.abs().max().item())


@pytest.mark.parametrize("base", PERTURBATION)
def test_perturbation_variants_score_every_class_in_one_set_of_passes(base, resnet18, small_images):
    """The contrast classes cost no extra forward pass: the masked (or ablated) passes score them all."""
    def count_forwards(method):
        calls = []
        handles = [resnet18.register_forward_pre_hook(lambda m, i: calls.append(1)),
                   resnet18.layer4.register_forward_pre_hook(lambda m, i: calls.append(1))]
        try:
            method.explain(small_images, "topk:2")
        finally:
            for handle in handles:
                handle.remove()
        return len(calls)

    options = {"batch_size": 128}
    alone = count_forwards(get_method(base, resnet18, target_layer="layer3", **options))
    contrastive = count_forwards(CASE(resnet18, target_layer="layer3", base=base, contrast=TopLogits(k=3), **options))
    assert contrastive == alone
