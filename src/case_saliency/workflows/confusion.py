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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import CaseSaliencyError
from ..core.contrast import ConfusionNeighbours
from ..runs.store import atomic_write

FORMAT = "case-saliency-confusion"


class StaleConfusionMatrix(CaseSaliencyError, ValueError):
    """The matrix was computed for another model or other data."""


@torch.no_grad()
def compute_confusion(loaded, dataset, batch_size: int = 256, limit: int | None = None,
                      progress: bool = True) -> np.ndarray:
    """(K, K) int64 counts, rows = true class, columns = predicted, for ``loaded`` (a LoadedModel) on a
    labelled ``dataset``; ``limit`` takes its first images only."""
    if dataset.class_names is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels; a confusion matrix needs a labelled split "
                         "(e.g. fashion-mnist:test, imagefolder:PATH, cifar10:PATH)")
    num = len(loaded.class_names)
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
