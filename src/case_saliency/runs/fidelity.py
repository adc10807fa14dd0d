"""The fidelity test (the paper's RQ2) as a resumable dataset-level run.

For each sampled image (correctly classified ones by default): the predicted class and its
probability (one no-grad forward pass), then for every method its map for that class, the
confidence drop after removing the top-k% pixels, and (unless ``steps=0``) RISE deletion and
insertion curves with their AUC. Every method sees the same images, so ``summarize`` can pair them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..core.contrast import TopLogits
from ..metrics import FILLS, confidence_drop, deletion_insertion
from ..models import LoadedModel
from .common import FirstBatchCheck, batches, check_methods, error_text, finish_meta, load_batch, open_run
from .defaults import DEFAULT_METHODS
from .store import FIDELITY_COLUMNS, ResultsTable


def fidelity_measures(model: torch.nn.Module, images: Tensor, maps: Tensor, pred: Tensor, prob: Tensor,
                      k_percent: float, fill: str, steps: int, eval_batch_size: int) -> dict:
    """Confidence drop and (steps > 0) deletion/insertion for maps (B, H, W) of classes ``pred`` (B,)."""
    drop = confidence_drop(model, images, maps, pred, k_percent, fill, prob_before=prob, batch_size=eval_batch_size)
    out = {"prob_after": drop.prob_after.cpu().tolist(), "drop_relative": drop.drop_relative.cpu().tolist(),
           "drop_absolute": drop.drop_absolute.cpu().tolist()}
    b = images.shape[0]
    if steps > 0:
        curves = deletion_insertion(model, images, maps, pred, steps, deletion_fill=fill, batch_size=eval_batch_size)
        out.update(deletion_auc=curves.deletion_auc.tolist(), insertion_auc=curves.insertion_auc.tolist(),
                   deletion_curve=[" ".join(f"{v:.6g}" for v in row) for row in curves.deletion.tolist()],
                   insertion_curve=[" ".join(f"{v:.6g}" for v in row) for row in curves.insertion.tolist()])
    else:
        out.update(deletion_auc=[float("nan")] * b, insertion_auc=[float("nan")] * b,
                   deletion_curve=[""] * b, insertion_curve=[""] * b)
    return out


def run_fidelity(model: Any, dataset: Any, run_dir: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS,
                 n: int = 100, seed: int = 0, k_percent: float = 50.0, fill: str = "zero", steps: int = 20,
                 correct_only: bool = True, alpha: float = 0.05, layer: str | None = None, contrast: Any = None,
                 batch_size: int = 16, eval_batch_size: int = 64, transform: Callable | None = None,
                 class_names: Sequence[str] | None = None, model_name: str | None = None,
                 dataset_name: str | None = None, method_options: dict | None = None, progress: bool = True,
                 command: str | None = None, weights: str | None = None) -> Path:
    """Run (or resume) the fidelity test and return the run directory.

    k_percent: share of pixels removed for the confidence drop (the public script: 50).
    fill: "zero" (0 in the normalised input, the paper's), "mean" or "blur"; also the deletion
        substrate (insertion reveals pixels on a blurred image, as RISE).
    steps: deletion/insertion steps (0 skips the curves). correct_only: only images whose top-1
        prediction equals their label (the paper's protocol); False: all sampled images.
    Other arguments as :func:`case_saliency.runs.diagnose.run_diagnose`.
    Cost per batch and method: one ``explain``, one forward for the drop, 2 (steps + 1) forwards
    per image for the curves.
    """
    bundle = LoadedModel.wrap(model, transform, class_names, layer, model_name)
    methods = check_methods(methods)
    if fill not in FILLS:
        raise ValueError(f"fill={fill!r} is not one of {FILLS}")
    if not 0 < float(k_percent) <= 100:
        raise ValueError(f"k_percent={k_percent} is not a percentage in (0, 100]")
    if steps < 0:
        raise ValueError(f"steps={steps}: use 0 to skip the curves or a positive number of steps")
    contrast = contrast if contrast is not None else TopLogits(k=1)
    run_dir = Path(run_dir)
    run = open_run("fidelity", bundle, dataset, run_dir, methods=methods, contrast=contrast,
                   method_options=method_options, n=n, seed=seed, correct_only=correct_only, batch_size=batch_size,
                   settings={"k_percent": [float(k_percent)], "threshold": None, "alpha": float(alpha),
                             "fill": fill, "signed": False, "steps": int(steps)},
                   weights=weights, dataset_name=dataset_name, command=command, columns=FIDELITY_COLUMNS,
                   rows_per_pair=1)
    net, device = run.net, run.device
    check = FirstBatchCheck()
    table: ResultsTable | None = None
    try:
        bar = tqdm(total=len(run.sample), desc="fidelity", unit="img", disable=not progress)
        for _, chunk in batches(run.sample, batch_size):
            batch = load_batch(dataset, chunk, bundle.transform)
            ids = batch.ids
            todo = {name: [b for b, i in enumerate(ids) if (i, name) not in run.done] for name in methods}
            todo = {name: missing for name, missing in todo.items() if missing}
            if not todo:
                bar.update(len(chunk))
                continue
            groups: list[list[dict]] = []
            outcomes: dict[str, list[str]] = {}
            if batch.images is not None:
                images = batch.images.to(device)
                with torch.no_grad():
                    probs = net(images).float().softmax(1)
                prob, pred = probs.max(1)
                for name, missing in todo.items():
                    rows = _method_rows(run.methods[name], name, net, images, pred, prob, batch,
                                        [b for b in missing if b in batch.ok], float(k_percent), fill, steps,
                                        eval_batch_size)
                    outcomes[name] = [row["error"] for row in rows]
                    groups += [[row] for row in rows]
            for b, error in batch.failures.items():
                groups += [[_error_row(ids[b], name, -1, -1, float("nan"), error)]
                           for name, missing in todo.items() if b in missing]
            check.check(outcomes)
            if table is None:
                run.commit()
                table = ResultsTable(run_dir / "results.csv", FIDELITY_COLUMNS, 1, run.sample_ids)
            for rows in groups:
                table.append(rows)
            bar.update(len(chunk))
        bar.close()
    finally:
        if table is not None:
            table.close()
    run.commit()
    finish_meta(run_dir, run.meta, errors_in_last_session=table.errors_written if table else 0)
    return run_dir


def _error_row(image_id: str, name: str, label: int, pred: int, prob: float, error: str) -> dict:
    return {"image_id": image_id, "method": name, "label": int(label), "pred": int(pred), "prob_before": prob,
            "prob_after": float("nan"), "drop_relative": float("nan"), "drop_absolute": float("nan"),
            "deletion_auc": float("nan"), "insertion_auc": float("nan"), "deletion_curve": "",
            "insertion_curve": "", "error": error}


def _method_rows(method, name, net, images, pred, prob, batch, missing, k_percent, fill, steps,
                 eval_batch_size) -> list[dict]:
    """Rows of one method for the decodable images at batch positions ``missing``; a batch failure is
    retried image by image. ``images``, ``pred`` and ``prob`` hold the decodable images only."""
    if not missing:
        return []
    at = {b: batch.ok.index(b) for b in missing}
    per_image: dict[int, tuple[dict | None, int, str]] = {}
    try:  # the whole batch, as in an uninterrupted run: batch-dependent arithmetic gives the same numbers
        maps = method.explain(images, pred, normalize=True).maps
        numbers = fidelity_measures(net, images, maps, pred, prob, k_percent, fill, steps, eval_batch_size)
        per_image = {b: (numbers, at[b], "") for b in missing}
    except Exception:
        for b in missing:
            try:
                one = slice(at[b], at[b] + 1)
                maps = method.explain(images[one], pred[one], normalize=True).maps
                per_image[b] = (fidelity_measures(net, images[one], maps, pred[one], prob[one], k_percent, fill,
                                                  steps, eval_batch_size), 0, "")
            except Exception as error:  # recorded in the row; the run goes on
                per_image[b] = (None, 0, error_text(error))
    rows = []
    for b in missing:
        numbers, j, error = per_image[b]
        i = at[b]
        row = _error_row(batch.ids[b], name, batch.labels[b], int(pred[i]), float(prob[i]), error)
        if numbers is not None:
            row.update({key: numbers[key][j] for key in ("prob_after", "drop_relative", "drop_absolute",
                                                          "deletion_auc", "insertion_auc", "deletion_curve",
                                                          "insertion_curve")})
        rows.append(row)
    return rows
