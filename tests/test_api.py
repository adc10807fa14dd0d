"""The public API's contracts: one constructor for every method, LoadedModel in place of a network,
and one error base class."""

from __future__ import annotations

import warnings

import pytest
import torch

import case_saliency
from case_saliency import CASE, METHODS, GradCAM, TopLogits, get_method, vit_reshape
from case_saliency.core.errors import CaseSaliencyError


def test_every_method_takes_the_same_constructor(resnet18):
    """Method(model, *, target_layer=None, reshape=None, **options) for every registered method."""
    for name in sorted(METHODS):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            method = get_method(name, resnet18, target_layer="layer4", reshape=None)
        assert method.model is resnet18
        if method.uses_layer:
            assert method.layer_name == "layer4"
        else:
            assert method.layer_name is None


def test_options_are_keyword_only_and_a_reshape_is_never_read_as_a_contrast(resnet18):
    # Formerly CASE(model, "layer4", vit_reshape) bound the reshape to ``contrast`` without a word.
    with pytest.raises(TypeError, match="only positional argument"):
        CASE(resnet18, "layer4", vit_reshape)
    with pytest.raises(TypeError, match="no option"):
        GradCAM(resnet18, target_layer="layer4", contrast=TopLogits(1))
    with pytest.raises(TypeError, match="only positional argument.*target_layer="):
        GradCAM(resnet18, "layer4")  # no deprecated positional layer: the package was never released with one


def test_methods_accept_a_loaded_model(random_images):
    from case_saliency.models import load_model

    loaded = load_model("efficientnet_lite0")
    cam = CASE(loaded)
    assert cam.model is loaded.model and cam.layer_name == loaded.target_layer == "bn2"
    reference = CASE(loaded.model, target_layer="bn2")
    assert torch.equal(cam(random_images), reference(random_images))
    other = GradCAM(loaded, target_layer="blocks.5")  # a given layer beats the loaded default
    assert other.layer_name == "blocks.5"
    assert loaded.method("case").layer_name == "bn2"
    with pytest.raises(TypeError, match="LoadedModel"):
        GradCAM("efficientnet_lite0")


def test_library_errors_share_one_base_and_keep_their_builtin_bases():
    from case_saliency.models import UnsafeCheckpoint
    from case_saliency.models.zoo import WeightsUnavailable
    from case_saliency.report import RunDirError
    from case_saliency.workflows.demo import OutputFolderInUse
    from case_saliency.workflows.confusion import StaleConfusionMatrix

    for cls, builtin in [(UnsafeCheckpoint, ValueError), (StaleConfusionMatrix, ValueError),
                         (RunDirError, ValueError), (OutputFolderInUse, ValueError),
                         (WeightsUnavailable, RuntimeError)]:
        assert issubclass(cls, CaseSaliencyError) and issubclass(cls, builtin), cls
    assert case_saliency.CaseSaliencyError is CaseSaliencyError


def test_no_shims_of_old_names_remain():
    """0.1 was never released: its old module paths and names are gone, not deprecated."""
    import importlib

    from case_saliency import runs

    for old in ("case_saliency.capture", "case_saliency.demo", "case_saliency.stats", "case_saliency._moved"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    for name in ("ModelBundle", "as_bundle"):
        assert not hasattr(runs, name)
    from case_saliency.core import layers

    assert not hasattr(layers, "default_layer") and not hasattr(layers, "__getattr__")


# Inputs to the API (issue 12, items 9, 11, 12)

def test_nan_or_infinite_pixels_are_named_never_explained(resnet18, random_images):
    from case_saliency.core.errors import NonFiniteInput

    images = random_images[:2].clone()
    images[1, 0, 5, 5] = float("nan")
    for name in ("gradcam", "case", "scorecam", "saliency", "random"):
        with pytest.raises(NonFiniteInput, match=r"image \[1\]"):
            get_method(name, resnet18, target_layer="layer4").explain(images, "top1")
    images[1, 0, 5, 5] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):  # NonFiniteInput is a ValueError too
        CASE(resnet18, target_layer="layer4")(images)


def test_nan_logits_never_become_class_0(random_images):
    from case_saliency.core.errors import NonFiniteInput

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 10)

        def forward(self, x):
            feature = self.conv(x)
            return self.fc(feature.mean((2, 3))) * float("nan")

    with pytest.raises(NonFiniteInput, match=r"logits for images \[0, 1\].*'top1'"):
        GradCAM(Broken(), target_layer="conv")(random_images[:2], "top1")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_cast_to_the_model_dtype(dtype, resnet18, random_images):
    reference = CASE(resnet18, target_layer="layer4").explain(random_images, "top1")
    cast = CASE(resnet18, target_layer="layer4").explain(random_images.to(dtype), "top1")
    # the same maps as for float32 input, up to the precision of the given dtype
    expected = random_images.to(dtype).float()
    again = CASE(resnet18, target_layer="layer4").explain(expected, "top1")
    assert cast.maps.dtype == torch.float32
    assert torch.equal(cast.maps, again.maps)
    if dtype == torch.float64:
        assert torch.equal(cast.maps, reference.maps)


def test_a_call_inside_inference_mode_works(resnet18, random_images):
    expected = CASE(resnet18, target_layer="layer4")(random_images)
    with torch.inference_mode():
        inside = CASE(resnet18, target_layer="layer4")(random_images)
        images = random_images.clone()  # an inference tensor
        from_inference_tensor = GradCAM(resnet18, target_layer="layer4")(images)
    assert torch.equal(inside, expected)
    assert torch.equal(from_inference_tensor, GradCAM(resnet18, target_layer="layer4")(random_images))


def test_targets_none_empty_and_numpy_integers(resnet18, random_images):
    import numpy as np

    cam = GradCAM(resnet18, target_layer="layer4")
    with pytest.raises(TypeError, match="targets=None: give 'top1'"):
        cam(random_images, None)
    with pytest.raises(ValueError, match="targets is empty"):
        cam(random_images, [])
    by_int = cam(random_images, 3)
    assert torch.equal(cam(random_images, np.int64(3)), by_int)
    assert torch.equal(cam(random_images, [np.int32(3), np.int64(3)]), by_int)
    assert torch.equal(cam(random_images, np.array([3, 3])), by_int)
    with pytest.raises(IndexError, match="target class 1000 is out of range"):
        cam(random_images, np.int64(1000))


def test_the_default_layer_does_not_depend_on_the_first_image_size(lite0):
    """Formerly an 8x8 first batch picked blocks.2.0.bn1 on Lite0 and kept it for 224x224 inputs."""
    small_first = GradCAM(lite0)
    small_first(torch.randn(1, 3, 8, 8))
    large_first = GradCAM(lite0)
    large_first(torch.randn(1, 3, 224, 224))
    untouched = GradCAM(lite0)
    assert small_first.layer_name == large_first.layer_name == untouched.layer_name == "bn2"
    small_first(torch.randn(1, 3, 224, 224))
    assert small_first.layer_name == "bn2"


def test_a_model_that_cannot_run_the_probe_gets_a_per_size_default_and_is_told():
    class Fixed(torch.nn.Module):  # a flatten + linear head: only 16x16 inputs fit
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                                torch.nn.Conv2d(4, 4, 3, padding=1))
            self.fc = torch.nn.Linear(4 * 16 * 16, 3)

        def forward(self, x):
            return self.fc(self.features(x).flatten(1))

    cam = GradCAM(Fixed())
    assert cam.layer_name is None  # not knowable before an input is seen
    with pytest.warns(UserWarning, match="chosen per input size: 'features'"):
        maps = cam(torch.randn(2, 1, 16, 16))
    assert maps.shape == (2, 16, 16) and cam.layer_name == "features"
