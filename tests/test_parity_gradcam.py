"""Numerical parity with pytorch-grad-cam (an independent implementation) for the Grad-CAM family."""

import pytest
import torch
from pytorch_grad_cam import FinerCAM as RefFinerCAM
from pytorch_grad_cam import GradCAM as RefGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
from pytorch_grad_cam import HiResCAM as RefHiResCAM
from pytorch_grad_cam import LayerCAM as RefLayerCAM
from pytorch_grad_cam import XGradCAM as RefXGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from case_saliency import FinerCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, NearestLogits, XGradCAM
from case_saliency.core.layers import resolve_layer

PAIRS = [(GradCAM, RefGradCAM), (GradCAMPlusPlus, RefGradCAMPlusPlus), (HiResCAM, RefHiResCAM),
         (XGradCAM, RefXGradCAM), (LayerCAM, RefLayerCAM)]


def reference_maps(ref_cls, model, layer, images, classes) -> torch.Tensor:
    ref = ref_cls(model, [layer])
    try:
        return torch.from_numpy(ref(images, [ClassifierOutputTarget(int(c)) for c in classes]))
    finally:
        ref.activations_and_grads.release()


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_parity_resnet18_random_weights(ours, theirs, resnet18, random_images):
    classes = [7, 933]
    mine = ours(resnet18, target_layer="layer4")(random_images, classes, normalize=True)
    ref = reference_maps(theirs, resnet18, resnet18.layer4, random_images, classes)
    assert mine.shape == ref.shape == (2, 224, 224)
    assert (mine - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_parity_efficientnet_lite0_real_photos(ours, theirs, lite0, photos):
    with torch.no_grad():
        top2 = lite0(photos).topk(2, dim=1).indices
    layer, _ = resolve_layer(lite0, "bn2")
    for rank in (0, 1):  # the top-1 and the top-2 class of each photo
        classes = top2[:, rank].tolist()
        mine = ours(lite0, target_layer="bn2")(photos, classes, normalize=True)
        ref = reference_maps(theirs, lite0, layer, photos, classes)
        assert (mine - ref).abs().max().item() < 1e-4, (ours.__name__, rank)


def test_finercam_matches_reference_with_one_comparison_class(lite0, photos):
    # With one comparison class the softmax weighting of pytorch-grad-cam's FinerCAM cancels out.
    mine = FinerCAM(lite0, target_layer="bn2", contrast=NearestLogits(k=1))(photos, "top1", normalize=True)
    layer, _ = resolve_layer(lite0, "bn2")
    ref_cam = RefFinerCAM(lite0, [layer])
    try:
        ref = torch.from_numpy(ref_cam(photos, comparison_categories=[1]))
    finally:
        ref_cam.base_cam.activations_and_grads.release()
    assert (mine - ref).abs().max().item() < 1e-4
