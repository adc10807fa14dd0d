"""Finding the target layer: by module, by dotted name, or a sensible default; and the reshape
functions that turn token outputs of vision transformers into (B, C, h, w) maps."""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable

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
        elif module._modules.get(part) is not None:
            found = module._modules[part]
            assert found is not None
            module = found
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


def prefix_free_reshape(tokens: Tensor) -> Tensor:
    """``vit_reshape`` with the number of class/register tokens found from the token count: the
    tokens beyond the largest square grid (1 for ViT's class token, 2 for DeiT's)."""
    side = math.isqrt(int(tokens.shape[1]))
    return vit_reshape(tokens, prefix_tokens=int(tokens.shape[1]) - side * side)


def transformer_default(model: nn.Module) -> tuple[str, Reshape] | None:
    """The usual target of torchvision, timm and Hugging Face ViTs: the first norm of the last block."""
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "layers") and hasattr(model, "class_token"):
        return "encoder.layers.-1.ln_1", vit_reshape  # torchvision VisionTransformer
    blocks = getattr(model, "blocks", None)
    if blocks is not None and hasattr(model, "num_prefix_tokens") and hasattr(blocks[-1], "norm1"):
        prefix = int(getattr(model, "num_prefix_tokens"))  # noqa: B009 (an int attribute, not a submodule)
        return "blocks.-1.norm1", functools.partial(vit_reshape, prefix_tokens=prefix)  # timm ViT
    if hasattr(model, "config"):  # Hugging Face ViT, DeiT, BEiT: blocks with a layernorm_before
        blocks = [name for name, module in model.named_modules()
                  if isinstance(getattr(module, "layernorm_before", None), nn.Module)]
        if blocks:
            return f"{blocks[-1]}.layernorm_before", prefix_free_reshape
    return None
