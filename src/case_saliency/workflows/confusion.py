"""Confusion matrices for CASE's confusion-neighbour contrast: computed for a model on a dataset split,
stored as JSON next to the checkpoint with the identity of both, and loaded only for the same model
(and, when given, the same data): a stale matrix is refused.

File: ``{"matrix": (K, K) counts, rows = true class, "model": identity, "data": identity,
"class_names", "accuracy", "split", "created"}`` (``split``: the name of the data it was computed on, so
a diagnostic can warn when it samples that same split); :func:`matrix_neighbours` turns a file into
CASE's contrast (the one place where matrix files are read).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import CaseSaliencyError
from ..core.contrast import ConfusionNeighbours
from ..data.base import ImageDataset, sha256_items
from ..runs.store import atomic_write

FORMAT = "case-saliency-confusion"


class StaleConfusionMatrix(CaseSaliencyError, ValueError):
    """The matrix was computed for another model or other data."""


_PLACEHOLDER = re.compile(r"^(class \d+|n\d{8})$")  # "class 3" (no name given) or a WordNet id (a folder, not a name)


def check_label_space(loaded, dataset) -> None:
    """Refuse a labelled ``dataset`` whose label space is not the model's: another number of classes,
    or, where both name their classes, other names at any index (names compared case-blind, without
    spaces; placeholders such as ``class 3`` and WordNet ids name nothing and are not compared).

    Raises:
        ValueError: naming both label spaces and the fix.
    """
    if dataset.class_names is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels; a confusion matrix needs a labelled split "
                         "(e.g. fashion-mnist:test, imagefolder:PATH, cifar10:PATH)")
    data_names = [str(name) for name in dataset.class_names]
    model_names = [str(name) for name in loaded.class_names] if loaded.class_names is not None else None
    count = len(model_names) if model_names is not None else loaded.identity.get("num_classes")
    fix = ("compute the matrix for a model trained on this data (e.g. `case-saliency train`), or on data labelled "
           "in the model's classes (imagefolder:PATH with the model's class-index file)")
    if count is not None and int(count) != len(data_names):
        shown = f" ({', '.join(model_names[:3])}, ...)" if model_names else ""
        raise ValueError(f"{dataset.name} has {len(data_names)} classes ({', '.join(data_names[:3])}, ...) but "
                         f"{loaded.name} has {count}{shown}: the data's labels are not the model's classes; {fix}")
    if model_names is None:
        return

    def key(name: str) -> str:  # "great_white_shark" (Keras' class index) is torchvision's "great white shark"
        return re.sub(r"[\W_]+", "", name).casefold()

    pairs = [(i, m, d) for i, (m, d) in enumerate(zip(model_names, data_names, strict=True))
             if not (_PLACEHOLDER.match(m) or _PLACEHOLDER.match(d))]
    differ = [(i, m, d) for i, m, d in pairs if key(m) != key(d)]
    # The same names in another order are always wrong; other names at most indices are other classes. A few
    # differing names among many matching ones are naming variants (two ImageNet name lists), not refused.
    same_names = sorted(key(m) for _, m, _ in pairs) == sorted(key(d) for _, _, d in pairs)
    if differ and (same_names or len(differ) * 2 > len(pairs)):
        index, model_name, data_name = differ[0]
        raise ValueError(f"class {index} is {model_name!r} in {loaded.name} but {data_name!r} in {dataset.name} "
                         f"({len(differ)} of {len(pairs)} names differ: "
                         f"{'the same classes in another order' if same_names else 'other classes'}); {fix}")


@torch.no_grad()
def compute_confusion(loaded, dataset, batch_size: int = 256, limit: int | None = None,
                      progress: bool = True) -> np.ndarray:
    """(K, K) int64 counts, rows = true class, columns = predicted, for ``loaded`` (a LoadedModel) on a
    labelled ``dataset``; ``limit`` takes its first images only."""
    check_label_space(loaded, dataset)
    num = len(dataset.class_names)
    total = len(dataset) if limit is None else min(limit, len(dataset))
    matrix = np.zeros((num, num), dtype=np.int64)
    model = loaded.model.eval()
    for start in tqdm(range(0, total, batch_size), desc="confusion", unit="batch", disable=not progress):
        items = [dataset[i] for i in range(start, min(start + batch_size, total))]
        labels = np.array([label for _, label, _ in items])
        if (labels < 0).any() or (labels >= num).any():
            raise ValueError(f"labels {sorted(set(labels[(labels < 0) | (labels >= num)].tolist()))[:5]} of "
                             f"{dataset.name} are outside the model's {num} classes")
        predictions = model(loaded.preprocess([image for image, _, _ in items])).argmax(1).numpy()
        np.add.at(matrix, (labels, predictions), 1)
    return matrix


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def default_path(loaded, dataset_name: str, out_dir: str | Path | None = None) -> Path:
    """Where a matrix is stored: next to the model's checkpoint (``<stem>.confusion-<data>.json``) for
    checkpoints written by ``case-saliency train``, else in ``out_dir`` (default ``runs/confusion``)."""
    weights = loaded.identity.get("weights")
    if out_dir is None and loaded.identity.get("source") == "checkpoint" and weights:
        path = Path(weights)
        return path.with_name(f"{path.stem}.confusion-{_slug(dataset_name)}.json")
    return Path(out_dir or "runs/confusion") / f"{_slug(loaded.name)}.confusion-{_slug(dataset_name)}.json"


def save_confusion(path: str | Path, matrix: np.ndarray, model_identity: dict, data_identity: dict,
                   class_names: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    accuracy = float(np.trace(matrix) / matrix.sum() * 100.0) if matrix.sum() else float("nan")
    record = {"format": FORMAT, "matrix": matrix.tolist(), "model": model_identity, "data": data_identity,
              "class_names": list(class_names), "accuracy": accuracy, "split": data_identity.get("name"),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write(path, json.dumps(record, indent=1))
    return path


def _model_key(identity: dict) -> tuple:
    """What identifies the weights: their sha256 where there is a file, else name and source."""
    if identity.get("weights_sha256"):
        return ("sha256", identity["weights_sha256"])
    return ("name", identity.get("name"), identity.get("source"))


def _data_key(identity: dict) -> tuple:
    return (identity.get("name"), identity.get("hash"), identity.get("count"))


def load_confusion(path: str | Path, model_identity: dict, data_identity: dict | None = None) -> dict:
    """Read a stored matrix and check it belongs to this model (and this data, when given).
    Returns the record with ``matrix`` as a (K, K) float64 array. Raises ``StaleConfusionMatrix``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"confusion matrix {path} does not exist; compute it with "
                                "`case-saliency confusion --model MODEL --data SPLIT`")
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); recompute it with `case-saliency confusion`") from error
    if record.get("format") != FORMAT or "model" not in record:
        raise StaleConfusionMatrix(f"{path} records no model identity, so it cannot be checked against the model; "
                                   "recompute it with `case-saliency confusion`")
    if _model_key(record["model"]) != _model_key(model_identity):
        raise StaleConfusionMatrix(
            f"{path} was computed for model {record['model'].get('name')!r} (weights sha256 "
            f"{str(record['model'].get('weights_sha256'))[:12]}), not for {model_identity.get('name')!r} (sha256 "
            f"{str(model_identity.get('weights_sha256'))[:12]}); recompute it for this model with "
            f"`case-saliency confusion`")
    if data_identity is not None and _data_key(record.get("data", {})) != _data_key(data_identity):
        raise StaleConfusionMatrix(
            f"{path} was computed on {record.get('data', {}).get('name')!r} (hash "
            f"{str(record.get('data', {}).get('hash'))[:12]}), not on {data_identity.get('name')!r} (hash "
            f"{str(data_identity.get('hash'))[:12]}); recompute it on this data with `case-saliency confusion`")
    matrix = np.asarray(record["matrix"], dtype=np.float64)
    num = model_identity.get("num_classes")
    if num is not None and matrix.shape != (num, num):
        raise StaleConfusionMatrix(f"{path} is {matrix.shape[0]}x{matrix.shape[1]} but the model has {num} classes")
    record["matrix"] = matrix
    return record


def confusion_neighbours(path: str | Path, loaded, k: int = 1,
                         data_identity: dict | None = None) -> ConfusionNeighbours:
    """CASE's confusion-neighbour contrast from a stored matrix, after checking it is this model's."""
    record = load_confusion(path, loaded.identity, data_identity)
    strategy = ConfusionNeighbours(record["matrix"], k=k)
    strategy.source = str(path)
    return strategy


def read_matrix_file(path: str | Path) -> np.ndarray:
    """A bare (K, K) matrix from .npy, .pt, .csv or .json (key "matrix"), unchecked: such a file
    (except the JSON this module writes, see :func:`load_confusion`) carries no model identity.

    Raises:
        FileNotFoundError: no such file. ValueError: an unknown suffix.
    """
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
    return np.asarray(data, dtype=np.float64)


def matrix_neighbours(path: str | Path, loaded, sampled: dict | None = None, k: int = 1) -> ConfusionNeighbours:
    """The confusion neighbours of a matrix file for a run: a matrix written by ``case-saliency
    confusion`` (.json) is checked against the model (``StaleConfusionMatrix`` otherwise); a bare array
    file (.npy, .pt, .csv) carries no identity, so it is used as given, with a warning.

    Args:
        path: the file. loaded: the run's ``LoadedModel``.
        sampled: the identity of the split the run samples (``dataset.identity()``): when the matrix
            was computed on that same split a warning says so (the diagnostic's contrast then comes
            from the images it scores; compute the matrix on held-out data).
        k: neighbours per class.
    """
    if Path(path).suffix.lower() == ".json":
        record = load_confusion(path, loaded.identity)
        strategy = ConfusionNeighbours(record["matrix"], k=k)
        strategy.source = str(path)
        strategy.split_checked = sampled is not None  # type: ignore[attr-defined]  # run_diagnose: warned already
        data = record.get("data") or {}
        if sampled is not None and data and _data_key(data) == _data_key(sampled):
            logging.getLogger("case_saliency").warning(
                "the confusion matrix %s was computed on %s, the split this run samples: the contrast comes from "
                "the images it scores; compute the matrix on data it does not sample (e.g. `case-saliency train "
                "--holdout 5000` stores one on held-out training images)", path, data.get("name"))
        return strategy
    logging.getLogger("case_saliency").warning(
        "confusion matrix %s has no model identity; make sure it was computed for this model", path)
    strategy = ConfusionNeighbours(read_matrix_file(path), k=k)
    strategy.source = str(path)
    return strategy


@dataclass(frozen=True)
class ConfusedPair:
    """One off-diagonal cell of a confusion matrix: images of class ``true`` predicted as ``predicted``,
    ``rate`` the share of the true class's images (row-normalised), ``count`` how many."""

    true: int
    predicted: int
    true_name: str
    predicted_name: str
    rate: float
    count: int

    def __str__(self) -> str:
        return f"{self.true_name} -> {self.predicted_name}: {self.rate * 100:.1f}% ({self.count})"


def confused_pairs(matrix: np.ndarray | Sequence[Sequence[float]], class_names: Sequence[str] | None = None,
                   top: int = 10) -> list[ConfusedPair]:
    """The ``top`` most confused (true, predicted) pairs of a (K, K) matrix (rows = true class), by
    row-normalised rate, then count; pairs never confused are left out.

    Args:
        matrix: (K, K) counts; class_names: K names (default "class i"); top: how many (0: all).
    Returns:
        ``ConfusedPair`` list, most confused first.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix is (K, K), got shape {counts.shape}")
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(counts.shape[0])]
    if len(names) != counts.shape[0]:
        raise ValueError(f"{len(names)} class names for a {counts.shape[0]}-class matrix")
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    np.fill_diagonal(rates, 0)
    cells = [(float(rates[t, p]), float(counts[t, p]), t, p) for t in range(len(names)) for p in range(len(names))
             if t != p and counts[t, p] > 0]
    cells.sort(key=lambda cell: (-cell[0], -cell[1], cell[2], cell[3]))
    chosen = cells if top <= 0 else cells[:top]
    return [ConfusedPair(t, p, names[t], names[p], rate, int(count)) for rate, count, t, p in chosen]


def parse_pair(text: str, class_names: Sequence[str]) -> tuple[int, int]:
    """"Shirt:Coat" -> (class index of Shirt, of Coat), by name (case-insensitive; a unique prefix or
    part) or index. Raises ValueError naming the closest names."""
    from .explain import resolve_class

    first, sep, second = text.partition(":")
    if not sep or not first.strip() or not second.strip():
        raise ValueError(f"pair {text!r}: write it as A:B, e.g. Shirt:Coat")
    a, b = resolve_class(first, class_names), resolve_class(second, class_names)
    if a == b:
        raise ValueError(f"pair {text!r} names one class twice")
    return a, b


def pair_filter(pairs: Sequence[tuple[int, int]]) -> Callable[[np.ndarray], np.ndarray]:
    """A filter for a sample: given (N, 2) top-1/top-2 classes, True where they are one of ``pairs``
    (in either order: the model's top-1 and top-2 are the two classes it hesitates between)."""
    wanted = {frozenset(pair) for pair in pairs}

    def keep(top2: np.ndarray) -> np.ndarray:
        top2 = np.asarray(top2)
        return np.array([frozenset((int(a), int(b))) in wanted for a, b in top2], dtype=bool)

    return keep


class PairSubset(ImageDataset):
    """The images of ``dataset`` (at ``indices``) whose top-1/top-2 classes are one of the asked
    pairs: a dataset view for a run (``diagnose --pairs Shirt:Coat``). Its identity is the base
    data's with the pairs and the kept ids, so a run on it never resumes on the whole data."""

    def __init__(self, dataset: Any, indices: Sequence[int], pairs: Sequence[str]):
        self.base = dataset
        self.indices = [int(i) for i in indices]
        self.pairs = [str(p) for p in pairs]
        self.name = f"{getattr(dataset, 'name', 'dataset')} (pairs {', '.join(self.pairs)})"
        self.class_names = getattr(dataset, "class_names", None)
        self.root = getattr(dataset, "root", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.base[self.indices[index]]

    def image_id(self, index: int) -> str:
        getter = getattr(self.base, "image_id", None)
        position = self.indices[index]
        return str(getter(position)) if callable(getter) else str(self.base[position][2])

    def _identity_fields(self) -> dict:
        base = dict(self.base.identity()) if hasattr(self.base, "identity") else {}
        ids = sha256_items((self.image_id(i), 0) for i in range(len(self)))
        return {**{k: v for k, v in base.items() if k not in ("name", "count", "root")}, "pairs": self.pairs,
                "base_name": base.get("name"), "base_count": base.get("count"), "ids_hash": ids}


@torch.no_grad()
def select_pairs(loaded: Any, dataset: Any, pairs: Sequence[str], batch_size: int = 64,
                 progress: bool = True) -> PairSubset:
    """The images of ``dataset`` whose top-1 and top-2 classes (in either order) are one of ``pairs``
    ("Shirt:Coat", by name or index, see ``parse_pair``): one forward pass over the data.
    Raises ``ValueError`` naming a bad pair, or when no image has one of the pairs."""
    names = loaded.require_class_names()
    wanted = [parse_pair(text, names) for text in pairs]
    keep = pair_filter(wanted)
    model = loaded.model.eval()
    device = next(iter(model.parameters()), torch.zeros(())).device
    kept: list[int] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="finding the pairs", unit="batch",
                      disable=not progress):
        positions = list(range(start, min(start + batch_size, len(dataset))))
        images = loaded.preprocess([dataset[i][0] for i in positions]).to(device)
        top2 = model(images).topk(2, dim=1).indices.cpu().numpy()
        kept += [positions[j] for j in np.flatnonzero(keep(top2))]
    shown = [f"{names[a]}:{names[b]}" for a, b in wanted]
    if not kept:
        raise ValueError(f"none of the {len(dataset)} images of {getattr(dataset, 'name', 'the data')} has "
                         f"{' or '.join(shown)} as its top-1/top-2 classes")
    return PairSubset(dataset, kept, shown)
