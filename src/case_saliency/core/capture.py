"""The engine: one forward pass, activations of a target layer, and the gradients of many class
logits with respect to them, with the backward pass stopped at the layer.

Cost per batch: one forward pass (the part before the layer runs without autograd) plus one
batched backward through the part *after* the layer only, whatever the number of classes.
Nothing else in the library touches hooks.
"""

from __future__ import annotations

import functools
import itertools
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .errors import NonFiniteInput
from .layers import LayerSpec, Reshape, resolve_layer, transformer_default
from .outputs import OutputPicker, logits_from, logits_model
from .targets import check_class_indices

log = logging.getLogger("case_saliency")

ClassSelector = Tensor | Callable[[Tensor], Tensor] | None


@runtime_checkable
class HasNetwork(Protocol):
    """A model with what saliency needs around it, as ``case_saliency.models.LoadedModel``: the
    network, its default target layer (dotted name, or None) and that layer's token reshape."""

    model: nn.Module
    target_layer: str | None
    reshape: Reshape | None


ModelInput = nn.Module | HasNetwork


def unwrap_model(model: ModelInput, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 output: OutputPicker | None = None) -> tuple[nn.Module, LayerSpec | None, Reshape | None]:
    """``(network, target_layer, reshape)`` for an ``nn.Module`` or a ``LoadedModel``.

    A loaded model lends its default layer when ``target_layer`` is None, and that layer's reshape
    (a transformer's token reshape) only then: a layer given here gets the ``reshape`` given here.
    The network returned gives its logits tensor (B, K): a forward returning a tuple, a mapping or
    an object with ``.logits`` (or one ``output`` picks from) is wrapped (``core.outputs.logits_model``:
    same module names, parameters and flags).
    """
    if isinstance(model, nn.Module):
        return logits_model(model, output), target_layer, reshape
    network = getattr(model, "model", None)
    if isinstance(network, nn.Module):
        if target_layer is None:
            target_layer = getattr(model, "target_layer", None)
            if reshape is None:
                reshape = getattr(model, "reshape", None)
        return logits_model(network, output), target_layer, reshape
    raise TypeError(f"model must be a torch.nn.Module or a LoadedModel (from case_saliency.load_model), "
                    f"got {type(model).__name__}")


@dataclass
class Capture:
    """What one engine pass returns.

    logits: (B, K) model outputs, detached.
    activations: (B, C, h, w) target-layer activations (after ``reshape``), detached.
    gradients: (B, M, C, h, w) d logits[b, classes[b, m]] / d activations[b], or None; for logit
        weights (B, M, K) instead of classes: d sum_j weights[b, m, j] logits[b, j] / d activations[b].
    classes: (B, M) the class indices (or (B, M, K) logit weights) whose gradients were taken (or, for
        methods without gradients, the classes the call asked for), or None.
    per_class: what a method computed per class, each (B, M, ...) in the order of ``classes``.
    info: anything else a method records about the pass (e.g. which network path ran).
    """

    logits: Tensor
    activations: Tensor
    gradients: Tensor | None
    classes: Tensor | None
    per_class: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    # Lazily: the first tensor is enough (a tuple of every parameter cost a walk of all modules per call).
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter or buffer, or None."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def check_images(images: Tensor, spatial_dims: int = 2) -> None:
    """Raise a clear error unless ``images`` is a float tensor (B, C, H, W) (or, with
    ``spatial_dims=3``, a volume batch (B, C, D, H, W))."""
    form = "(B, C, H, W)" if spatial_dims == 2 else "(B, C, D, H, W)"
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images must be a torch.Tensor of shape {form}, got {type(images).__name__}; "
            "convert with torch.as_tensor(...) and add a batch dimension with .unsqueeze(0)"
        )
    if images.ndim != 2 + spatial_dims:
        hint = " (a single image? add a batch dimension with images.unsqueeze(0))" \
            if images.ndim == 1 + spatial_dims else ""
        if spatial_dims == 2 and images.ndim == 5:
            hint = " (volumes (B, C, D, H, W) are explained through case_saliency.compat's 3-D CAMs)"
        raise ValueError(f"images must have shape {form}, got {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got dtype {images.dtype}; "
                        "preprocess them (e.g. images.float() / 255 and normalise) first")


def prepare_images(images: Tensor, model: nn.Module, spatial_dims: int = 2) -> Tensor:
    """``images`` (B, C, H, W) (or (B, C, D, H, W) with ``spatial_dims=3``) checked and made ready
    for ``model``: detached, on its device and in its floating-point dtype (float64 or float16 input
    is cast, e.g. to float32, as the model computes in its own dtype). Raises ``NonFiniteInput``
    naming the images that hold NaN or infinite pixels (their logits would be NaN and no class
    could be chosen from them)."""
    check_images(images, spatial_dims)
    if not all_finite(images.detach()):
        bad = (~torch.isfinite(images.detach())).flatten(1).any(dim=1)
        index = bad.nonzero().flatten().tolist()
        raise NonFiniteInput(f"image{'s' if len(index) > 1 else ''} {index[:10]} of the batch hold NaN or infinite "
                             "pixel values; fix or drop them (e.g. torch.nan_to_num) before explaining")
    dtype = model_dtype(model) or images.dtype
    images = images.detach()
    if images.is_inference():  # made under torch.inference_mode(): a copy can join autograd (in autograd_available)
        images = images.clone()
    return images.to(device=model_device(model), dtype=dtype)


def all_finite(tensor: Tensor) -> bool:
    """True when every value of the floating-point ``tensor`` is finite. A finite sum implies it (a NaN
    or an infinity makes the sum NaN or infinite) and costs a fraction of an element-wise mask; only a
    sum that is not finite (a bad value, or finite values whose sum overflows) gets the exact check."""
    if bool(torch.isfinite(tensor.sum())):
        return True
    return bool(torch.isfinite(tensor).all())


@contextmanager
def eval_mode(model: nn.Module, no_grad: bool = False) -> Iterator[nn.Module]:
    """Switch ``model`` (every submodule) to eval mode inside, and restore each module's training
    flag on exit, whatever happens; with ``no_grad``, autograd is off inside too. Yields the model."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        if no_grad:
            with torch.no_grad():
                yield model
        else:
            yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextmanager
def autograd_available() -> Iterator[None]:
    """Leave ``torch.inference_mode()`` for the inside, if the caller is in it: the gradient methods
    need autograd, which inference mode switches off for good (tensors made there cannot join a
    backward pass; ``prepare_images`` copies the input out of it)."""
    if not torch.is_inference_mode_enabled():
        yield
        return
    with torch.inference_mode(False):
        yield


def same_reshape(first: Reshape | None, second: Reshape | None) -> bool:
    """The same reshape: the same function, or partials of one function with equal arguments."""
    if first is second:
        return True
    if isinstance(first, functools.partial) and isinstance(second, functools.partial):
        return first.func is second.func and first.args == second.args and first.keywords == second.keywords
    return False


PROBE_SIZE = 224  # the side of the probe image that finds a default layer, unless the model declares its own


def probe_input(model: nn.Module) -> Tensor:
    """A zero image (1, C, S, S) for finding the default layer, from the model's structure only: C the
    input channels of its first convolution (else 3), S the input size its timm config declares
    (else 224); on the model's device, in its dtype."""
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), 3)
    size = PROBE_SIZE
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(config, dict) and len(config.get("input_size") or ()) == 3:
        size = int(config["input_size"][-1])
    return torch.zeros(1, channels, size, size, device=model_device(model), dtype=model_dtype(model))


def spatial_layers(model: nn.Module, sample: Tensor) -> list[str]:
    """Names of the modules whose output is spatial, (B, C, h, w) with h * w > 1, in the order they
    finish during one forward pass of ``sample`` (the model's training flags are left as found)."""
    spatial: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod: nn.Module, inputs: Any, output: Any, name: str = name) -> None:
            if isinstance(output, Tensor) and output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
                spatial.append(name)

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model, no_grad=True):
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(spatial))


def default_layer(model: nn.Module, sample: Tensor | None = None) -> tuple[nn.Module, str, Reshape | None]:
    """The default target layer ``(module, dotted name, reshape or None)``: the last module to finish
    with a spatial (B, C, h, w) output, h * w > 1 (for a CNN the last feature block), found by one
    forward pass of ``sample`` (default: ``probe_input(model)``, so that the same model always gets
    the same default whatever the size of the images it is later asked about); vision transformers
    get the first norm of their last block and a token reshape, without a pass."""
    vit = transformer_default(model)
    if vit is not None:
        module, name = resolve_layer(model, vit[0])
        return module, name, vit[1]
    spatial = spatial_layers(model, probe_input(model) if sample is None else sample)
    if not spatial:
        raise ValueError("found no layer with a spatial (B, C, h, w) output; pass target_layer and, "
                         "for token outputs, reshape=vit_reshape")
    name = spatial[-1]
    return dict(model.named_modules())[name], name, None


class ActivationCapture:
    """Captures target-layer activations and class-logit gradients for a model.

    Args:
        model: any ``nn.Module`` mapping (B, C, H, W) images to (B, K) logits, or a ``LoadedModel``
            (its network, default layer and that layer's reshape).
        target_layer: a submodule, its dotted name (``"layer4"``, ``"features.7.2"``), or None to
            pick the default from the model's structure (``default_layer``: the last layer with a
            spatial output for a probe image, or the last block of a vision transformer), named
            in a log line and in ``layer_name``. A model that cannot run the probe image gets its
            default chosen per input size instead, with a warning.
        reshape: maps the layer output to (B, C, h, w), e.g. ``vit_reshape`` for token outputs.
        spatial_dims: 2 for images (B, C, H, W) and layer outputs (B, C, h, w); 3 for volumes
            (B, C, D, H, W) and (B, C, d, h, w) (a given target layer only).

    The model is switched to eval mode during a call and left exactly as found afterwards
    (training flags, ``requires_grad``, parameter ``.grad``, hooks), also when an error is raised.

    Activations are the layer's output as it produced it: an in-place operation after the layer
    (torchvision ResNet's ``out += identity`` after ``bn2``, an in-place ReLU after DenseNet's
    ``norm5``) changes only a copy. With gradients the model always continues from a copy; without
    them it continues from the captured tensor itself until a pass shows (by the tensor's version
    counter) that something wrote into it, and from then on from a copy (that pass is rerun once).
    """

    def __init__(self, model: ModelInput, target_layer: LayerSpec | None = None,
                 reshape: Reshape | None = None, spatial_dims: int = 2):
        model, target_layer, reshape = unwrap_model(model, target_layer, reshape)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims}")
        if spatial_dims == 3 and target_layer is None:
            raise ValueError("a volume model needs its target_layer given (no default is chosen for 3-D inputs)")
        self.model = model
        self.spatial_dims = spatial_dims
        self.copy_output = False  # True once a pass without gradients found the layer output overwritten
        self._layer: nn.Module | None = None
        self._layer_name: str | None = None
        self._given_reshape = reshape
        self.reshape = reshape
        self._per_size: dict[tuple[int, ...], tuple[nn.Module, str, Reshape | None]] | None = None
        if target_layer is not None:
            self._layer, self._layer_name = resolve_layer(model, target_layer)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def layer_name(self) -> str | None:
        """The dotted name of the target layer; the default is chosen on first access. None only for
        a model whose default depends on the input size, before its first call."""
        if self._layer is None and self._per_size is None:
            self._choose_default()
        return self._layer_name

    def _choose_default(self) -> None:
        try:
            module, name, reshape = default_layer(self.model)
        except Exception as error:  # the probe image does not fit the model: choose per input size
            log.debug("default-layer probe failed: %s: %s", type(error).__name__, error)
            self._per_size = {}
            return
        self._set(module, name, reshape)
        log.info("target layer not given; using %r", name)

    def _set(self, module: nn.Module, name: str, reshape: Reshape | None) -> None:
        self._layer, self._layer_name = module, name
        self.reshape = self._given_reshape if self._given_reshape is not None else reshape

    def layer(self, images: Tensor) -> nn.Module:
        """The target layer for ``images`` (B, C, H, W): the given one, or the default (the same for
        every input, or, for a model that cannot run the probe image, the one for this input size)."""
        if self._layer is None and self._per_size is None:
            self._choose_default()
        if self._per_size is not None:
            key = tuple(images.shape[1:])
            if key not in self._per_size:
                self._per_size[key] = default_layer(self.model, images[:1])
                warnings.warn(f"{type(self.model).__name__} does not run on the probe image that picks a default "
                              f"layer from its structure, so the default is chosen per input size: "
                              f"{self._per_size[key][1]!r} for inputs {key}; pass target_layer to fix it",
                              stacklevel=4)
            self._set(*self._per_size[key])
        assert self._layer is not None
        return self._layer

    def same_layer(self, other: ActivationCapture, images: Tensor) -> bool:
        """True when ``other`` captures the same layer of the same model with the same reshape for
        ``images``, so that one pass serves both."""
        if self.model is not other.model or self.layer(images) is not other.layer(images):
            return False
        return same_reshape(self.reshape, other.reshape)

    def __call__(self, images: Tensor, classes: ClassSelector = None) -> Capture:
        """Run one forward pass and, if ``classes`` is given, one batched backward to the layer.

        Args:
            images: (B, C, H, W), moved to the model's device.
            classes: (B, M) long tensor of class indices, or a function of the logits (B, K)
                returning one (so that "top1" can be resolved in the same pass), or None for
                activations only. A float (B, M, K) tensor instead asks for the gradients of M
                weighted sums of the logits (the weights are constants: a vector-Jacobian product).
        Returns:
            a ``Capture``; ``gradients`` is (B, M, C, h, w).
        Works inside ``torch.inference_mode()`` too (it leaves it for the call).
        """
        with autograd_available():
            return self._capture(prepare_images(images, self.model, self.spatial_dims), classes)

    def _capture(self, images: Tensor, classes: ClassSelector) -> Capture:
        layer = self.layer(images)
        want_grad = classes is not None
        captured: list[Tensor] = []
        versions: list[int] = []

        def hook(module: nn.Module, inputs: Any, output: Any) -> Tensor:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"target layer {self.layer_name!r} returns {type(output).__name__}, not a tensor; "
                    "choose a submodule that outputs a tensor"
                )
            if captured:
                raise RuntimeError(
                    f"target layer {self.layer_name!r} ran more than once in one forward pass: either the model "
                    "uses this module twice (a shared activation module: choose a module used once), or another "
                    "thread ran the same model meanwhile (hooks belong to the module, so every thread's pass "
                    "reaches every capture: give each thread its own copy of the model, or run one at a time)"
                )
            # A fresh leaf: the backward pass ends here, and the prefix ran without autograd.
            leaf = output.detach().requires_grad_(want_grad)
            captured.append(leaf)
            torch.set_grad_enabled(want_grad)
            # A clone, so that in-place ops after the layer (``out += identity``) leave the leaf intact;
            # without gradients only once such an op has been seen (the version check below).
            if want_grad or self.copy_output:
                return leaf.clone()
            versions.append(leaf._version)
            return leaf

        handle = layer.register_forward_hook(hook)
        try:
            # no_grad restores the caller's grad mode on exit, even if the hook changed it
            with eval_mode(self.model), torch.no_grad():
                logits = logits_from(self.model(images))
                if not captured:
                    raise RuntimeError(f"target layer {self.layer_name!r} was not run by the model's forward")
                if not isinstance(logits, Tensor) or logits.ndim != 2:
                    shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                    raise ValueError(f"the model must return logits of shape (B, K), got {shape}; for a model "
                                     "with another output pass output=lambda out: <the (B, K) logits>")
                activation = captured[0]
                overwritten = bool(versions) and activation._version != versions[0]
                gradients = chosen = None
                if want_grad:
                    chosen = classes(logits.detach()) if callable(classes) else classes
                    chosen = torch.as_tensor(chosen, device=logits.device)
                    if chosen.is_floating_point():
                        check_logit_weights(chosen, logits.shape)
                        chosen = chosen.to(logits.dtype)
                    else:
                        chosen = chosen.long()
                        if chosen.ndim == 1:
                            chosen = chosen[:, None]
                        if chosen.shape[0] != logits.shape[0]:
                            raise ValueError(f"got classes for {chosen.shape[0]} images but the batch has "
                                             f"{logits.shape[0]}; give one row of classes per image")
                        check_class_indices(chosen, logits.shape[1])
                    with torch.enable_grad():
                        gradients = _batched_gradients(logits, activation, chosen)
        finally:
            handle.remove()
        if overwritten:  # an in-place op after the layer wrote into its output: read a copy from now on
            self.copy_output = True
            log.debug("layer %r: its output is changed in place later; reading a copy", self.layer_name)
            return self._capture(images, classes)
        activations = self._to_spatial(activation.detach())
        if gradients is not None:
            b, m = gradients.shape[:2]
            gradients = self._to_spatial(gradients.flatten(0, 1)).reshape(b, m, *activations.shape[1:])
        return Capture(logits.detach(), activations, gradients, chosen)

    def _to_spatial(self, tensor: Tensor) -> Tensor:
        if self.reshape is not None:
            tensor = self.reshape(tensor)
        if self.spatial_dims == 3:
            if tensor.ndim != 5:
                raise ValueError(f"target layer {self.layer_name!r} gives shape {tuple(tensor.shape)}, not "
                                 "(B, C, d, h, w); choose a 3-D convolutional layer")
            return tensor
        if tensor.ndim != 4:
            raise ValueError(
                f"target layer {self.layer_name!r} gives shape {tuple(tensor.shape)}, not (B, C, h, w); "
                "pass reshape=vit_reshape (for tokens) or choose a convolutional layer"
            )
        return tensor


def check_logit_weights(weights: Tensor, logits_shape: torch.Size) -> None:
    """Raise unless ``weights`` is a finite (B, M, K) tensor for logits of shape (B, K)."""
    batch, num_classes = logits_shape
    if weights.ndim != 3 or weights.shape[0] != batch or weights.shape[2] != num_classes:
        raise ValueError(f"logit weights must be (B, M, K) = ({batch}, M, {num_classes}), got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all():
        raise ValueError("logit weights contain NaN or infinite values")


def _batched_gradients(logits: Tensor, activation: Tensor, classes: Tensor) -> Tensor:
    """d logits[b, classes[b, m]] / d activation[b] for every m, as (B, M, *activation.shape[1:]);
    for float ``classes`` (B, M, K), the gradients of the weighted logit sums instead.

    Images are independent in eval mode, so the gradient of the batch sum of one class column
    gives every image's gradient at once; the M columns go through one vmapped backward.
    """
    if classes.is_floating_point():  # logit weights: the m-th output is sum_j w[b, m, j] * logits[b, j]
        selected = (logits[:, None, :] * classes).sum(-1)  # (B, M)
    else:
        selected = logits.gather(1, classes)  # (B, M)
    m = classes.shape[1]
    if m == 1:
        (grad,) = torch.autograd.grad(selected.sum(), activation)
        return grad[:, None]
    basis = torch.eye(m, dtype=selected.dtype, device=selected.device)[:, None, :].expand(m, *selected.shape)
    try:
        (grads,) = torch.autograd.grad(selected, activation, grad_outputs=basis,
                                       is_grads_batched=True, retain_graph=True)
    except RuntimeError:  # an op without a vmap rule: one backward per class column
        grads = torch.stack([torch.autograd.grad(selected[:, j].sum(), activation, retain_graph=True)[0]
                             for j in range(m)])
    return grads.transpose(0, 1)
