"""Score-CAM and Ablation-CAM against pytorch-grad-cam (an independent implementation), the
Ablation-CAM tail split against full forward passes, and the EigenCAM / random controls.

Tolerance 1e-4 on min-max normalised maps (values in [0, 1]), as in the Grad-CAM parity tests:
both sides run the same model on the same perturbed inputs (or activations), so the only
differences are float32 summation orders (other batch compositions; our tail graph against
their full network), about 1e-6 of the logits' scale; the weighting rules (softmax of logits,
relative drop) do not amplify that beyond 1e-5 on these inputs.

Cost is kept down by choosing layers with few channels (Score-CAM needs one forward per channel
in both implementations), which leaves the definitions compared unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from conftest import photo_batch
from pytorch_grad_cam import AblationCAM as RefAblationCAM
from pytorch_grad_cam import ScoreCAM as RefScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from case_saliency import AblationCAM, EigenCAM, RandomMap, ScoreCAM, get_method
from case_saliency.core.layers import resolve_layer
from case_saliency.core.split import split_at_layer, verify_split

TOL = 1e-4


def reference_maps(ref_cls, model, layer_name, images, classes, **kwargs) -> torch.Tensor:
    layer, _ = resolve_layer(model, layer_name)
    ref = ref_cls(model, [layer], **kwargs)
    try:
        return torch.from_numpy(ref(images, [ClassifierOutputTarget(int(c)) for c in classes]))
    finally:
        ref.activations_and_grads.release()


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def small_photos() -> torch.Tensor:
    return photo_batch(("chelsea", "coffee"), size=96, resize=110)


@pytest.fixture(scope="module")
def lite0_photo() -> torch.Tensor:
    # One real photo at 128 px: Lite0 still sees a cat (Egyptian cat, tiger cat) at a third of the cost.
    return photo_batch(("chelsea",), size=128, resize=146)


@pytest.mark.slow
def test_scorecam_parity_resnet18_seeded(resnet18, small_photos):
    # layer2: 128 channels, so 128 masked forwards on each side.
    image = small_photos[:1]
    ours = ScoreCAM(resnet18, target_layer="layer2", batch_size=48).explain(image, "top1", normalize=True)
    ref = reference_maps(RefScoreCAM, resnet18, "layer2", image, ours.targets)
    assert ours.maps.shape == ref.shape == (1, 96, 96)
    assert (ours.maps - ref).abs().max().item() < TOL


@pytest.mark.slow
def test_ablationcam_parity_resnet18_seeded(resnet18, small_photos):
    image = small_photos[:1]
    ours = AblationCAM(resnet18, target_layer="layer3", batch_size=100).explain(image, "top1", normalize=True)
    assert ours.info["path"] == "tail"
    ref = reference_maps(RefAblationCAM, resnet18, "layer3", image, ours.targets)
    assert (ours.maps - ref).abs().max().item() < TOL


@pytest.mark.slow
def test_scorecam_parity_lite0_real_photo_top1_top2_in_one_pass(lite0, lite0_photo):
    images = lite0_photo
    calls = []
    handle = lite0.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))
    try:
        method = ScoreCAM(lite0, target_layer="blocks.0.0.bn1", batch_size=24)  # 32 channels, ReLU6 outputs
        ours = method.explain(images, "topk:2", normalize=True)
    finally:
        handle.remove()
    acts = method.engine(images).activations
    zero = acts.flatten(2).eq(0).all(-1)
    expected_calls = 1 + math.ceil(int((~zero).sum()) / 24) + int(zero.any())
    assert len(calls) == expected_calls  # both classes scored by the same masked forwards
    assert ours.maps.shape == (1, 2, 128, 128)
    for rank in (0, 1):
        ref = reference_maps(RefScoreCAM, lite0, "blocks.0.0.bn1", images, ours.targets[:, rank])
        assert (ours.maps[:, rank] - ref).abs().max().item() < TOL, rank


@pytest.mark.slow
def test_ablationcam_parity_lite0_real_photo_top1_top2(lite0, lite0_photo):
    images = lite0_photo
    ours = AblationCAM(lite0, target_layer="blocks.0.0.bn1").explain(images, "topk:2", normalize=True)
    assert ours.info["path"] == "tail"
    for rank in (0, 1):
        ref = reference_maps(RefAblationCAM, lite0, "blocks.0.0.bn1", images, ours.targets[:, rank])
        assert (ours.maps[:, rank] - ref).abs().max().item() < TOL, rank


def test_ablationcam_tail_path_equals_full_forward_path(resnet18):
    # Inside a residual block: the tail also needs the block's identity, saved by the head.
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    tail = AblationCAM(resnet18, target_layer="layer3[1].conv1", batch_size=64).explain(image, "topk:2")
    full = AblationCAM(resnet18, target_layer="layer3[1].conv1", batch_size=64, split=False).explain(image, "topk:2")
    assert (tail.info["path"], full.info["path"]) == ("tail", "full")
    assert torch.equal(tail.targets, full.targets)
    w_tail, w_full = tail.info["channel_weights"], full.info["channel_weights"]
    assert (w_tail - w_full).abs().max().item() < 1e-4 * w_full.abs().max().item()
    assert (tail.raw - full.raw).abs().max().item() < 1e-4 * full.raw.abs().max().item()


def ablated_logits_by_hook(model, layer_name, image, channel) -> torch.Tensor:
    """Independent reference: a full forward with one channel of the layer output set to zero."""
    layer, _ = resolve_layer(model, layer_name)

    def zero_channel(module, inputs, output):
        output = output.clone()
        output[:, channel] = 0
        return output

    handle = layer.register_forward_hook(zero_channel)
    try:
        with torch.no_grad():
            return model(image)
    finally:
        handle.remove()


def small_densenet() -> torch.nn.Module:
    # torchvision's DenseNet class (the code of densenet121/201), with fewer and thinner layers.
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 3), num_init_features=16)


def small_vgg() -> torch.nn.Module:
    # torchvision's VGG class with batch norm (as VGG19-BN), a short feature stack.
    cfg = [16, "M", 32, "M", 64, 64, "M", 128, "M", 128, "M"]
    features = torchvision.models.vgg.make_layers(cfg, batch_norm=True)
    model = torchvision.models.VGG(features, num_classes=100, init_weights=False)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(128 * 7 * 7, 64), torch.nn.ReLU(True),
                                           torch.nn.Linear(64, 100))
    return model


BUILDERS = {"resnet50": torchvision.models.resnet50, "convnext_tiny": torchvision.models.convnext_tiny,
            "densenet": small_densenet, "vgg_bn": small_vgg}
SPLITS = [
    ("resnet50", "layer4[2].conv3"),  # the paper's ResNet-50 layer, before the block's BN and add
    ("vgg_bn", "features[-2]"),
    ("densenet", "features.denseblock4.denselayer3.conv2"),  # needs all earlier features of the block
    ("densenet", "features.norm5"),
    ("convnext_tiny", "features[7][2].block[0]"),  # depthwise conv inside a residual block
    ("lite0", "bn2"),
]


@pytest.mark.parametrize("name,layer", SPLITS, ids=[f"{s[0]}-{s[1]}" for s in SPLITS])
def test_split_at_layer_reproduces_the_model(name, layer, lite0, lite0_photo):
    if name == "lite0":
        model, image = lite0, lite0_photo
    else:
        torch.manual_seed(0)
        model = BUILDERS[name]().eval()
        image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    module, _ = resolve_layer(model, layer)
    split = split_at_layer(model, module)
    assert split is not None
    assert verify_split(split, model, image)
    result = AblationCAM(model, target_layer=layer, batch_size=512).explain(image, "top1")
    assert result.info["path"] == "tail"
    with torch.no_grad():
        original = model(image)[0, result.targets[0]]
    weights = result.info["channel_weights"][0]
    for channel in (0, weights.shape[0] // 2, weights.shape[0] - 1):
        ablated = ablated_logits_by_hook(model, layer, image, channel)[0, result.targets[0]]
        expected = (original - ablated) / original
        assert abs(weights[channel].item() - expected.item()) <= 1e-4 * max(1.0, weights.abs().max().item())
    assert hook_count(model) == 0


def test_untraceable_model_falls_back_to_full_forwards():
    class DataDependent(torch.nn.Module):  # Python control flow on tensor values: fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.fc = torch.nn.Linear(6, 4)

        def forward(self, x):
            a = torch.relu(self.conv(x))
            if a.sum() > 0:
                a = a * 2
            return self.fc(a.mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = DataDependent().eval()
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = AblationCAM(model, target_layer="conv").explain(images, "topk:2")
    assert result.info["path"] == "full"
    # Against the definition, computed by hand for image 0, top class.
    cls = int(result.targets[0, 0])
    with torch.no_grad():
        original = model(images[:1])[0, cls]
    for channel in range(6):
        ablated = ablated_logits_by_hook(model, "conv", images[:1], channel)[0, cls]
        expected = ((original - ablated) / original).item()
        assert abs(result.info["channel_weights"][0, 0, channel].item() - expected) < 1e-5 * max(1, abs(expected))


@pytest.mark.parametrize("cls", [ScoreCAM, AblationCAM], ids=["scorecam", "ablationcam"])
def test_model_state_restored(cls, resnet18):
    # The fixture is shared: pytorch-grad-cam's parity runs leave .grad behind, so start clean.
    resnet18.zero_grad(set_to_none=True)
    resnet18.train()
    resnet18.fc.eval()
    flags = [m.training for m in resnet18.modules()]
    try:
        image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        cls(resnet18, target_layer="layer4", batch_size=256)(image, "top1")
        assert [m.training for m in resnet18.modules()] == flags
        assert hook_count(resnet18) == 0
        assert all(p.grad is None for p in resnet18.parameters())
        assert torch.is_grad_enabled()
    finally:
        resnet18.eval()


def test_registered_by_name(resnet18):
    for name, cls in [("scorecam", ScoreCAM), ("ablationcam", AblationCAM), ("eigencam", EigenCAM),
                      ("random", RandomMap)]:
        assert isinstance(get_method(name, resnet18), cls)


def test_eigencam_is_the_first_principal_component_and_class_agnostic(resnet18, random_images):
    method = EigenCAM(resnet18, target_layer="layer4")
    result = method.explain(random_images, "topk:2", relu=False, upsample=False)
    activations = method.engine(random_images).activations
    ref = torch.from_numpy(get_2d_projection(activations.numpy()))
    for b in range(2):  # the SVD fixes the component up to its sign
        ours = result.raw[b, 0]
        error = min((ours - ref[b]).abs().max().item(), (ours + ref[b]).abs().max().item())
        assert error < 1e-4 * ref[b].abs().max().item()
    maps = method.explain(random_images, "topk:2").maps
    assert torch.equal(maps[:, 0], maps[:, 1])  # top-1 and top-2 maps are the same map
    top1, top2 = method(random_images, "top1"), method(random_images, "top2")
    assert torch.equal(top1, top2)


def test_random_maps_are_seeded_reproducible_and_independent(resnet18):
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    first = RandomMap(resnet18, seed=5)(image, "topk:2")
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not used
    again = RandomMap(resnet18, seed=5)(image, "topk:2")
    other = RandomMap(resnet18, seed=6)(image, "topk:2")
    assert first.shape == (2, 2, 32, 32)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first[:, 0], first[:, 1])  # each class gets its own draw
    assert first.min() >= 0 and first.max() < 1
    coarse = RandomMap(resnet18, seed=5, grid=4).explain(image, "top1")
    assert coarse.raw.shape == (2, 4, 4) and coarse.maps.shape == (2, 32, 32)  # raw: the noise grid
