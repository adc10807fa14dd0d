"""The explain-many run: each method's maps of chosen classes for many images, summarised per map
(where it peaks, how much of it is positive, its class probability), as a resumable run kind.

The classes are each image's ``top`` highest (default the top 1), or fixed ``classes`` for every
image. A row per (image, method, class rank). It is the third run kind and the shortest: it shows
what a kind supplies (docs/run-kinds.md); the loop, resume, sharding and retries are the runner's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.maps import SaliencyMaps
from ..metrics import positive_pixels
from ..models import LoadedModel
from .runner import Pair, RunKind, explain_shared_or_none, register, run_with_keywords
from .loading import ImageSource
from .rows import NAN, Row
from .settings import RunSettings, _bad, _integer


@dataclass(frozen=True)
class ExplainManySettings(RunSettings):
    """Settings of an explain-many run.

    Attributes:
        top: explain each image's ``top`` highest classes (used when ``classes`` is empty).
        classes: fixed class ids explained for every image, in order (overrides ``top``).
    """

    kind: ClassVar[str] = "explain-many"
    top: int = 1
    classes: tuple[int, ...] = ()

    def _check(self, where: str) -> None:
        super()._check(where)
        self._set("top", _integer(where, "top", self.top, 1))
        if isinstance(self.classes, (str, bytes)) or not isinstance(self.classes, Sequence):
            raise _bad(where, "classes", self.classes, "a list of class ids (integers >= 0)")
        self._set("classes", tuple(dict.fromkeys(_integer(where, "classes", c, 0) for c in self.classes)))

    def targets(self) -> int:
        """Classes explained per image."""
        return len(self.classes) or self.top


@dataclass
class ExplainManyRow(Row):
    """One map of an explain-many run: the ``rank``-th explained class of an image."""

    kind: ClassVar[str] = "explain-many"
    keys: ClassVar[tuple[str, ...]] = ("rank",)
    rank: int = -1
    target: int = -1
    label: int = -1
    prob: float = NAN
    positive: float = NAN  # percent of the map's pixels that are positive
    peak_y: float = NAN  # where the map is highest, as a fraction of the height / width (0 = top / left)
    peak_x: float = NAN
    degenerate: bool = False
    error: str = ""


@dataclass
class ExplainManyBatch:
    """The batch's images, the classes explained (B, M) and the maps of the shared capture."""

    images: Tensor
    targets: Tensor
    probs: Tensor
    maps: dict[str, SaliencyMaps]


@register
class ExplainMany(RunKind[ExplainManyBatch]):
    """The explain-many run's work on a batch."""

    name = "explain-many"
    settings_type = ExplainManySettings
    row_type = ExplainManyRow

    @classmethod
    def rows_per_pair(cls, settings: RunSettings) -> int:
        assert isinstance(settings, ExplainManySettings)
        return settings.targets()

    def prepare(self, images: Tensor, methods: Sequence[str]) -> ExplainManyBatch:
        settings = self.typed_settings(ExplainManySettings)
        with torch.no_grad():
            probs = self.context.net(images).float().softmax(1)
        if settings.classes:
            targets = torch.tensor(settings.classes, device=probs.device).repeat(images.shape[0], 1)
        else:
            targets = probs.topk(settings.top, dim=1).indices
        maps = explain_shared_or_none({m: self.context.methods[m] for m in methods}, images, targets)
        return ExplainManyBatch(images, targets, probs.gather(1, targets), maps)

    def measure(self, method: str, state: ExplainManyBatch, one: int | None) -> list[dict[str, Any]]:
        result = self.explained(method, state.maps, state.images, state.targets, one)
        maps = result.maps.detach().float()  # (B, M, H, W)
        h, w = maps.shape[-2:]
        peak = maps.flatten(2).argmax(2).cpu()  # (B, M)
        positive = (100.0 * positive_pixels(maps).float() / (h * w)).cpu()
        degenerate = result.degenerate.cpu().reshape(peak.shape)
        return [{"positive": positive[b].tolist(), "peak_y": ((peak[b] // w).float() / max(h - 1, 1)).tolist(),
                 "peak_x": ((peak[b] % w).float() / max(w - 1, 1)).tolist(), "degenerate": degenerate[b].tolist()}
                for b in range(maps.shape[0])]

    def rows(self, pair: Pair, state: ExplainManyBatch | None) -> list[dict[str, Any]]:
        out = []
        for rank in range(self.rows_per_pair(self.context.settings)):
            known: dict[str, Any] = {"rank": rank, "label": int(pair.label)}
            if state is not None and pair.row is not None:
                known.update(target=int(state.targets[pair.row, rank]), prob=float(state.probs[pair.row, rank]))
            row = ExplainManyRow.error_row(pair.image_id, pair.method, pair.error, **known)
            if pair.result is not None:
                row.update({key: values[rank] for key, values in pair.result.items()})
            out.append(row)
        return out

def run_explain_many(model: LoadedModel | nn.Module, dataset: ImageSource, run_dir: str | Path,
                     settings: ExplainManySettings | None = None, **keywords: Any) -> Path:
    """Run (or resume) an explain-many run and return the run directory.

    Args:
        model, dataset, run_dir: as :func:`case_saliency.runs.diagnose.run_diagnose`.
        settings: an ``ExplainManySettings`` (default: the top-1 class of each image).
        **keywords: ``ExplainManySettings`` fields (``methods``, ``n``, ``top``, ``classes``, ...), and
            ``confusion``, ``progress``, ``workers``.
    Returns:
        ``run_dir`` as a Path.
    Raises:
        As ``run_diagnose``.
    """
    return run_with_keywords(ExplainMany, model, dataset, run_dir, settings, keywords)
