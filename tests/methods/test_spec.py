"""Method specs: parsing, labels, errors that name the fix, and methods built from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from case_saliency import CASE, ClassifierNeighbours, ConfusionNeighbours, FinerCAM, RankContrast, TopLogits
from case_saliency.methods.spec import build_method, parse_method_list, parse_method_spec, split_specs


def test_split_and_labels():
    assert split_specs("gradcam, case(contrast=top:1,eps=1e-6) ,finercam") == [
        "gradcam", "case(contrast=top:1,eps=1e-6)", "finercam"]
    spec = parse_method_spec(" CASE( contrast = Top:1 ) ")
    assert (spec.name, spec.options, spec.label) == ("case", {"contrast": "top:1"}, "case(contrast=top:1)")
    spec = parse_method_spec("finercam(weighting=mean,gamma=0.5)")
    assert spec.options == {"weighting": "mean", "gamma": 0.5} and spec.label == "finercam(weighting=mean,gamma=0.5)"
    assert parse_method_spec("gradcam++").label == "gradcam++"
    specs = parse_method_list("gradcam,case,case(contrast=top:1),case")  # duplicates dropped
    assert [s.label for s in specs] == ["gradcam", "case", "case(contrast=top:1)"]
    assert [s.label for s in parse_method_list(["gradcam,case", "case(contrast=rank:3)"])] == [
        "gradcam", "case", "case(contrast=rank:3)"]


@pytest.mark.parametrize("text,match", [
    ("mystery", "unknown method 'mystery'.*available"),
    ("case(colour=red)", "case' has no option 'colour'.*contrast"),
    ("case(contrast)", "is not key=value"),
    ("case(contrast=top:1", "unbalanced"),
    ("case(target_layer=bn2)", "whole run"),
    ("gradcam:gradcam++", "takes no base method"),
    ("case(eps=1,eps=2)", "twice"),
])
def test_spec_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_method_list(text)


def test_methods_built_from_specs(lite0):
    confusion = ConfusionNeighbours(np.eye(1000), k=1)
    case = build_method("case", lite0, target_layer="bn2", run_contrast="classifier:1")
    assert isinstance(case, CASE) and isinstance(case.contrast, ClassifierNeighbours)
    top = build_method("case(contrast=top:5)", lite0, target_layer="bn2", run_contrast="classifier:1")
    assert isinstance(top.contrast, TopLogits) and top.contrast.k == 5  # the spec beats the run's default
    rank = build_method("case(contrast=rank:3)", lite0, target_layer="bn2")
    assert isinstance(rank.contrast, RankContrast) and rank.contrast.ranks == [3]
    conf = build_method("case(contrast=confusion:2)", lite0, target_layer="bn2", confusion=confusion)
    assert isinstance(conf.contrast, ConfusionNeighbours) and conf.contrast.k == 2
    finer = build_method("finercam(weighting=mean)", lite0, target_layer="bn2", run_contrast="classifier:1")
    assert isinstance(finer, FinerCAM) and finer.weighting == "mean" and finer.contrast.spec == "nearest:3"
    gradcam = build_method("gradcam", lite0, target_layer="bn2", run_contrast="classifier:1")
    assert gradcam.contrast is None
    with pytest.raises(ValueError, match="needs a confusion matrix"):
        build_method("case(contrast=confusion:1)", lite0, target_layer="bn2")
    images = torch.zeros(1, 3, 64, 64)
    assert rank(images, "top1").shape == (1, 64, 64)
