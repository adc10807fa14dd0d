# ruff: noqa  (vendored code, kept as upstream wrote it)
# Vendored from pytorch-grad-cam (MIT, see LICENSE here), commit 084273b3f30b54ad0c64cf8020a4337d979a66e0,
# tests/test_run_all_models.py. Changed: imports from case_saliency.compat; random weights instead of downloaded ones; the image path; FullGrad marked as a refusal (xfail); ScoreCAM and AblationCAM marked slow; the second ScoreCAM entry of the method list (the same 16 cases again) dropped; cam.batch_size 64, not 4 (at 4, VGG-11's 400 MB classifier is read once per 4 masked images: 20-45 s a case on a CPU).
import pytest
import torchvision
import torch
from pathlib import Path

from case_saliency.compat import GradCAM, \
    ScoreCAM, \
    GradCAMPlusPlus, \
    AblationCAM, \
    XGradCAM, \
    EigenCAM, \
    EigenGradCAM, \
    LayerCAM, \
    FullGrad, \
    KPCA_CAM, \
    SegEigenCAM
from case_saliency.compat import preprocess_image
from case_saliency.compat import ClassifierOutputTarget

cv2 = pytest.importorskip("cv2")  # OpenCV (pytorch-grad-cam's dependency) reads and resizes the image
IMAGE = str(Path(__file__).parent / "data" / "both.png")
REFUSED = pytest.mark.xfail(raises=NotImplementedError, strict=True,
                            reason="FullGrad is refused by case_saliency.compat (input and bias gradients)")


@pytest.fixture
def numpy_image():
    return cv2.imread(IMAGE)


@pytest.mark.parametrize("cnn_model,target_layer_names", [
    (torchvision.models.resnet18, ["layer4[-1]", "layer4[-2]"]),
    (torchvision.models.vgg11, ["features[-1]"])
])
@pytest.mark.parametrize("batch_size,width,height", [
    (2, 32, 32),
    (1, 32, 40)
])
@pytest.mark.parametrize("target_category", [
    None,
    100
])
@pytest.mark.parametrize("aug_smooth", [
    False
])
@pytest.mark.parametrize("eigen_smooth", [
    True,
    False
])
@pytest.mark.parametrize("cam_method",
                         [pytest.param(ScoreCAM, marks=pytest.mark.slow),
                          pytest.param(AblationCAM, marks=pytest.mark.slow),
                          GradCAM,
                          GradCAMPlusPlus,
                          XGradCAM,
                          EigenCAM,
                          EigenGradCAM,
                          LayerCAM,
                          pytest.param(FullGrad, marks=REFUSED),
                          KPCA_CAM,
                          SegEigenCAM])

def test_all_cam_models_can_run(numpy_image, batch_size, width, height,
                                cnn_model, target_layer_names, cam_method,
                                target_category, aug_smooth, eigen_smooth):
    img = cv2.resize(numpy_image, (width, height))
    input_tensor = preprocess_image(img)
    input_tensor = input_tensor.repeat(batch_size, 1, 1, 1)

    model = cnn_model(weights=None)  # random weights: nothing is downloaded
    target_layers = []
    for layer in target_layer_names:
        target_layers.append(eval(f"model.{layer}"))

    cam = cam_method(model=model,
                     target_layers=target_layers)
    cam.batch_size = 64
    if target_category is None:
        targets = None
    else:
        targets = [ClassifierOutputTarget(target_category)
                   for _ in range(batch_size)]

    grayscale_cam = cam(input_tensor=input_tensor,
                        targets=targets,
                        aug_smooth=aug_smooth,
                        eigen_smooth=eigen_smooth)
    assert(grayscale_cam.shape[0] == input_tensor.shape[0])
    assert(grayscale_cam.shape[1:] == input_tensor.shape[2:])
