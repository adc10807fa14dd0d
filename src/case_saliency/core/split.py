"""Splitting a network at a layer: a *head* that computes the layer output (and any earlier value
the rest of the network still needs), and a *tail* that maps them to the logits.

Perturbation methods that change only the layer output (Ablation-CAM) run the head once per image
and the tail once per perturbation, instead of the whole network each time.

The split is found by ``torch.fx`` symbolic tracing with the target layer kept as a leaf. The tail
is every graph node that depends on the layer output; its inputs are the layer output plus the
earlier values it reads (e.g. the identity of a residual block when the layer is inside the block).
Models that ``torch.fx`` cannot trace (data-dependent control flow) get ``None`` from
``split_at_layer`` and callers fall back to full forward passes. timm's no-trace modules and
functions (e.g. TF "same" padding) are honoured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from .capture import eval_mode
from .outputs import underlying_network

log = logging.getLogger("case_saliency")


@dataclass
class SplitModel:
    """``head(images) -> (layer_output, *saved)``; ``tail(layer_output, *saved) -> logits``.

    Both share the original model's submodules (and so its weights and training flags). They were
    traced in eval mode: Python branches on ``self.training`` are fixed to eval behaviour.
    """

    head: fx.GraphModule
    tail: fx.GraphModule
    num_saved: int


class _LeafTracer(fx.Tracer):
    def __init__(self, leaf: nn.Module, extra_leaf_types: tuple[type, ...],
                 autowrap_functions: tuple[Callable[..., Any], ...]):
        super().__init__(autowrap_functions=autowrap_functions)
        self.leaf = leaf
        self.extra_leaf_types = extra_leaf_types

    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        if module is self.leaf:
            return True
        if self.extra_leaf_types and isinstance(module, self.extra_leaf_types):
            return True
        return super().is_leaf_module(module, qualname)


def _timm_notrace() -> tuple[tuple[type, ...], tuple[Callable[..., Any], ...]]:
    try:
        from timm.layers import _fx as timm_fx
    except ImportError:  # timm is optional for splitting
        return (), ()
    modules: list[type] = timm_fx.get_notrace_modules()  # type: ignore[no-untyped-call]
    functions: list[Callable[..., Any]] = timm_fx.get_notrace_functions()  # type: ignore[no-untyped-call]
    return tuple(modules), tuple(functions)


def split_at_layer(model: nn.Module, layer: nn.Module) -> SplitModel | None:
    """Split ``model`` at ``layer`` (a submodule used once in the forward), or None if it cannot.

    Returns None (and logs why) when tracing fails, when the layer is not called exactly once as a
    module, or when nothing after the layer depends on it.
    """
    model = underlying_network(model)  # trace the user's network: its tail gives what its forward returns
    leaf_types, functions = _timm_notrace()
    tracer = _LeafTracer(layer, leaf_types, functions)
    try:
        with eval_mode(model):  # branches on self.training are baked into the trace: trace the eval behaviour
            graph = tracer.trace(model)
    except Exception as error:  # tracing fails in many model-specific ways; all mean "cannot split"
        log.info("cannot trace %s with torch.fx (%s: %s); using full forward passes",
                 type(model).__name__, type(error).__name__, error)
        return None
    layer_name = next((name for name, mod in model.named_modules() if mod is layer), None)
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer_name]
    if len(calls) != 1:
        log.info("layer %r is called %d times in the traced graph; using full forward passes",
                 layer_name, len(calls))
        return None
    layer_node = calls[0]
    output_node = next(n for n in graph.nodes if n.op == "output")

    after: set[fx.Node] = set()  # nodes that depend on the layer output, in graph (topological) order
    for node in graph.nodes:
        if node is layer_node or any(arg in after for arg in node.all_input_nodes):
            after.add(node)
    if output_node not in after:
        log.info("the model output does not depend on layer %r; using full forward passes", layer_name)
        return None
    before = [n for n in graph.nodes if n not in after and n.op != "output"]
    # Values that do not depend on the images (parameters read with get_attr, constants) are
    # recomputed in the tail rather than passed in, so that every tail input has a batch dimension.
    from_images: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(arg in from_images for arg in node.all_input_nodes):
            from_images.add(node)
    in_tail = set(after)
    for node in reversed(before):
        if node not in from_images and any(user in in_tail for user in node.users):
            in_tail.add(node)
    # Earlier values the tail reads (the layer's own input is not one, unless used again later).
    saved = [n for n in before if n in from_images
             and any(user in in_tail and user is not layer_node for user in n.users)]

    head_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in before + [layer_node]:
        env[node] = head_graph.node_copy(node, lambda n: env[n])
    head_graph.output((env[layer_node], *[env[n] for n in saved]))

    tail_graph = fx.Graph()
    env = {layer_node: tail_graph.placeholder("layer_output")}
    for i, node in enumerate(saved):
        env[node] = tail_graph.placeholder(f"saved_{i}")
    for node in graph.nodes:
        if node in in_tail and node is not layer_node:
            env[node] = tail_graph.node_copy(node, lambda n: env[n])
    head = fx.GraphModule(model, head_graph, class_name="Head")
    tail = fx.GraphModule(model, tail_graph, class_name="Tail")
    head.graph.lint()
    tail.graph.lint()
    return SplitModel(head, tail, len(saved))


def verify_split(split: SplitModel, model: nn.Module, images: Tensor, rtol: float = 1e-4) -> bool:
    """True when ``tail(head(images))`` equals ``model(images)`` (in eval mode) to ``rtol`` of the
    logits' scale: a guard against traces that silently dropped a side effect."""
    with torch.no_grad():
        expected = model(images)
        head_out = split.head(images)
        got = split.tail(*head_out)
    if not isinstance(got, Tensor) or got.shape != expected.shape:
        return False
    scale = expected.abs().max().clamp_min(1e-12)
    return bool(((got - expected).abs().max() <= rtol * scale).item())
