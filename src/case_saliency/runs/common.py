"""What diagnose and fidelity runs share: the model (a ``LoadedModel``), seeded sampling, batches, building the
methods, provenance, the run directory's config/meta, and per-row error capture."""

from __future__ import annotations

import platform
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import CaseSaliencyError
from ..methods import METHODS, SaliencyMethod, method_class
from ..models import LoadedModel
from .store import ResultsTable, read_json, write_json

# Parameters that change the numbers in results.csv: a resumed run must match them exactly.
RESULT_KEYS = ("kind", "model", "dataset", "methods", "n", "seed", "k_percent", "layer", "contrast",
               "correct_only", "fill", "signed", "steps", "weights")


def as_bundle(model: Any, transform: Callable | None = None, class_names: Sequence[str] | None = None,
              target_layer: str | None = None, name: str | None = None) -> LoadedModel:
    """Deprecated: ``LoadedModel.wrap`` (the run's model is a ``LoadedModel`` now)."""
    warnings.warn("case_saliency.runs.as_bundle is deprecated; use LoadedModel.wrap (case_saliency.models)",
                  DeprecationWarning, stacklevel=2)
    return LoadedModel.wrap(model, transform, class_names, target_layer, name)


def __getattr__(name: str) -> Any:
    if name == "ModelBundle":  # folded into LoadedModel
        warnings.warn("case_saliency.runs.ModelBundle is deprecated; it is LoadedModel (case_saliency.models)",
                      DeprecationWarning, stacklevel=2)
        return LoadedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def check_methods(methods: Sequence[str]) -> list[str]:
    """Lower-cased method names, each registered; duplicates removed in order."""
    names = []
    for raw in methods:
        key = raw.strip().lower()
        if key not in METHODS:
            raise ValueError(f"unknown method {raw!r}; available: {', '.join(sorted(METHODS))}")
        if key not in names:
            names.append(key)
    if not names:
        raise ValueError("no methods given; name at least one (see `case-saliency methods`)")
    return names


def build_method(name: str, model: LoadedModel, contrast: Any = None, options: dict | None = None) -> SaliencyMethod:
    """The method ``name`` on the run's model (its layer and reshape), with the run's ``contrast`` for
    methods that follow it (CASE and its variants; others keep their own) unless ``options`` give one."""
    kwargs = dict(options or {})
    if contrast is not None and getattr(method_class(name), "follows_run_contrast", False):
        kwargs.setdefault("contrast", contrast)
    return model.method(name, **kwargs)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, for the ``error`` column."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def item_id(dataset: Any, index: int) -> str:
    """The stable id of dataset item ``index`` without decoding it where the dataset can tell
    (``dataset.image_id(index)``); else from the item itself; ``#<index>`` when it cannot be read."""
    getter = getattr(dataset, "image_id", None)
    try:
        return str(getter(int(index))) if callable(getter) else str(dataset[int(index)][2])
    except Exception:  # an unreadable item still needs a name in the error row
        return f"#{int(index)}"


@dataclass
class Batch:
    """One batch of a run's sample, decoded: for every position ``ids`` and ``labels`` (-1 when the
    item could not be read); ``images`` (B_ok, C, H, W) holds the decoded items at positions ``ok``;
    ``failures`` maps the other positions to their error text."""

    ids: list[str]
    labels: list[int]
    images: Tensor | None
    ok: list[int]
    failures: dict[int, str]


def load_batch(dataset: Any, indices: Sequence[int], transform: Callable) -> Batch:
    """Decode and transform dataset ``indices``; an item that cannot be read or transformed is
    recorded in ``failures`` (its error text), not raised, so the run records it and goes on."""
    tensors, ids, labels, ok, failures = [], [], [], [], {}
    for position, index in enumerate(indices):
        try:
            image, label, image_id = dataset[int(index)]
            tensor = transform(image)
        except Exception as error:  # recorded in the rows of this image; the run goes on
            ids.append(item_id(dataset, index))
            labels.append(-1)
            failures[position] = error_text(error)
            continue
        ids.append(str(image_id))
        labels.append(int(label))
        tensors.append(tensor)
        ok.append(position)
    return Batch(ids, labels, torch.stack(tensors) if tensors else None, ok, failures)


def load_items(dataset: Any, indices: Sequence[int], transform: Callable) -> tuple[Tensor, list[int], list[str]]:
    """Images (B, C, H, W) after ``transform``, labels and ids for dataset ``indices`` (raises on
    an unreadable item; runs use ``load_batch``)."""
    tensors, labels, ids = [], [], []
    for index in indices:
        image, label, image_id = dataset[int(index)]
        tensors.append(transform(image))
        labels.append(int(label))
        ids.append(str(image_id))
    return torch.stack(tensors), labels, ids


@torch.no_grad()
def select_sample(model: nn.Module, dataset: Any, transform: Callable, n: int, seed: int, correct_only: bool,
                  batch_size: int = 32, device: torch.device | None = None) -> list[int]:
    """Dataset indices of the run, in processing order: a seeded random permutation of the dataset
    (``torch.randperm`` with its own generator), cut to ``n``; with ``correct_only``, walking the
    permutation and keeping images whose top-1 prediction equals their label until ``n`` are kept
    (fewer if the dataset runs out; an image that cannot be read is not kept). n <= 0 means every image."""
    total = len(dataset)
    if total == 0:
        raise ValueError("the dataset is empty")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed))).tolist()
    want = total if n <= 0 else min(n, total)
    if not correct_only:
        return order[:want]
    device = device or model_device(model)
    kept: list[int] = []
    for start in range(0, total, batch_size):
        chunk = order[start:start + batch_size]
        batch = load_batch(dataset, chunk, transform)
        if batch.images is None:
            continue
        labels = [batch.labels[p] for p in batch.ok]
        if all(label < 0 for label in labels):
            raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} has no labels, so 'correct only' cannot "
                             "be applied; use all images (--all / correct_only=False)")
        pred = model(batch.images.to(device)).argmax(1).cpu().tolist()
        kept.extend(chunk[p] for p, guess, label in zip(batch.ok, pred, labels, strict=True) if guess == label)
        if len(kept) >= want:
            break
    return kept[:want]


def versions() -> dict:
    """Versions of Python and the packages that shape the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("case-saliency", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-image"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def dataset_identity(dataset: Any) -> dict:
    if hasattr(dataset, "identity"):
        return dict(dataset.identity())
    return {"name": getattr(dataset, "name", type(dataset).__name__), "count": len(dataset)}


def _short(value: Any) -> str:
    text = repr(value)
    return text[:15] + "...'" if isinstance(value, str) and len(value) > 16 else text


def dataset_changes(old: dict, new: dict) -> list[str]:
    """What differs between two dataset identities (keys both have; the root folder may move)."""
    keys = [key for key in old if key in new and key != "root"]
    return [f"{key} {_short(old[key])} then, {_short(new[key])} now" for key in keys if old[key] != new[key]]


class SettingsError(CaseSaliencyError, ValueError):
    """Settings that make every image fail (found on the first batch, before any row is written)."""


def read_existing_run(run_dir: Path, kind: str) -> tuple[dict, dict] | None:
    """(config, meta) of the run in ``run_dir``; None when ``run_dir`` does not exist or holds no run
    yet. Writes nothing: a file, a non-empty folder that is not a run, or a run of another kind is
    refused with ``ValueError`` and left as it was."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file; give a folder for the run")
    if not run_dir.is_dir():
        return None
    entries = {entry.name for entry in run_dir.iterdir()}
    config_path, meta_path = run_dir / "config.json", run_dir / "meta.json"
    # A start killed before config.json (written last) leaves at most meta.json: still a new run.
    if not entries - {"meta.json", "meta.json.tmp", "config.json.tmp"}:
        return None
    if not config_path.exists() or not meta_path.exists():
        raise ValueError(f"--out {run_dir} is not empty and holds no run (no config.json and meta.json); give a "
                         "new or empty folder, or the folder of the run to resume")
    config, meta = read_json(config_path), read_json(meta_path)
    if config.get("kind") != kind:
        raise ValueError(f"--out {run_dir} holds a {config.get('kind')!r} run, not a {kind!r} run; give another "
                         "folder")
    return config, meta


@dataclass
class OpenedRun:
    """A run ready to fill, with nothing written yet: the model in eval mode on ``device``, the
    ``methods`` built by name, the ``config`` and ``meta`` to store, the ``sample`` of dataset indices
    and their ``sample_ids``, and the (image_id, method) pairs already ``done`` when resuming.
    ``commit()`` writes config.json and meta.json: call it just before the first row is written."""

    run_dir: Path
    net: nn.Module
    device: torch.device
    methods: dict[str, SaliencyMethod]
    config: dict
    meta: dict
    sample: list[int]
    sample_ids: list[str]
    resumed: bool
    done: set[tuple[str, str]]
    committed: bool = False

    def commit(self) -> None:
        if self.committed:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resumed:
            self.meta.setdefault("resumed", []).append(now())
        else:
            self.meta["started"] = now()
        self.meta["finished"] = None
        write_json(self.run_dir / "meta.json", self.meta)
        write_json(self.run_dir / "config.json", self.config)  # last: its presence marks a run
        self.committed = True


def open_run(kind: str, bundle: LoadedModel, dataset: Any, run_dir: Path, *, methods: list[str], contrast: Any,
             method_options: dict | None, n: int, seed: int, correct_only: bool, batch_size: int,
             settings: dict, weights: str | None, dataset_name: str | None,
             command: str | None, columns: Sequence[str], rows_per_pair: int) -> OpenedRun:
    """Check ``run_dir`` (a new folder, or a run with the same settings on the same data), build the
    methods and draw the sample; writes nothing (see ``OpenedRun.commit``). ``settings`` holds the
    kind's own config keys (k_percent, threshold, fill, ...). Refusals raise ``ValueError``."""
    run_dir = Path(run_dir)
    existing = read_existing_run(run_dir, kind)
    net, device = bundle.model.eval(), model_device(bundle.model)
    built = {name: build_method(name, bundle, contrast, (method_options or {}).get(name)) for name in methods}
    # The layer a method resolved beats the model's default, which may be None.
    layer_used = next((m.layer_name for m in built.values() if m.layer_name is not None), bundle.target_layer)
    config = {"kind": kind, "model": bundle.name, "weights": weights,
              "dataset": dataset_name or getattr(dataset, "name", type(dataset).__name__),
              "methods": methods, "n": int(n), "seed": int(seed), "layer": layer_used, "contrast": repr(contrast),
              "correct_only": bool(correct_only), "batch_size": int(batch_size), **settings,
              "command": command or command_line()}
    identity = dataset_identity(dataset)
    if existing is not None:
        old, meta = existing
        differ = [key for key in RESULT_KEYS if old.get(key) != config.get(key)]
        if differ:
            shown = "; ".join(f"{key}: {old.get(key)!r} there, {config.get(key)!r} now" for key in differ)
            raise ValueError(f"{run_dir} holds a run with other settings ({shown}); resume it with the same "
                             "settings or choose a new run directory")
        changed = dataset_changes(meta.get("dataset") or {}, identity)
        if changed:
            raise ValueError(f"the data of {run_dir} changed since the run started ({'; '.join(changed)}); a run "
                             "resumes only on the same data: restore it, or start a new run directory")
        sample = [int(i) for i in meta["sample"]]
        ids = [item_id(dataset, i) for i in sample]
        stored = meta.get("sample_ids")
        if stored is not None and list(stored) != ids:
            moved = next(p for p, (a, b) in enumerate(zip(stored, ids, strict=False)) if a != b) \
                if len(stored) == len(ids) else 0
            raise ValueError(f"the data of {run_dir} changed since the run started: sample image {moved + 1} was "
                             f"{stored[moved]!r}, it is now {ids[moved]!r}; start a new run directory")
        meta["sample_ids"] = ids
        done = ResultsTable.inspect(run_dir / "results.csv", columns, rows_per_pair, ids)
        return OpenedRun(run_dir, net, device, built, config, meta, sample, ids, True, done)
    sample = select_sample(net, dataset, bundle.transform, n, seed, correct_only, batch_size, device)
    ids = [item_id(dataset, i) for i in sample]
    meta = {"versions": versions(), "model": bundle.identity or {"name": bundle.name}, "layer": layer_used,
            "dataset": identity, "class_names": bundle.class_names or getattr(dataset, "class_names", None),
            "sample": sample, "sample_ids": ids}
    return OpenedRun(run_dir, net, device, built, config, meta, sample, ids, False, set())


class FirstBatchCheck:
    """Finds settings that fail on every image (a non-spatial ``--layer``, a confusion matrix of
    another size) on the first batch with decodable images, before any row is written: a method
    that failed on every image it tried there raises ``SettingsError`` with the error."""

    def __init__(self) -> None:
        self.pending = True

    def check(self, outcomes: dict[str, list[str]]) -> None:
        """outcomes: {method: error text per decodable image it tried ("" = success)}."""
        if not self.pending:
            return
        for name, errors in outcomes.items():
            if errors and all(errors):
                raise SettingsError(f"method {name!r} failed on every image of the first batch ({len(errors)}), "
                                    f"so the settings are at fault, not an image: {errors[0]}")
        if any(outcomes.values()):
            self.pending = False


def finish_meta(run_dir: Path, meta: dict, **extra: Any) -> None:
    meta.update(extra)
    meta["finished"] = now()
    write_json(run_dir / "meta.json", meta)


def batches(items: Sequence[int], size: int) -> Iterator[tuple[int, Sequence[int]]]:
    """(position of the first item, items) in fixed chunks: the same chunks on every resume, so
    batch-dependent arithmetic gives the same numbers."""
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def find_normalize(transform: Any) -> tuple[Tensor, Tensor] | None:
    """(mean, std) of a torchvision ``Normalize`` inside ``transform`` (searched through
    ``.transforms``), if there is one."""
    from torchvision import transforms as T

    if isinstance(transform, T.Normalize):
        return torch.as_tensor(transform.mean, dtype=torch.float32), torch.as_tensor(transform.std, dtype=torch.float32)
    for inner in getattr(transform, "transforms", []) or []:
        found = find_normalize(inner)
        if found is not None:
            return found
    return None


def display_images(images: Tensor, transform: Any) -> np.ndarray:
    """Model inputs (B, C, H, W) -> (B, H, W, 3) uint8 as the model saw them: the transform's
    normalisation undone when it has a ``Normalize``, else each image min-max scaled."""
    x = images.detach().float().cpu()
    norm = find_normalize(transform)
    if norm is not None and norm[0].numel() in (1, x.shape[1]):
        mean, std = norm
        x = x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    else:
        lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
        hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x[:, :3]
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def command_line() -> str:
    return " ".join(sys.argv)
