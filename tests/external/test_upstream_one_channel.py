# ruff: noqa  (vendored code, kept as upstream wrote it)
# Vendored from pytorch-grad-cam (MIT, see LICENSE here), commit 084273b3f30b54ad0c64cf8020a4337d979a66e0,
# tests/test_one_channel.py. Changed: imports from case_saliency.compat; pretrained=False written as weights=None (the same random weights, no deprecated argument); the image path.
import pytest
import torchvision
import torch
from pathlib import Path

import numpy as np
from case_saliency.compat import GradCAM, \
    ScoreCAM, \
    GradCAMPlusPlus, \
    AblationCAM, \
    XGradCAM, \
    EigenCAM, \
    EigenGradCAM, \
    LayerCAM, \
    FullGrad
from case_saliency.compat import preprocess_image

from case_saliency.compat import ClassifierOutputTarget

cv2 = pytest.importorskip("cv2")  # OpenCV (pytorch-grad-cam's dependency) reads the image
IMAGE = str(Path(__file__).parent / "data" / "both.png")

torch.manual_seed(0)


@pytest.fixture
def numpy_image():
    return cv2.imread(IMAGE)


@pytest.mark.parametrize("cam_method",
                         [GradCAM])
def test_memory_usage_in_loop(numpy_image, cam_method):
    model = torchvision.models.resnet18(weights=None)
    model.conv1 = torch.nn.Conv2d(
        1, 64, kernel_size=(
            7, 7), stride=(
            2, 2), padding=(
                3, 3), bias=False)
    target_layers = [model.layer4]
    gray_img = numpy_image[:, :, 0]
    input_tensor = torch.from_numpy(
        np.float32(gray_img)).unsqueeze(0).unsqueeze(0)
    input_tensor = input_tensor.repeat(16, 1, 1, 1)
    targets = None
    with cam_method(model=model,
                    target_layers=target_layers) as cam:
        grayscale_cam = cam(input_tensor=input_tensor,
                            targets=targets)
        print(grayscale_cam.shape)
