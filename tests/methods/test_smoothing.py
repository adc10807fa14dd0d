"""eigen_smooth and aug_smooth as options of the library's own CAMs (not only of compat), against
pytorch-grad-cam's definitions: the first principal component of the weighted activations, and the
mean of the maps of the flipped / intensity-scaled images."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from case_saliency import CASE, GradCAM, LayerCAM, TopLogits, explain_many
from case_saliency.core.capture import ActivationCapture
from case_saliency.methods import get_method
from case_saliency.methods.spec import parse_method_spec


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=20).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))


def _same_up_to_sign(ours: torch.Tensor, theirs: np.ndarray) -> None:
    theirs_t = torch.from_numpy(theirs).to(ours.dtype)
    for mine, other in zip(ours, theirs_t, strict=True):
        sign = 1.0 if (mine * other).sum() >= 0 else -1.0
        torch.testing.assert_close(mine, sign * other, rtol=1e-4, atol=1e-5 * float(other.abs().max()))


def test_eigen_smooth_is_the_first_component_of_the_weighted_activations(model, images):
    classes = torch.tensor([3, 11])
    capture = ActivationCapture(model, "layer3")(images, classes[:, None])
    activations, gradients = capture.activations, capture.gradients[:, 0]
    for method, weighted in [
        (GradCAM(model, target_layer="layer3", eigen_smooth=True),
         gradients.mean(dim=(2, 3))[:, :, None, None] * activations),
        (LayerCAM(model, target_layer="layer3", eigen_smooth=True), gradients.clamp_min(0) * activations),
    ]:
        raw = method.explain(images, classes, relu=False, upsample=False).raw
        _same_up_to_sign(raw, get_2d_projection(weighted.numpy()))
        plain = type(method)(model, target_layer="layer3").explain(images, classes, relu=False, upsample=False).raw
        assert ((raw * plain).flatten(1).sum(1) > 0).all()  # the sign: correlated with the unsmoothed map


def test_eigen_smooth_on_case_projects_its_own_weights(model, images):
    method = CASE(model, target_layer="layer3", contrast=TopLogits(1), eigen_smooth=True)
    result = method.explain(images, "top1", relu=False, upsample=False)
    activations = ActivationCapture(model, "layer3")(images).activations
    weighted = result.info["channel_weights"][:, :, None, None] * activations
    _same_up_to_sign(result.raw, get_2d_projection(weighted.numpy()))


def test_aug_smooth_equals_pytorch_grad_cam(model, images):
    classes = [3, 11]
    ours = GradCAM(model, target_layer="layer4", aug_smooth=True).explain(images, classes, normalize=True)
    ref = pgc.GradCAM(model, [model.layer4])
    try:
        theirs = ref(images, [ClassifierOutputTarget(c) for c in classes], aug_smooth=True)
    finally:
        ref.activations_and_grads.release()
    assert ours.info["aug_smooth"] == 6
    assert np.abs(ours.maps.numpy() - theirs).max() < 1e-5
    plain = GradCAM(model, target_layer="layer4").explain(images, classes, normalize=True).maps
    assert (plain - ours.maps).abs().max() > 0.01


def test_aug_smooth_resolves_the_targets_once_and_is_not_shared(model, images):
    smoothed = GradCAM(model, target_layer="layer4", aug_smooth=True)
    plain = GradCAM(model, target_layer="layer4")
    results = explain_many({"smoothed": smoothed, "plain": plain, "also": GradCAM(model, target_layer="layer4")},
                           images, "top1")
    torch.testing.assert_close(results["smoothed"].targets, model(images).argmax(1))
    torch.testing.assert_close(results["smoothed"].maps, smoothed(images, "top1"))
    assert not smoothed.shares_capture_with(plain, images)


def test_the_options_in_method_specs(model, images):
    spec = parse_method_spec("gradcam++(eigen_smooth=true)")
    assert spec.options == {"eigen_smooth": True}
    method = get_method("gradcam++", model, target_layer="layer4", **spec.options)
    assert method.eigen_smooth and not method.aug_smooth
    assert parse_method_spec("case:scorecam(aug_smooth=true)").options == {"aug_smooth": True}
    with pytest.raises(ValueError, match="eigen_smooth"):
        from case_saliency.methods.base import CAMMethod

        class DirectMap(CAMMethod):  # a map rule without element-wise terms has nothing to project
            def cam(self, activations, gradients, contrast_gradients):
                return gradients.sum(dim=2)

        DirectMap(model, target_layer="layer4", eigen_smooth=True)(images, "top1")
