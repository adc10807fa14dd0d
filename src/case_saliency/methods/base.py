"""The method API: ``method(images, targets) -> (B, H, W)`` and ``method.explain(...) -> SaliencyMaps``.

``SaliencyMethod`` is the interface every method implements; ``CAMMethod`` is the base of the
gradient CAMs, which are small rules from activations ``A`` (B, C, h, w) and gradients
``G`` (B, M, C, h, w) to maps, on top of the one-pass engine.
"""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..core.capture import ActivationCapture, ModelInput, unwrap_model
from ..core.contrast import contrast_classes
from ..core.layers import LayerSpec, Reshape
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


def get_method(name: str, model: ModelInput, **options: Any) -> SaliencyMethod:
    """Build a registered method by name, e.g. ``get_method("case", model, target_layer="layer4")``.

    ``model`` is an ``nn.Module`` or a ``LoadedModel``; ``options`` are the constructor's keywords
    (``target_layer``, ``reshape`` and the method's own), the same for every method.
    """
    return method_class(name)(model, **options)


def method_class(name: str) -> type[SaliencyMethod]:
    """The class registered as ``name`` (case-insensitive); a ValueError lists the names."""
    key = name.strip().lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[key]


class _KeywordOptions(ABCMeta):
    """Enforces the constructor contract ``Method(model, *, target_layer=None, reshape=None, **options)``.

    A second positional argument is still read as the method's first former positional parameter
    (``target_layer`` for layer methods), with a DeprecationWarning; more positional arguments are
    refused, because the former orders differed between methods (``CASE(model, "layer4", vit_reshape)``
    bound the reshape to ``contrast``).
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) > 2:
            raise TypeError(f"{cls.__name__} takes the model as its only positional argument; pass target_layer=, "
                            f"reshape= and the method's options (e.g. contrast=) by keyword")
        if len(args) == 2:
            legacy = getattr(cls, "legacy_positional", "target_layer")
            if legacy in kwargs:
                raise TypeError(f"{cls.__name__} got {legacy} twice (positionally and by keyword)")
            warnings.warn(f"{cls.__name__}(model, {args[1]!r}): pass {legacy}={args[1]!r} by keyword; positional "
                          "options are deprecated and will be refused in the next release", DeprecationWarning,
                          stacklevel=2)
            kwargs[legacy] = args[1]
            args = args[:1]
        return super().__call__(*args, **kwargs)


class SaliencyMethod(metaclass=_KeywordOptions):
    """A saliency method bound to a model. Subclasses implement ``explain``.

    Every method is built the same way: ``Method(model, *, target_layer=None, reshape=None, **options)``.
    ``model``: an ``nn.Module`` mapping (B, C, H, W) images to (B, K) logits, or a ``LoadedModel``
    (``case_saliency.load_model``), whose network, default layer and token reshape are then used.
    ``target_layer``: a submodule or its dotted name; None picks the default. ``reshape``: maps the
    layer output to (B, C, h, w) (``vit_reshape`` for tokens). Methods that work on the input, not at a
    layer (``uses_layer = False``: the Captum gradient methods, the random control), accept and
    ignore both. ``options`` are the method's own keywords (listed in its docstring).
    """

    name = "method"
    uses_layer = True  # False: the method works without a target layer (target_layer is ignored)
    legacy_positional = "target_layer"  # the parameter a deprecated second positional argument fills

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None,
                 reshape: Reshape | None = None, **options: Any):
        if options:
            raise TypeError(f"{type(self).__name__} has no option{'s' if len(options) > 1 else ''} "
                            f"{', '.join(sorted(options))}")
        network, target_layer, reshape = unwrap_model(model, target_layer, reshape)
        self.model: nn.Module = network
        self.engine = ActivationCapture(network, target_layer, reshape)

    @property
    def layer_name(self) -> str | None:
        """The dotted name of the target layer (None before a default layer is chosen, and for
        methods that use no layer)."""
        return self.engine.layer_name if self.uses_layer else None

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
    contrastive methods also set ``contrast`` and use the contrast gradients passed to them, or
    explain a function of several logits by returning its gradient with respect to the logits from
    ``logit_weights`` (then ``G`` holds the gradients of that function and no contrast gradients
    are passed).
    """

    contrast = None  # a ContrastStrategy for contrastive methods

    def logit_weights(self, logits: Tensor, targets: Tensor, contrast: Tensor | None) -> Tensor | None:
        """For a method that explains a function f of the logits: d f / d logits, (B, M, K), from the
        logits (B, K), the targets (B, M) and their contrast classes (B, M, k) or None. The engine
        then takes the gradients of sum_j weights[j] * logits[j] in its one backward. None (the
        default): the gradients of the target (and contrast) logits themselves."""
        return None

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
            others = None
            if self.contrast is not None and self.contrast.k > 0:
                others = contrast_classes(self.contrast, logits, chosen)  # (B, M, k)
                asked["contrast"] = others
            weights = self.logit_weights(logits, chosen, others)
            if weights is not None:
                asked["weighted"] = weights
                return weights
            return chosen if others is None else torch.cat([chosen, others.flatten(1)], dim=1)

        cap = self.engine(images, classes)
        chosen = asked["targets"]
        m = 1 if chosen.ndim == 1 else chosen.shape[1]
        grads = cap.gradients[:, :m]
        contrast_grads = None
        if "contrast" in asked and "weighted" not in asked:
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
