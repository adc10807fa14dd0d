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
    with pytest.raises(TypeError, match="twice"):
        GradCAM(resnet18, "layer4", target_layer="layer3")


def test_a_positional_layer_still_works_with_a_deprecation_warning(resnet18, random_images):
    with pytest.warns(DeprecationWarning, match="target_layer='layer4'"):
        old = GradCAM(resnet18, "layer4")
    new = GradCAM(resnet18, target_layer="layer4")
    assert old.layer_name == new.layer_name == "layer4"
    assert torch.equal(old(random_images), new(random_images))


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
    from case_saliency.report.demo import OutputFolderInUse
    from case_saliency.workflows.confusion import StaleConfusionMatrix

    for cls, builtin in [(UnsafeCheckpoint, ValueError), (StaleConfusionMatrix, ValueError),
                         (RunDirError, ValueError), (OutputFolderInUse, ValueError),
                         (WeightsUnavailable, RuntimeError)]:
        assert issubclass(cls, CaseSaliencyError) and issubclass(cls, builtin), cls
    assert case_saliency.CaseSaliencyError is CaseSaliencyError


def test_model_bundle_is_a_deprecated_name_of_loaded_model():
    from case_saliency import runs
    from case_saliency.models import LoadedModel

    with pytest.warns(DeprecationWarning, match="LoadedModel"):
        assert runs.ModelBundle is LoadedModel
