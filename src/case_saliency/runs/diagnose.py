"""The class-sensitivity diagnostic (the paper's RQ1) as a resumable dataset-level run.

For each sampled image: its top-1 and top-2 predicted classes (one no-grad forward pass), then for
every method one ``explain`` call for both classes at once (a (B, 2) target tensor: one pass per
method and batch), and per pair of maps the top-k% agreement at each k, Spearman and SSIM. Rows go
to ``results.csv`` as they are computed (see docs/run-format.md); the first ``gallery`` images also
get their maps saved for the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..core.contrast import TopLogits
from ..core.maps import SaliencyMaps
from ..metrics import spearman, ssim, topk_agreement
from .common import (DEFAULT_METHODS, as_bundle, batches, check_methods, display_images, error_text, finish_meta,
                     load_items, open_run, save_npz_atomic)
from .store import DIAGNOSE_COLUMNS, ResultsTable


def _contrast_text(contrast: Tensor | None, index: int, slot: int) -> str:
    if contrast is None:
        return ""
    return " ".join(str(int(c)) for c in contrast[index, slot].reshape(-1).tolist())


def _pair_rows(method: str, image_id: str, label: int, classes: Tensor, probs: Tensor, k_percent: Sequence[float],
               numbers: dict | None, index: int, error: str = "") -> list[dict]:
    """The rows of one (image, method) pair, one per k."""
    rows = []
    for j, k in enumerate(k_percent):
        row = {"image_id": image_id, "method": method, "k_percent": float(k), "class1": int(classes[index, 0]),
               "class2": int(classes[index, 1]), "prob1": float(probs[index, 0]), "prob2": float(probs[index, 1]),
               "label": int(label), "error": error}
        if numbers is None:
            row.update(agreement=float("nan"), spearman=float("nan"), ssim=float("nan"), degenerate=False,
                       contrast1="", contrast2="")
        else:
            row.update(agreement=float(numbers["agreement"][j][index]), spearman=float(numbers["spearman"][index]),
                       ssim=float(numbers["ssim"][index]), degenerate=bool(numbers["degenerate"][index]),
                       contrast1=_contrast_text(numbers["contrast"], index, 0),
                       contrast2=_contrast_text(numbers["contrast"], index, 1))
        rows.append(row)
    return rows


def pair_measures(result: SaliencyMaps, k_percent: Sequence[float], signed: bool = False) -> dict:
    """Agreement at each k, Spearman, SSIM and degeneracy for maps (B, 2, H, W) of top-1/top-2."""
    maps = result.maps.detach().float().cpu()
    first, second = maps[:, 0], maps[:, 1]
    agreement = [topk_agreement(first, second, k, signed=signed) for k in k_percent]
    degenerate = torch.isnan(agreement[0])
    if result.degenerate is not None and result.degenerate.ndim == 2:
        degenerate = degenerate | result.degenerate.cpu().any(1)
    small = min(maps.shape[-2:]) < 11  # SSIM's window does not fit: report NaN rather than fail
    similarity = torch.full((maps.shape[0],), float("nan")) if small else ssim(first, second)
    return {"agreement": [a.tolist() for a in agreement], "spearman": spearman(first, second).tolist(),
            "ssim": similarity.tolist(), "degenerate": degenerate.tolist(),
            "contrast": None if result.contrast is None else result.contrast.cpu(), "maps": maps}


def run_diagnose(model: Any, dataset: Any, run_dir: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS,
                 n: int = 100, seed: int = 0, k_percent: Sequence[float] = (5.0,), threshold: float = 50.0,
                 alpha: float = 0.05, layer: str | None = None, contrast: Any = None,
                 correct_only: bool = False, batch_size: int = 16, gallery: int = 8, signed: bool = False,
                 transform: Callable | None = None, class_names: Sequence[str] | None = None,
                 model_name: str | None = None, dataset_name: str | None = None,
                 method_options: dict | None = None, progress: bool = True, command: str | None = None,
                 weights: str | None = None) -> Path:
    """Run (or resume) the class-sensitivity diagnostic and return the run directory.

    model: a ``LoadedModel`` or an ``nn.Module`` (then give ``transform``, and ``class_names``).
    dataset: an ``ImageDataset`` (``case_saliency.data.open_dataset``): ``ds[i] -> (PIL, label, id)``.
    methods: registered method names; contrast: CASE's contrast strategy (default ``TopLogits(1)``).
    n, seed: the seeded sample (n <= 0: all); correct_only: keep images whose top-1 is right.
    k_percent: agreement at each k (one row per k); threshold, alpha: for ``summarize``.
    signed: rank raw signed maps (no ReLU) in the agreement. gallery: save maps of the first images.
    Cost per batch: one forward pass plus one ``explain`` per method for both classes.
    """
    bundle = as_bundle(model, transform, class_names, layer, model_name)
    methods = check_methods(methods)
    k_percent = [float(k) for k in k_percent]
    if not k_percent or any(not 0 < k <= 100 for k in k_percent):
        raise ValueError(f"k_percent={k_percent}: give one or more percentages in (0, 100], e.g. 5")
    contrast = contrast if contrast is not None else TopLogits(k=1)
    run_dir = Path(run_dir)
    run = open_run("diagnose", bundle, dataset, run_dir, methods=methods, contrast=contrast,
                   method_options=method_options, n=n, seed=seed, correct_only=correct_only, batch_size=batch_size,
                   settings={"k_percent": k_percent, "threshold": float(threshold), "alpha": float(alpha),
                             "fill": None, "signed": bool(signed), "steps": None, "gallery": int(gallery)},
                   weights=weights, dataset_name=dataset_name, command=command)
    sample, built, device = run.sample, run.methods, run.device
    gallery_dir = run_dir / "gallery"
    if gallery > 0:
        gallery_dir.mkdir(exist_ok=True)
    errors = 0
    with ResultsTable(run_dir / "results.csv", DIAGNOSE_COLUMNS, rows_per_pair=len(k_percent)) as table:
        bar = tqdm(total=len(sample), desc="diagnose", unit="img", disable=not progress)
        for start, chunk in batches(sample, batch_size):
            errors += _diagnose_batch(bundle, dataset, chunk, start, methods, built, k_percent, signed, table,
                                      gallery, gallery_dir, device, bar)
        bar.close()
    finish_meta(run_dir, run.meta, errors_in_last_session=errors)
    return run_dir


def _gallery_has(path: Path, method: str) -> bool:
    if not path.exists():
        return False
    with np.load(path) as data:
        return f"map_{method}" in data.files


@torch.no_grad()
def _top2(net: torch.nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    probs = net(images).float().softmax(1)
    top = probs.topk(2, dim=1)
    return top.indices, top.values


def _diagnose_batch(bundle, dataset, chunk, start, methods, built, k_percent, signed, table, gallery,
                    gallery_dir, device, bar) -> int:
    """Compute and append the missing rows of one fixed batch; returns the number of error rows."""
    images, labels, ids = load_items(dataset, chunk, bundle.transform)
    in_gallery = [position < gallery for position in range(start, start + len(chunk))]
    errors = 0
    gallery_paths = [gallery_dir / f"{_safe(i)}.npz" for i in ids]
    todo = {}
    for name in methods:
        missing = [b for b, image_id in enumerate(ids) if (image_id, name) not in table.done]
        wants_gallery = any(g and not _gallery_has(p, name) for g, p in zip(in_gallery, gallery_paths, strict=False))
        if missing or wants_gallery:
            todo[name] = missing
    if not todo:
        bar.update(len(chunk))
        return 0
    images = images.to(device)
    classes, probs = _top2(bundle.model, images)
    classes, probs = classes.cpu(), probs.cpu()
    gallery_maps: dict[int, dict[str, np.ndarray]] = {b: {} for b, g in enumerate(in_gallery) if g}
    for name, missing in todo.items():
        method = built[name]
        numbers, failures = None, {}
        try:
            result = method.explain(images, classes.to(device), relu=not signed, normalize=True)
            numbers = pair_measures(result, k_percent, signed)
        except Exception as batch_error:  # isolate the failing image(s): one at a time
            numbers, failures = _one_by_one(method, images, classes, k_percent, signed, batch_error)
        for b in missing:
            error = failures.get(b, "")
            rows = _pair_rows(name, ids[b], labels[b], classes, probs, k_percent, None if error else numbers, b, error)
            table.append(rows)
            errors += bool(error)
        for b in gallery_maps:
            if numbers is not None and b not in failures:
                gallery_maps[b][f"map_{name}"] = numbers["maps"][b].numpy().astype(np.float16)
    for b, maps in gallery_maps.items():
        if maps:
            _write_gallery(gallery_paths[b], images[b:b + 1], bundle.transform, classes[b], probs[b], labels[b], maps)
    bar.update(len(chunk))
    return errors


def _one_by_one(method, images, classes, k_percent, signed, batch_error) -> tuple[dict | None, dict]:
    """Run a method image by image after a batch failed; returns measures stacked over the batch
    (NaN rows for failures) and {index: error text}."""
    parts, failures = [], {}
    for b in range(images.shape[0]):
        try:
            result = method.explain(images[b:b + 1], classes[b:b + 1].to(images.device), relu=not signed,
                                    normalize=True)
            parts.append(pair_measures(result, k_percent, signed))
        except Exception as error:  # recorded in the row; the run goes on
            failures[b] = error_text(error)
            parts.append(None)
    good = [p for p in parts if p is not None]
    if not good:
        return None, failures or {b: error_text(batch_error) for b in range(images.shape[0])}
    template = good[0]
    h, w = template["maps"].shape[-2:]
    nan = float("nan")
    merged = {"agreement": [[p["agreement"][j][0] if p else nan for p in parts] for j in range(len(k_percent))],
              "spearman": [p["spearman"][0] if p else nan for p in parts],
              "ssim": [p["ssim"][0] if p else nan for p in parts],
              "degenerate": [p["degenerate"][0] if p else False for p in parts],
              "maps": torch.stack([p["maps"][0] if p else torch.zeros(2, h, w) for p in parts])}
    contrasts = [p["contrast"] for p in good]
    if all(c is not None for c in contrasts):
        k = contrasts[0].shape[-1]
        merged["contrast"] = torch.stack([p["contrast"][0] if p else torch.full((2, k), -1) for p in parts])
    else:
        merged["contrast"] = None
    return merged, failures


def _safe(image_id: str) -> str:
    """A file name for an image id (ids may be relative paths)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)


def _write_gallery(path: Path, image: Tensor, transform, classes: Tensor, probs: Tensor, label: int,
                   maps: dict[str, np.ndarray]) -> None:
    """Merge this session's maps into the image's gallery file (an earlier session may hold others)."""
    arrays: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as old:
            arrays = {key: old[key] for key in old.files}
    arrays.update({"image": display_images(image, transform)[0], "classes": classes.numpy().astype(np.int64),
                   "probs": probs.numpy().astype(np.float32), "label": np.int64(label)})
    arrays.update(maps)
    save_npz_atomic(path, **arrays)
