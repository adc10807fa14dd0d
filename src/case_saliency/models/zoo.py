"""torchvision and timm architectures by name, with ImageNet weights from a local file or, where the
network allows, from the hub; their preprocessing, class names and default target layers."""

from __future__ import annotations

import contextlib
import io
import os
import re
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..core.errors import CaseSaliencyError
from ..core.capture import default_layer
from .preprocess import Preprocess

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The layers of the paper's public code (see docs and shared notes); ``paper_layer`` on LoadedModel.
PAPER_LAYERS = {
    "resnet50": "layer4[2].conv3",
    "vgg19_bn": "features[49]",
    "densenet201": "features.denseblock4.denselayer32.conv2",
    "convnext_large": "features[7][2].block[0]",
}
# Default target layers by torchvision family (name prefix): the last spatial feature block, as
# pytorch-grad-cam's examples use. Names not matched here get ``core.capture.default_layer``.
FAMILY_LAYERS = (
    (r"^(resnet|resnext|wide_resnet)", "layer4"),
    (r"^densenet", "features.norm5"),
    (r"^vgg", "features[-1]"),
    (r"^(convnext|mobilenet|efficientnet|mnasnet|shufflenet|squeezenet|alexnet)", "features[-1]"),
    (r"^regnet", "trunk_output"),
)


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names, in index order (shipped with torchvision; offline), read from
    torchvision's ``models/_meta.py`` without importing torchvision (which takes seconds)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        meta = Path(folder) / "models" / "_meta.py"
        if meta.is_file():
            for node in ast.parse(meta.read_text()).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_IMAGENET_CATEGORIES"
                                                        for t in node.targets):
                    names = ast.literal_eval(node.value)
                    if isinstance(names, list) and len(names) == 1000:
                        return [str(name) for name in names]
    import torchvision

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def is_torchvision(name: str) -> bool:
    return name in torchvision_names()


def is_timm(name: str) -> bool:
    import timm

    return name in timm.list_models() or name.split(".")[0] in timm.list_models()


class WeightsUnavailable(CaseSaliencyError, RuntimeError):
    """The hub weights could not be fetched (no network) and are not cached."""


def _hub_error(name: str, error: BaseException) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"cannot download the pretrained weights of {name!r}: the network is unavailable ({error}). "
        f"Pass a local state-dict file: --weights FILE, or load_model({name!r}, weights='PATH.pth') (save one "
        f"where you have network with torch.save(model.state_dict(), 'PATH.pth')); or use an offline model "
        f"(efficientnet_lite0/1/2); or --weights random for an untrained network.")


def torchvision_preprocess(name: str, weights_name: str | None = None) -> tuple[Preprocess, WeightsEnum | None]:
    """Preprocessing from the torchvision weights' own transforms (the paper's IMAGENET1K_V1 where
    there is one), and the weights enum entry."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD), None
    entry = None
    if weights_name and weights_name.upper() not in ("HUB", "IMAGENET"):
        entry = enum[weights_name.upper()] if weights_name.upper() != "DEFAULT" else enum.DEFAULT
    else:
        entry = getattr(enum, "IMAGENET1K_V1", None) or enum.DEFAULT
    transform = entry.transforms()
    resize = transform.resize_size[0] if isinstance(transform.resize_size, (list, tuple)) else transform.resize_size
    crop = transform.crop_size[0] if isinstance(transform.crop_size, (list, tuple)) else transform.crop_size
    return Preprocess(int(resize), int(crop), tuple(transform.mean), tuple(transform.std)), entry


def build_torchvision(name: str, num_classes: int = 1000) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def hub_torchvision(name: str, weights_name: str) -> tuple[nn.Module, str, Path]:
    """A torchvision model with its hub weights (cached file, else a download); -> (model, url, file)."""
    import torchvision

    _, entry = torchvision_preprocess(name, weights_name)
    if entry is None:
        raise ValueError(f"torchvision has no pretrained weights for {name!r}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch prints its own "Downloading" line, even offline
            state = torch.hub.load_state_dict_from_url(entry.url, map_location="cpu", progress=False,
                                                       weights_only=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
        raise _hub_error(name, error) from error
    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(state, strict=True)
    return model, entry.url, cached


def timm_preprocess(model: nn.Module) -> Preprocess:
    import timm

    config = timm.data.resolve_data_config({}, model=model)
    crop = int(config["input_size"][-1])
    resize = int(round(crop / config.get("crop_pct", 0.875)))
    return Preprocess(resize, crop, tuple(config["mean"]), tuple(config["std"]))


def build_timm(name: str, num_classes: int | None = None, pretrained: bool = False) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if not timm.is_model_pretrained(name):  # not a network problem: timm has the architecture only
        raise ValueError(f"timm has no pretrained weights for {name!r}; pass --weights FILE (a state dict), "
                         "--weights random for an untrained network, or use an offline model (efficientnet_lite0/1/2)")
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as error:  # huggingface_hub raises many kinds when offline
        raise _hub_error(name, error) from error


def default_target_layer(name: str, model: nn.Module, input_size: int, channels: int = 3):
    """(layer name, reshape or None) for ``model``: the family table, else the last spatial module
    found by one forward pass (vision transformers: the first norm of the last block + token reshape)."""
    for pattern, layer in FAMILY_LAYERS:
        if re.search(pattern, name):
            return layer, None
    sample = torch.zeros(1, channels, input_size, input_size)
    _, layer, reshape = default_layer(model, sample)
    return layer, reshape


def classifier_classes(state: dict) -> int | None:
    """Number of classes of a state dict: rows of its last 2-D weight (the classifier), if any."""
    matrices = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def unwrap_state_dict(data: dict | object, source: str | Path) -> dict:
    """The state dict inside a loaded file: itself, or under "state_dict"/"model"/"model_state_dict";
    the "module." prefix of DataParallel is removed."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} holds a {type(data).__name__}, not a state dict; save "
                         "torch.save(model.state_dict(), PATH) and pass that file")
    state: dict = data
    for key in ("state_dict", "model_state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} is not a state dict of tensors (keys like {list(state)[:3]})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
