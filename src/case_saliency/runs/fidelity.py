"""The fidelity test (the paper's RQ2) as a resumable run kind.

For each sampled image (correctly classified ones by default): the predicted class and its
probability (one no-grad forward pass), then for every method its map for that class, the
confidence drop after removing the top-k% pixels, and (unless ``steps=0``) RISE deletion and
insertion curves with their AUC. Every method sees the same images, so ``summarize`` can pair them.
Each row records whether the method's map was degenerate (constant: its "top pixels" are a tie
order, not evidence; the summary leaves such rows out of the means and paired tests and counts
them) and its contrast classes. CASE's contrast defaults as in ``run_diagnose``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.maps import SaliencyMaps
from ..metrics import confidence_drop, deletion_insertion
from ..models import LoadedModel
from .runner import Pair, RunKind, explain_shared_or_none, register, run_with_keywords
from .loading import ImageSource
from .rows import FidelityRow
from .settings import EVAL_BATCH_SIZE, FidelitySettings

__all__ = ["EVAL_BATCH_SIZE", "Fidelity", "fidelity_measures", "run_fidelity"]

MEASURED = ("prob_after", "drop_relative", "drop_absolute", "deletion_auc", "insertion_auc", "deletion_curve",
            "insertion_curve")


def fidelity_measures(model: nn.Module, images: Tensor, maps: Tensor, classes: tuple[Tensor, Tensor],
                      settings: FidelitySettings, progress: Callable[[int], None] | None = None
                      ) -> dict[str, list[Any]]:
    """Confidence drop and (steps > 0) deletion/insertion of each image's map.

    Args:
        model: the network. images: (B, C, H, W). maps: (B, H, W) of the classes explained.
        classes: (pred (B,), its probability (B,)). settings: k_percent, fill, steps, eval_batch_size.
        progress: called with the images of each forward pass (1 + 2 (steps + 1) per image in all).
    Returns:
        {column: one value per image} for the measured columns of ``FidelityRow``.
    """
    pred, prob = classes
    k_percent, fill, steps, batch = settings.k_percent, settings.fill, settings.steps, settings.eval_batch_size
    drop = confidence_drop(model, images, maps, pred, k_percent, fill, prob_before=prob, batch_size=batch,
                           progress=progress)
    numbers = [drop.prob_after, drop.drop_relative, drop.drop_absolute]
    b = images.shape[0]
    if steps > 0:
        curves = deletion_insertion(model, images, maps, pred, steps, deletion_fill=fill, batch_size=batch,
                                    progress=progress)
        numbers += [curves.deletion_auc, curves.insertion_auc]
    prob_after, relative, absolute, *aucs = torch.stack([v.float().cpu() for v in numbers]).tolist()
    out: dict[str, list[Any]] = {"prob_after": prob_after, "drop_relative": relative, "drop_absolute": absolute}
    if steps > 0:
        out.update(deletion_auc=aucs[0], insertion_auc=aucs[1],
                   deletion_curve=[" ".join(f"{v:.6g}" for v in row) for row in curves.deletion.tolist()],
                   insertion_curve=[" ".join(f"{v:.6g}" for v in row) for row in curves.insertion.tolist()])
    else:
        out.update(deletion_auc=[float("nan")] * b, insertion_auc=[float("nan")] * b,
                   deletion_curve=[""] * b, insertion_curve=[""] * b)
    return out


@dataclass
class FidelityBatch:
    """What a fidelity batch's methods share: the decoded ``images``, the predicted class ``pred`` (B,)
    and its probability ``prob`` (B,), the maps of the shared capture, and the progress per method."""

    images: Tensor
    pred: Tensor
    prob: Tensor
    maps: dict[str, SaliencyMaps] = field(default_factory=dict)


def _map_record(result: SaliencyMaps) -> dict[str, list[Any]]:
    """Per image: the map's degenerate flag and its contrast classes as text ("" for none)."""
    b = result.maps.shape[0]
    degenerate = result.degenerate.cpu().reshape(b).tolist() if result.degenerate is not None else [False] * b
    contrast = [""] * b
    if result.contrast is not None:
        contrast = [" ".join(str(int(c)) for c in row) for row in result.contrast.cpu().reshape(b, -1).tolist()]
    return {"degenerate": [bool(d) for d in degenerate], "contrast": contrast}


@register
class Fidelity(RunKind[FidelityBatch]):
    """The fidelity test's work on a batch."""

    name = "fidelity"
    settings_type = FidelitySettings
    row_type = FidelityRow

    def prepare(self, images: Tensor, methods: Sequence[str]) -> FidelityBatch:
        with torch.no_grad():
            prob, pred = self.context.net(images).float().softmax(1).max(1)
        # Gradient CAMs at one layer share one capture (explain_many); the others run alone.
        maps = explain_shared_or_none({name: self.context.methods[name] for name in methods}, images, pred,
                                      normalize=True)
        return FidelityBatch(images, pred, prob, maps)

    def measure(self, method: str, state: FidelityBatch, one: int | None) -> list[dict[str, Any]]:
        rows = slice(None) if one is None else slice(one, one + 1)
        images, pred, prob = state.images[rows], state.pred[rows], state.prob[rows]
        result = self.explained(method, state.maps, state.images, state.pred, one, normalize=True)
        settings = self.typed_settings(FidelitySettings)
        steps = settings.steps
        passes = images.shape[0] * (1 + 2 * (steps + 1) if steps > 0 else 1)  # images of all its forwards
        measured = fidelity_measures(self.context.net, images, result.maps, (pred, prob), settings,
                                     (lambda count: self.report(count / passes)) if one is None else None)
        measured.update(_map_record(result))
        return [{key: values[b] for key, values in measured.items()} for b in range(images.shape[0])]

    def rows(self, pair: Pair, state: FidelityBatch | None) -> list[dict[str, Any]]:
        known: dict[str, Any] = {"label": int(pair.label)}
        if state is not None and pair.row is not None:
            known.update(pred=int(state.pred[pair.row]), prob_before=float(state.prob[pair.row]))
        row = FidelityRow.error_row(pair.image_id, pair.method, pair.error, **known)
        if pair.result is not None:
            row.update({key: pair.result[key] for key in (*MEASURED, "degenerate", "contrast")})
        return [row]


def run_fidelity(model: LoadedModel | nn.Module, dataset: ImageSource | str | Path, run_dir: str | Path,
                 settings: FidelitySettings | None = None, **keywords: Any) -> Path:
    """Run (or resume) the fidelity test and return the run directory.

    Args:
        model, dataset, run_dir: as :func:`case_saliency.runs.diagnose.run_diagnose`.
        settings: a ``FidelitySettings`` (default: its defaults).
        **keywords: ``FidelitySettings`` fields that override ``settings`` (``k_percent``, ``fill``,
            ``steps``, ...), and ``confusion``, ``progress``, ``workers``.
    Returns:
        ``run_dir`` as a Path.
    Raises:
        As ``run_diagnose``.

    Cost per batch and method: one ``explain``, one forward for the drop, 2 (steps + 1) forwards per
    image for the curves.
    """
    return run_with_keywords(Fidelity, model, dataset, run_dir, settings, keywords)
