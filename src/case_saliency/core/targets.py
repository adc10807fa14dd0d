"""Target specs: which class each map explains, resolved from the logits of the same pass; and the
one check that class indices fit the model."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import NonFiniteInput

TargetSpec = str | int | np.integer | Sequence[int] | np.ndarray | Tensor

_RANK = re.compile(r"top(\d+)$")
_TOPK = re.compile(r"topk:(\d+)$")


def check_class_indices(classes: Tensor, num_classes: int, what: str = "target class") -> None:
    """Raise ``IndexError`` naming the first index of ``classes`` outside ``0..num_classes-1``."""
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise IndexError(f"{what} {classes[bad][0].item()} is out of range for a model with {num_classes} "
                         f"classes (valid: 0..{num_classes - 1})")


def check_finite_logits(logits: Tensor, why: str) -> None:
    """Raise ``NonFiniteInput`` naming the images whose logits (B, K) hold NaN or infinity: no class
    can be chosen from them (argmax of NaN logits would silently be class 0)."""
    bad = (~torch.isfinite(logits)).any(dim=1)
    if bad.any():
        images = bad.nonzero().flatten().tolist()
        raise NonFiniteInput(f"the model's logits for image{'s' if len(images) > 1 else ''} {images[:10]} hold NaN "
                             f"or infinite values, so {why} cannot be chosen; check the model and its inputs")


def resolve_targets(spec: TargetSpec, logits: Tensor) -> Tensor:
    """Turn a target spec into class indices for logits (B, K).

    - ``"top1"``, ``"top2"``, ``"topN"``: the N-th highest class of each image -> (B,)
    - ``"topk:N"``: the N highest classes of each image, best first -> (B, N)
    - an int (or NumPy integer): that class for every image -> (B,)
    - a list of ints, a 1-D array or tensor, one per image -> (B,)
    - a 2-D array or tensor (B, M): M classes per image -> (B, M)
    A count that differs from the batch size, or an index outside 0..K-1, is an error; so are
    ``None``, an empty list and NaN logits for a ranked spec.
    """
    batch, num_classes = logits.shape
    if spec is None:
        raise TypeError("targets=None: give 'top1' (the predicted class), 'top2', 'topk:N', a class index, "
                        "or one class index per image")
    if isinstance(spec, str):
        text = spec.strip().lower()
        rank, topk = _RANK.match(text), _TOPK.match(text)
        found = rank or topk
        n = int(found.group(1)) if found else 0
        if n < 1:
            raise ValueError(f"unknown target spec {spec!r}; use 'top1', 'top2', 'topN', 'topk:N', "
                             "an int, or one class index per image")
        if n > num_classes:
            raise ValueError(f"target spec {spec!r} asks for rank {n} but the model has {num_classes} classes")
        check_finite_logits(logits, f"the target {spec!r}")
        order = logits.topk(n, dim=1).indices
        return order[:, n - 1] if rank else order
    if isinstance(spec, (bool, np.bool_)):
        raise TypeError("targets must be class indices, not a bool")
    if isinstance(spec, numbers.Integral):  # int and NumPy integers
        classes = torch.full((batch,), int(spec), dtype=torch.long, device=logits.device)
    else:
        if isinstance(spec, Sequence) and len(spec) == 0:
            raise ValueError(f"targets is empty; give one class index per image ({batch}), a single int for all, "
                             "or 'top1'")
        classes = torch.as_tensor(spec, device=logits.device)
        if classes.is_floating_point() or classes.dtype == torch.bool or classes.is_complex():
            raise TypeError(f"targets must be integer class indices, got dtype {classes.dtype}")
        classes = classes.long()
        if classes.ndim not in (1, 2):
            raise ValueError(f"targets must be (B,) or (B, M), got shape {tuple(classes.shape)}")
        if classes.shape[0] != batch:
            raise ValueError(f"got {classes.shape[0]} targets for a batch of {batch} images; "
                             "give exactly one target per image (or a single int for all)")
        if classes.shape[-1] == 0:
            raise ValueError(f"targets has shape {tuple(classes.shape)}: no class to explain")
    check_class_indices(classes, num_classes)
    return classes
