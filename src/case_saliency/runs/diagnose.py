"""The class-sensitivity diagnostic (the paper's RQ1) as a resumable run kind.

For each sampled image: its top-1 and top-2 predicted classes, then for every method one ``explain``
for both classes at once (a (B, 2) target tensor), and per pair of maps the top-k% agreement at each
k, Spearman and SSIM. One forward per batch: the top-2 classes come from the forward of the shared
capture of the gradient CAMs (``explain_shared`` with ``"topk:2"``, which returns the classes and the
logits), or of the first method's own ``explain``; a plain forward only when that fails. Rows go to
``results.csv`` as they are computed (docs/run-format.md); the first ``gallery`` images also get
their maps saved for the report.

Nothing that could flatter a method goes unrecorded: each row holds the contrast classes of both maps
and whether either map's contrast set holds the other compared class (``other_in_contrast``: then the
two maps are pushed apart by construction), each map's number of positive pixels and whether the pair
is sparse at that k (either map has fewer positive pixels than the top set). CASE's contrast defaults
to a model-level one (``core.contrast.default_contrast``), never the top logits, unless asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.maps import SaliencyMaps
from ..metrics import positive_pixels, spearman, ssim, top_count, topk_agreement
from ..models import LoadedModel
from .runner import Pair, RunKind, explain_shared_or_none, register, run_with_keywords
from .loading import Batch, ImageSource
from .rows import DiagnoseRow
from .settings import DiagnoseSettings, RunSettings
from .store import gallery_path


def pair_measures(result: SaliencyMaps, k_percent: Sequence[float], signed: bool = False, *,
                  ties: str = "index", sparse: str = "positive", similarity: bool = True) -> list[dict[str, Any]]:
    """The measures of each image's top-1/top-2 maps.

    Computed where the maps are (the model's device); only the numbers come back to the CPU.

    Args:
        result: maps (B, 2, H, W) of the top-1 and top-2 classes, with their contrast (B, 2, k) if any.
        k_percent: the agreement's top-k% values. signed: rank raw signed maps.
        ties, sparse: the agreement's policies (``metrics.agreement``).
        similarity: compute Spearman and SSIM (False: both NaN, their cost saved).
    Returns:
        Per image: ``agreement`` (one per k), ``spearman``, ``ssim``, ``degenerate``, ``positive`` (each
        map's positive pixels), ``sparse`` (one per k), ``other_in_contrast``, ``contrast`` ((2, k) tensor
        or None) and ``map`` ((2, H, W), on the device, for the gallery).
    """
    maps = result.maps.detach().float()
    first, second = maps[:, 0], maps[:, 1]
    agreement = torch.stack([topk_agreement(first, second, k, signed=signed, ties=ties, sparse=sparse)
                             for k in k_percent])
    positive = positive_pixels(maps).cpu()  # (B, 2)
    h, w = maps.shape[-2:]
    sparse_pairs = torch.stack([positive.amin(1) < top_count(h, w, k) for k in k_percent])  # (K, B)
    other = torch.zeros(maps.shape[0], dtype=torch.bool)
    contrast = None
    if result.contrast is not None and result.contrast.ndim == 3:
        contrast, targets = result.contrast.cpu(), result.targets.cpu()
        other = (contrast[:, 0] == targets[:, 1:2]).any(1) | (contrast[:, 1] == targets[:, 0:1]).any(1)
    degenerate = torch.isnan(agreement[0])
    if result.degenerate is not None and result.degenerate.ndim == 2:
        degenerate = degenerate | result.degenerate.to(degenerate.device).any(1)
    missing = torch.full((maps.shape[0],), float("nan"), device=maps.device)
    small = min(maps.shape[-2:]) < 11  # SSIM's window does not fit: report NaN rather than fail
    structural = missing if small or not similarity else ssim(first, second)
    ranks = spearman(first, second) if similarity else missing
    numbers = torch.cat([agreement.float(), ranks.float()[None], structural.float()[None],
                         degenerate.float()[None]]).cpu()  # one transfer for all the numbers
    count = len(k_percent)
    return [{"agreement": numbers[:count, b].tolist(), "spearman": float(numbers[count, b]),
             "ssim": float(numbers[count + 1, b]), "degenerate": bool(numbers[count + 2, b]),
             "positive": positive[b].tolist(), "sparse": sparse_pairs[:, b].tolist(),
             "other_in_contrast": bool(other[b]), "contrast": None if contrast is None else contrast[b],
             "map": maps[b]} for b in range(maps.shape[0])]


def _contrast_text(contrast: Tensor | None, slot: int) -> str:
    return "" if contrast is None else " ".join(str(int(c)) for c in contrast[slot].reshape(-1).tolist())


@dataclass
class DiagnoseBatch:
    """What a diagnose batch's methods share: the decoded ``images``, their top-2 ``classes`` (B, 2) and
    ``probs`` (B, 2), and the maps already computed (by the shared capture)."""

    images: Tensor
    classes: Tensor
    probs: Tensor
    maps: dict[str, SaliencyMaps] = field(default_factory=dict)


@torch.no_grad()
def _top2(net: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    top = net(images).float().softmax(1).topk(2, dim=1)
    return top.indices, top.values


def _gallery_has(path: Path, method: str) -> bool:
    if not path.exists():
        return False
    with np.load(path) as data:
        return f"map_{method}" in data.files


@register
class Diagnose(RunKind[DiagnoseBatch]):
    """The diagnostic's work on a batch."""

    name = "diagnose"
    settings_type = DiagnoseSettings
    row_type = DiagnoseRow

    @property
    def settings(self) -> DiagnoseSettings:
        return self.typed_settings(DiagnoseSettings)

    @classmethod
    def rows_per_pair(cls, settings: RunSettings) -> int:
        assert isinstance(settings, DiagnoseSettings)
        return len(settings.k_percent)

    def todo(self, start: int, ids: Sequence[str]) -> dict[str, list[int]]:
        """Missing pairs; a gallery image lacking the method's maps is work too."""
        todo = super().todo(start, ids)
        gallery = self.settings.gallery
        for name in self.settings.methods:
            if name not in todo and any(start + b < gallery and not _gallery_has(
                    gallery_path(self.context.run_dir.path, i), name) for b, i in enumerate(ids)):
                todo[name] = []
        return {name: todo[name] for name in self.settings.methods if name in todo}

    def _options(self) -> dict[str, bool]:
        return {"relu": not self.settings.signed, "normalize": True}

    def prepare(self, images: Tensor, methods: Sequence[str]) -> DiagnoseBatch:
        """The top-2 classes from the first forward the methods run anyway: the shared capture's, else
        the first method's ``explain(images, "topk:2")``; a plain forward only when both fail."""
        built = {name: self.context.methods[name] for name in methods}
        maps = explain_shared_or_none(built, images, "topk:2", **self._options())
        if not maps:
            name = methods[0]
            try:
                maps = {name: built[name].explain(images, "topk:2", **self._options())}
            except Exception:  # the method is retried image by image in ``measure``, recording its error
                maps = {}
        found = next((m for m in maps.values() if m.logits is not None and m.targets.ndim == 2), None)
        if found is None:
            classes, probs = _top2(self.context.net, images)
            return DiagnoseBatch(images, classes, probs)
        logits = found.logits
        assert logits is not None
        classes = found.targets.to(logits.device)
        probs = logits.detach().float().softmax(1).gather(1, classes)
        return DiagnoseBatch(images, classes, probs, maps)

    def measure(self, method: str, state: DiagnoseBatch, one: int | None) -> list[dict[str, Any]]:
        settings = self.settings
        result = self.explained(method, state.maps, state.images, state.classes, one, **self._options())
        return pair_measures(result, settings.k_percent, settings.signed, ties=settings.ties, sparse=settings.sparse,
                             similarity=settings.similarity)

    def rows(self, pair: Pair, state: DiagnoseBatch | None) -> list[dict[str, Any]]:
        known: dict[str, Any] = {"label": int(pair.label)}
        if state is not None and pair.row is not None:
            classes, probs = state.classes[pair.row].tolist(), state.probs[pair.row].tolist()
            known.update(class1=int(classes[0]), class2=int(classes[1]), prob1=float(probs[0]), prob2=float(probs[1]))
        rows = []
        for j, k in enumerate(self.settings.k_percent):
            row = DiagnoseRow.error_row(pair.image_id, pair.method, pair.error, k_percent=float(k), **known)
            numbers = pair.result
            if numbers is not None:
                row.update(agreement=float(numbers["agreement"][j]), spearman=numbers["spearman"],
                           ssim=numbers["ssim"], degenerate=numbers["degenerate"],
                           contrast1=_contrast_text(numbers["contrast"], 0),
                           contrast2=_contrast_text(numbers["contrast"], 1),
                           other_in_contrast=numbers["other_in_contrast"], positive1=int(numbers["positive"][0]),
                           positive2=int(numbers["positive"][1]), sparse=bool(numbers["sparse"][j]))
            rows.append(row)
        return rows

    def gallery(self, batch: Batch, state: DiagnoseBatch, results: Mapping[str, list[tuple[Any, str]]]
                ) -> list[tuple[Path, dict[str, Any]]]:
        """The maps of the first ``gallery`` images of the sample, with the image as the model saw it."""
        files = []
        for j, b in enumerate(batch.ok):
            if batch.start + b >= self.settings.gallery:
                continue
            maps = {f"map_{name}": outcome[j][0]["map"].cpu().numpy().astype(np.float16)
                    for name, outcome in results.items() if outcome[j][0] is not None}
            if maps:
                arrays = {"image_id": np.str_(batch.ids[b]),
                          "image": display_images(state.images[j:j + 1], self.context.model.transform)[0],
                          "classes": state.classes[j].cpu().numpy().astype(np.int64),
                          "probs": state.probs[j].cpu().numpy().astype(np.float32),
                          "label": np.int64(batch.labels[b]), **maps}
                files.append((gallery_path(self.context.run_dir.path, batch.ids[b]), arrays))
        return files


def find_normalize(transform: object) -> tuple[Tensor, Tensor] | None:
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


def display_images(images: Tensor, transform: object) -> np.ndarray:
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


def run_diagnose(model: LoadedModel | nn.Module, dataset: ImageSource | str | Path, run_dir: str | Path,
                 settings: DiagnoseSettings | None = None, **keywords: Any) -> Path:
    """Run (or resume) the class-sensitivity diagnostic and return the run directory.

    Args:
        model: a ``LoadedModel`` (``case_saliency.models.load_model``), or an ``nn.Module`` with the
            keywords ``transform`` (PIL image -> (C, H, W) tensor) and ``class_names``, ``model_name``.
        dataset: ``ds[i] -> (PIL image, label, image_id)``, e.g. ``case_saliency.open_dataset("samples")``,
            or the text of a ``--data`` spec or a folder path, opened with ``open_dataset``.
        run_dir: the run directory (created; resumed when it holds this run, killed or finished).
        settings: a ``DiagnoseSettings`` (default: its defaults).
        **keywords: ``DiagnoseSettings`` fields that override ``settings`` (``methods``, ``n``,
            ``k_percent``, ...), and how to run: ``confusion`` (a matrix for ``confusion:K`` contrasts),
            ``progress``, ``workers`` (``runs.runner.RunOptions``).
    Returns:
        ``run_dir`` as a Path.
    Raises:
        InvalidSettings: a bad setting, named before any row. RunDirError: ``run_dir`` holds something
            else, another process writes it, or the resume was refused (other settings, weights or data).
        SettingsError: settings that fail on every image of the first batch.

    Cost per batch: one forward pass, one shared capture for the gradient CAMs at one layer
    (``explain_many``) and one ``explain`` per other method, each for both classes.

    Examples:
        >>> from case_saliency import DiagnoseSettings, load_model, open_dataset, run_diagnose  # doctest: +SKIP
        >>> run_diagnose(load_model("efficientnet_lite0"), open_dataset("samples"), "runs/lite0",
        ...              DiagnoseSettings(methods=("gradcam", "case"), n=0, k_percent=(5, 10)))  # doctest: +SKIP
    """
    return run_with_keywords(Diagnose, model, dataset, run_dir, settings, keywords)
