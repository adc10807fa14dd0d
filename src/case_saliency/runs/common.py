"""What diagnose and fidelity runs share: the model (a ``LoadedModel``), seeded sampling, batches, building the
methods, provenance, the run directory's config/meta, and per-row error capture."""

from __future__ import annotations

import logging
import platform
import sys
import warnings
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..core.capture import model_device
from ..core.contrast import classifier_layer, contrast_spec, default_contrast, leave_pair_out
from ..core.errors import CaseSaliencyError
from ..core.maps import SaliencyMaps
from ..methods import SaliencyMethod, explain_shared
from ..methods.spec import build_method as build_from_spec
from ..methods.spec import follows_run_contrast
from ..methods.spec import parse_method_list
from ..models import LoadedModel
from .loading import batch_loader
from .settings import RESULT_KEYS, RunSettings, has_labels, protocol_for, sample_warning  # noqa: F401  (RESULT_KEYS: as before)
from .store import read_json, write_json

log = logging.getLogger("case_saliency")


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


def explain_shared_or_none(methods: dict[str, SaliencyMethod], images: Tensor, targets: Tensor,
                           **options: Any) -> dict[str, SaliencyMaps]:
    """``explain_shared``: the maps of the gradient CAMs that share one capture, computed in one pass;
    {} when that pass fails, so that each method runs (and records its error) on its own."""
    try:
        return explain_shared(methods, images, targets, **options)
    except Exception:  # each method is retried alone, with its own per-image error handling
        return {}


def check_methods(methods: Sequence[str] | str) -> list[str]:
    """The labels of method specs (``gradcam``, ``case(contrast=top:1)``, ``case:scorecam``, see
    :mod:`case_saliency.methods.spec`), each naming a registered method with options it takes;
    duplicates removed in order. A ValueError names a bad spec and lists what exists."""
    return [spec.label for spec in parse_method_list(methods if isinstance(methods, str) else list(methods))]


def build_method(label: str, model: LoadedModel, contrast: Any = None, options: dict | None = None,
                 confusion: Any = None) -> SaliencyMethod:
    """The method a spec label names on the run's model (its layer and reshape), with the run's
    ``contrast`` for methods that follow it (CASE and its variants; others keep their own) unless the
    spec sets one; ``options`` are extra constructor keywords; ``confusion`` serves ``confusion:K``
    contrasts."""
    spec = parse_method_list([label])[0]
    if options:
        spec = type(spec)(spec.name, spec.base, {**options, **spec.options}, spec.label)
    return build_from_spec(spec, model, run_contrast=contrast, confusion=confusion)


def build_methods(model: LoadedModel, names: Sequence[str], contrast: Any, method_options: dict | None,
                  confusion: Any = None) -> tuple[dict[str, SaliencyMethod], str | None]:
    """The run's methods by spec label, and the layer they use (the one a method resolved beats the
    model's default, which may be None)."""
    built = {name: build_method(name, model, contrast, (method_options or {}).get(name), confusion)
             for name in names}
    layer_used = next((m.layer_name for m in built.values() if m.layer_name is not None), model.target_layer)
    return built, layer_used


def start_run(kind: str, model: Any, dataset: Any, *, transform: Callable | None, class_names: Sequence[str] | None,
              layer: str | None, model_name: str | None, methods: Sequence[str], contrast: Any,
              method_options: dict | None, correct_only: bool | None, dataset_name: str | None, n: int, seed: int,
              weights: str | None, command: str | None, confusion: Any = None,
              **kind_settings: Any) -> tuple[LoadedModel, RunSettings, dict[str, SaliencyMethod]]:
    """What every run starts from: the model as a ``LoadedModel``, its ``RunSettings`` (the protocol
    rule applied, the layer the methods use, the contrast and where it comes from) and the built
    methods. ``contrast``: CASE's contrast where its spec sets none (default ``confusion:1`` with a
    ``confusion`` matrix, else ``classifier:1``: model-level; for the diagnostic the same with the
    other compared class left out, ``leave-pair-out:...``, so no pair is circular).
    ``kind_settings``: the kind's own fields (k_percent, threshold, fill, steps, ...)."""
    bundle = LoadedModel.wrap(model, transform, class_names, layer, model_name)
    names = check_methods(methods)
    contrast = contrast if contrast is not None else default_contrast(confusion, diagnostic=kind == "diagnose")
    built, layer_used = build_methods(bundle, names, contrast, method_options, confusion)
    if kind == "diagnose":  # the other contrastive methods' own ranked contrasts (Finer-CAM's) leave the pair out
        for label, method in built.items():
            spec = parse_method_list([label])[0]
            if method.contrast is not None and "contrast" not in spec.options and not follows_run_contrast(spec):
                method.contrast = leave_pair_out(method.contrast)
    keep_correct, protocol = protocol_for(correct_only, has_labels(dataset))
    settings = RunSettings(
        kind=kind, model=bundle.name, weights=weights,
        dataset=str(dataset_name or getattr(dataset, "name", type(dataset).__name__)), methods=tuple(names),
        n=int(n), seed=int(seed), layer=layer_used, contrast=contrast_spec(contrast),
        contrast_source=contrast_source(contrast, confusion, bundle.model), method_contrasts=method_contrasts(built),
        correct_only=keep_correct, protocol=protocol, command=command or command_line(), **kind_settings)
    return bundle, settings, built


def method_contrasts(methods: dict[str, SaliencyMethod]) -> dict[str, str | None]:
    """{label: the spec of the method's contrast (``classifier:1``, ``nearest:3``) or None}."""
    out: dict[str, str | None] = {}
    for label, method in methods.items():
        contrast = getattr(method, "contrast", None)
        out[label] = contrast_spec(contrast) if contrast is not None else None
    return out


def contrast_source(contrast: Any, confusion: Any, model: nn.Module) -> str | None:
    """Where a run's contrast comes from, beyond its spec: the confusion matrix file, or the
    classifier layer; None for image-level contrasts."""
    spec = contrast_spec(contrast).removeprefix("leave-pair-out:")
    if spec.startswith("confusion"):
        return str(getattr(contrast, "source", None) or getattr(confusion, "source", None) or "array")
    if spec.startswith("classifier"):
        if getattr(contrast, "layer", None):
            return str(contrast.layer)
        try:
            return classifier_layer(model)[0]
        except ValueError:  # no linear head: building CASE's contrast says so
            return None
    return None


@torch.no_grad()
def select_sample(model: nn.Module, dataset: Any, transform: Callable, n: int, seed: int, correct_only: bool,
                  batch_size: int = 32, device: torch.device | None = None, workers: int = 0,
                  progress: bool = False, record: dict | None = None) -> list[int]:
    """Dataset indices of the run, in processing order: a seeded random permutation of the dataset
    (``torch.randperm`` with its own generator), cut to ``n``; with ``correct_only``, walking the
    permutation and keeping images whose top-1 prediction equals their label until ``n`` are kept
    (fewer if the dataset runs out; an image that cannot be read is not kept). n <= 0 means every image.
    workers: DataLoader processes decoding the images (correct_only only); progress: a bar of the
    correct images found.

    record: a dict filled with what the selection did: ``requested`` (n), ``dataset_size``, ``size``
    (images kept), ``short`` (fewer than requested), and with ``correct_only`` also ``examined`` (the
    images looked at, up to the one that completed the sample) and ``excluded`` (those not kept:
    ``{"id", "reason"}``, misclassified or unreadable).
    """
    total = len(dataset)
    if total == 0:
        raise ValueError("the dataset is empty")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed))).tolist()
    want = total if n <= 0 else min(n, total)
    info = record if record is not None else {}
    info.update(requested=int(n), dataset_size=int(total), correct_only=bool(correct_only))
    if not correct_only:
        info.update(size=want, short=0 < n and want < n)
        return order[:want]
    device = device or model_device(model)
    kept: list[int] = []
    examined = 0
    excluded: list[dict] = []
    chunks = [list(range(start, min(start + batch_size, total))) for start in range(0, total, batch_size)]
    bar = tqdm(total=want, desc="sampling correctly classified images", unit="img", disable=not progress)
    for batch in batch_loader(dataset, transform, order, None, chunks, workers=workers):
        guesses: dict[int, int] = {}
        if batch.images is not None:
            labels = [batch.labels[p] for p in batch.ok]
            if all(label < 0 for label in labels):
                raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} has no labels, so 'correct only' cannot "
                                 "be applied; use all images (--all / correct_only=False)")
            guesses = dict(zip(batch.ok, model(batch.images.to(device)).argmax(1).cpu().tolist(), strict=True))
        for p in range(len(batch.ids)):  # in sample order, up to the image that completes the sample
            if len(kept) >= want:
                break
            examined += 1
            if p in batch.failures:
                excluded.append({"id": batch.ids[p], "reason": "unreadable: " + batch.failures[p]})
            elif guesses[p] == batch.labels[p]:
                kept.append(order[batch.start + p])
                bar.update(1)
            else:
                excluded.append({"id": batch.ids[p], "reason": f"predicted {guesses[p]}, label {batch.labels[p]}"})
        if len(kept) >= want:
            break
    bar.close()
    info.update(size=len(kept), short=0 < n and len(kept) < n, examined=examined,  # n <= 0: all, never short
                excluded=excluded)
    return kept


def warn_short_sample(meta: dict) -> None:
    """Log a sample smaller than asked for as a warning (the command line prints it); the details
    are in meta.json (``sample_info``)."""
    text = sample_warning(meta.get("sample_info") or {})
    if text:
        log.warning("warning: %s", text)


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


def finish_meta(run_dir: Path, meta: dict, **extra: Any) -> None:
    meta.update(extra)
    meta["finished"] = now()
    write_json(run_dir / "meta.json", meta)


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
