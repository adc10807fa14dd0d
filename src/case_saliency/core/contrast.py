"""Contrast-set strategies: for each target class, the k competing classes whose shared evidence
CASE removes. Each strategy maps logits (B, K) and targets (B, M) to contrast classes (B, M, k).

Two kinds, and the difference matters for the class-sensitivity diagnostic:
- **model-level** (the same contrast for a class whatever the image): ``ConfusionNeighbours`` (the
  classes the model confuses with the target on held-out data: what the paper's RQ1 used) and
  ``ClassifierNeighbours`` (the classes whose rows of the final linear layer are closest to the
  target's by cosine: the stand-in where no confusion matrix exists, e.g. ImageNet models offline);
- **image-level**: ``TopLogits`` (the next logits of this input), ``NearestLogits`` (the logits
  closest to the target's: Finer-CAM's choice), ``RankContrast`` (the classes at fixed logit ranks),
  and ``ExplicitContrast``.
With ``TopLogits(1)`` the top-1 map of an image removes the top-2 class's direction and the top-2 map
the top-1 class's, so a top-1/top-2 comparison of CASE maps partly measures its own input; the
diagnostic therefore defaults to a model-level contrast (see :func:`default_contrast`).

Every strategy has a ``spec``, the short text that names it on the command line, in run
configurations and in method specs: ``top:K``, ``nearest:K``, ``classifier:K``, ``confusion:K``,
``rank:R`` (``rank:3+4`` for several ranks), ``explicit:C`` (``explicit:5+7``); :func:`build_contrast`
turns such a text back into a strategy.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Protocol
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .targets import check_class_indices


class ContrastStrategy(Protocol):
    k: int

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """logits (B, K), targets (B, M) -> contrast classes (B, M, k), long."""
        ...


def contrast_classes(strategy: ContrastStrategy, logits: Tensor, targets: Tensor) -> Tensor:
    """``strategy(logits, targets)`` checked: (B, M, k) long class indices in range, none of them the
    target it contrasts. A target in its own contrast set is refused: CASE would remove the target's
    own direction and leave a map of rounding noise (~1e-6) that normalisation blows up."""
    classes = torch.as_tensor(strategy(logits, targets)).long()
    b, m = targets.shape
    if classes.ndim != 3 or classes.shape[:2] != (b, m):
        raise ValueError(f"contrast strategy {strategy!r} returned shape {tuple(classes.shape)}; "
                         f"expected (B, M, k) = ({b}, {m}, k)")
    num = logits.shape[1]
    if ((classes < 0) | (classes >= num)).any():
        bad = torch.unique(classes[(classes < 0) | (classes >= num)]).tolist()
        raise IndexError(f"contrast strategy {strategy!r} gave class indices {bad[:10]} out of range for a model with "
                         f"{num} classes (valid: 0..{num - 1}); a confusion matrix or class list of another model?")
    _refuse_target(classes, targets, repr(strategy))
    return classes


def _refuse_target(classes: Tensor, targets: Tensor, name: str) -> None:
    clash = (classes == targets[..., None]).any(-1)  # (B, M)
    if clash.any():
        image, slot = (int(v) for v in clash.nonzero()[0])
        raise ValueError(f"the contrast set {classes[image, slot].tolist()} of image {image} contains its target "
                         f"class {int(targets[image, slot])}; a class contrasted with itself leaves no evidence "
                         f"(a map of rounding noise). Remove the target from the contrast ({name})")


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
    """The k highest-scoring classes of this input other than the target (the paper's top-k contrast,
    its figures' setting). Image-level: in a top-1/top-2 comparison each map's contrast is the
    other compared class, so do not use it for the class-sensitivity diagnostic unless that
    circularity is what you want to measure."""

    def __init__(self, k: int = 1):
        self.k = _check_k(k)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        order = logits.argsort(dim=1, descending=True, stable=True)
        return _ranked_others(order[:, None, :].expand(-1, targets.shape[1], -1), targets, self.k)

    @property
    def spec(self) -> str:
        return f"top:{self.k}"

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

    @property
    def spec(self) -> str:
        return f"nearest:{self.k}"

    def __repr__(self) -> str:
        return f"NearestLogits(k={self.k})"


class ConfusionNeighbours:
    """The k classes the model most often predicts instead of the target: the largest off-diagonal
    entries of the target's row of a confusion matrix (rows: true class, columns: predicted),
    after normalising each row to sum 1. Ties go to the lower class index. Model-level: the
    contrast the paper's class-sensitivity experiments (RQ1) used, with k = 1.

    Args:
        matrix: (K, K) counts or rates, as an array, tensor, or a file (.npy, .pt, .csv, .json
            with a "matrix" key, as written by ``case-saliency confusion``); every entry finite and
            non-negative.
        k: neighbours per class.
    """

    def __init__(self, matrix: np.ndarray | Tensor | str | Path | Sequence[Sequence[float]], k: int = 1):
        self.k = _check_k(k)
        self.source = str(matrix) if isinstance(matrix, (str, Path)) else "array"
        table = load_confusion_matrix(matrix) if isinstance(matrix, (str, Path)) else torch.as_tensor(
            np.asarray(matrix, dtype=np.float64))
        if table.ndim != 2 or table.shape[0] != table.shape[1]:
            raise ValueError(f"a confusion matrix must be square (K, K), got {tuple(table.shape)}")
        bad = ~torch.isfinite(table)
        if bad.any():
            row, col = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"confusion matrix ({self.source}) has {int(bad.sum())} NaN or infinite entries "
                             f"(the first at row {row}, column {col}: {table[row, col].item()}); "
                             "recompute it with `case-saliency confusion`")
        if (table < 0).any():
            raise ValueError("a confusion matrix cannot have negative entries")
        num = table.shape[0]
        if self.k > num - 1:
            raise ValueError(f"k={self.k} neighbours need at least k+1 classes; the matrix has {num}")
        self.table = table
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

    def with_k(self, k: int) -> ConfusionNeighbours:
        """The same matrix with another number of neighbours."""
        other = ConfusionNeighbours(self.table, k)
        other.source = self.source
        return other

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.shape[1] != self.neighbours.shape[0]:
            raise ValueError(f"the confusion matrix has {self.neighbours.shape[0]} classes but the model "
                             f"outputs {logits.shape[1]}; compute the matrix for this model")
        return self.neighbours.to(targets.device)[targets]

    @property
    def spec(self) -> str:
        return f"confusion:{self.k}"

    def __repr__(self) -> str:
        return f"ConfusionNeighbours(k={self.k}, source={self.source!r})"


def classifier_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's final linear layer, (name, module): timm's ``get_classifier()`` where it is an
    ``nn.Linear``, else the last ``nn.Linear`` registered in the model (torchvision's ``fc``,
    ``classifier``, ``heads.head``, ...). Raises ValueError for a model without one."""
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Linear):
            name = next((n for n, m in model.named_modules() if m is head), "classifier")
            return name, head
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer, so its classifier neighbours are "
                         "undefined; pass the (K, D) weight of its last layer (ClassifierNeighbours(weight)), or use "
                         "a confusion matrix (ConfusionNeighbours, --confusion) or TopLogits")
    return found[-1]


class ClassifierNeighbours:
    """The k classes whose rows of the final linear layer are most similar to the target's row
    (cosine similarity of the weight rows, bias ignored; ties go to the lower class index).
    Model-level, and needs no data: the stand-in for confusion neighbours where no confusion
    matrix exists. For a global-average-pool + linear head the Grad-CAM weights of a class are its
    row up to the activation's gating, so these are the classes whose Grad-CAM directions are
    closest to the target's, whatever the image.

    Args:
        model: the classifier (its last ``nn.Linear`` is used, see :func:`classifier_layer`), an
            ``nn.Linear``, or a (K, D) weight tensor.
        k: neighbours per class.
    Cost: one (K, K) cosine table, computed once, in blocks (float64, on the CPU).
    """

    def __init__(self, model: nn.Module | Tensor, k: int = 1):
        self.k = _check_k(k)
        if isinstance(model, Tensor):
            weight, self.layer = model.detach(), "weight"
        elif isinstance(model, nn.Linear):
            weight, self.layer = model.weight.detach(), "linear"
        elif isinstance(model, nn.Module):
            self.layer, head = classifier_layer(model)
            weight = head.weight.detach()
        else:
            raise TypeError(f"ClassifierNeighbours needs a model, an nn.Linear or a (K, D) weight, "
                            f"got {type(model).__name__}")
        if weight.ndim != 2:
            raise ValueError(f"classifier weight must be (K, D), got {tuple(weight.shape)}")
        num = weight.shape[0]
        if self.k > num - 1:
            raise ValueError(f"k={self.k} neighbours need at least k+1 classes; the classifier has {num}")
        unit = weight.double().cpu()
        unit = unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-12)
        blocks = []
        for start in range(0, num, 1024):  # (1024, K) at a time: no (K, K) table for very many classes
            similarity = unit[start:start + 1024] @ unit.T
            rows = torch.arange(start, min(start + 1024, num))
            similarity[rows - start, rows] = -2.0  # below any cosine: self excluded
            blocks.append(similarity.argsort(dim=1, descending=True, stable=True)[:, : self.k])
        self.neighbours = torch.cat(blocks)  # (K, k)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.shape[1] != self.neighbours.shape[0]:
            raise ValueError(f"the classifier layer {self.layer!r} has {self.neighbours.shape[0]} outputs but the "
                             f"model gives {logits.shape[1]} logits; pass the weight of the layer that makes the "
                             "logits (ClassifierNeighbours(weight)) or use another contrast")
        return self.neighbours.to(targets.device)[targets]

    @property
    def spec(self) -> str:
        return f"classifier:{self.k}"

    def __repr__(self) -> str:
        return f"ClassifierNeighbours(k={self.k}, layer={self.layer!r})"


class RankContrast:
    """The classes at fixed logit ranks of this input (1 = the top class), the same for every
    target of the image: ``RankContrast(3)`` contrasts both the top-1 and the top-2 map with the
    rank-3 class, a control for the circularity of ``TopLogits(1)``. A target that is one of those
    classes is refused."""

    def __init__(self, ranks: int | Sequence[int]):
        ranks = [ranks] if isinstance(ranks, int) else list(ranks)
        if not ranks or any(not isinstance(r, int) or r < 1 for r in ranks):
            raise ValueError(f"ranks must be positive ints (1 = the top class), got {ranks!r}")
        self.ranks = ranks
        self.k = len(ranks)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        if max(self.ranks) > logits.shape[1]:
            raise ValueError(f"rank {max(self.ranks)} asked but the model has {logits.shape[1]} classes")
        order = logits.argsort(dim=1, descending=True, stable=True)
        chosen = order[:, [r - 1 for r in self.ranks]]  # (B, k)
        return chosen[:, None, :].expand(-1, targets.shape[1], -1)

    @property
    def spec(self) -> str:
        return "rank:" + "+".join(str(r) for r in self.ranks)

    def __repr__(self) -> str:
        return f"RankContrast({self.ranks})"


class ExplicitContrast:
    """A fixed contrast set: the same classes for every target, (k,), or one row per image, (B, k).
    A target inside its own contrast set is refused (see :func:`contrast_classes`)."""

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
        out = rows[:, None, :].expand(-1, targets.shape[1], -1)
        _refuse_target(out, targets, repr(self))
        return out

    @property
    def spec(self) -> str:
        if self.classes.ndim == 2:
            return "explicit:per-image"
        return "explicit:" + "+".join(str(c) for c in self.classes.tolist())

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


CONTRAST_KINDS = ("classifier", "confusion", "top", "nearest", "rank", "explicit")
_SPEC = re.compile(r"^([a-z]+)(?::(\d+(?:\+\d+)*))?$")


def contrast_spec(strategy: ContrastStrategy | str | None) -> str:
    """The short text that names a strategy (``classifier:1``, ``top:5``, ...); its repr for a
    strategy defined elsewhere; "none" for None. A spec text comes back in canonical form
    (``"Classifier"`` -> ``"classifier:1"``)."""
    if strategy is None:
        return "none"
    if isinstance(strategy, str):
        text = strategy.strip().lower()
        match = _SPEC.match(text)
        if match and match.group(1) in CONTRAST_KINDS and match.group(2) is None \
                and match.group(1) not in ("rank", "explicit"):
            return f"{text}:1"
        return text
    return str(getattr(strategy, "spec", None) or repr(strategy))


def build_contrast(spec: str | ContrastStrategy, *, model: nn.Module | None = None,
                   confusion: ConfusionNeighbours | np.ndarray | Tensor | str | Path | None = None) -> ContrastStrategy:
    """A contrast strategy from its spec text (a strategy is returned as is).

    ``classifier:K`` (needs ``model``), ``confusion:K`` (needs ``confusion``: a matrix, a file, or a
    ``ConfusionNeighbours`` whose matrix is reused), ``top:K``, ``nearest:K``, ``rank:R[+R...]``,
    ``explicit:C[+C...]``; K defaults to 1.
    """
    if not isinstance(spec, str):
        return spec
    text = spec.strip().lower()
    match = _SPEC.match(text)
    kinds = ", ".join(f"{kind}:K" if kind not in ("rank", "explicit") else f"{kind}:N[+N...]"
                      for kind in CONTRAST_KINDS)
    if not match or match.group(1) not in CONTRAST_KINDS:
        raise ValueError(f"unknown contrast {spec!r}; use one of {kinds} (e.g. classifier:1, top:5, rank:3)")
    kind, arg = match.group(1), match.group(2)
    numbers = [int(v) for v in arg.split("+")] if arg else []
    if kind in ("rank", "explicit"):
        if not numbers:
            raise ValueError(f"contrast {spec!r} needs its classes, e.g. {kind}:3 or {kind}:3+4")
        return RankContrast(numbers) if kind == "rank" else ExplicitContrast(numbers)
    if len(numbers) > 1:
        raise ValueError(f"contrast {spec!r}: {kind} takes one number of classes, e.g. {kind}:3")
    k = numbers[0] if numbers else 1
    if kind == "top":
        return TopLogits(k)
    if kind == "nearest":
        return NearestLogits(k)
    if kind == "classifier":
        if model is None:
            raise ValueError(f"contrast {spec!r} needs the model (its final linear layer)")
        return ClassifierNeighbours(model, k)
    if confusion is None:
        raise ValueError(f"contrast {spec!r} needs a confusion matrix (--confusion FILE, or confusion=...)")
    if isinstance(confusion, ConfusionNeighbours):
        return confusion.with_k(k)
    return ConfusionNeighbours(confusion, k)


def default_contrast(confusion: object | None = None, k: int = 1) -> str:
    """The spec of the contrast CASE uses when none is given: confusion neighbours when a confusion
    matrix is available, else classifier neighbours. Both are model-level, so a top-1/top-2
    comparison never hands CASE the class it is compared with by construction."""
    return f"confusion:{k}" if confusion is not None else f"classifier:{k}"
