"""case_saliency.compat against pytorch-grad-cam itself: the same constructor, call, targets and numbers."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as TheirTarget

from case_saliency import compat

GRADIENT_CAMS = ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "XGradCAM", "LayerCAM"]
TOLERANCE = 1e-4  # float32 arithmetic in another order; maps are in [0, 1]


def _theirs(name: str, model, layers, images, targets, **options) -> np.ndarray:
    with getattr(pgc, name)(model=model, target_layers=layers, **options) as cam:
        return cam(input_tensor=images, targets=targets)


def _ours(name: str, model, layers, images, targets, **options) -> np.ndarray:
    with getattr(compat, name)(model=model, target_layers=layers, **options) as cam:
        return cam(input_tensor=images, targets=targets)


def _check(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32 and ours.shape == theirs.shape
    assert ours.min() >= 0 and ours.max() <= 1
    assert np.abs(ours - theirs).max() < TOLERANCE, np.abs(ours - theirs).max()


# Grad-CAM in the quick run; the rest of the family (same code path, a few seconds each) in the full suite.
@pytest.mark.parametrize("name", [name if name == "GradCAM" else pytest.param(name, marks=pytest.mark.slow)
                                  for name in GRADIENT_CAMS])
def test_gradient_cams_equal_pytorch_grad_cam_on_real_photos(name, lite0, photos):
    """Their code, with only the import changed, gives their numbers: their own target objects, the
    top-1 and the top-2 class of each real photo, and no targets at all (the top class)."""
    layer = lite0.bn2
    with torch.no_grad():
        top2 = lite0(photos).topk(2, dim=1).indices
    for rank in (0, 1):
        targets = [TheirTarget(int(c)) for c in top2[:, rank]]
        _check(_ours(name, lite0, [layer], photos, targets), _theirs(name, lite0, [layer], photos, targets))
    _check(_ours(name, lite0, [layer], photos, None), _theirs(name, lite0, [layer], photos, None))


@pytest.mark.parametrize("name", GRADIENT_CAMS)
def test_two_target_layers_and_our_target_objects(name, resnet18, random_images):
    layers = [resnet18.layer3, resnet18.layer4]
    ours = _ours(name, resnet18, layers, random_images, [compat.ClassifierOutputTarget(c) for c in (7, 933)])
    _check(ours, _theirs(name, resnet18, layers, random_images, [TheirTarget(7), TheirTarget(933)]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ScoreCAM", "AblationCAM", "EigenCAM"])
def test_perturbation_and_eigen_cams_equal_pytorch_grad_cam(name, lite0, photos):
    # One photo at 128 px: pytorch-grad-cam's Score-CAM and Ablation-CAM run a full forward per channel (1,280)
    images = torch.nn.functional.interpolate(photos[:1], size=(128, 128), mode="bilinear", align_corners=False)
    targets = [TheirTarget(281)]
    results = []
    for library in (pgc, compat):
        with getattr(library, name)(model=lite0, target_layers=[lite0.bn2]) as cam:
            cam.batch_size = 64  # their attribute (ScoreCAM's is not a constructor argument)
            results.append(cam(input_tensor=images, targets=targets))
    _check(results[1], results[0])


def test_finercam_equals_pytorch_grad_cam_with_three_comparison_classes(lite0, photos):
    """Their default: the three classes nearest to the top logit, weighted by softmax probability."""
    ours = compat.FinerCAM(lite0, [lite0.bn2])(photos)
    ref = pgc.FinerCAM(lite0, [lite0.bn2])
    try:
        theirs = ref(photos)
    finally:
        ref.base_cam.activations_and_grads.release()
    _check(ours, theirs)
    ours_2 = compat.FinerCAM(lite0, [lite0.bn2])(photos, comparison_categories=[1, 2], alpha=0.6)
    ref = pgc.FinerCAM(lite0, [lite0.bn2])
    try:
        theirs_2 = ref(photos, comparison_categories=[1, 2], alpha=0.6)
    finally:
        ref.base_cam.activations_and_grads.release()
    _check(ours_2, theirs_2)
    assert np.abs(ours - ours_2).max() > 0.05  # the options change the maps


def test_case_equals_a_reference_built_from_pytorch_grad_cam(lite0, photos):
    """CASE, which pytorch-grad-cam lacks, from its parts: their Grad-CAM weights of the top-1 and top-2
    classes, the top-2 direction removed from the top-1 weights, their scaling."""
    layer = lite0.bn2
    with torch.no_grad():
        top2 = lite0(photos).topk(2, dim=1).indices
    ref = pgc.GradCAM(lite0, [layer])
    try:
        weights = []
        for rank in (0, 1):
            ref(photos, [TheirTarget(int(c)) for c in top2[:, rank]])
            grads = ref.activations_and_grads.gradients[0].numpy()
            weights.append(grads.mean(axis=(2, 3)))
        activations = ref.activations_and_grads.activations[0].numpy()
    finally:
        ref.activations_and_grads.release()
    target, contrast = weights
    projection = (target * contrast).sum(1, keepdims=True) / (contrast * contrast).sum(1, keepdims=True)
    case_weights = target - projection * contrast
    cam = np.maximum((case_weights[:, :, None, None] * activations).sum(1), 0)
    expected = scale_cam_image(scale_cam_image(cam, (photos.shape[-1], photos.shape[-2])))
    ours = compat.CASE(model=lite0, target_layers=[layer])(input_tensor=photos, targets=None)
    _check(ours, expected)
    assert np.abs(ours - _ours("GradCAM", lite0, [layer], photos, None)).max() > 0.1  # not Grad-CAM


def test_unsupported_inputs_say_so(resnet18, random_images):
    cam = compat.GradCAM(model=resnet18, target_layers=[resnet18.layer4])
    with pytest.raises(ValueError, match="one per image"):
        cam(random_images, [TheirTarget(1)])
    with pytest.raises(TypeError, match="ClassifierOutputTarget"):
        cam(random_images, [3, 4])
    with pytest.raises(ValueError, match="target_layers is empty"):
        compat.GradCAM(model=resnet18, target_layers=[])
