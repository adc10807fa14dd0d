"""Many methods, one pass: ``explain_many`` gives the gradient CAMs that share a layer (Grad-CAM,
Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Finer-CAM, CASE and its gradient variants) one capture
per layer and batch, with the union of the classes they need (targets plus every contrast set) in
one batched backward; each method then applies only its rule."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar, overload

import torch
from torch import Tensor

from ..core.capture import Capture, autograd_available, prepare_images
from ..core.maps import SaliencyMaps
from ..core.targets import TargetSpec
from .base import CAMMethod, SaliencyMethod

Key = TypeVar("Key", bound=Hashable)


@overload
def explain_many(methods: Mapping[str, SaliencyMethod], images: Tensor, targets: TargetSpec = ..., *,
                 relu: bool = ..., upsample: bool = ..., normalize: bool = ...) -> dict[str, SaliencyMaps]: ...


@overload
def explain_many(methods: Sequence[SaliencyMethod], images: Tensor, targets: TargetSpec = ..., *,
                 relu: bool = ..., upsample: bool = ..., normalize: bool = ...) -> list[SaliencyMaps]: ...


def explain_many(methods: Mapping[str, SaliencyMethod] | Sequence[SaliencyMethod], images: Tensor,
                 targets: TargetSpec = "top1", *, relu: bool = True, upsample: bool = True,
                 normalize: bool = False) -> dict[str, SaliencyMaps] | list[SaliencyMaps]:
    """``method.explain(images, targets, ...)`` for every method, sharing passes where they can.

    Gradient CAMs on the same network, layer and reshape (``CAMMethod.shares_capture_with``) get one
    forward pass and one batched backward for the union of the classes they need: the targets and
    every method's contrast classes, each distinct class column once (when one of them explains a
    weighted sum of the logits, as Finer-CAM does, every class column becomes a one-hot logit weight in
    the same backward). Other methods (Score-CAM,
    Ablation-CAM, the Captum methods, controls, another layer) run their own ``explain``. The maps
    equal the per-method maps.

    Args:
        methods: a dict ``{name: method}`` (the result is a dict with the same keys) or a list (a list
            in the same order).
        images, targets, relu, upsample, normalize: as ``SaliencyMethod.explain``.
    Cost per group of sharing methods: one forward and one backward to the layer for U classes per
    image, U <= the sum of the methods' class counts (targets are shared by all of them).
    """
    named: dict[Hashable, SaliencyMethod] = {}
    named.update(methods.items() if isinstance(methods, Mapping) else enumerate(methods))
    results = explain_shared(named, images, targets, relu=relu, upsample=upsample, normalize=normalize)
    for key, method in named.items():
        if key not in results:
            results[key] = method.explain(images, targets, relu=relu, upsample=upsample, normalize=normalize)
    ordered = [results[key] for key in named]
    if isinstance(methods, Mapping):
        return dict(zip(named, ordered, strict=True))  # type: ignore[arg-type]
    return ordered


def explain_shared(methods: Mapping[Key, SaliencyMethod], images: Tensor, targets: TargetSpec = "top1", *,
                   relu: bool = True, upsample: bool = True, normalize: bool = False) -> dict[Key, SaliencyMaps]:
    """The part of ``explain_many`` that shares passes: maps only for the methods of ``methods`` that
    share a capture with at least one other (the caller runs the rest its own way, e.g. with its
    own error handling per method)."""
    named = dict(methods)
    results: dict[Key, SaliencyMaps] = {}
    with autograd_available():
        prepared: dict[int, Tensor] = {}
        groups: list[list[Key]] = []
        for key, method in named.items():
            if isinstance(method, CAMMethod) and method.needs_gradients:
                if id(method.model) not in prepared:
                    prepared[id(method.model)] = prepare_images(images, method.model)
                x = prepared[id(method.model)]
                home = next((group for group in groups if method.shares_capture_with(_cam(named[group[0]]), x)),
                            None)
                if home is None:
                    groups.append([key])
                else:
                    home.append(key)
        for group in groups:
            if len(group) > 1:
                _explain_group({key: named[key] for key in group}, prepared, targets, results, relu=relu,
                               upsample=upsample, normalize=normalize)
    return results


def _cam(method: SaliencyMethod) -> CAMMethod:
    assert isinstance(method, CAMMethod)
    return method


def _explain_group(group: dict[Key, SaliencyMethod], prepared: dict[int, Tensor], targets: TargetSpec,
                   results: dict[Key, SaliencyMaps], *, relu: bool, upsample: bool, normalize: bool) -> None:
    """One capture for the methods of ``group`` (they share it), then each method's rule."""
    methods = {key: method for key, method in group.items() if isinstance(method, CAMMethod)}
    lead = next(iter(methods.values()))
    images = prepared[id(lead.model)]
    requests = {key: method.request(targets) for key, method in methods.items()}
    columns: dict[Key, Tensor] = {}

    def union(logits: Tensor) -> Tensor:
        parts = [request(logits) for request in requests.values()]  # (B, M_i) classes or (B, M_i, K) weights
        if any(part.is_floating_point() for part in parts):  # a method explains weighted logits: one-hot the rest
            parts = [part if part.is_floating_point()
                     else torch.nn.functional.one_hot(part, logits.shape[1]).to(logits.dtype) for part in parts]
        unique: Tensor
        inverse: Tensor
        unique, inverse = torch.unique(torch.cat(parts, dim=1), dim=1, return_inverse=True)
        start = 0
        for key, part in zip(requests, parts, strict=True):
            columns[key] = inverse[start:start + part.shape[1]]
            start += part.shape[1]
        return unique

    capture = lead.engine(images, union)
    assert capture.gradients is not None
    size = (int(images.shape[-2]), int(images.shape[-1]))
    for key, method in methods.items():
        request = requests[key]
        view = Capture(capture.logits, capture.activations, capture.gradients[:, columns[key]], request.classes)
        raw = method.maps_from(images, view, request)
        results[key] = method.finish(raw, request, size, relu=relu, upsample=upsample, normalize=normalize)
