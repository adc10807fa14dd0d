"""Batches of (image, channel) pairs for the channel-perturbation methods (Score-CAM, Ablation-CAM)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

Score = Callable[[Tensor, Tensor], Tensor]  # (logits (n, K), image index (n,)) -> scores (n, M)


def class_logits(classes: Tensor | None) -> Score:
    """The default score of a perturbed pass: the logits of each image's ``classes`` (B, M)."""
    if classes is None:
        raise ValueError("give the classes to score (B, M), or a score function")
    chosen = classes

    def score(logits: Tensor, image_index: Tensor) -> Tensor:
        return logits.gather(1, chosen[image_index])

    return score


def channel_pairs(activations: Tensor, batch_size: int, skip: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(image_index, channel_index)`` long tensors of at most ``batch_size`` pairs, covering
    every (b, c) of ``activations`` (B, C, ...) except where ``skip`` (B, C) is True. Batches span
    image boundaries, so the last batch of one image is filled with the first channels of the next."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    b, c = activations.shape[:2]
    keep = torch.ones(b, c, dtype=torch.bool, device=activations.device) if skip is None else ~skip
    images, channels = keep.nonzero(as_tuple=True)
    for start in range(0, images.numel(), batch_size):
        yield images[start : start + batch_size], channels[start : start + batch_size]
