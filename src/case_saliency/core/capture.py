"""The engine: one forward pass, activations of a target layer, and the gradients of many class
logits with respect to them, with the backward pass stopped at the layer.

Cost per batch: one forward pass (the part before the layer runs without autograd) plus one
batched backward through the part *after* the layer only, whatever the number of classes.
Nothing else in the library touches hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .layers import LayerSpec, Reshape, resolve_layer

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


def unwrap_model(model: ModelInput, target_layer: LayerSpec | None = None,
                 reshape: Reshape | None = None) -> tuple[nn.Module, LayerSpec | None, Reshape | None]:
    """``(network, target_layer, reshape)`` for an ``nn.Module`` or a ``LoadedModel``.

    A loaded model lends its default layer when ``target_layer`` is None, and that layer's reshape
    (a transformer's token reshape) only then: a layer given here gets the ``reshape`` given here.
    """
    if isinstance(model, nn.Module):
        return model, target_layer, reshape
    network = getattr(model, "model", None)
    if isinstance(network, nn.Module):
        if target_layer is None:
            target_layer = getattr(model, "target_layer", None)
            if reshape is None:
                reshape = getattr(model, "reshape", None)
        return network, target_layer, reshape
    raise TypeError(f"model must be a torch.nn.Module or a LoadedModel (from case_saliency.load_model), "
                    f"got {type(model).__name__}")


@dataclass
class Capture:
    """What one engine pass returns.

    logits: (B, K) model outputs, detached.
    activations: (B, C, h, w) target-layer activations (after ``reshape``), detached.
    gradients: (B, M, C, h, w) d logits[b, classes[b, m]] / d activations[b], or None; for logit
        weights (B, M, K) instead of classes: d sum_j weights[b, m, j] logits[b, j] / d activations[b].
    classes: (B, M) the class indices (or (B, M, K) logit weights) whose gradients were taken, or None.
    """

    logits: Tensor
    activations: Tensor
    gradients: Tensor | None
    classes: Tensor | None


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_images(images: Tensor) -> None:
    """Raise a clear error unless ``images`` is a float tensor (B, C, H, W)."""
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}; "
            "convert with torch.as_tensor(...) and add a batch dimension with .unsqueeze(0)"
        )
    if images.ndim != 4:
        hint = " (a single image? add a batch dimension with images.unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got dtype {images.dtype}; "
                        "preprocess them (e.g. images.float() / 255 and normalise) first")


class _ModelState:
    """Remembers the training flags of every module and restores them, whatever happens."""

    def __init__(self, model: nn.Module):
        self.flags = [(m, m.training) for m in model.modules()]

    def restore(self) -> None:
        for module, flag in self.flags:
            module.training = flag


class ActivationCapture:
    """Captures target-layer activations and class-logit gradients for a model.

    Args:
        model: any ``nn.Module`` mapping (B, C, H, W) images to (B, K) logits, or a ``LoadedModel``
            (its network, default layer and that layer's reshape).
        target_layer: a submodule, its dotted name (``"layer4"``, ``"features.7.2"``), or None to
            pick the default (the last layer with a spatial output, or the last block of a vision
            transformer) and name it in a log line.
        reshape: maps the layer output to (B, C, h, w), e.g. ``vit_reshape`` for token outputs.

    The model is switched to eval mode during a call and left exactly as found afterwards
    (training flags, ``requires_grad``, parameter ``.grad``, hooks), also when an error is raised.
    """

    def __init__(self, model: ModelInput, target_layer: LayerSpec | None = None,
                 reshape: Reshape | None = None):
        model, target_layer, reshape = unwrap_model(model, target_layer, reshape)
        self.model = model
        self._layer_spec = target_layer
        self._layer: nn.Module | None = None
        self.layer_name: str | None = None
        self.reshape = reshape
        if target_layer is not None:
            self._layer, self.layer_name = resolve_layer(model, target_layer)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def layer(self, images: Tensor) -> nn.Module:
        """The target layer, choosing the default on first use (needs a sample batch)."""
        if self._layer is None:
            from .layers import default_layer

            self._layer, self.layer_name, default_reshape = default_layer(self.model, images[:1])
            if self.reshape is None:
                self.reshape = default_reshape
            log.info("target layer not given; using %r", self.layer_name)
        return self._layer

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
        """
        check_images(images)
        images = images.detach().to(self.device)
        layer = self.layer(images)
        want_grad = classes is not None
        captured: list[Tensor] = []

        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"target layer {self.layer_name!r} returns {type(output).__name__}, not a tensor; "
                    "choose a submodule that outputs a tensor"
                )
            if captured:
                raise RuntimeError(
                    f"target layer {self.layer_name!r} ran more than once in one forward pass; "
                    "choose a module that is used once (not a shared activation module)"
                )
            # A fresh leaf: the backward pass ends here, and the prefix ran without autograd.
            leaf = output.detach().requires_grad_(want_grad)
            captured.append(leaf)
            torch.set_grad_enabled(want_grad)
            # A clone, so that in-place ops after the layer (``out += identity``) leave the leaf intact.
            return leaf.clone() if want_grad else leaf

        state = _ModelState(self.model)
        handle = layer.register_forward_hook(hook)
        try:
            self.model.eval()
            with torch.no_grad():  # restores the caller's grad mode on exit, even if the hook changed it
                logits = self.model(images)
                if not captured:
                    raise RuntimeError(f"target layer {self.layer_name!r} was not run by the model's forward")
                if not isinstance(logits, Tensor) or logits.ndim != 2:
                    shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                    raise ValueError(f"the model must return logits of shape (B, K), got {shape}")
                activation = captured[0]
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
                        check_class_indices(chosen, logits.shape)
                    with torch.enable_grad():
                        gradients = _batched_gradients(logits, activation, chosen)
        finally:
            handle.remove()
            state.restore()
        activations = self._to_spatial(activation.detach())
        if gradients is not None:
            b, m = gradients.shape[:2]
            gradients = self._to_spatial(gradients.flatten(0, 1)).unflatten(0, (b, m))
        return Capture(logits.detach(), activations, gradients, chosen)

    def _to_spatial(self, tensor: Tensor) -> Tensor:
        if self.reshape is not None:
            tensor = self.reshape(tensor)
        if tensor.ndim != 4:
            raise ValueError(
                f"target layer {self.layer_name!r} gives shape {tuple(tensor.shape)}, not (B, C, h, w); "
                "pass reshape=vit_reshape (for tokens) or choose a convolutional layer"
            )
        return tensor


def check_class_indices(classes: Tensor, logits_shape: torch.Size) -> None:
    """Raise if ``classes`` (B, M) does not fit logits of shape (B, K)."""
    batch, num_classes = logits_shape
    if classes.shape[0] != batch:
        raise ValueError(f"got targets for {classes.shape[0]} images but the batch has {batch}; "
                         "give exactly one target (or one row of targets) per image")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        value = classes[bad][0].item()
        raise IndexError(f"class index {value} is out of range: the model has {num_classes} classes "
                         f"(valid indices 0..{num_classes - 1})")


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
