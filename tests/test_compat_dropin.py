"""case_saliency.compat as a drop-in for pytorch-grad-cam, call by call against pytorch-grad-cam itself
(random-weight torchvision models): users' own subclasses, target layers as pytorch-grad-cam reads them,
every target type, aug_smooth / eigen_smooth, the attributes users touch, 3-D inputs, AblationCAM's
channel ratio, and the one documented difference (activations read before a later in-place op)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchvision
from pytorch_grad_cam.utils import model_targets as their_targets
from torch import nn

from case_saliency import compat

TOLERANCE = 1e-5  # the bar; float32 maps in [0, 1]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=20).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))


def run(library, name: str, model, layers, images, targets=None, setup=None, **call) -> np.ndarray:
    cam = getattr(library, name)(model, layers) if isinstance(name, str) else name(model, layers)
    if setup is not None:
        setup(cam)
    try:
        return cam(images, targets, **call)
    finally:
        cam.activations_and_grads.release()


def assert_same(ours: np.ndarray, theirs: np.ndarray, tolerance: float = TOLERANCE) -> None:
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32 and ours.shape == theirs.shape
    difference = float(np.abs(ours - theirs).max())
    assert difference < tolerance, difference
    assert float(theirs.max() - theirs.min()) > 0.5  # a real map, not two constants


def _subclass(library, base: str, rule: str):
    """A user's own CAM written the pytorch-grad-cam way, on top of either library's class."""
    parent = getattr(library, base)
    if rule == "weights":
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            return np.mean(grads * activations, axis=(2, 3))  # gradient x activation, averaged

        return type("MaxGradCAM", (parent,), {"get_cam_weights": get_cam_weights})

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        return (np.abs(grads) * activations).sum(axis=1)

    return type("AbsGradCAM", (parent,), {"get_cam_image": get_cam_image})


@pytest.mark.parametrize("rule", ["weights", "image"])
def test_a_users_subclass_override_is_honoured(rule, model, images):
    targets = [their_targets.ClassifierOutputTarget(c) for c in (3, 11)]
    theirs = run(None, _subclass(pgc, "GradCAM", rule), model, [model.layer4], images, targets)
    ours = run(None, _subclass(compat, "GradCAM", rule), model, [model.layer4], images, targets)
    assert_same(ours, theirs)
    plain = run(compat, "GradCAM", model, [model.layer4], images, targets)
    assert np.abs(ours - plain).max() > 0.05  # the override changed the maps: it was not ignored


def test_pytorch_grad_cams_own_rules_are_class_attributes():
    for name in ("GradCAM", "GradCAMPlusPlus", "XGradCAM", "ScoreCAM", "AblationCAM", "RandomCAM"):
        assert "get_cam_weights" in vars(getattr(compat, name)), name
    for name in ("HiResCAM", "LayerCAM", "EigenCAM", "EigenGradCAM", "GradCAMElementWise", "KPCA_CAM", "SegEigenCAM"):
        assert "get_cam_image" in vars(getattr(compat, name)), name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GradCAM", "EigenCAM"])
def test_a_bare_sequential_is_several_layers(name, model, images):
    """target_layers=model.layer4: pytorch-grad-cam iterates it, so its two blocks are two layers."""
    assert_same(run(compat, name, model, model.layer4, images), run(pgc, name, model, model.layer4, images))
    assert_same(run(compat, name, model, model.layer4, images),
                run(pgc, name, model, [model.layer4[0], model.layer4[1]], images))
    assert_same(run(compat, name, model, (model.layer4[0], model.layer4[1]), images),
                run(pgc, name, model, [model.layer4[0], model.layer4[1]], images))


@pytest.mark.slow
def test_eigencam_on_two_layers(model, images):
    layers = [model.layer3[-1], model.layer4[-1]]
    assert_same(run(compat, "EigenCAM", model, layers, images), run(pgc, "EigenCAM", model, layers, images))


def test_finercam_with_finer_weighted_targets(model, images):
    targets = [their_targets.FinerWeightedTarget(3, [5, 7], 0.6), compat.FinerWeightedTarget(11, [2], 1.0)]
    results = []
    for library in (pgc, compat):
        cam = library.FinerCAM(model, [model.layer4])
        try:
            results.append((cam(images, targets), cam(images, alpha=0.8, comparison_categories=[1, 2])))
        finally:
            cam.base_cam.activations_and_grads.release()
    for theirs, ours in zip(*results, strict=True):
        assert_same(ours, theirs)
    assert compat.FinerCAM(model, [model.layer4]).base_cam.uses_gradients


SMOOTHED = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM", "EigenCAM", "EigenGradCAM",
            "GradCAMElementWise"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SMOOTHED)
def test_eigen_smooth_equals_pytorch_grad_cam(name, model, images):
    layers = [model.layer3, model.layer4]
    targets = [compat.ClassifierOutputTarget(c) for c in (3, 11)]
    ours = run(compat, name, model, layers, images, targets, eigen_smooth=True)
    assert_same(ours, run(pgc, name, model, layers, images, targets, eigen_smooth=True))
    if name not in ("EigenCAM", "EigenGradCAM"):  # these are projections already
        assert np.abs(ours - run(compat, name, model, layers, images, targets)).max() > 0.05


@pytest.mark.parametrize("name", SMOOTHED)
def test_aug_smooth_equals_pytorch_grad_cam(name, model, images):
    small = images[:1, :, :64, :64]
    targets = [compat.ClassifierOutputTarget(3)]
    ours = run(compat, name, model, [model.layer3], small, targets, aug_smooth=True)
    assert_same(ours, run(pgc, name, model, [model.layer3], small, targets, aug_smooth=True))
    assert np.abs(ours - run(compat, name, model, [model.layer3], small, targets)).max() > 0.01


@pytest.mark.slow
def test_aug_smooth_with_the_users_ttach_transforms_and_eigen_smooth(model, images):
    import ttach

    def custom(cam):
        cam.tta_transforms = ttach.Compose([ttach.HorizontalFlip(), ttach.Multiply(factors=[0.8, 1])])

    layers = [model.layer3, model.layer4]
    options = {"aug_smooth": True, "eigen_smooth": True}
    assert_same(run(compat, "GradCAM", model, layers, images, setup=custom, **options),
                run(pgc, "GradCAM", model, layers, images, setup=custom, **options))
    assert_same(run(compat, "GradCAMPlusPlus", model, layers, images, **options),
                run(pgc, "GradCAMPlusPlus", model, layers, images, **options))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ScoreCAM", "AblationCAM"])
def test_perturbation_cams_smoothed(name, model, images):
    small = images[:1, :, :64, :64]
    layers = [model.layer3]  # 4 x 4, 256 channels

    def batch(cam):
        cam.batch_size = 128

    for options in ({"eigen_smooth": True}, {"aug_smooth": True}):
        assert_same(run(compat, name, model, layers, small, setup=batch, **options),
                    run(pgc, name, model, layers, small, setup=batch, **options), 1e-4)


def _target_sets():
    yield "softmax", [their_targets.ClassifierOutputSoftmaxTarget(3), compat.ClassifierOutputSoftmaxTarget(11)]
    yield "rest", [their_targets.ClassifierOutputReST(3), compat.ClassifierOutputReST(11)]
    yield "finer", [their_targets.FinerWeightedTarget(3, [5, 7], 1.0), compat.FinerWeightedTarget(11, [2], 0.5)]
    yield "callable", [lambda out: out[3] - out[4], lambda out: out[[1, 2]].sum()]


@pytest.mark.parametrize("kind,targets", list(_target_sets()), ids=[k for k, _ in _target_sets()])
@pytest.mark.parametrize("name", ["GradCAM", "GradCAMPlusPlus", "LayerCAM"])
def test_every_target_type_equals_pytorch_grad_cam(kind, targets, name, model, images):
    assert_same(run(compat, name, model, [model.layer4], images, targets),
                run(pgc, name, model, [model.layer4], images, targets))


@pytest.mark.slow
def test_score_cam_with_a_softmax_target(model, images):
    small = images[:1, :, :64, :64]
    targets = [their_targets.ClassifierOutputSoftmaxTarget(3)]

    def batch(cam):
        cam.batch_size = 256

    assert_same(run(compat, "ScoreCAM", model, [model.layer3], small, targets, setup=batch),
                run(pgc, "ScoreCAM", model, [model.layer3], small, targets, setup=batch), 1e-4)


def test_binary_and_raw_score_targets():
    torch.manual_seed(2)
    binary = torchvision.models.resnet18(num_classes=1).eval()
    x = torch.randn(2, 3, 96, 96)
    for targets in ([their_targets.BinaryClassifierOutputTarget(1), compat.BinaryClassifierOutputTarget(0)],
                    [compat.RawScoresOutputTarget()] * 2):
        assert_same(run(compat, "GradCAM", binary, [binary.layer4], x, targets),
                    run(pgc, "GradCAM", binary, [binary.layer4], x, targets))
    many = torchvision.models.resnet18(num_classes=5).eval()
    with pytest.raises(TypeError, match="one number per image"):
        run(compat, "GradCAM", many, [many.layer4], x, [compat.RawScoresOutputTarget()] * 2)
    # A method that ignores the target accepts it (as pytorch-grad-cam)
    assert_same(run(compat, "EigenCAM", many, [many.layer4], x, [compat.RawScoresOutputTarget()] * 2),
                run(pgc, "EigenCAM", many, [many.layer4], x, [their_targets.RawScoresOutputTarget()] * 2))


def test_the_attributes_users_touch(model, images):
    targets = [compat.ClassifierOutputTarget(c) for c in (3, 11)]
    ref = pgc.GradCAM(model, [model.layer3, model.layer4])
    theirs = ref(images, targets)
    reference = ref.activations_and_grads
    their_tensors = list(reference.activations) + list(reference.gradients)
    ref.activations_and_grads.release()  # before ours runs: its hooks would record our passes too
    with compat.GradCAM(model=model, target_layers=[model.layer3, model.layer4]) as cam:
        assert cam.device == ref.device == torch.device("cpu")
        ours = cam(images, targets)
        torch.testing.assert_close(cam.outputs, model(images), rtol=1e-5, atol=1e-5)
        stored = cam.activations_and_grads
        assert len(stored.activations) == len(stored.gradients) == 2
        for mine, other in zip(stored.activations + stored.gradients, their_tensors, strict=True):
            assert mine.device.type == "cpu" and not mine.requires_grad
            torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-6)
        cam.batch_size = 4  # pytorch-grad-cam's tests set it on every class
        assert cam(images, targets).shape == (2, 96, 96)
    assert cam.activations_and_grads.activations == [] and cam.activations_and_grads.handles == []
    assert_same(ours, theirs)
    score = compat.ScoreCAM(model, [model.layer4])
    assert not hasattr(score, "batch_size") or score.batch_size == 16
    ablation = compat.AblationCAM(model, [model.layer4], batch_size=8)
    assert ablation.batch_size == 8 and ablation.ratio_channels_to_ablate == 1.0
    del score, ablation  # __del__ releases without error


def test_ablation_cam_ratio_of_channels(model):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = [compat.ClassifierOutputTarget(4)]

    def setup(cam):
        cam.batch_size = 256
        cam.ratio_channels_to_ablate = 0.25

    ours = run(compat, "AblationCAM", model, [model.layer4], x, targets, setup=setup)
    assert_same(ours, run(pgc, "AblationCAM", model, [model.layer4], x, targets, setup=setup), 1e-4)
    full = run(compat, "AblationCAM", model, [model.layer4], x, targets)
    assert np.abs(ours - full).max() > 0.01  # fewer channels: another map


class Volume(nn.Module):
    """A small 3-D CNN classifier: (B, 1, D, H, W) -> (B, 4)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
                                      nn.Conv3d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("name", ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM", "EigenCAM"])
def test_3d_inputs(name):
    torch.manual_seed(4)
    net = Volume().eval()
    x = torch.randn(2, 1, 8, 12, 10)
    targets = [compat.ClassifierOutputTarget(c) for c in (1, 2)]
    ours = run(compat, name, net, [net.features[3]], x, targets)
    assert ours.shape == (2, 8, 12, 10)
    assert_same(ours, run(pgc, name, net, [net.features[3]], x, targets))
    with pytest.raises(NotImplementedError, match="3-D"):
        run(compat, "ScoreCAM", net, [net.features[3]], x, targets)


def test_densenet_norm5_reads_the_output_before_the_in_place_relu():
    """The documented difference: torchvision's DenseNet applies an in-place ReLU to norm5's output;
    pytorch-grad-cam's hook keeps that tensor (so it reads the ReLU'd values), compat the real output."""
    torch.manual_seed(5)
    net = torchvision.models.densenet121(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    cam = compat.EigenCAM(net, [net.features[-1]])
    cam(x)
    ours = cam.activations_and_grads.activations[0]
    kept = []
    handle = net.features.norm5.register_forward_hook(lambda m, i, o: kept.append(o.detach().clone()))
    with torch.no_grad():
        net(x)
    handle.remove()
    torch.testing.assert_close(ours, kept[0])  # the layer's output, negative values included
    assert (ours < 0).any()
    ref = pgc.EigenCAM(net, [net.features[-1]])
    ref(x, None)
    assert (ref.activations_and_grads.activations[0] >= 0).all()  # after the in-place ReLU
    ref.activations_and_grads.release()


def test_refusals_say_what_to_do(model, images):
    with pytest.raises(NotImplementedError, match="FullGrad"):
        compat.FullGrad(model, [model.layer4])
    with pytest.raises(NotImplementedError, match="ShapleyCAM"):
        compat.ShapleyCAM(model, [model.layer4])
    with pytest.raises(NotImplementedError, match="ablation_layer"):
        compat.AblationCAM(model, [model.layer4], ablation_layer=pgc.AblationLayerVit())
    with pytest.raises(TypeError, match="ClassifierOutputTarget"):
        run(compat, "GradCAM", model, [model.layer4], images, [3, 4])
    with pytest.raises(ValueError, match="one per image"):
        run(compat, "GradCAM", model, [model.layer4], images, [compat.ClassifierOutputTarget(1)])
    with pytest.raises(ValueError, match="target_layers is empty"):
        compat.GradCAM(model, [])
