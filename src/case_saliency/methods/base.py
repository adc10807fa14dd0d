"""The method API: ``method(images, targets) -> (B, H, W)`` and ``method.explain(...) -> SaliencyMaps``.

One template: ``SaliencyMethod.explain`` checks the input, resolves the targets (and contrast
classes) from the logits of the method's own forward pass, finishes the maps and builds
``SaliencyMaps``; a method supplies only ``raw_maps``. ``CAMMethod`` is the base of the methods at a
layer: a rule from activations ``A`` (B, C, h, w) and gradients ``G`` (B, M, C, h, w) to channel
weights (B, M, C) or to maps, or, for Score-CAM and Ablation-CAM, channel weights from masked
forward passes; the map is then ``sum_c w_c A_c``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..core.capture import ActivationCapture, Capture, ModelInput, autograd_available, prepare_images, unwrap_model
from ..core.contrast import ContrastStrategy, contrast_classes
from ..core.layers import LayerSpec, Reshape
from ..core.maps import SaliencyMaps, constant_maps, finish_maps
from ..core.outputs import OutputPicker, logits_model, underlying_network
from ..core.targets import TargetSpec, resolve_targets

METHODS: dict[str, type[SaliencyMethod]] = {}


MethodType = TypeVar("MethodType", bound="type[SaliencyMethod]")


def register(name: str) -> Callable[[MethodType], MethodType]:
    """Class decorator: make a method available by ``name`` (CLI, runs, ``get_method``)."""

    def wrap(cls: MethodType) -> MethodType:
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def get_method(name: str, model: ModelInput, **options: Any) -> SaliencyMethod:
    """Build a registered method by name, e.g. ``get_method("case", model, target_layer="layer4")``.

    ``model`` is an ``nn.Module`` or a ``LoadedModel``; ``options`` are the constructor's keywords
    (``target_layer``, ``reshape`` and the method's own), the same for every method. A variant name
    ``<method>:<base>`` (``case:gradcam++``, ``case:scorecam``) passes ``base=<base>``.
    """
    cls, preset = lookup_method(name)
    for key in preset.keys() & options.keys():
        raise TypeError(f"method {name!r} sets {key}={preset[key]!r}; do not pass {key}= as well")
    return cls(model, **preset, **options)


def lookup_method(name: str) -> tuple[type[SaliencyMethod], dict[str, Any]]:
    """``(class, constructor options the name sets)`` for a registered name or a variant name
    ``<method>:<base>`` (e.g. ``case:scorecam`` -> ``(CASE, {"base": "scorecam"})``)."""
    key = name.strip().lower()
    if key in METHODS:
        return METHODS[key], {}
    head, sep, variant = key.partition(":")
    if sep and head in METHODS and variant in METHODS[head].variants():
        return METHODS[head], {"base": variant}
    raise ValueError(f"unknown method {name!r}; available: {', '.join(method_names())}")


def method_class(name: str) -> type[SaliencyMethod]:
    """The class a registered (or variant) name builds; a ValueError lists the names."""
    return lookup_method(name)[0]


def method_names() -> list[str]:
    """Every name ``get_method`` accepts: the registered methods, then the variants
    (``case:gradcam++``, ...; ``case:gradcam`` is ``case`` and not listed)."""
    names = sorted(METHODS)
    for name in sorted(METHODS):
        cls = METHODS[name]
        names += [f"{name}:{variant}" for variant in cls.variants() if variant != cls.default_variant]
    return names


class _Constructor(type):
    """Builds every method as ``Method(model, *, target_layer=None, reshape=None, output=None, **options)``:
    ``output`` (a function picking the logits (B, K) from what the model's forward returns, see
    ``core.outputs``; tuples, mappings and ``.logits`` objects need none) wraps the model before the
    method's own constructor sees it. Options are keyword-only: a second positional argument is refused
    (formerly ``CASE(model, "layer4", vit_reshape)`` bound the reshape to ``contrast``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) > 1:
            raise TypeError(f"{cls.__name__} takes the model as its only positional argument; pass target_layer=, "
                            "reshape= and the method's options (e.g. contrast=) by keyword")
        output = kwargs.pop("output", None)
        if output is not None:
            if args:
                args = (with_output(args[0], output),)
            elif "model" in kwargs:
                kwargs["model"] = with_output(kwargs["model"], output)
        return super().__call__(*args, **kwargs)


def with_output(model: ModelInput, output: OutputPicker) -> ModelInput:
    """``model`` whose network returns what ``output`` picks from its forward's result (a
    ``LoadedModel`` is copied with its network wrapped)."""
    if isinstance(model, nn.Module):
        return logits_model(model, output)
    network, _, _ = unwrap_model(model)
    loaded = copy.copy(model)
    loaded.model = logits_model(underlying_network(network), output)
    return loaded


LogitWeights = Callable[[Tensor, Tensor, "Tensor | None"], "Tensor | None"]


@dataclass
class ClassRequest:
    """The classes one ``explain`` call needs, resolved from the logits of the method's own pass.

    Calling it with logits (B, K) resolves ``spec`` (see ``resolve_targets``) to ``targets`` (B,) or
    (B, M) and, with a contrast strategy, each target's ``contrast`` classes (B, M, k); it returns
    ``classes`` (B, M + M*k): the M targets of each image, then the k contrast classes of each target
    (so it can be handed to ``ActivationCapture`` as the class selector of the same pass).
    A method that explains a function of the logits (Finer-CAM) gives ``weigh``, which returns its
    gradient with respect to the logits; then the call returns those ``weights`` (B, M, K) instead,
    and the capture's gradients are those of the M functions (no contrast part).
    """

    spec: TargetSpec
    strategy: ContrastStrategy | None = None
    weigh: LogitWeights | None = None
    targets: Tensor | None = None
    contrast: Tensor | None = None
    classes: Tensor | None = None
    weights: Tensor | None = None

    def __call__(self, logits: Tensor) -> Tensor:
        targets = resolve_targets(self.spec, logits)
        rows = targets if targets.ndim == 2 else targets[:, None]
        classes = rows
        if self.strategy is not None and self.strategy.k > 0:
            self.contrast = contrast_classes(self.strategy, logits, rows)  # (B, M, k), checked
            classes = torch.cat([rows, self.contrast.flatten(1)], dim=1)
        self.targets, self.classes = targets, classes
        if self.weigh is not None:
            self.weights = self.weigh(logits, rows, self.contrast)
            if self.weights is not None:
                self.classes = rows
                return self.weights
        return classes

    @property
    def m(self) -> int:
        """Targets per image."""
        if self.targets is None:
            raise RuntimeError("the request is not resolved yet: call it with the logits first")
        return 1 if self.targets.ndim == 1 else int(self.targets.shape[1])

    def split(self, per_class: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, M + M*k, ...) in the order of ``classes`` -> the targets' part (B, M, ...) and the
        contrast part (B, M, k, ...), or None without a contrast (or with logit weights)."""
        m = self.m
        if self.contrast is None or self.weights is not None:
            return per_class[:, :m], None
        rest = per_class[:, m:]
        return per_class[:, :m], rest.reshape(rest.shape[0], m, -1, *rest.shape[2:])


@dataclass
class RawMaps:
    """What a method computes for one call: ``maps`` (B, M, h, w) for the M targets of each image,
    the ``logits`` (B, K) of its pass, ``per_target`` tensors (B, M, ...) (cut like the maps when a
    call asked for one target per image) and other ``info``."""

    maps: Tensor
    logits: Tensor | None
    per_target: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """Channel weights (B, M, C) and activations (B, C, h, w) -> maps sum_c w_c A_c, (B, M, h, w)."""
    return torch.einsum("bmc,bchw->bmhw", weights, activations)


class SaliencyMethod(metaclass=_Constructor):
    """A saliency method bound to a model; a subclass defines ``raw_maps`` (the template, ``explain``,
    does the rest).

    Every method is built the same way: ``Method(model, *, target_layer=None, reshape=None, **options)``.
    ``model``: an ``nn.Module`` mapping (B, C, H, W) images to (B, K) logits, or a ``LoadedModel``
    (``case_saliency.load_model``), whose network, default layer and token reshape are then used.
    ``target_layer``: a submodule or its dotted name; None picks the default from the model's
    structure (the same for every input; ``layer_name`` names it). ``reshape``: maps the layer output
    to (B, C, h, w) (``vit_reshape`` for tokens). Methods that work on the input, not at a layer
    (``uses_layer = False``: the Captum gradient methods, the random control), accept and ignore both.
    ``options`` are the method's own keywords (listed in its docstring).
    """

    name = "method"
    uses_layer = True  # False: the method works without a target layer (target_layer is ignored)
    contrast: ContrastStrategy | None = None  # contrastive methods: the strategy of their contrast classes
    default_variant: str | None = None  # for wrappers (CASE): the base a bare name means

    @classmethod
    def variants(cls) -> list[str]:
        """The bases a wrapper method accepts by name (``<name>:<base>``); none for other methods."""
        return []

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
        """The dotted name of the target layer (chosen from the model's structure when not given);
        None for methods that use no layer."""
        return self.engine.layer_name if self.uses_layer else None

    def request(self, targets: TargetSpec) -> ClassRequest:
        """The classes a call for ``targets`` needs (targets, contrast classes), resolved in its pass."""
        return ClassRequest(targets, self.contrast)

    def explain(self, images: Tensor, targets: TargetSpec = "top1", *, relu: bool = True,
                upsample: bool = True, normalize: bool = False) -> SaliencyMaps:
        """Maps for ``images`` (B, C, H, W) and ``targets`` (see ``resolve_targets``).

        relu: clamp negative evidence to 0 (default). upsample: bilinear to (H, W) (default);
        False keeps the layer resolution. normalize: per-map min-max to [0, 1].
        Returns ``SaliencyMaps`` with maps (B, H, W), or (B, M, H, W) for (B, M) targets.

        Images move to the model's device and are cast to its dtype (float64 or float16 input to a
        float32 model, say); NaN or infinite pixels raise ``NonFiniteInput`` naming the images. A
        call inside ``torch.inference_mode()`` works (the method leaves it for the call).
        """
        with autograd_available():
            prepared = prepare_images(images, self.model)
            request = self.request(targets)
            raw = self.raw_maps(prepared, request)
        return self.finish(raw, request, (int(prepared.shape[-2]), int(prepared.shape[-1])), relu=relu,
                           upsample=upsample, normalize=normalize)

    def raw_maps(self, images: Tensor, request: ClassRequest) -> RawMaps:
        """The method's rule: maps (B, M, h, w) for ``images`` (B, C, H, W), already checked and on the
        model's device. It runs the method's forward pass and resolves ``request`` from its logits
        (calling it, or handing it to ``ActivationCapture`` as the class selector)."""
        raise NotImplementedError(f"{type(self).__name__} must define raw_maps")

    def finish(self, raw: RawMaps, request: ClassRequest, size: tuple[int, int], *, relu: bool = True,
               upsample: bool = True, normalize: bool = False) -> SaliencyMaps:
        """``SaliencyMaps`` from a method's raw maps: one target per image drops the M axis; then ReLU,
        upsampling to ``size``, normalisation and the degenerate flags (``finish_maps``)."""
        targets = request.targets
        if targets is None:
            raise RuntimeError(f"{type(self).__name__}.raw_maps did not resolve the targets")
        maps, contrast, per_target = raw.maps, request.contrast, dict(raw.per_target)
        if targets.ndim == 1:
            maps = maps[:, 0]
            contrast = None if contrast is None else contrast[:, 0]
            per_target = {key: value[:, 0] for key, value in per_target.items()}
        final, degenerate = finish_maps(maps, size, relu=relu, upsample=upsample, normalize=normalize)
        return SaliencyMaps(maps=final, targets=targets, degenerate=degenerate, logits=raw.logits, contrast=contrast,
                            raw=maps, method=self.name, layer=self.layer_name, info={**raw.info, **per_target})

    def __call__(self, images: Tensor, targets: TargetSpec = "top1", **options: Any) -> Tensor:
        """The maps alone: (B, H, W) or (B, M, H, W); ``explain`` also gives flags and classes."""
        return self.explain(images, targets, **options).maps

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CAMMethod(SaliencyMethod):
    """Base of the methods at a layer. Cost: one forward pass and (``needs_gradients``) one batched
    backward from the logits to the target layer per batch, for all the classes a call needs.

    A subclass gives one rule:
    - ``channel_weights(A, G) -> (B, M, C)`` (gradient channel-weight CAMs: Grad-CAM, Grad-CAM++, ...);
    - ``class_weights(images, capture) -> (B, M, C)`` for weights from other passes (Score-CAM,
      Ablation-CAM; ``needs_gradients = False``);
    - ``elementwise(A, G) -> (B, M, C, h, w)`` for a map that is the channel sum of per-position
      terms (HiResCAM, LayerCAM; ``eigen_smooth`` projects those terms instead);
    - or ``cam(A, G, contrast G) -> (B, M, h, w)`` for another map rule, or one that uses contrast
      classes' gradients (``contrast`` set).
    A method that explains a function f of the logits (Finer-CAM) also gives ``logit_weights``
    (d f / d logits); its ``G`` are then the gradients of f.
    Channel-weight methods (the first two kinds, without logit weights) can be made contrastive:
    ``CASE(model, base=name)``.
    """

    needs_gradients = True  # False: one forward without backward (the classes are resolved from its logits)

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 eigen_smooth: bool = False, aug_smooth: bool = False, **options: Any):
        """Options every CAM takes (besides the method's own; others are refused by name):

        eigen_smooth: the map is the first principal component of the weighted activations
            ``w_c A_c`` (or, for HiResCAM and LayerCAM, of their element-wise products) instead of
            their sum over channels: pytorch-grad-cam's ``eigen_smooth`` (``get_2d_projection``), with
            the SVD's free sign fixed so that the map correlates positively with the unsmoothed one.
        aug_smooth: test-time augmentation as pytorch-grad-cam's ``aug_smooth``: the maps of the
            image and its horizontal flip, each at intensities x0.9, x1 and x1.1 (6 passes), flipped
            back and averaged. The targets are resolved once, on the unaugmented images.
        """
        super().__init__(model, target_layer=target_layer, reshape=reshape, **options)
        self.eigen_smooth = bool(eigen_smooth)
        self.aug_smooth = bool(aug_smooth)

    @classmethod
    def is_map_rule(cls) -> bool:
        """True when the method defines its maps directly (``cam`` or ``elementwise``), not from channel weights."""
        return cls.cam is not CAMMethod.cam or cls.elementwise is not CAMMethod.elementwise

    @classmethod
    def is_channel_weight_rule(cls) -> bool:
        """True when the method's maps are ``sum_c w_c A_c`` from channel weights (what a contrast
        wrapper such as CASE needs from its base)."""
        return (not cls.is_map_rule() and cls.logit_weights is CAMMethod.logit_weights
                and (cls.channel_weights is not CAMMethod.channel_weights
                     or cls.class_weights is not CAMMethod.class_weights))

    def explain(self, images: Tensor, targets: TargetSpec = "top1", *, relu: bool = True,
                upsample: bool = True, normalize: bool = False) -> SaliencyMaps:
        if not getattr(self, "aug_smooth", False):
            return super().explain(images, targets, relu=relu, upsample=upsample, normalize=normalize)
        found: list[SaliencyMaps] = []
        for flip, factor in AUGMENTATIONS:
            augmented = images * factor if factor != 1.0 else images
            if flip:
                augmented = augmented.flip(-1)
            result = super().explain(augmented, targets, relu=relu, upsample=upsample, normalize=normalize)
            if not found:
                targets = result.targets  # every augmentation explains the classes found on the images
            if flip:
                result.maps = result.maps.flip(-1)
                result.raw = None if result.raw is None else result.raw.flip(-1)
            found.append(result)
        first = found[0]
        first.maps = torch.stack([r.maps for r in found]).mean(dim=0)
        raws = [r.raw for r in found if r.raw is not None]
        first.raw = torch.stack(raws).mean(dim=0) if len(raws) == len(found) else None
        first.degenerate = constant_maps(first.maps)
        first.info["aug_smooth"] = len(found)
        return first

    def request(self, targets: TargetSpec) -> ClassRequest:
        weigh = None if type(self).logit_weights is CAMMethod.logit_weights else self.logit_weights
        return ClassRequest(targets, self.contrast, weigh)

    def logit_weights(self, logits: Tensor, targets: Tensor, contrast: Tensor | None) -> Tensor | None:
        """For a method that explains a function f of the logits: d f / d logits, (B, M, K), from the
        logits (B, K), the targets (B, M) and their contrast classes (B, M, k) or None. The engine
        then takes the gradients of sum_j weights[j] * logits[j] in its one backward. None (the
        default): the gradients of the target (and contrast) logits themselves."""
        return None

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """A (B, C, h, w) and G (B, M, C, h, w) -> weights (B, M, C)."""
        raise NotImplementedError(f"{type(self).__name__} must define channel_weights, class_weights or cam")

    def class_weights(self, images: Tensor, capture: Capture) -> Tensor:
        """Channel weights (B, M', C) for every class of ``capture.classes`` (B, M')."""
        if capture.gradients is None:
            raise RuntimeError(f"{type(self).__name__} needs gradients for its channel weights")
        return self.channel_weights(capture.activations, capture.gradients)

    def elementwise(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """For a map rule that is a sum over channels of per-position terms (HiResCAM, LayerCAM):
        A (B, C, h, w), G (B, M, C, h, w) -> the terms (B, M, C, h, w); the map is their channel sum
        (or, with ``eigen_smooth``, their first principal component)."""
        raise NotImplementedError(f"{type(self).__name__} must define channel_weights, class_weights or cam")

    def cam(self, activations: Tensor, gradients: Tensor, contrast_gradients: Tensor | None) -> Tensor:
        """A (B, C, h, w), G (B, M, C, h, w), contrast G (B, M, k, C, h, w) or None -> (B, M, h, w)."""
        if type(self).elementwise is not CAMMethod.elementwise:
            terms = self.elementwise(activations, gradients)
            return project_channels(terms) if self.eigen_smooth else terms.sum(dim=2)
        return self.combine(self.channel_weights(activations, gradients), activations)

    def combine(self, weights: Tensor, activations: Tensor) -> Tensor:
        """Channel weights (B, M, C) and activations (B, C, h, w) -> maps (B, M, h, w): ``sum_c w_c A_c``,
        or with ``eigen_smooth`` the first principal component of the weighted activations."""
        if self.eigen_smooth:
            return project_channels(weights[..., None, None] * activations[:, None])
        return weighted_sum(weights, activations)

    def capture(self, images: Tensor, request: ClassRequest) -> Capture:
        """One pass at the layer: logits, activations, and the gradients of ``request``'s classes
        (or, without gradients, the classes resolved from the logits)."""
        if self.needs_gradients:
            return self.engine(images, request)
        capture = self.engine(images)
        capture.classes = request(capture.logits)
        return capture

    def raw_maps(self, images: Tensor, request: ClassRequest) -> RawMaps:
        return self.maps_from(images, self.capture(images, request), request)

    def shares_capture_with(self, other: CAMMethod, images: Tensor) -> bool:
        """True when one gradient capture of ``images`` serves both methods: the same network, the
        same layer and the same reshape (see ``explain_many``); never with ``aug_smooth`` (six passes)."""
        if not (self.needs_gradients and other.needs_gradients and self.model is other.model):
            return False
        if getattr(self, "aug_smooth", False) or getattr(other, "aug_smooth", False):
            return False
        return self.engine.same_layer(other.engine, images)

    def maps_from(self, images: Tensor, capture: Capture, request: ClassRequest) -> RawMaps:
        """The method's rule on a capture holding ``request``'s classes: maps (B, M, h, w)."""
        weights = None
        if self.is_map_rule():
            if capture.gradients is None:
                raise RuntimeError(f"{type(self).__name__} defines cam() and so needs gradients")
            if self.eigen_smooth and type(self).elementwise is CAMMethod.elementwise:
                raise ValueError(f"{type(self).__name__} defines its map directly (cam), so eigen_smooth has no "
                                 "weighted activations to project; define elementwise() or drop eigen_smooth")
            gradients, contrast_gradients = request.split(capture.gradients)
            maps = self.cam(capture.activations, gradients, contrast_gradients)
        else:
            weights = request.split(self.class_weights(images, capture))[0]
            maps = self.combine(weights, capture.activations)
        per_target = {key: request.split(value)[0] for key, value in capture.per_class.items()}
        if weights is not None:
            per_target["channel_weights"] = weights
        return RawMaps(maps, capture.logits, per_target, dict(capture.info))

    def __repr__(self) -> str:
        extra = f", contrast={self.contrast!r}" if self.contrast is not None else ""
        return f"{type(self).__name__}(layer={self.engine.layer_name!r}{extra})"


def project_channels(terms: Tensor) -> Tensor:
    """(B, M, C, h, w) -> (B, M, h, w): each map's first principal component over channels
    (``first_component_projection``; eigen_smooth)."""
    from .eigencam import first_component_projection  # eigencam imports this module

    b, m = terms.shape[:2]
    return first_component_projection(terms.flatten(0, 1)).view(b, m, *terms.shape[-2:])


# pytorch-grad-cam's default test-time augmentation (ttach's HorizontalFlip x Multiply(0.9, 1, 1.1)):
# (horizontal flip, intensity factor); the first is the identity.
AUGMENTATIONS: tuple[tuple[bool, float], ...] = ((False, 1.0), (False, 0.9), (False, 1.1),
                                                  (True, 0.9), (True, 1.0), (True, 1.1))


def spatial_mean(tensor: Tensor) -> Tensor:
    """Mean over the last two (spatial) dims: (..., h, w) -> (...)."""
    return tensor.mean(dim=(-2, -1))
