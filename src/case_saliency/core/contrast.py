"""Contrast-set strategies: for each target class, the k competing classes whose shared evidence
CASE removes. Each strategy maps logits (B, K) and targets (B, M) to contrast classes (B, M, k).

Two kinds, and the difference matters for the class-sensitivity diagnostic:
- **model-level** (the same contrast for a class whatever the image): ``ConfusionNeighbours`` (the
  classes the model confuses with the target on held-out data: what the paper's RQ1 used) and
  ``ClassifierNeighbours`` (the classes whose rows of the final linear layer are closest to the
  target's by cosine: the stand-in where no confusion matrix exists, e.g. ImageNet models offline);
  ``LeavePairOut`` (either of those, minus the other classes compared on the same image: never
  circular, the diagnostic's default) and ``RandomContrast`` (seeded random classes per target
  class, the other compared classes excluded: a control);
- **image-level**: ``TopLogits`` (the next logits of this input), ``NearestLogits`` (the logits
  closest to the target's: Finer-CAM's choice), ``RankContrast`` (the classes at fixed logit ranks),
  and ``ExplicitContrast``;
- **the pair**: ``Versus`` ("A rather than B": each target's contrast is the other target(s) of its
  image). Circular by design: it answers a user's question, not the diagnostic's.
With ``TopLogits(1)`` the top-1 map of an image removes the top-2 class's direction and the top-2 map
the top-1 class's, so a top-1/top-2 comparison of CASE maps partly measures its own input; with
plain classifier or confusion neighbours it does so whenever the other compared class is a
neighbour. The diagnostic therefore defaults to ``LeavePairOut`` (see :func:`default_contrast`).

Every strategy has a ``spec``, the short text that names it on the command line, in run
configurations and in method specs: ``top:K``, ``nearest:K``, ``classifier:K``, ``confusion:K``,
``leave-pair-out[:classifier|confusion|top|nearest][:K]``, ``random:K[:SEED]``, ``versus``, ``rank:R``
(``rank:3+4`` for several ranks), ``explicit:C`` (``explicit:5+7``); :func:`build_contrast` turns such
a text back into a strategy (the one contrast grammar of the library). Files (a stored confusion
matrix) are read at the edges, by ``case_saliency.workflows.confusion``.
"""

from __future__ import annotations

import re
import warnings
import weakref
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

    def with_k(self, k: int) -> TopLogits:
        return TopLogits(k)

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

    def with_k(self, k: int) -> NearestLogits:
        return NearestLogits(k)

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
        matrix: (K, K) counts or rates, as an array or tensor; every entry finite and non-negative.
            A stored matrix (``case-saliency confusion``) is read, identity-checked, by
            ``case_saliency.workflows.confusion.confusion_neighbours(path, loaded)``.
        k: neighbours per class.
    Raises:
        TypeError: for a file path (files are read at the edges, not here).
        ValueError: for a matrix that is not square, has NaN, infinite or negative entries, or too
            few classes for k.
    """

    def __init__(self, matrix: np.ndarray | Tensor | Sequence[Sequence[float]], k: int = 1):
        self.k = _check_k(k)
        if isinstance(matrix, (str, Path)):
            raise TypeError(f"ConfusionNeighbours takes the (K, K) matrix, not the file {str(matrix)!r}; read it with "
                            "case_saliency.workflows.confusion.confusion_neighbours(path, loaded) (identity-checked) "
                            "or read_matrix_file(path)")
        self.source = "array"
        table = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
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



def _top_k_stable(similarity: Tensor, k: int) -> Tensor:
    """The indices of the k largest entries of each row of ``similarity`` (R, K), by descending value,
    ties to the lower index: what ``argsort(descending=True, stable=True)[:, :k]`` gives, without
    sorting (or holding the (R, K) int64 order of) the whole row."""
    if k == 0:
        return torch.empty(similarity.shape[0], 0, dtype=torch.long)
    threshold = similarity.topk(k, dim=1).values[:, -1:]  # (R, 1): the k-th largest value
    candidates = similarity >= threshold  # k per row, more only where values tie at the threshold
    counts = candidates.sum(1)
    out = torch.empty(similarity.shape[0], k, dtype=torch.long)
    plain = counts == k
    if plain.any():
        index = candidates[plain].nonzero()[:, 1].view(-1, k)  # ascending index within each row
        values = similarity[plain].gather(1, index)
        out[plain] = index.gather(1, values.argsort(dim=1, descending=True, stable=True))
    for row in (~plain).nonzero().flatten().tolist():  # ties at the threshold: rare, row by row
        index = candidates[row].nonzero().flatten()
        order = similarity[row, index].argsort(descending=True, stable=True)[:k]
        out[row] = index[order]
    return out


def nearest_rows(weight: Tensor, k: int, block_entries: int = 1 << 22) -> Tensor:
    """For each row of ``weight`` (K, D), the k other rows most similar by cosine (ties to the lower
    index): (K, k) long. Computed in row blocks of about ``block_entries`` similarities, keeping
    only the top k of each: O(K·k) memory besides one block, whatever K."""
    num = weight.shape[0]
    unit = weight.detach().double().cpu()
    unit = unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rows_per_block = max(1, block_entries // max(num, 1))
    out = torch.empty(num, k, dtype=torch.long)
    for start in range(0, num, rows_per_block):
        stop = min(start + rows_per_block, num)
        similarity = unit[start:stop] @ unit.T
        rows = torch.arange(start, stop)
        similarity[rows - start, rows] = -2.0  # below any cosine: self excluded
        out[start:stop] = _top_k_stable(similarity, k)
    return out


# (data pointer, shape, version counter) -> (the weight it was computed on, its (K, k) table for the largest k
# asked so far: a smaller k is its first columns, the order being stable). The weak reference keeps no weight
# alive; while it lives, its memory cannot be reused by another tensor.
_NEAREST_CACHE: dict[tuple[int, tuple[int, ...], int], tuple[weakref.ref[Tensor], Tensor]] = {}


def _shared_nearest_rows(weight: Tensor, k: int) -> Tensor:
    """:func:`nearest_rows`, computed once per weight (its memory and in-place version): the CASE methods
    of one run share one table (a leave-pair-out contrast asks one neighbour more than a plain one), which
    for a 21,843-class head takes most of a minute."""
    key = (weight.data_ptr(), tuple(weight.shape), weight._version)
    hit = _NEAREST_CACHE.get(key)
    if hit is not None and hit[0]() is not None and hit[1].shape[1] >= k:
        return hit[1][:, :k]
    for stale in [key for key, (ref, _) in _NEAREST_CACHE.items() if ref() is None]:
        del _NEAREST_CACHE[stale]
    table = nearest_rows(weight, k)
    _NEAREST_CACHE[key] = (weakref.ref(weight), table)
    return table


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
    Cost: the (K, K) cosine table, computed once in row blocks of at most ~4M entries (float64, on
    the CPU), of which only the top k per row are kept: O(K·k) memory besides one block.
    """

    def __init__(self, model: nn.Module | Tensor, k: int = 1):
        self.k = _check_k(k)
        if isinstance(model, Tensor):
            weight, self.layer = model, "weight"
        elif isinstance(model, nn.Linear):
            weight, self.layer = model.weight, "linear"
        elif isinstance(model, nn.Module):
            self.layer, head = classifier_layer(model)
            weight = head.weight
        else:
            raise TypeError(f"ClassifierNeighbours needs a model, an nn.Linear or a (K, D) weight, "
                            f"got {type(model).__name__}")
        if weight.ndim != 2:
            raise ValueError(f"classifier weight must be (K, D), got {tuple(weight.shape)}")
        num = weight.shape[0]
        if self.k > num - 1:
            raise ValueError(f"k={self.k} neighbours need at least k+1 classes; the classifier has {num}")
        self.weight = weight  # the model's own parameter (no copy): with_k, and the shared table's key
        self._neighbours: Tensor | None = None

    @property
    def neighbours(self) -> Tensor:
        """(K, k) long: built on first use (a run that checks its contrast but runs no CASE method never
        pays for it), and shared by every strategy on the same unchanged weight and k."""
        if self._neighbours is None:
            self._neighbours = _shared_nearest_rows(self.weight, self.k)
        return self._neighbours

    def with_k(self, k: int) -> ClassifierNeighbours:
        """The same classifier with another number of neighbours."""
        other = ClassifierNeighbours(self.weight, k)
        other.layer = self.layer
        return other

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


def _first_not_compared(candidates: Tensor, targets: Tensor, k: int) -> Tensor:
    """From candidates (B, M, n), in order of preference, the first k that are none of the image's
    targets (B, M): (B, M, k). Needs at least k such candidates in every row."""
    compared = (candidates[..., None] == targets[:, None, None, :]).any(-1)  # (B, M, n)
    if ((~compared).sum(-1) < k).any():
        raise ValueError(f"fewer than k={k} candidates outside the compared classes {targets.tolist()[:3]}...; "
                         "ask for fewer contrast classes")
    order = compared.to(torch.uint8).argsort(dim=-1, stable=True)[..., :k]  # kept candidates first, in order
    return candidates.gather(-1, order)



Ranked = ConfusionNeighbours | ClassifierNeighbours | TopLogits | NearestLogits  # strategies with an order


class LeavePairOut:
    """Contrast classes that are never the class a map is compared with: for each target, the k first
    classes of a ranked strategy (classifier or confusion neighbours, model-level; or the top or
    nearest logits of the image) after removing the other targets of the same image. In the
    top-1/top-2 diagnostic neither map's contrast holds the other compared class, so no map is
    pushed away from its partner by construction, and no pair has to be dropped for being circular
    (dropping them drops the hardest pairs).

    Args:
        base: ``ClassifierNeighbours``, ``ConfusionNeighbours``, ``TopLogits`` or ``NearestLogits``
            (any k: its ranking is reused).
        k: contrast classes per target (default: the base's k).
    Cost: the base's ranking of k + M - 1 classes per target (a model-level table is built once
    per number M of targets per image), then a gather per call.
    """

    def __init__(self, base: Ranked, k: int | None = None):
        if not isinstance(base, (ConfusionNeighbours, ClassifierNeighbours, TopLogits, NearestLogits)):
            raise TypeError(f"leave-pair-out needs a ranked contrast as its base (classifier or confusion neighbours, "
                            f"top or nearest logits), got {base!r}")
        self.k = _check_k(base.k if k is None else k)
        self.kind = base.spec.split(":")[0]
        self.base = base
        self._bases: dict[int, Ranked] = {base.k: base}
        self.source = getattr(base, "source", None) or getattr(base, "layer", None)
        self.layer = getattr(base, "layer", None)

    def _ranked(self, m: int, num: int) -> Ranked:
        wanted = min(self.k + m - 1, num - 1)
        if wanted not in self._bases:
            self._bases[wanted] = self.base.with_k(wanted)
        return self._bases[wanted]

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        candidates = self._ranked(targets.shape[1], logits.shape[1])(logits, targets)  # (B, M, k + M - 1)
        return _first_not_compared(candidates, targets, self.k)

    @property
    def spec(self) -> str:
        return f"leave-pair-out:{self.kind}:{self.k}"

    def __repr__(self) -> str:
        return f"LeavePairOut({self.base!r}, k={self.k})"


def leave_pair_out(strategy: ContrastStrategy) -> ContrastStrategy:
    """``LeavePairOut(strategy)`` for a ranked strategy not yet without the compared classes; any
    other strategy (random, versus, rank, explicit, or one already leaving the pair out) as it is."""
    if isinstance(strategy, (ConfusionNeighbours, ClassifierNeighbours, TopLogits, NearestLogits)):
        return LeavePairOut(strategy)
    return strategy


class RandomContrast:
    """A control: for each target class, k classes drawn at random (seeded, the same for a class
    whatever the image or batch), never the target nor another target of the same image.

    Args:
        k: contrast classes per target.
        seed: the draw's seed; class c's ranking comes from ``torch.Generator().manual_seed(seed *
            1_000_003 + c)``, so it does not depend on the batch or on the order of the images.
    """

    def __init__(self, k: int = 1, seed: int = 0):
        self.k = _check_k(k)
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"random contrast seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self._rankings: dict[tuple[int, int], Tensor] = {}

    def _ranking(self, cls: int, num: int, n: int) -> Tensor:
        key = (cls, num)
        if key not in self._rankings or self._rankings[key].numel() < n:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + cls)
            order = torch.randperm(num - 1, generator=generator)[: max(n, 8)]
            self._rankings[key] = order + (order >= cls).long()  # the classes other than cls
        return self._rankings[key][:n]

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        num, m = logits.shape[1], targets.shape[1]
        n = min(self.k + m - 1, num - 1)
        if self.k > num - 1:
            raise ValueError(f"random contrast k={self.k} needs at least k+1 classes; the model has {num}")
        flat = targets.reshape(-1).cpu().tolist()
        candidates = torch.stack([self._ranking(int(c), num, n) for c in flat]).view(*targets.shape, n)
        return _first_not_compared(candidates.to(targets.device), targets, self.k)

    @property
    def spec(self) -> str:
        return f"random:{self.k}:{self.seed}"

    def __repr__(self) -> str:
        return f"RandomContrast(k={self.k}, seed={self.seed})"


class Versus:
    """The pair contrast, "A rather than B": each target's contrast is the other target(s) of its
    image, so ``CASE(model, contrast="versus").explain(x, [[A, B]])`` gives A's map with B's shared
    evidence removed and B's with A's. Circular by design: in a comparison of the two maps each is
    pushed away from the other by construction, so the class-sensitivity diagnostic uses it only
    when asked, and records it (``other_in_contrast`` is true on every row)."""

    k = 1  # per target of a pair; with M targets per image, M - 1
    circular = True

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        b, m = targets.shape
        if m < 2:
            raise ValueError("contrast 'versus' compares the targets of an image with each other: give two or "
                             "more per image, e.g. targets=[[A, B]] (A rather than B, and B rather than A)")
        if (targets[:, :, None] == targets[:, None, :]).sum((1, 2)).gt(m).any():
            raise ValueError(f"contrast 'versus' needs distinct targets per image, got {targets.tolist()[:3]}")
        others = torch.arange(m, device=targets.device)
        index = torch.stack([torch.cat([others[:j], others[j + 1:]]) for j in range(m)])  # (M, M - 1)
        return targets[:, index]  # (B, M, M - 1)

    @property
    def spec(self) -> str:
        return "versus"

    def __repr__(self) -> str:
        return "Versus()"


CONTRAST_KINDS = ("classifier", "confusion", "leave-pair-out", "random", "versus", "top", "nearest", "rank",
                  "explicit")
_GRAMMAR = ("classifier:K, confusion:K, leave-pair-out[:classifier|confusion|top|nearest][:K], random:K[:SEED], "
            "versus, top:K, nearest:K, rank:N[+N...], explicit:N[+N...]")
_RANKED = ("classifier", "confusion", "top", "nearest")
_SPEC = re.compile(r"^([a-z]+)(?::(\d+(?:\+\d+)*))?$")


def contrast_spec(strategy: ContrastStrategy | str | None) -> str:
    """The short text that names a strategy (``classifier:1``, ``top:5``, ...); its repr for a
    strategy defined elsewhere; "none" for None. A spec text comes back in canonical form
    (``"Classifier"`` -> ``"classifier:1"``; ``"random"`` -> ``"random:1:0"``; a leave-pair-out
    text without its base stays as given, its base being decided by whether a matrix exists)."""
    if strategy is None:
        return "none"
    if isinstance(strategy, str):
        text = strategy.strip().lower()
        match = _SPEC.match(text)
        if match and match.group(1) in ("classifier", "confusion", "top", "nearest") and match.group(2) is None:
            return f"{text}:1"
        parts = text.split(":")
        if parts[0] == "random" and len(parts) <= 3 and all(p.isdigit() for p in parts[1:]):
            return f"random:{parts[1] if len(parts) > 1 else 1}:{parts[2] if len(parts) > 2 else 0}"
        if parts[0] == "leave-pair-out" and len(parts) == 2 and parts[1] in _RANKED:
            return f"{text}:1"
        return text
    return str(getattr(strategy, "spec", None) or repr(strategy))


def build_contrast(spec: str | ContrastStrategy, *, model: nn.Module | None = None,
                   confusion: ConfusionNeighbours | np.ndarray | Tensor | None = None) -> ContrastStrategy:
    """A contrast strategy from its spec text (a strategy is returned as is): the one contrast
    grammar, on the command line, in method specs and in run configurations.

    Args:
        spec: ``classifier:K`` (needs ``model``), ``confusion:K`` (needs ``confusion``),
            ``leave-pair-out[:classifier|confusion|top|nearest][:K]`` (the base defaults to confusion neighbours
            when ``confusion`` is given, else classifier neighbours), ``random:K[:SEED]`` (seed 0),
            ``versus``, ``top:K``, ``nearest:K``, ``rank:R[+R...]``, ``explicit:C[+C...]``; K defaults to 1.
        model: the network whose last linear layer gives classifier neighbours.
        confusion: a (K, K) matrix or a ``ConfusionNeighbours`` whose matrix is reused. A stored
            file is read by ``case_saliency.workflows.confusion`` (identity-checked), not here.
    Returns:
        The strategy.
    Raises:
        ValueError: an unknown or malformed spec, or one whose model or matrix is missing.
        TypeError: a file path as ``confusion``.
    """
    if not isinstance(spec, str):
        return spec
    text = spec.strip().lower()
    parts = text.split(":")
    kind = parts[0]
    if kind == "versus":
        if len(parts) > 1:
            raise ValueError(f"contrast {spec!r}: versus takes no number (each target's contrast is the other target)")
        return Versus()
    if kind == "random":
        if len(parts) > 3 or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"contrast {spec!r}: write random:K or random:K:SEED, e.g. random:1:0")
        numbers = [int(p) for p in parts[1:]]
        return RandomContrast(numbers[0] if numbers else 1, numbers[1] if len(numbers) > 1 else 0)
    if kind == "leave-pair-out":
        rest = parts[1:]
        base_kind = rest.pop(0) if rest and rest[0] in _RANKED else None
        if len(rest) > 1 or (rest and not rest[0].isdigit()):
            raise ValueError(f"contrast {spec!r}: write leave-pair-out[:classifier|confusion|top|nearest][:K], "
                             "e.g. leave-pair-out:confusion:1")
        k = int(rest[0]) if rest else 1
        base_kind = base_kind or ("confusion" if confusion is not None else "classifier")
        base = build_contrast(f"{base_kind}:{k}", model=model, confusion=confusion)
        assert isinstance(base, (ConfusionNeighbours, ClassifierNeighbours, TopLogits, NearestLogits))
        return LeavePairOut(base, k)
    match = _SPEC.match(text)
    if not match or match.group(1) not in CONTRAST_KINDS:
        raise ValueError(f"unknown contrast {spec!r}; use one of {_GRAMMAR} (e.g. leave-pair-out, classifier:1, "
                         "top:5, rank:3)")
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


def default_contrast(confusion: object | None = None, k: int = 1, *, diagnostic: bool = False) -> str:
    """The spec of the contrast CASE uses when none is given: confusion neighbours when a confusion
    matrix is available, else classifier neighbours; both model-level. For the class-sensitivity
    diagnostic (``diagnostic=True``) the same neighbours with the other compared class left out
    (``leave-pair-out:...``), so no pair is circular: a plain neighbour set holds the other
    compared class whenever the two are neighbours."""
    base = f"confusion:{k}" if confusion is not None else f"classifier:{k}"
    return f"leave-pair-out:{base}" if diagnostic else base
