"""Confusion matrices for CASE's confusion-neighbour contrast: computed for a model on a dataset split,
stored as JSON next to the checkpoint with the identity of both, and loaded only for the same model
(and, when given, the same data): a stale matrix is refused.

File: ``{"matrix": (K, K) counts, rows = true class, "model": identity, "data": identity,
"class_names", "accuracy", "created"}``; it is also readable by ``ConfusionNeighbours(path)``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import CaseSaliencyError
from ..core.contrast import ConfusionNeighbours, NearestLogits, TopLogits
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
              "class_names": list(class_names), "accuracy": accuracy,
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


def resolve_contrast(spec: str, loaded=None, data_identity: dict | None = None):
    """A contrast strategy by name: ``top[:k]`` (TopLogits), ``nearest[:k]`` (NearestLogits),
    ``confusion[:k]`` (the stored matrix of ``loaded`` found at its default place, next to the
    checkpoint), or ``confusion:PATH[:k]`` / ``PATH.json`` (a given matrix file, identity-checked)."""
    name, _, rest = spec.partition(":")
    name = name.lower()
    k = 1
    parts = [p for p in rest.split(":") if p] if rest else []
    if parts and parts[-1].isdigit():
        k = int(parts.pop())
    if name in ("top", "toplogits", "top_logits") and not parts:
        return TopLogits(k)
    if name in ("nearest", "nearestlogits", "nearest_logits") and not parts:
        return NearestLogits(k)
    if name == "confusion" or spec.lower().endswith(".json"):
        if loaded is None:
            raise ValueError("a confusion contrast needs the model, to check the matrix belongs to it")
        if name == "confusion" and not parts:
            if data_identity is None:
                raise ValueError("contrast 'confusion' without a file needs the data split to find the matrix; "
                                 "pass confusion:PATH (from `case-saliency confusion`)")
            path = default_path(loaded, data_identity["name"])
        else:
            path = Path(":".join(parts) if name == "confusion" else spec)
        return confusion_neighbours(path, loaded, k)
    raise ValueError(f"unknown contrast {spec!r}; use top[:k], nearest[:k], confusion[:k] or confusion:PATH[:k]")
