"""CASE against a slow reference written here, the contrast strategies, and the k=0 / zero cases."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from case_saliency import CASE, ConfusionNeighbours, ExplicitContrast, GradCAM, NearestLogits, TopLogits
from case_saliency.core.contrast import (ClassifierNeighbours, RankContrast, build_contrast, contrast_spec,
                                        default_contrast)
from case_saliency.core.layers import resolve_layer


def slow_case(model, layer_name, image, target, contrast):
    """The paper's public-code cost model: one full forward and backward per class, per image,
    with the input requiring grad; then the projection of steps 3-5 of the method."""
    layer, _ = resolve_layer(model, layer_name)
    weights, activation = [], None
    for cls in [target, *contrast]:
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o, store=store: store.update(out=o))
        x = image[None].clone().requires_grad_(True)
        try:
            logits = model(x)
            store["out"].retain_grad()
            model.zero_grad()
            logits[0, cls].backward()
        finally:
            handle.remove()
        activation = store["out"].detach()[0]
        weights.append(store["out"].grad[0].mean(dim=(1, 2)))
    w_t = weights[0]
    w_s = torch.stack(weights[1:]).mean(0)
    w_perp = w_t - (w_t @ w_s) / (w_s @ w_s + 1e-8) * w_s
    cam = torch.relu((w_perp[:, None, None] * activation).sum(0))
    return F.interpolate(cam[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


@pytest.mark.parametrize("k", [1, 3])
def test_case_equals_slow_reference_on_real_photos(lite0, photos, k):
    result = CASE(lite0, target_layer="bn2", contrast=TopLogits(k=k)).explain(photos, "top1")
    assert result.contrast.shape == (len(photos), k)
    for i in range(len(photos)):
        target = int(result.targets[i])
        ref = slow_case(lite0, "bn2", photos[i], target, result.contrast[i].tolist())
        scale = ref.abs().max().item()
        assert (result.maps[i] - ref).abs().max().item() < 1e-5 * max(1.0, scale)
    for i in range(len(photos)):  # the contrast set is the next k logits, excluding the target
        order = result.logits[i].argsort(descending=True).tolist()
        assert result.contrast[i].tolist() == [c for c in order if c != result.targets[i]][:k]


def test_case_equals_slow_reference_resnet18_top2(resnet18, random_images):
    result = CASE(resnet18, target_layer="layer4[1]", contrast=TopLogits(k=2)).explain(random_images, "top2")
    for i in range(len(random_images)):
        ref = slow_case(resnet18, "layer4.1", random_images[i], int(result.targets[i]), result.contrast[i].tolist())
        assert (result.maps[i] - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())


def test_top1_and_top2_in_one_call_equal_separate_calls(lite0, photos):
    cam = CASE(lite0, target_layer="bn2", contrast=TopLogits(k=1))
    both = cam.explain(photos, "topk:2")
    assert both.maps.shape == (3, 2, 224, 224) and both.contrast.shape == (3, 2, 1)
    for rank, spec in enumerate(["top1", "top2"]):
        alone = cam.explain(photos, spec)
        assert torch.equal(alone.targets, both.targets[:, rank])
        assert torch.allclose(alone.maps, both.maps[:, rank], atol=1e-6)


def test_k0_is_gradcam_and_warns_once(lite0, photos):
    cam = CASE(lite0, target_layer="bn2", contrast=TopLogits(k=0))
    with pytest.warns(UserWarning, match="equal Grad-CAM"):
        maps = cam(photos, "top1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call does not warn again
        cam(photos, "top1")
    assert torch.allclose(maps, GradCAM(lite0, target_layer="bn2")(photos, "top1"), atol=1e-6)


def test_zero_contrast_direction_gives_gradcam_never_nan(resnet18, random_images):
    # The target itself as its own contrast would leave nothing; a class whose gradient is exactly
    # zero (its fc row zeroed) must instead fall back to Grad-CAM without NaN.
    model = resnet18
    saved = model.fc.weight.data[5].clone()
    model.fc.weight.data[5] = 0
    try:
        cam = CASE(model, target_layer="layer4", contrast=ExplicitContrast([5]))
        with pytest.warns(UserWarning, match="all zero"):
            result = cam.explain(random_images, [1, 2])
        reference = GradCAM(model, target_layer="layer4")(random_images, [1, 2])
    finally:
        model.fc.weight.data[5] = saved
    assert not torch.isnan(result.maps).any()
    assert torch.allclose(result.maps, reference, atol=1e-6)


def test_top_logits_and_nearest_logits():
    logits = torch.tensor([[0.0, 5.0, 3.0, 4.9, -1.0]])
    targets = torch.tensor([[1, 2]])
    assert TopLogits(2)(logits, targets).tolist() == [[[3, 2], [1, 3]]]
    assert NearestLogits(2)(logits, targets).tolist() == [[[3, 2], [3, 1]]]
    with pytest.raises(ValueError, match="k=5"):
        TopLogits(5)(logits, targets)


def test_confusion_neighbours_row_normalised_self_excluded(tmp_path):
    counts = np.array([[50, 30, 20], [1, 8, 1], [0, 90, 10]], dtype=float)
    strategy = ConfusionNeighbours(counts, k=1)
    assert strategy.neighbours[:, 0].tolist() == [1, 0, 1]  # row 1: tie 0/2 goes to the lower index
    assert torch.allclose(strategy.rates.sum(1), torch.ones(3, dtype=torch.float64))
    targets = torch.tensor([[2], [0]])
    assert strategy(torch.zeros(2, 3), targets).tolist() == [[[1]], [[1]]]
    np.save(tmp_path / "m.npy", counts)
    from case_saliency.workflows.confusion import read_matrix_file  # files are read at the edges

    from_file = ConfusionNeighbours(read_matrix_file(tmp_path / "m.npy"), k=2).neighbours
    assert torch.equal(from_file, ConfusionNeighbours(counts, 2).neighbours)
    with pytest.raises(TypeError, match="not the file.*confusion_neighbours"):
        ConfusionNeighbours(tmp_path / "m.npy")
    with pytest.raises(ValueError, match="square"):
        ConfusionNeighbours(np.ones((2, 3)))
    with pytest.raises(ValueError, match="outputs 4"):
        strategy(torch.zeros(1, 4), torch.tensor([[0]]))


def test_case_with_confusion_neighbours_uses_matrix_rows(lite0, photos):
    matrix = np.eye(1000)
    matrix[:, 0] += 0.5  # every class is most confused with class 0 (class 0 itself with class 1)
    matrix[0, 1] += 0.7
    result = CASE(lite0, target_layer="bn2", contrast=ConfusionNeighbours(matrix, k=1)).explain(photos, "top1")
    expected = [1 if int(t) == 0 else 0 for t in result.targets]
    assert result.contrast[:, 0].tolist() == expected
    ref = slow_case(lite0, "bn2", photos[0], int(result.targets[0]), [expected[0]])
    assert (result.maps[0] - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())


def test_classifier_neighbours_are_nearest_rows_by_cosine(lite0):
    weight = lite0.classifier.weight.detach().double().numpy()
    unit = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    expected = np.argsort(-cosine, axis=1, kind="stable")[:, :3]
    strategy = ClassifierNeighbours(lite0, k=3)
    assert strategy.layer == "classifier" and strategy.spec == "classifier:3"
    assert np.array_equal(strategy.neighbours.numpy(), expected)
    targets = torch.tensor([[281, 282], [967, 504]])  # tabby/tiger cat, espresso/coffee mug
    got = strategy(torch.zeros(2, 1000), targets)
    assert got.tolist() == [[expected[281].tolist(), expected[282].tolist()],
                            [expected[967].tolist(), expected[504].tolist()]]
    assert torch.equal(ClassifierNeighbours(lite0.classifier.weight, k=3).neighbours, strategy.neighbours)


def test_classifier_neighbours_need_a_linear_head():
    no_head = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(ValueError, match="no nn.Linear layer.*ConfusionNeighbours"):
        ClassifierNeighbours(no_head)
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        CASE(no_head, target_layer="0")  # CASE's default contrast is classifier neighbours: a clear error, not a guess
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Linear(5, 4))
    with pytest.raises(ValueError, match="4 outputs but the model gives 7 logits"):
        ClassifierNeighbours(wrong)(torch.zeros(1, 7), torch.tensor([[0]]))


def test_case_default_contrast_is_model_level(lite0, photos):
    cam = CASE(lite0, target_layer="bn2")
    assert isinstance(cam.contrast, ClassifierNeighbours) and cam.contrast.k == 1
    result = cam.explain(photos, "topk:2")
    neighbours = ClassifierNeighbours(lite0, k=1).neighbours
    assert torch.equal(result.contrast, neighbours[result.targets])  # the same class whatever the image
    ref = slow_case(lite0, "bn2", photos[1], int(result.targets[1, 0]), result.contrast[1, 0].tolist())
    assert (result.maps[1, 0] - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())


def test_rank_contrast_and_specs(lite0):
    logits = torch.tensor([[0.0, 5.0, 3.0, 4.9, -1.0], [9.0, 1.0, 2.0, 3.0, 4.0]])
    targets = torch.tensor([[1, 3], [0, 4]])
    assert RankContrast(3)(logits, targets).tolist() == [[[2], [2]], [[3], [3]]]
    assert RankContrast([3, 4])(logits, targets).shape == (2, 2, 2)
    for spec, kind, k in [("top:5", TopLogits, 5), ("nearest:3", NearestLogits, 3), ("rank:3", RankContrast, 1),
                          ("rank:3+4", RankContrast, 2), ("explicit:5+7", ExplicitContrast, 2),
                          ("classifier:2", ClassifierNeighbours, 2), ("classifier", ClassifierNeighbours, 1),
                          ("confusion:2", ConfusionNeighbours, 2)]:
        strategy = build_contrast(spec, model=lite0, confusion=np.eye(1000))
        assert isinstance(strategy, kind) and strategy.k == k
        assert build_contrast(contrast_spec(strategy), model=lite0, confusion=np.eye(1000)).spec == strategy.spec
    for bad, match in [("top:x", "unknown contrast"), ("mystery:1", "unknown contrast"), ("rank", "needs its classes"),
                       ("top:1+2", "one number")]:
        with pytest.raises(ValueError, match=match):
            build_contrast(bad, model=lite0)
    with pytest.raises(ValueError, match="needs a confusion matrix"):
        build_contrast("confusion:1", model=lite0)
    assert default_contrast() == "classifier:1" and default_contrast(np.eye(3), k=2) == "confusion:2"
    assert default_contrast(diagnostic=True) == "leave-pair-out:classifier:1"


def test_contrast_holding_the_target_is_refused(lite0, photos):
    with torch.no_grad():
        top = lite0(photos).argmax(1)
    cam = CASE(lite0, target_layer="bn2", contrast=ExplicitContrast([int(top[0])]))
    with pytest.raises(ValueError, match=f"contains its target class {int(top[0])}"):
        cam.explain(photos[:1], "top1")
    with pytest.raises(ValueError, match="contains its target"):
        CASE(lite0, target_layer="bn2", contrast=RankContrast(1)).explain(photos[:1], "top1")


def test_confusion_matrix_with_nan_or_inf_is_refused(tmp_path):
    from case_saliency.workflows.confusion import read_matrix_file

    for bad in (float("nan"), float("inf")):
        matrix = np.eye(4) * 10
        matrix[2, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite entries.*row 2, column 1"):
            ConfusionNeighbours(matrix)
        np.save(tmp_path / "m.npy", matrix)
        with pytest.raises(ValueError, match="NaN or infinite"):
            ConfusionNeighbours(read_matrix_file(tmp_path / "m.npy"))
    (tmp_path / "m.json").write_text('{"matrix": [[1, NaN], [0, 1]]}')
    with pytest.raises(ValueError, match="NaN or infinite"):
        ConfusionNeighbours(read_matrix_file(tmp_path / "m.json"))


def test_out_of_range_contrast_classes_are_the_ones_named():
    from case_saliency.core.contrast import contrast_classes

    class Stale:  # e.g. neighbours from a confusion matrix of a model with more classes
        k = 2

        def __call__(self, logits, targets):
            return torch.tensor([[[3, 12]], [[4, 5]]])

    with pytest.raises(IndexError, match=r"class indices \[12\] out of range for a model with 10 classes"):
        contrast_classes(Stale(), torch.randn(2, 10), torch.tensor([[1], [2]]))
