"""The fidelity test (the paper's RQ2) as a resumable dataset-level run.

For each sampled image (correctly classified ones by default): the predicted class and its
probability (one no-grad forward pass), then for every method its map for that class, the
confidence drop after removing the top-k% pixels, and (unless ``steps=0``) RISE deletion and
insertion curves with their AUC. Every method sees the same images, so ``summarize`` can pair them.
Each row records whether the method's map was degenerate (constant: its "top pixels" are a tie
order, not evidence; the summary leaves such rows out of the means and paired tests and counts
them) and its contrast classes. CASE's contrast defaults as in ``run_diagnose``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..metrics import FILLS, confidence_drop, deletion_insertion
from .common import explain_shared_or_none, start_run
from .defaults import DEFAULT_METHODS
from .engine import RunContext, Work, execute
from .loading import Batch, error_text
from .store import FIDELITY_COLUMNS

# Perturbed images per forward pass, chosen by measurement (benchmarks/eval_batch.py, batches 4-64, a loaded
# 2-core machine): the fastest for Lite0 (5.5 img/s, 4.7 at 32) and a Fashion-MNIST CNN, 95% of resnet50's best (32).
EVAL_BATCH_SIZE = 64


def fidelity_measures(model: torch.nn.Module, images: Tensor, maps: Tensor, pred: Tensor, prob: Tensor,
                      k_percent: float, fill: str, steps: int, eval_batch_size: int,
                      progress: Callable[[int], None] | None = None) -> dict:
    """Confidence drop and (steps > 0) deletion/insertion for maps (B, H, W) of classes ``pred`` (B,).
    progress: called with the images of each forward pass (1 + 2 (steps + 1) per image in all)."""
    drop = confidence_drop(model, images, maps, pred, k_percent, fill, prob_before=prob, batch_size=eval_batch_size,
                           progress=progress)
    numbers = [drop.prob_after, drop.drop_relative, drop.drop_absolute]
    b = images.shape[0]
    if steps > 0:
        curves = deletion_insertion(model, images, maps, pred, steps, deletion_fill=fill, batch_size=eval_batch_size,
                                    progress=progress)
        numbers += [curves.deletion_auc, curves.insertion_auc]
    prob_after, relative, absolute, *aucs = torch.stack([v.float().cpu() for v in numbers]).tolist()
    out = {"prob_after": prob_after, "drop_relative": relative, "drop_absolute": absolute}
    if steps > 0:
        out.update(deletion_auc=aucs[0], insertion_auc=aucs[1],
                   deletion_curve=[" ".join(f"{v:.6g}" for v in row) for row in curves.deletion.tolist()],
                   insertion_curve=[" ".join(f"{v:.6g}" for v in row) for row in curves.insertion.tolist()])
    else:
        out.update(deletion_auc=[float("nan")] * b, insertion_auc=[float("nan")] * b,
                   deletion_curve=[""] * b, insertion_curve=[""] * b)
    return out


def run_fidelity(model: Any, dataset: Any, run_dir: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS,
                 n: int = 100, seed: int = 0, k_percent: float = 50.0, fill: str = "zero", steps: int = 20,
                 correct_only: bool | None = None, alpha: float = 0.05, layer: str | None = None,
                 contrast: Any = None, batch_size: int = 16, eval_batch_size: int = EVAL_BATCH_SIZE,
                 transform: Callable | None = None, class_names: Sequence[str] | None = None,
                 model_name: str | None = None, dataset_name: str | None = None, method_options: dict | None = None,
                 progress: bool = True, command: str | None = None, weights: str | None = None,
                 workers: int | None = None, confusion: Any = None) -> Path:
    """Run (or resume) the fidelity test and return the run directory.

    k_percent: share of pixels removed for the confidence drop (the public script: 50).
    fill: "zero" (0 in the normalised input, the paper's), "mean" or "blur"; also the deletion
        substrate (insertion reveals pixels on a blurred image, as RISE).
    steps: deletion/insertion steps (0 skips the curves). correct_only: None (default) keeps the
        correctly classified images where the data has labels (the paper's protocol) and all images
        where it has none; True/False force it. eval_batch_size: perturbed images per forward pass.
    Other arguments as :func:`case_saliency.runs.diagnose.run_diagnose`.
    Cost per batch and method: one ``explain``, one forward for the drop, 2 (steps + 1) forwards
    per image for the curves.
    """
    if fill not in FILLS:
        raise ValueError(f"fill={fill!r} is not one of {FILLS}")
    if not 0 < float(k_percent) <= 100:
        raise ValueError(f"k_percent={k_percent} is not a percentage in (0, 100]")
    if steps < 0:
        raise ValueError(f"steps={steps}: use 0 to skip the curves or a positive number of steps")
    if eval_batch_size < 1:
        raise ValueError(f"eval_batch_size={eval_batch_size}: give a positive number of images per forward pass")
    bundle, settings, built = start_run(
        "fidelity", model, dataset, transform=transform, class_names=class_names, layer=layer, model_name=model_name,
        methods=methods, contrast=contrast, method_options=method_options, correct_only=correct_only,
        dataset_name=dataset_name, n=n, seed=seed, weights=weights, command=command, confusion=confusion,
        k_percent=(float(k_percent),), threshold=None, alpha=float(alpha), fill=fill, signed=False, steps=int(steps),
        batch_size=int(batch_size), eval_batch_size=int(eval_batch_size), gallery=0)
    return execute(settings, bundle, dataset, Path(run_dir), built, columns=FIDELITY_COLUMNS, rows_per_pair=1,
                   make_job=FidelityJob, progress=progress, workers=workers)


class FidelityJob:
    """The fidelity test's work on one batch (``runs.engine.Job``)."""

    def __init__(self, context: RunContext):
        self.context = context
        self.settings = context.settings

    def todo(self, ids: Sequence[str]) -> dict[str, list[int]]:
        todo = {name: [b for b, i in enumerate(ids) if (i, name) not in self.context.done]
                for name in self.settings.methods}
        return {name: missing for name, missing in todo.items() if missing}

    def needs(self, start: int, ids: Sequence[str]) -> bool:
        return bool(self.todo(ids))

    def compute(self, batch: Batch, tick: Callable[[float], None]) -> Work:
        context, settings = self.context, self.settings
        ids = batch.ids
        todo = self.todo(ids)
        work = Work()
        if batch.images is not None and todo:
            images = batch.images.to(context.device, non_blocking=True)
            with torch.no_grad():
                probs = context.net(images).float().softmax(1)
            prob, pred = probs.max(1)
            steps = settings.steps or 0
            # progress in images: one method's share of the batch, spread over its forward passes
            passes = images.shape[0] * (1 + 2 * (steps + 1) if steps > 0 else 1)
            share = len(ids) / len(todo)
            # Gradient CAMs at one layer share one capture (explain_many); the others run alone.
            shared = explain_shared_or_none({name: context.methods[name] for name in todo}, images, pred,
                                            normalize=True)
            for name, missing in todo.items():
                rows = _method_rows(context.methods[name], name, context.net, images, pred, prob, batch,
                                    [b for b in missing if b in batch.ok], float(settings.k_percent[0]),
                                    str(settings.fill), steps, int(settings.eval_batch_size or EVAL_BATCH_SIZE),
                                    lambda count, share=share: tick(share * count / passes), shared.get(name))
                work.outcomes[name] = [row["error"] for row in rows]
                work.groups += [[row] for row in rows]
        elif todo:
            tick(len(ids))
        for b, error in batch.failures.items():
            work.groups += [[_error_row(ids[b], name, -1, -1, float("nan"), error)]
                            for name, missing in todo.items() if b in missing]
        return work


def _error_row(image_id: str, name: str, label: int, pred: int, prob: float, error: str) -> dict:
    return {"image_id": image_id, "method": name, "label": int(label), "pred": int(pred), "prob_before": prob,
            "prob_after": float("nan"), "drop_relative": float("nan"), "drop_absolute": float("nan"),
            "deletion_auc": float("nan"), "insertion_auc": float("nan"), "deletion_curve": "",
            "insertion_curve": "", "degenerate": False, "contrast": "", "error": error}


def _method_rows(method, name, net, images, pred, prob, batch, missing, k_percent, fill, steps,
                 eval_batch_size, progress=None, result=None) -> list[dict]:
    """Rows of one method for the decodable images at batch positions ``missing`` (its maps from
    ``result`` when computed already, in a shared capture); a batch failure is retried image by
    image. ``images``, ``pred`` and ``prob`` hold the decodable images only."""
    if not missing:
        return []
    at = {b: batch.ok.index(b) for b in missing}
    per_image: dict[int, tuple[dict | None, int, str]] = {}
    try:  # the whole batch, as in an uninterrupted run: batch-dependent arithmetic gives the same numbers
        result = result if result is not None else method.explain(images, pred, normalize=True)
        measured = fidelity_measures(net, images, result.maps, pred, prob, k_percent, fill, steps, eval_batch_size,
                                     progress)
        measured.update(_map_record(result))
        per_image = {b: (measured, at[b], "") for b in missing}
    except Exception:
        for b in missing:
            try:
                one = slice(at[b], at[b] + 1)
                result = method.explain(images[one], pred[one], normalize=True)
                measured = fidelity_measures(net, images[one], result.maps, pred[one], prob[one], k_percent, fill,
                                             steps, eval_batch_size)
                measured.update(_map_record(result))
                per_image[b] = (measured, 0, "")
            except Exception as error:  # recorded in the row; the run goes on
                per_image[b] = (None, 0, error_text(error))
    rows = []
    for b in missing:
        numbers, j, problem = per_image[b]
        i = at[b]
        row = _error_row(batch.ids[b], name, batch.labels[b], int(pred[i]), float(prob[i]), problem)
        if numbers is not None:
            row.update({key: numbers[key][j] for key in ("prob_after", "drop_relative", "drop_absolute",
                                                          "deletion_auc", "insertion_auc", "deletion_curve",
                                                          "insertion_curve", "degenerate", "contrast")})
        rows.append(row)
    return rows


def _map_record(result: Any) -> dict:
    """Per image: the map's degenerate flag and its contrast classes as text ("" for none)."""
    b = result.maps.shape[0]
    degenerate = result.degenerate.cpu().reshape(b).tolist() if result.degenerate is not None else [False] * b
    contrast = [""] * b
    if result.contrast is not None:
        contrast = [" ".join(str(int(c)) for c in row) for row in result.contrast.cpu().reshape(b, -1).tolist()]
    return {"degenerate": [bool(d) for d in degenerate], "contrast": contrast}
