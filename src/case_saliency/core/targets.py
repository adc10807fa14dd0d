"""Target specs: which class each map explains, resolved from the logits of the same pass."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

TargetSpec = str | int | Sequence[int] | Tensor

_RANK = re.compile(r"top(\d+)$")
_TOPK = re.compile(r"topk:(\d+)$")


def resolve_targets(spec: TargetSpec, logits: Tensor) -> Tensor:
    """Turn a target spec into class indices for logits (B, K).

    - ``"top1"``, ``"top2"``, ``"topN"``: the N-th highest class of each image -> (B,)
    - ``"topk:N"``: the N highest classes of each image, best first -> (B, N)
    - an int: that class for every image -> (B,)
    - a list of ints or a 1-D tensor, one per image -> (B,)
    - a 2-D tensor (B, M): M classes per image -> (B, M)
    A count that differs from the batch size, or an index outside 0..K-1, is an error.
    """
    batch, num_classes = logits.shape
    if isinstance(spec, str):
        text = spec.strip().lower()
        rank, topk = _RANK.match(text), _TOPK.match(text)
        n = int((rank or topk).group(1)) if (rank or topk) else 0
        if n < 1:
            raise ValueError(f"unknown target spec {spec!r}; use 'top1', 'top2', 'topN', 'topk:N', "
                             "an int, or one class index per image")
        if n > num_classes:
            raise ValueError(f"target spec {spec!r} asks for rank {n} but the model has {num_classes} classes")
        order = logits.topk(n, dim=1).indices
        return order[:, n - 1] if rank else order
    if isinstance(spec, bool):
        raise TypeError("targets must be class indices, not a bool")
    if isinstance(spec, int):
        classes = torch.full((batch,), spec, dtype=torch.long, device=logits.device)
    else:
        classes = torch.as_tensor(spec, device=logits.device)
        if classes.is_floating_point() or classes.dtype == torch.bool:
            raise TypeError(f"targets must be integer class indices, got dtype {classes.dtype}")
        classes = classes.long()
        if classes.ndim not in (1, 2):
            raise ValueError(f"targets must be (B,) or (B, M), got shape {tuple(classes.shape)}")
        if classes.shape[0] != batch:
            raise ValueError(f"got {classes.shape[0]} targets for a batch of {batch} images; "
                             "give exactly one target per image (or a single int for all)")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise IndexError(f"target class {classes[bad][0].item()} is out of range for a model with "
                         f"{num_classes} classes (valid: 0..{num_classes - 1})")
    return classes
