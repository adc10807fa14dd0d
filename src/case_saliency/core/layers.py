"""Finding the target layer: by module, by dotted name, or a sensible default; and the reshape
functions that turn token outputs of vision transformers into (B, C, h, w) maps."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

Reshape = Callable[[Tensor], Tensor]
LayerSpec = nn.Module | str  # a submodule, or its dotted name ("layer4", "layer4[-1].conv3")


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[nn.Module, str]:
    """Return ``(module, dotted_name)`` for a module of ``model`` given as a module or a name.

    Names accept index notation too: ``"layer4[2].conv3"`` equals ``"layer4.2.conv3"``.
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return module, name or "<model>"
        raise ValueError(f"target layer {type(layer).__name__} is not a submodule of the model; "
                         "pass a module taken from this model, or its dotted name")
    if not isinstance(layer, str):
        raise TypeError(f"target_layer must be a module or a dotted name, got {type(layer).__name__}")
    name = layer.replace("[", ".").replace("]", "").strip(".")
    if name in modules:
        return modules[name], name
    found = _walk(model, name.split("."))  # integer (also negative) indices into Sequential/ModuleList
    if found is not None:
        return resolve_layer(model, found)
    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; closest module names: {', '.join(close)}" if close else ""
    raise ValueError(f"the model has no module named {layer!r}{hint}. "
                     "List them with [n for n, _ in model.named_modules()]")


def _walk(module: nn.Module, parts: list[str]) -> nn.Module | None:
    for part in parts:
        children = list(module.named_children())
        if part.lstrip("-").isdigit() and children:
            index = int(part)
            if not -len(children) <= index < len(children):
                return None
            module = children[index][1]
        elif part in module._modules:
            module = module._modules[part]
        else:
            return None
    return module


def vit_reshape(tokens: Tensor, prefix_tokens: int = 1, grid: tuple[int, int] | None = None) -> Tensor:
    """(B, N, D) transformer tokens -> (B, D, h, w), dropping ``prefix_tokens`` (class/register
    tokens) and laying the rest on a square grid (or ``grid``)."""
    if tokens.ndim != 3:
        raise ValueError(f"vit_reshape expects tokens (B, N, D), got {tuple(tokens.shape)}")
    patches = tokens[:, prefix_tokens:, :]
    n = patches.shape[1]
    if grid is None:
        side = int(round(math.sqrt(n)))
        if side * side != n:
            raise ValueError(f"{n} patch tokens do not form a square grid; pass grid=(h, w) "
                             "or the right prefix_tokens")
        grid = (side, side)
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def _transformer_default(model: nn.Module) -> tuple[str, Reshape] | None:
    """The usual target of torchvision and timm ViTs: the first norm of the last block."""
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "layers") and hasattr(model, "class_token"):
        return "encoder.layers.-1.ln_1", vit_reshape  # torchvision VisionTransformer
    blocks = getattr(model, "blocks", None)
    if blocks is not None and hasattr(model, "num_prefix_tokens") and hasattr(blocks[-1], "norm1"):
        prefix = int(model.num_prefix_tokens)
        return "blocks.-1.norm1", lambda t: vit_reshape(t, prefix)  # timm ViT
    return None


def spatial_layers(model: nn.Module, sample: Tensor) -> list[str]:
    """Names of the modules whose output is spatial, (B, C, h, w) with h * w > 1, in the order they
    finish during one forward pass of ``sample`` (the model's training flags are left as found)."""
    spatial: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inputs, output, name=name):
            if isinstance(output, Tensor) and output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
                spatial.append(name)

        handles.append(module.register_forward_hook(hook))
    was_training = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in was_training:
            module.training = flag
    return list(dict.fromkeys(spatial))


def default_layer(model: nn.Module, sample: Tensor) -> tuple[nn.Module, str, Reshape | None]:
    """The default target layer: the last module to finish with a spatial (B, C, h, w) output,
    h * w > 1 (for a CNN the last feature block), found by one forward pass of ``sample``;
    vision transformers get the first norm of their last block and a token reshape."""
    vit = _transformer_default(model)
    if vit is not None:
        module, name = resolve_layer(model, vit[0])
        return module, name, vit[1]
    spatial = spatial_layers(model, sample)
    if not spatial:
        raise ValueError("found no layer with a spatial (B, C, h, w) output; pass target_layer and, "
                         "for token outputs, reshape=vit_reshape")
    name = spatial[-1]
    return dict(model.named_modules())[name], name, None
