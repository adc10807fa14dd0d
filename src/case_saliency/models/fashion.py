"""Small Fashion-MNIST classifiers in three architecture families (ResNet-, DenseNet- and VGG-like),
sized to train to about 90% test accuracy in a few CPU minutes. Input (B, 1, 28, 28) normalised
with ``MEAN``/``STD``; output (B, 10) logits. Each family's default target layer is its last
spatial (7x7) block, as the paper's ImageNet layers are for ResNet, DenseNet and VGG.

Also the pretrained setting of the paper's seed ablation: EfficientNet-Lite0/1/2 (timm
``tf_efficientnet_liteN``) started from their offline ImageNet weights with a new 10-class head
(``PRETRAINED``): input the grayscale image resized to ``input_size`` and replicated to RGB,
normalised with mean = std = 0.5 as in ImageNet training; target layer ``bn2`` (1280 channels)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

MEAN, STD = (0.2860,), (0.3530,)  # Fashion-MNIST training-set pixel statistics
INPUT_SIZE = 28


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class FashionResNet(nn.Module):
    """ResNet-like: stem, three residual stages at 28, 14 and 7 pixels; target layer ``layer3``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.stem = _conv_bn(in_channels, width)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 producing ``growth`` channels, concatenated to its input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(self.relu(self.norm(x)))], dim=1)


def _dense_block(cin: int, growth: int, layers: int) -> tuple[nn.Sequential, int]:
    block = nn.Sequential(*[DenseLayer(cin + i * growth, growth) for i in range(layers)])
    return block, cin + layers * growth


class FashionDenseNet(nn.Module):
    """DenseNet-like: stem at 28 pixels, dense blocks at 14 and 7 pixels joined by a transition,
    a final BN-ReLU (``features.norm_final``, the analogue of DenseNet-201's ``norm5``), the target layer."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, growth: int = 16, layers: int = 4):
        super().__init__()
        stem = 32
        block1, c1 = _dense_block(stem, growth, layers)
        transition_out = c1 // 2
        block2, c2 = _dense_block(transition_out, growth, layers)
        self.features = nn.Sequential()
        self.features.add_module("stem", _conv_bn(in_channels, stem))
        self.features.add_module("pool0", nn.MaxPool2d(2))
        self.features.add_module("denseblock1", block1)
        self.features.add_module("transition1", nn.Sequential(
            nn.BatchNorm2d(c1), nn.ReLU(inplace=True), nn.Conv2d(c1, transition_out, 1, bias=False), nn.AvgPool2d(2)))
        self.features.add_module("denseblock2", block2)
        self.features.add_module("norm_final", nn.Sequential(nn.BatchNorm2d(c2), nn.ReLU(inplace=True)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class FashionVGG(nn.Module):
    """VGG-like: conv-BN-ReLU pairs with max pooling (28 -> 14 -> 7), a last conv at 7 pixels,
    global average pooling and a linear classifier; target layer ``features.conv5`` (its ReLU output)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 24):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv1", _conv_bn(in_channels, width))
        self.features.add_module("conv2", _conv_bn(width, width))
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("conv3", _conv_bn(width, 2 * width))
        self.features.add_module("conv4", _conv_bn(2 * width, 2 * width))
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.features.add_module("conv5", _conv_bn(2 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# name -> (constructor, default target layer)
FAMILIES: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "resnet": (FashionResNet, "layer3"),
    "densenet": (FashionDenseNet, "features.norm_final"),
    "vgg": (FashionVGG, "features.conv5"),
}


@dataclass(frozen=True)
class PretrainedSpec:
    """A network fine-tuned on Fashion-MNIST from ImageNet weights, and the defaults that keep one
    seed under 10 CPU minutes on 2 cores: ``input_size`` pixels (the 28x28 image upsampled),
    ``frozen_stages`` (stem and the first stages kept at their ImageNet weights), ``train_limit``
    training images (a seeded subset), ``epochs``, ``batch_size``, ``max_lr``."""

    variant: int
    input_size: int = 112
    frozen_stages: int = 5
    train_limit: int | None = 6000
    epochs: int = 3
    batch_size: int = 64
    max_lr: float = 1e-3
    target_layer: str = "bn2"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    in_channels: int = 3


PRETRAINED: dict[str, PretrainedSpec] = {f"efficientnet_lite{v}": PretrainedSpec(v) for v in (0, 1, 2)}
ARCHITECTURES = tuple(FAMILIES) + tuple(PRETRAINED)


def target_layer(architecture: str) -> str:
    """The default target layer of a family member or pretrained architecture."""
    return PRETRAINED[architecture].target_layer if architecture in PRETRAINED else FAMILIES[architecture][1]


def build(architecture: str, num_classes: int = 10, in_channels: int = 1, pretrained: bool = False) -> nn.Module:
    """A family member by name ("resnet", "densenet", "vgg"), freshly initialised from the global RNG,
    or an ``efficientnet_liteN`` with a fresh ``num_classes`` head (``pretrained``: the rest from the
    offline ImageNet weights; else random). EfficientNet-Lite takes 3 input channels."""
    if architecture in PRETRAINED:
        if in_channels != 3:
            raise ValueError(f"{architecture} takes RGB input (in_channels=3), got in_channels={in_channels}")
        import timm

        variant = PRETRAINED[architecture].variant
        if not pretrained:
            return timm.create_model(f"tf_efficientnet_lite{variant}", num_classes=num_classes)
        from .efficientnet_lite import efficientnet_lite

        model: Any = efficientnet_lite(variant)  # timm EfficientNet: attributes untyped for mypy
        model.reset_classifier(num_classes)
        return model.train()
    if architecture not in FAMILIES:
        raise ValueError(f"unknown Fashion-MNIST architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
    if pretrained:
        raise ValueError(f"{architecture!r} has no pretrained weights; pretrained starts exist for "
                         f"{sorted(PRETRAINED)}")
    return FAMILIES[architecture][0](num_classes=num_classes, in_channels=in_channels)


def frozen_part(model: Any, stages: int) -> nn.Sequential:
    """The stem and the first ``stages`` stages of an EfficientNet-Lite (the part kept frozen when
    fine-tuning), as one module: (B, 3, H, W) -> the input of stage ``stages``."""
    return nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:stages])


def forward_from(model: Any, stages: int, features: Tensor) -> Tensor:
    """Logits (B, K) from the output of :func:`frozen_part`: the remaining stages and the head, as
    the model's own forward runs them (dropout and drop-path included in training mode)."""
    for stage in model.blocks[stages:]:
        features = stage(features)
    logits: Tensor = model.forward_head(model.bn2(model.conv_head(features)))
    return logits
