"""The method API: ``method(images, targets) -> (B, H, W)`` and ``method.explain(...) -> SaliencyMaps``.

``SaliencyMethod`` is the interface every method implements; ``CAMMethod`` is the base of the
gradient CAMs, which are small rules from activations ``A`` (B, C, h, w) and gradients
``G`` (B, M, C, h, w) to maps, on top of the one-pass engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..core.capture import ActivationCapture
from ..core.layers import Reshape
from ..core.maps import SaliencyMaps, finish_maps
from ..core.targets import TargetSpec, resolve_targets

METHODS: dict[str, type[SaliencyMethod]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a method available by ``name`` (CLI, runs, ``get_method``)."""

    def wrap(cls: type) -> type:
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def get_method(name: str, model: nn.Module, **kwargs) -> SaliencyMethod:
    """Build a registered method by name, e.g. ``get_method("case", model, target_layer="layer4")``."""
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[key](model, **kwargs)


class SaliencyMethod(ABC):
    """A saliency method bound to a model. Subclasses implement ``explain``."""

    name = "method"

    @abstractmethod
    def explain(self, images: Tensor, targets: TargetSpec = "top1", *, relu: bool = True,
                upsample: bool = True, normalize: bool = False) -> SaliencyMaps:
        """Maps for ``images`` (B, C, H, W) and ``targets`` (see ``resolve_targets``).

        relu: clamp negative evidence to 0 (default). upsample: bilinear to (H, W) (default);
        False keeps the layer resolution. normalize: per-map min-max to [0, 1].
        Returns ``SaliencyMaps`` with maps (B, H, W), or (B, M, H, W) for (B, M) targets.
        """

    def __call__(self, images: Tensor, targets: TargetSpec = "top1", **options) -> Tensor:
        """The maps alone: (B, H, W) or (B, M, H, W); ``explain`` also gives flags and classes."""
        return self.explain(images, targets, **options).maps

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CAMMethod(SaliencyMethod):
    """Base of the gradient CAMs. Cost: one forward pass and one batched backward from the logits
    to the target layer per batch, for all the classes a call needs.

    Subclasses define ``channel_weights(A, G) -> (B, M, C)`` or override ``cam(A, G) -> (B, M, h, w)``;
    contrastive methods also set ``contrast`` and use the contrast gradients passed to them.
    """

    contrast = None  # a ContrastStrategy for contrastive methods

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None,
                 reshape: Reshape | None = None):
        self.model = model
        self.engine = ActivationCapture(model, target_layer, reshape)

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define channel_weights or cam")

    def cam(self, activations: Tensor, gradients: Tensor, contrast_gradients: Tensor | None) -> Tensor:
        """A (B, C, h, w), G (B, M, C, h, w), contrast G (B, M, k, C, h, w) or None -> (B, M, h, w)."""
        weights = self.channel_weights(activations, gradients)
        return torch.einsum("bmc,bchw->bmhw", weights, activations)

    def explain(self, images: Tensor, targets: TargetSpec = "top1", *, relu: bool = True,
                upsample: bool = True, normalize: bool = False) -> SaliencyMaps:
        asked: dict[str, Tensor] = {}

        def classes(logits: Tensor) -> Tensor:
            chosen = resolve_targets(targets, logits)
            asked["targets"] = chosen
            chosen = chosen if chosen.ndim == 2 else chosen[:, None]
            if self.contrast is None or self.contrast.k == 0:
                return chosen
            others = self.contrast(logits, chosen)  # (B, M, k)
            asked["contrast"] = others
            return torch.cat([chosen, others.flatten(1)], dim=1)

        cap = self.engine(images, classes)
        chosen = asked["targets"]
        m = 1 if chosen.ndim == 1 else chosen.shape[1]
        grads = cap.gradients[:, :m]
        contrast_grads = None
        if "contrast" in asked:
            contrast_grads = cap.gradients[:, m:].unflatten(1, (m, -1))  # (B, M, k, C, h, w)
        raw = self.cam(cap.activations, grads, contrast_grads)  # (B, M, h, w)
        if chosen.ndim == 1:
            raw = raw[:, 0]
        maps, degenerate = finish_maps(raw, tuple(images.shape[-2:]), relu=relu, upsample=upsample,
                                       normalize=normalize)
        contrast = asked.get("contrast")
        if contrast is not None and chosen.ndim == 1:
            contrast = contrast[:, 0]
        return SaliencyMaps(maps=maps, targets=chosen, degenerate=degenerate, logits=cap.logits,
                            contrast=contrast, raw=raw, method=self.name, layer=self.engine.layer_name)

    def __repr__(self) -> str:
        extra = f", contrast={self.contrast!r}" if self.contrast is not None else ""
        return f"{type(self).__name__}(layer={self.engine.layer_name!r}{extra})"


def spatial_mean(tensor: Tensor) -> Tensor:
    """Mean over the last two (spatial) dims: (..., h, w) -> (...)."""
    return tensor.mean(dim=(-2, -1))
