"""The class-sensitivity diagnostic (the paper's RQ1) as a resumable dataset-level run.

For each sampled image: its top-1 and top-2 predicted classes (one no-grad forward pass), then for
every method one ``explain`` call for both classes at once (a (B, 2) target tensor: one pass per
method and batch), and per pair of maps the top-k% agreement at each k, Spearman and SSIM. Rows go
to ``results.csv`` as they are computed (see docs/run-format.md); the first ``gallery`` images also
get their maps saved for the report.

Nothing that could flatter a method goes unrecorded: each row holds the contrast classes of both
maps and whether either map's contrast set holds the other compared class (``other_in_contrast``:
then the two maps are pushed apart by construction), each map's number of positive pixels and
whether the pair is sparse at that k (either map has fewer positive pixels than the top set).
CASE's contrast defaults to a model-level one (confusion neighbours with a confusion matrix,
classifier neighbours without), never the top logits, unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.maps import SaliencyMaps
from ..metrics import SPARSE_POLICIES, TIE_POLICIES, positive_pixels, spearman, ssim, top_count, topk_agreement
from .common import display_images, explain_shared_or_none, start_run
from .defaults import DEFAULT_METHODS
from .engine import RunContext, Work, execute
from .loading import Batch, error_text
from .store import DIAGNOSE_COLUMNS, gallery_path


def _contrast_text(contrast: Tensor | None, index: int, slot: int) -> str:
    if contrast is None:
        return ""
    return " ".join(str(int(c)) for c in contrast[index, slot].reshape(-1).tolist())


def _pair_rows(method: str, image_id: str, label: int, classes: Tensor, probs: Tensor, k_percent: Sequence[float],
               numbers: dict | None, index: int, error: str = "", at: int | None = None) -> list[dict]:
    """The rows of one (image, method) pair, one per k: ``classes``/``probs`` at batch position
    ``index``, ``numbers`` at row ``at`` (default ``index``)."""
    at = index if at is None else at
    rows = []
    for j, k in enumerate(k_percent):
        row = {"image_id": image_id, "method": method, "k_percent": float(k), "class1": int(classes[index, 0]),
               "class2": int(classes[index, 1]), "prob1": float(probs[index, 0]), "prob2": float(probs[index, 1]),
               "label": int(label), "error": error}
        if numbers is None:
            row.update(agreement=float("nan"), spearman=float("nan"), ssim=float("nan"), degenerate=False,
                       contrast1="", contrast2="", other_in_contrast=False, positive1=None, positive2=None,
                       sparse=False)
        else:
            row.update(agreement=float(numbers["agreement"][j][at]), spearman=float(numbers["spearman"][at]),
                       ssim=float(numbers["ssim"][at]), degenerate=bool(numbers["degenerate"][at]),
                       contrast1=_contrast_text(numbers["contrast"], at, 0),
                       contrast2=_contrast_text(numbers["contrast"], at, 1),
                       other_in_contrast=bool(numbers["other_in_contrast"][at]),
                       positive1=int(numbers["positive"][at][0]), positive2=int(numbers["positive"][at][1]),
                       sparse=bool(numbers["sparse"][j][at]))
        rows.append(row)
    return rows


def pair_measures(result: SaliencyMaps, k_percent: Sequence[float], signed: bool = False, *,
                  ties: str = "index", sparse: str = "positive") -> dict:
    """Agreement at each k, Spearman, SSIM and degeneracy for maps (B, 2, H, W) of top-1/top-2; each
    map's positive pixels (B, 2), the sparse pairs at each k, and whether either map's contrast set
    holds the other compared class (B,).

    Computed where the maps are (the model's device); only the numbers come back to the CPU, as
    lists. ``maps`` stays on the device for the gallery."""
    maps = result.maps.detach().float()
    first, second = maps[:, 0], maps[:, 1]
    agreement = torch.stack([topk_agreement(first, second, k, signed=signed, ties=ties, sparse=sparse)
                             for k in k_percent])
    positive = positive_pixels(maps).cpu()  # (B, 2)
    h, w = maps.shape[-2:]
    sparse_pairs = [(positive.amin(1) < top_count(h, w, k)).tolist() for k in k_percent]
    other = torch.zeros(maps.shape[0], dtype=torch.bool)
    if result.contrast is not None and result.contrast.ndim == 3:
        contrast, targets = result.contrast.cpu(), result.targets.cpu()
        other = (contrast[:, 0] == targets[:, 1:2]).any(1) | (contrast[:, 1] == targets[:, 0:1]).any(1)
    degenerate = torch.isnan(agreement[0])
    if result.degenerate is not None and result.degenerate.ndim == 2:
        degenerate = degenerate | result.degenerate.to(degenerate.device).any(1)
    small = min(maps.shape[-2:]) < 11  # SSIM's window does not fit: report NaN rather than fail
    similarity = torch.full((maps.shape[0],), float("nan"), device=maps.device) if small else ssim(first, second)
    numbers = torch.cat([agreement.float(), spearman(first, second).float()[None], similarity.float()[None],
                         degenerate.float()[None]]).cpu()  # one transfer for all the numbers
    count = len(k_percent)
    return {"agreement": numbers[:count].tolist(), "spearman": numbers[count].tolist(),
            "ssim": numbers[count + 1].tolist(), "degenerate": numbers[count + 2].bool().tolist(),
            "contrast": None if result.contrast is None else result.contrast.cpu(), "maps": maps,
            "positive": positive.tolist(), "sparse": sparse_pairs, "other_in_contrast": other.tolist()}


def run_diagnose(model: Any, dataset: Any, run_dir: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS,
                 n: int = 100, seed: int = 0, k_percent: Sequence[float] = (5.0,), threshold: float = 50.0,
                 alpha: float = 0.05, layer: str | None = None, contrast: Any = None,
                 correct_only: bool | None = None, batch_size: int = 16, gallery: int = 8, signed: bool = False,
                 transform: Callable | None = None, class_names: Sequence[str] | None = None,
                 model_name: str | None = None, dataset_name: str | None = None,
                 method_options: dict | None = None, progress: bool = True, command: str | None = None,
                 weights: str | None = None, workers: int | None = None, confusion: Any = None,
                 ties: str = "index", sparse: str = "positive") -> Path:
    """Run (or resume) the class-sensitivity diagnostic and return the run directory.

    model: a ``LoadedModel`` or an ``nn.Module`` (then give ``transform``, and ``class_names``).
    dataset: an ``ImageDataset`` (``case_saliency.data.open_dataset``): ``ds[i] -> (PIL, label, id)``.
    methods: method specs (``gradcam``, ``case``, ``case(contrast=top:1)``; see
        :mod:`case_saliency.methods.spec`), each a column of the comparison.
    contrast: the contrast of CASE specs that set none, a strategy or its spec text; default
        ``confusion:1`` when ``confusion`` is given, else ``classifier:1`` (model-level: never the
        other compared class by construction). confusion: a confusion matrix (array, file or
        ``ConfusionNeighbours``) for ``confusion:K`` contrasts.
    ties, sparse: the agreement's tie and sparse-map policies (``case_saliency.metrics.agreement``).
    n, seed: the seeded sample (n <= 0: all); a sample smaller than n is logged as a warning and
    recorded in meta.json (``sample_info``). correct_only: None (default) keeps the correctly
    classified images where the data has labels (the paper's protocol) and all images where it has
    none; True/False force it (``settings.protocol_for``).
    k_percent: agreement at each k (one row per k); threshold, alpha: for ``summarize``.
    signed: rank raw signed maps (no ReLU) in the agreement. gallery: save maps of the first images.
    workers: DataLoader processes decoding images (None: from the CPU count). Under ``torchrun`` the
    sample is sharded over the ranks (``runs.engine``).
    Cost per batch: one forward pass, one shared capture for the gradient CAMs at one layer
    (``explain_many``) and one ``explain`` per other method, each for both classes.
    """
    k_percent = [float(k) for k in k_percent]
    if not k_percent or any(not 0 < k <= 100 for k in k_percent):
        raise ValueError(f"k_percent={k_percent}: give one or more percentages in (0, 100], e.g. 5")
    if ties not in TIE_POLICIES or sparse not in SPARSE_POLICIES:
        raise ValueError(f"ties={ties!r}, sparse={sparse!r}: use ties in {TIE_POLICIES} and sparse in "
                         f"{SPARSE_POLICIES}")
    bundle, settings, built = start_run(
        "diagnose", model, dataset, transform=transform, class_names=class_names, layer=layer, model_name=model_name,
        methods=methods, contrast=contrast, method_options=method_options, correct_only=correct_only,
        dataset_name=dataset_name, n=n, seed=seed, weights=weights, command=command, confusion=confusion,
        k_percent=tuple(k_percent), ties=ties, sparse=sparse, threshold=float(threshold), alpha=float(alpha),
        fill=None, signed=bool(signed), steps=None, batch_size=int(batch_size), gallery=int(gallery))
    return execute(settings, bundle, dataset, Path(run_dir), built, columns=DIAGNOSE_COLUMNS,
                   rows_per_pair=len(k_percent), make_job=DiagnoseJob, progress=progress, workers=workers)


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


class DiagnoseJob:
    """The diagnostic's work on one batch (``runs.engine.Job``)."""

    def __init__(self, context: RunContext):
        self.context = context
        self.settings = context.settings

    def todo(self, start: int, ids: Sequence[str]) -> dict[str, list[int]]:
        """{method: batch positions whose pair is missing}, for every method with work (a gallery
        image lacking the method's maps is work too)."""
        gallery = self.settings.gallery
        todo = {}
        for name in self.settings.methods:
            missing = [b for b, image_id in enumerate(ids) if (image_id, name) not in self.context.done]
            wants_gallery = any(start + b < gallery and not _gallery_has(gallery_path(self.context.run_dir, i), name)
                                for b, i in enumerate(ids))
            if missing or wants_gallery:
                todo[name] = missing
        return todo

    def needs(self, start: int, ids: Sequence[str]) -> bool:
        return bool(self.todo(start, ids))

    def compute(self, batch: Batch, tick: Callable[[float], None]) -> Work:
        context, settings = self.context, self.settings
        k_percent, signed = list(settings.k_percent), settings.signed
        policies = {"ties": settings.ties or "index", "sparse": settings.sparse or "positive"}
        ids = batch.ids
        todo = self.todo(batch.start, ids)
        work = Work()
        classes = torch.full((len(ids), 2), -1, dtype=torch.long)
        probs = torch.full((len(ids), 2), float("nan"))
        gallery_maps: dict[int, dict[str, np.ndarray]] = {
            b: {} for b in batch.ok if batch.start + b < settings.gallery}
        share = len(ids) / max(len(todo), 1)
        if batch.images is not None and todo:
            images = batch.images.to(context.device, non_blocking=True)
            ok_classes, ok_probs = _top2(context.net, images)
            classes[batch.ok], probs[batch.ok] = ok_classes.cpu(), ok_probs.cpu()
            position = {b: j for j, b in enumerate(batch.ok)}  # batch position -> row of ``images``
            # Gradient CAMs at one layer share one capture (explain_many); the others run alone below.
            shared = explain_shared_or_none({name: context.methods[name] for name in todo}, images, ok_classes,
                                            relu=not signed, normalize=True)
            for name, missing in todo.items():
                numbers, failures = _explain_pairs(context.methods[name], images, ok_classes, k_percent, signed,
                                                   shared.get(name), **policies)
                work.outcomes[name] = [failures.get(position[b], "") for b in missing if b in position]
                for b in missing:
                    if b in position:
                        error = failures.get(position[b], "")
                        work.groups.append(_pair_rows(name, ids[b], batch.labels[b], classes, probs, k_percent,
                                                      None if error else numbers, b, error, position[b]))
                for b in gallery_maps:
                    if numbers is not None and position[b] not in failures:
                        gallery_maps[b][f"map_{name}"] = numbers["maps"][position[b]].cpu().numpy().astype(np.float16)
                tick(share)
        elif todo:
            tick(len(ids))
        for b, error in batch.failures.items():
            for name, missing in todo.items():
                if b in missing:
                    work.groups.append(_pair_rows(name, ids[b], -1, classes, probs, k_percent, None, b, error, b))
        for b, maps in gallery_maps.items():
            if maps and batch.images is not None:
                j = batch.ok.index(b)
                arrays = {"image_id": np.str_(ids[b]),
                          "image": display_images(batch.images[j:j + 1], context.transform)[0],
                          "classes": classes[b].numpy().astype(np.int64), "probs": probs[b].numpy().astype(np.float32),
                          "label": np.int64(batch.labels[b]), **maps}
                work.gallery.append((gallery_path(context.run_dir, ids[b]), arrays))
        return work


def _explain_pairs(method, images, classes, k_percent, signed, result=None, ties="index",
                   sparse="positive") -> tuple[dict | None, dict[int, str]]:
    """Top-1/top-2 maps and their measures for a batch; a batch failure is retried image by image.
    Returns (measures, {row of images: error text})."""
    try:
        if result is None:  # else computed already, in a capture shared with other methods
            result = method.explain(images, classes, relu=not signed, normalize=True)
        return pair_measures(result, k_percent, signed, ties=ties, sparse=sparse), {}
    except Exception as batch_error:  # isolate the failing image(s): one at a time
        return _one_by_one(method, images, classes, k_percent, signed, batch_error, ties, sparse)


def _one_by_one(method, images, classes, k_percent, signed, batch_error, ties="index",
                sparse="positive") -> tuple[dict | None, dict]:
    """Run a method image by image after a batch failed; returns measures stacked over the batch
    (NaN rows for failures) and {index: error text}."""
    parts: list[dict | None] = []
    failures: dict[int, str] = {}
    for b in range(images.shape[0]):
        try:
            result = method.explain(images[b:b + 1], classes[b:b + 1].to(images.device), relu=not signed,
                                    normalize=True)
            parts.append(pair_measures(result, k_percent, signed, ties=ties, sparse=sparse))
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
              "maps": torch.stack([p["maps"][0] if p else template["maps"].new_zeros(2, h, w) for p in parts]),
              "positive": [p["positive"][0] if p else [0, 0] for p in parts],
              "sparse": [[p["sparse"][j][0] if p else False for p in parts] for j in range(len(k_percent))],
              "other_in_contrast": [p["other_in_contrast"][0] if p else False for p in parts]}
    contrasts = [p["contrast"] for p in good]
    if all(c is not None for c in contrasts):
        k = contrasts[0].shape[-1]
        merged["contrast"] = torch.stack([p["contrast"][0] if p else torch.full((2, k), -1) for p in parts])
    else:
        merged["contrast"] = None
    return merged, failures
