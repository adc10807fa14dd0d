"""The fidelity test (the paper's RQ2) as a resumable run kind.

For each sampled image (correctly classified ones by default): the predicted class, its
probability and the image's top-2 class (one no-grad forward pass), then for every method its map
for the predicted class, the confidence drop after removing the top-k% pixels (the run's fill),
(unless ``steps=0``) RISE deletion and insertion curves with their AUC (deletion with
``deletion_fill``, blur by default; insertion on the blur), and (unless ``contrastive_k`` is empty)
the class-contrastive drop: the change of logit top-1 minus logit top-2 after removing the top-k%
of the top-1 map, with the blur fill whatever the run's fill (``metrics.contrastive``), at each k of
the sweep. Every method sees the same images, so ``summarize`` can pair them.
Each row records whether the method's map was degenerate (constant: its "top pixels" are a tie
order, not evidence; the summary leaves such rows out of the means and paired tests and counts
them) and its contrast classes. CASE's contrast defaults as in ``run_diagnose``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.maps import SaliencyMaps
from ..metrics import confidence_drop, deletion_insertion
from ..metrics.contrastive import contrastive_drop
from ..models import LoadedModel
from .runner import Pair, RunKind, explain_shared_or_none, register, run_with_keywords, settings_from
from .loading import ImageSource
from .rows import EarlierFidelityRow, FidelityRow, Row
from .rundir import RunDir
from .settings import CONTRASTIVE_FILL, EVAL_BATCH_SIZE, FidelitySettings, RunSettings
from .store import RunDirError

__all__ = ["EVAL_BATCH_SIZE", "Fidelity", "fidelity_measures", "run_fidelity"]

MEASURED = ("prob_after", "drop_relative", "drop_absolute", "deletion_auc", "insertion_auc", "deletion_curve",
            "insertion_curve")
CONTRASTIVE = ("margin_before", "contrastive_drop", "contrastive_drops")


def forward_passes(settings: FidelitySettings, images: int) -> int:
    """Images through the model per method for ``images`` images: the drop's, the curves' and the
    class-contrastive sweep's."""
    steps = settings.steps
    return images * (1 + (2 * (steps + 1) if steps > 0 else 0) + len(settings.contrastive_sweep))


def fidelity_measures(model: nn.Module, images: Tensor, maps: Tensor, classes: tuple[Tensor, ...],
                      settings: FidelitySettings, progress: Callable[[int], None] | None = None
                      ) -> dict[str, list[Any]]:
    """Confidence drop, (steps > 0) deletion/insertion and (a contrastive sweep and a top-2 class given)
    the class-contrastive drop of each image's map.

    Args:
        model: the network. images: (B, C, H, W). maps: (B, H, W) of the classes explained.
        classes: (pred (B,), its probability (B,)) or (pred, probability, top-2 class (B,)).
        settings: k_percent, fill, steps, deletion_fill, contrastive_k, eval_batch_size.
        progress: called with the images of each forward pass (``forward_passes`` in all).
    Returns:
        {column: one value per image} for the measured columns of ``FidelityRow`` (the contrastive ones
        only when measured).
    """
    pred, prob = classes[0], classes[1]
    k_percent, fill, steps, batch = settings.k_percent, settings.fill, settings.steps, settings.eval_batch_size
    drop = confidence_drop(model, images, maps, pred, k_percent, fill, prob_before=prob, batch_size=batch,
                           progress=progress)
    numbers = [drop.prob_after, drop.drop_relative, drop.drop_absolute]
    b = images.shape[0]
    if steps > 0:
        curves = deletion_insertion(model, images, maps, pred, steps, deletion_fill=settings.deletion_substrate,
                                    batch_size=batch, progress=progress)
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
    sweep = settings.contrastive_sweep
    if sweep and len(classes) > 2:
        second = classes[2]
        if bool((second < 0).any()):  # a model of one class has no top-2
            out.update(margin_before=[float("nan")] * b, contrastive_drop=[float("nan")] * b,
                       contrastive_drops=[""] * b)
        else:
            contrastive = contrastive_drop(model, images, maps, pred, second, sweep, CONTRASTIVE_FILL,
                                           batch_size=batch)
            if progress is not None:
                progress(b * len(sweep))
            out.update(margin_before=contrastive.margin_before.tolist(),
                       contrastive_drop=contrastive.mean_drop.tolist(),
                       contrastive_drops=[" ".join(f"{v:.6g}" for v in row) for row in contrastive.drop.tolist()])
    return out


@dataclass
class FidelityBatch:
    """What a fidelity batch's methods share: the decoded ``images``, the predicted class ``pred`` (B,),
    its probability ``prob`` (B,), the top-2 class ``second`` (B,; -1 for a model of one class) and the
    maps of the shared capture."""

    images: Tensor
    pred: Tensor
    prob: Tensor
    second: Tensor
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

    @classmethod
    def row_type_for(cls, settings: RunSettings) -> type[Row]:
        """A run without the class-contrastive sweep (one of an earlier version) keeps the earlier columns."""
        if isinstance(settings, FidelitySettings) and not settings.contrastive_sweep:
            return EarlierFidelityRow
        return FidelityRow

    def prepare(self, images: Tensor, methods: Sequence[str]) -> FidelityBatch:
        with torch.no_grad():
            probs = self.context.net(images).float().softmax(1)
        prob, pred = probs.max(1)
        # The top-2 class: the most probable other than ``pred`` (a tie with it cannot return ``pred``).
        others = probs.scatter(1, pred[:, None], float("-inf"))
        second = others.argmax(1) if probs.shape[1] > 1 else torch.full_like(pred, -1)
        # Gradient CAMs at one layer share one capture (explain_many); the others run alone.
        maps = explain_shared_or_none({name: self.context.methods[name] for name in methods}, images, pred,
                                      normalize=True)
        return FidelityBatch(images, pred, prob, second, maps)

    def measure(self, method: str, state: FidelityBatch, one: int | None) -> list[dict[str, Any]]:
        rows = slice(None) if one is None else slice(one, one + 1)
        images, pred, prob, second = state.images[rows], state.pred[rows], state.prob[rows], state.second[rows]
        result = self.explained(method, state.maps, state.images, state.pred, one, normalize=True)
        settings = self.typed_settings(FidelitySettings)
        passes = forward_passes(settings, images.shape[0])  # images of all its forwards
        measured = fidelity_measures(self.context.net, images, result.maps, (pred, prob, second), settings,
                                     (lambda count: self.report(count / passes)) if one is None else None)
        measured.update(_map_record(result))
        return [{key: values[b] for key, values in measured.items()} for b in range(images.shape[0])]

    def rows(self, pair: Pair, state: FidelityBatch | None) -> list[dict[str, Any]]:
        row_type = self.row_type_for(self.context.settings)
        columns = set(row_type.columns())
        known: dict[str, Any] = {"label": int(pair.label)}
        if state is not None and pair.row is not None:
            known.update(pred=int(state.pred[pair.row]), prob_before=float(state.prob[pair.row]))
            if "class2" in columns:
                known["class2"] = int(state.second[pair.row])
        row = row_type.error_row(pair.image_id, pair.method, pair.error, **known)
        if pair.result is not None:
            row.update({key: pair.result[key] for key in (*MEASURED, *CONTRASTIVE, "degenerate", "contrast")
                        if key in columns and key in pair.result})
        return [row]


def run_fidelity(model: LoadedModel | nn.Module, dataset: ImageSource | str | Path, run_dir: str | Path,
                 settings: FidelitySettings | None = None, **keywords: Any) -> Path:
    """Run (or resume) the fidelity test and return the run directory.

    Args:
        model, dataset, run_dir: as :func:`case_saliency.runs.diagnose.run_diagnose`.
        settings: a ``FidelitySettings`` (default: its defaults).
        **keywords: ``FidelitySettings`` fields that override ``settings`` (``k_percent``, ``fill``,
            ``steps``, ``deletion_fill``, ``contrastive_k``, ...), and ``confusion``, ``progress``, ``workers``.
    Returns:
        ``run_dir`` as a Path.
    Raises:
        As ``run_diagnose``.

    Settings left None (``deletion_fill``, ``contrastive_k``) take the run's stored values when
    ``run_dir`` holds a fidelity run (one of an earlier version resumes with its own columns), the
    defaults of a new run otherwise.

    Cost per batch and method: one ``explain``, one forward for the drop, 2 (steps + 1) forwards per
    image for the curves, one per k of ``contrastive_k``.
    """
    own = {f.name for f in dataclass_fields(FidelitySettings)} | {"dataset_name"}
    chosen = settings_from(FidelitySettings, settings, {key: keywords.pop(key) for key in list(keywords)
                                                        if key in own})
    return run_with_keywords(Fidelity, model, dataset, run_dir, chosen.resolved(_stored(Path(run_dir))), keywords)


def _stored(run_dir: Path) -> RunSettings | None:
    """The settings of the fidelity run ``run_dir`` holds (None: none, or one the runner will refuse)."""
    if not (run_dir / "config.json").is_file():
        return None
    try:
        stored = RunDir(run_dir).read_settings()
    except RunDirError:
        return None  # the runner names what is wrong with it
    return stored if isinstance(stored, FidelitySettings) else None
