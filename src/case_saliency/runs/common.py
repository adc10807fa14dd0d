"""What diagnose and fidelity runs share: the model bundle, seeded sampling, batches, building the
methods, provenance, the run directory's config/meta, and per-row error capture."""

from __future__ import annotations

import hashlib
import inspect
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..methods import METHODS, SaliencyMethod, get_method
from .store import read_json, write_json

# Parameters that change the numbers in results.csv: a resumed run must match them exactly.
RESULT_KEYS = ("kind", "model", "dataset", "methods", "n", "seed", "k_percent", "layer", "contrast",
               "correct_only", "fill", "signed", "steps", "weights")

DEFAULT_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case")


@dataclass
class ModelBundle:
    """A model with what a run needs around it: ``transform`` (PIL -> (C, H, W) tensor),
    ``class_names``, default ``target_layer``, a ``name`` and an ``identity`` dict."""

    model: nn.Module
    transform: Callable
    class_names: list[str] | None
    target_layer: str | None
    name: str
    identity: dict = field(default_factory=dict)
    reshape: Callable | None = None  # token -> (B, C, h, w) reshape of a transformer's default layer


def state_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (names and tensor bytes): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def as_bundle(model: Any, transform: Callable | None = None, class_names: Sequence[str] | None = None,
              target_layer: str | None = None, name: str | None = None) -> ModelBundle:
    """Accept a ``LoadedModel`` (from ``case_saliency.models.load_model``) or a bare ``nn.Module``
    plus its transform; explicit arguments override the loaded model's fields."""
    if isinstance(model, ModelBundle):
        loaded = model
        return ModelBundle(loaded.model, transform or loaded.transform,
                           list(class_names) if class_names is not None else loaded.class_names,
                           target_layer or loaded.target_layer, name or loaded.name, dict(loaded.identity),
                           loaded.reshape if target_layer is None else None)
    if hasattr(model, "model") and hasattr(model, "transform"):  # a LoadedModel
        identity = dict(getattr(model, "identity", {}) or {})
        # The loaded model's reshape belongs to its default layer only (as LoadedModel.method).
        reshape = getattr(model, "reshape", None) if target_layer is None else None
        return ModelBundle(model.model, transform or model.transform,
                           list(class_names) if class_names is not None else list(model.class_names or []) or None,
                           target_layer or getattr(model, "target_layer", None),
                           name or getattr(model, "name", type(model.model).__name__), identity, reshape)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a LoadedModel or an nn.Module, got {type(model).__name__}")
    if transform is None:
        raise ValueError("a bare nn.Module needs transform= (PIL image -> (C, H, W) tensor), "
                         "or pass the LoadedModel from case_saliency.models.load_model")
    label = name or type(model).__name__
    return ModelBundle(model, transform, list(class_names) if class_names is not None else None, target_layer,
                       label, {"name": label, "sha256": state_sha256(model)})


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


def build_method(name: str, model: nn.Module, target_layer: str | None, contrast: Any = None,
                 options: dict | None = None, reshape: Callable | None = None) -> SaliencyMethod:
    """``get_method`` with only the arguments the method's constructor takes: ``target_layer`` and
    ``reshape`` (transformers) where it has them, ``contrast`` for CASE (other methods keep their
    own default contrast)."""
    params = inspect.signature(METHODS[name].__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = dict(options or {})
    if target_layer is not None and ("target_layer" in params or takes_any):
        kwargs.setdefault("target_layer", target_layer)
    if reshape is not None and ("reshape" in params or takes_any):
        kwargs.setdefault("reshape", reshape)
    if name == "case" and contrast is not None:
        kwargs.setdefault("contrast", contrast)
    return get_method(name, model, **kwargs)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, for the ``error`` column."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def load_items(dataset: Any, indices: Sequence[int], transform: Callable) -> tuple[Tensor, list[int], list[str]]:
    """Images (B, C, H, W) after ``transform``, labels and ids for dataset ``indices``."""
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
    (fewer if the dataset runs out). n <= 0 means every image."""
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
        images, labels, _ = load_items(dataset, chunk, transform)
        if all(label < 0 for label in labels):
            raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} has no labels, so 'correct only' cannot "
                             "be applied; use all images (--all / correct_only=False)")
        pred = model(images.to(device)).argmax(1).cpu().tolist()
        kept.extend(i for i, p, y in zip(chunk, pred, labels, strict=False) if p == y)
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


def prepare_run_dir(run_dir: Path, config: dict, make_meta: Callable[[], dict]) -> tuple[dict, dict]:
    """Create ``run_dir`` with config.json and meta.json, or check that an existing run has the same
    result-shaping parameters (RESULT_KEYS) and reopen it. Returns (config, meta)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path, meta_path = run_dir / "config.json", run_dir / "meta.json"
    if config_path.exists() and meta_path.exists():
        old = read_json(config_path)
        differ = [key for key in RESULT_KEYS if old.get(key) != config.get(key)]
        if differ:
            shown = "; ".join(f"{key}: {old.get(key)!r} there, {config.get(key)!r} now" for key in differ)
            raise ValueError(f"{run_dir} holds a run with other settings ({shown}); resume it with the same "
                             "settings or choose a new run directory")
        meta = read_json(meta_path)
        meta.setdefault("resumed", []).append(now())
        meta["finished"] = None
        write_json(meta_path, meta)
        write_json(config_path, config)  # summary-only settings (threshold, alpha, command) may change
        return config, meta
    meta = make_meta()
    meta["started"] = now()
    meta["finished"] = None
    write_json(config_path, config)
    write_json(meta_path, meta)
    return config, meta


@dataclass
class OpenedRun:
    """A run directory ready to fill: the model in eval mode on ``device``, the ``methods`` built by
    name, the stored ``config`` and ``meta``, and the ``sample`` of dataset indices to process."""

    net: nn.Module
    device: torch.device
    methods: dict[str, SaliencyMethod]
    config: dict
    meta: dict
    sample: list[int]


def open_run(kind: str, bundle: ModelBundle, dataset: Any, run_dir: Path, *, methods: list[str], contrast: Any,
             method_options: dict | None, n: int, seed: int, correct_only: bool, batch_size: int,
             settings: dict, weights: str | None, dataset_name: str | None,
             command: str | None) -> OpenedRun:
    """Build the methods, write (or check, when resuming) config.json and meta.json, and draw the
    sample. ``settings`` holds the kind's own config keys (k_percent, threshold, fill, ...)."""
    net, device = bundle.model.eval(), model_device(bundle.model)
    built = {name: build_method(name, net, bundle.target_layer, contrast, (method_options or {}).get(name),
                                bundle.reshape) for name in methods}
    # The layer a method resolved (its engine's name) beats the bundle's default, which may be None.
    layer_used = next((getattr(getattr(m, "engine", None), "layer_name", None) for m in built.values()
                       if getattr(m, "engine", None) is not None), bundle.target_layer)
    config = {"kind": kind, "model": bundle.name, "weights": weights,
              "dataset": dataset_name or getattr(dataset, "name", type(dataset).__name__),
              "methods": methods, "n": int(n), "seed": int(seed), "layer": layer_used, "contrast": repr(contrast),
              "correct_only": bool(correct_only), "batch_size": int(batch_size), **settings,
              "command": command or command_line()}

    def make_meta() -> dict:
        sample = select_sample(net, dataset, bundle.transform, n, seed, correct_only, batch_size, device)
        return {"versions": versions(), "model": bundle.identity or {"name": bundle.name}, "layer": layer_used,
                "dataset": dataset_identity(dataset), "class_names": bundle.class_names or
                getattr(dataset, "class_names", None), "sample": sample}

    config, meta = prepare_run_dir(run_dir, config, make_meta)
    return OpenedRun(net, device, built, config, meta, list(meta["sample"]))


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


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz via a temporary ``<name>.npz.tmp`` (which a ``*.npz`` glob never picks up),
    fsync, rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:  # a file object: NumPy adds no ".npz" suffix
        np.savez_compressed(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
