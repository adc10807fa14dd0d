"""Timing and reference helpers shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def images_per_second(fn: Callable[[torch.Tensor], object], images: torch.Tensor, repeats: int,
                      warmup: bool = True) -> float:
    """Images per second of ``fn(images)``: median of ``repeats``, after one warm-up call on one image."""
    if warmup:
        fn(images[:1])
    return len(images) / seconds(lambda: fn(images), repeats)


def interleaved_images_per_second(rows: dict[str, tuple[Callable[[torch.Tensor], object], torch.Tensor, int]]
                                  ) -> dict[str, float]:
    """Images per second of each row ``name: (fn, images, repeats)``, median of its repeats, with the
    rows timed in turn (round robin) so that slow drifts of a shared machine hit all rows alike.
    Each row is warmed up on one image first."""
    for fn, images, _ in rows.values():
        fn(images[:1])
    times: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(max(repeats for _, _, repeats in rows.values())):
        for name, (fn, images, repeats) in rows.items():
            if round_ < repeats:
                start = time.perf_counter()
                fn(images)
                times[name].append(time.perf_counter() - start)
    return {name: len(rows[name][1]) / statistics.median(t) for name, t in times.items()}


def naive_case_map(model: torch.nn.Module, layer: torch.nn.Module, image: torch.Tensor, target: int,
                   contrast: list[int]) -> torch.Tensor:
    """CASE as the paper's public code computes it: a full forward and backward pass per class, input
    requiring grad. ``image`` is ``(C, H, W)``; returns the ReLU'd map at layer resolution ``(h, w)``."""
    store: dict = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.update(out=o))
    try:
        weights = []
        for cls in [target, *contrast]:
            x = image[None].clone().requires_grad_(True)
            logits = model(x)
            store["out"].retain_grad()
            model.zero_grad()
            logits[0, cls].backward()
            weights.append(store["out"].grad[0].mean(dim=(1, 2)))
        activation = store["out"].detach()[0]
    finally:
        handle.remove()
    w_t, w_s = weights[0], torch.stack(weights[1:]).mean(0)
    w_perp = w_t - (w_t @ w_s) / (w_s @ w_s + 1e-8) * w_s
    return torch.relu((w_perp[:, None, None] * activation).sum(0))


def quiet_tqdm() -> None:
    """pytorch-grad-cam prints a tqdm bar per call; silence it (it costs little either way)."""
    import functools

    import tqdm

    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)


def grad_cam_targets(model: torch.nn.Module, images: torch.Tensor) -> list:
    """pytorch-grad-cam targets for each image's top-1 class."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with torch.no_grad():
        return [ClassifierOutputTarget(int(c)) for c in model(images).argmax(1)]
