# ruff: noqa  (vendored code, kept as upstream wrote it)
# Vendored from pytorch-grad-cam (MIT, see LICENSE here), commit 084273b3f30b54ad0c64cf8020a4337d979a66e0,
# tests/test_refine_cam.py. Changed: imports from case_saliency.compat (ARCC, a metric, stays pytorch-grad-cam's); random weights; the image path; the 224-pixel case and ScoreCAM marked slow.
import pytest
import torchvision
from pathlib import Path

import numpy as np

from case_saliency.compat import GradCAM, \
    ScoreCAM, \
    GradCAMPlusPlus, \
    XGradCAM, \
    EigenCAM, \
    EigenGradCAM, \
    LayerCAM
from case_saliency.compat import RefineCAM
from case_saliency.compat import preprocess_image
from case_saliency.compat import ClassifierOutputTarget

cv2 = pytest.importorskip("cv2")  # OpenCV (pytorch-grad-cam's dependency) reads and resizes the image
# ARCC is a metric, not a CAM: pytorch-grad-cam's own, applied to compat's RefineCAM
ARCC = pytest.importorskip("pytorch_grad_cam.metrics.arcc").ARCC
IMAGE = str(Path(__file__).parent / "data" / "both.png")


@pytest.fixture
def numpy_image():
    return cv2.imread(IMAGE)


@pytest.mark.parametrize("cnn_model,target_layer_names", [
    (torchvision.models.resnet18, ["layer4[-1]", "layer4[-2]"])
])
@pytest.mark.parametrize("batch_size,width,height", [
    (2, 112, 112),
    pytest.param(1, 224, 224, marks=pytest.mark.slow)
])
@pytest.mark.parametrize("base_method", [
    GradCAM,
    pytest.param(ScoreCAM, marks=pytest.mark.slow),
    GradCAMPlusPlus,
    XGradCAM,
    EigenCAM,
    EigenGradCAM,
    LayerCAM
])
def test_refine_cam(numpy_image, batch_size, width, height,
                    cnn_model, target_layer_names, base_method):
    img = cv2.resize(numpy_image, (width, height))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img_float = img.astype(np.float32) / 255.0
    input_tensor = preprocess_image(img_float)
    input_tensor = input_tensor.repeat(batch_size, 1, 1, 1)

    model = cnn_model(weights=None)  # random weights: nothing is downloaded
    model.eval()
    
    target_layers = []
    for layer in target_layer_names:
        target_layers.append(eval(f"model.{layer}"))

    targets = [ClassifierOutputTarget(243) for _ in range(batch_size)]

    cam = RefineCAM(model=model,
                    target_layers=target_layers,
                    base_method=base_method)

    grayscale_cam = cam(input_tensor=input_tensor, targets=targets)

    assert grayscale_cam is not None
    assert grayscale_cam.shape[0] == input_tensor.shape[0]
    assert grayscale_cam.shape[1:] == input_tensor.shape[2:]

    metric = ARCC(base_method=cam)
    arcc_scores = metric(input_tensor=input_tensor,
                         grayscale_cams=grayscale_cam,
                         targets=targets,
                         model=model)
    
    assert len(arcc_scores) == batch_size
    assert np.all(arcc_scores >= 0)
    assert np.all(arcc_scores <= 1)
