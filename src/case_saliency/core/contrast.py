"""Contrast-set strategies: for each target class, the k competing classes whose shared evidence
CASE removes. Each strategy maps logits (B, K) and targets (B, M) to contrast classes (B, M, k)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Protocol
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .targets import check_class_indices


class ContrastStrategy(Protocol):
    k: int

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """logits (B, K), targets (B, M) -> contrast classes (B, M, k), long."""
        ...


def _check_k(k: int) -> int:
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"contrast size k must be a non-negative int, got {k!r}")
    return k


def _ranked_others(order: Tensor, targets: Tensor, k: int) -> Tensor:
    """From a per-image class order (B, M, K) drop each target (present once) and keep the first k."""
    b, m, num = order.shape
    if k > num - 1:
        raise ValueError(f"contrast size k={k} needs at least k+1 classes; the model has {num}")
    keep = order != targets[..., None]
    return order[keep].view(b, m, num - 1)[..., :k]


class TopLogits:
    """The k highest-scoring classes of this input other than the target (the paper's top-k)."""

    def __init__(self, k: int = 1):
        self.k = _check_k(k)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        order = logits.argsort(dim=1, descending=True, stable=True)
        return _ranked_others(order[:, None, :].expand(-1, targets.shape[1], -1), targets, self.k)

    def __repr__(self) -> str:
        return f"TopLogits(k={self.k})"


class NearestLogits:
    """The k classes whose logits are closest to the target's, above or below (Finer-CAM's choice)."""

    def __init__(self, k: int = 1):
        self.k = _check_k(k)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        target_logit = logits.gather(1, targets)  # (B, M)
        distance = (logits[:, None, :] - target_logit[..., None]).abs()  # (B, M, K)
        order = distance.argsort(dim=2, stable=True)
        return _ranked_others(order, targets, self.k)

    def __repr__(self) -> str:
        return f"NearestLogits(k={self.k})"


class ConfusionNeighbours:
    """The k classes the model most often predicts instead of the target: the largest off-diagonal
    entries of the target's row of a confusion matrix (rows: true class, columns: predicted),
    after normalising each row to sum 1. Ties go to the lower class index.

    Args:
        matrix: (K, K) counts or rates, as an array, tensor, or a file (.npy, .pt, .csv, .json
            with a "matrix" key, as written by ``case-saliency confusion``).
        k: neighbours per class.
    """

    def __init__(self, matrix: np.ndarray | Tensor | str | Path | Sequence[Sequence[float]], k: int = 1):
        self.k = _check_k(k)
        self.source = str(matrix) if isinstance(matrix, (str, Path)) else "array"
        table = load_confusion_matrix(matrix) if isinstance(matrix, (str, Path)) else torch.as_tensor(
            np.asarray(matrix, dtype=np.float64))
        if table.ndim != 2 or table.shape[0] != table.shape[1]:
            raise ValueError(f"a confusion matrix must be square (K, K), got {tuple(table.shape)}")
        if (table < 0).any():
            raise ValueError("a confusion matrix cannot have negative entries")
        num = table.shape[0]
        if self.k > num - 1:
            raise ValueError(f"k={self.k} neighbours need at least k+1 classes; the matrix has {num}")
        rows = table.sum(dim=1, keepdim=True)
        empty = (rows.squeeze(1) == 0).nonzero().flatten().tolist()
        if empty:
            warnings.warn(f"confusion matrix rows {empty[:10]} are all zero (classes never seen); "
                          "their neighbours fall back to the lowest class indices", stacklevel=2)
        rates = table / rows.clamp_min(1e-12)
        self.rates = rates
        off = rates.clone()
        off.fill_diagonal_(-1.0)  # self excluded
        # Stable descending sort: ties resolved by class index, deterministically.
        self.neighbours = off.argsort(dim=1, descending=True, stable=True)[:, : self.k]  # (K, k)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.shape[1] != self.neighbours.shape[0]:
            raise ValueError(f"the confusion matrix has {self.neighbours.shape[0]} classes but the model "
                             f"outputs {logits.shape[1]}; compute the matrix for this model")
        return self.neighbours.to(targets.device)[targets]

    def __repr__(self) -> str:
        return f"ConfusionNeighbours(k={self.k}, source={self.source!r})"


class ExplicitContrast:
    """A fixed contrast set: the same classes for every target, (k,), or one row per image, (B, k)."""

    def __init__(self, classes: Sequence[int] | Tensor):
        self.classes = torch.as_tensor(classes).long()
        if self.classes.ndim not in (1, 2):
            raise ValueError(f"explicit contrast classes must be (k,) or (B, k), got {tuple(self.classes.shape)}")
        self.k = self.classes.shape[-1]

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        classes = self.classes.to(targets.device)
        if classes.ndim == 2 and classes.shape[0] != targets.shape[0]:
            raise ValueError(f"explicit contrast has {classes.shape[0]} rows for a batch of {targets.shape[0]}")
        check_class_indices(classes, logits.shape[1], "contrast class")
        rows = classes if classes.ndim == 2 else classes.expand(targets.shape[0], -1)
        return rows[:, None, :].expand(-1, targets.shape[1], -1)

    def __repr__(self) -> str:
        return f"ExplicitContrast({self.classes.tolist()})"


def load_confusion_matrix(path: str | Path) -> Tensor:
    """Read a (K, K) confusion matrix from .npy, .pt, .csv or .json (key "matrix")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"confusion matrix file {path} does not exist; "
                                "compute one with `case-saliency confusion`")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
    elif suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(data, dict):
            data = data["matrix"]
    elif suffix == ".csv":
        data = np.loadtxt(path, delimiter=",")
    elif suffix == ".json":
        data = json.loads(path.read_text())["matrix"]
    else:
        raise ValueError(f"unknown confusion matrix format {suffix!r}; use .npy, .pt, .csv or .json")
    return torch.as_tensor(np.asarray(data, dtype=np.float64))
