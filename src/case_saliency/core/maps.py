"""The result type of every method and the shared post-processing of raw maps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SaliencyMaps:
    """Maps for a batch, with what produced them.

    maps: (B, H, W), or (B, M, H, W) when several targets per image were asked for.
    targets: (B,) or (B, M) class indices explained.
    degenerate: bool, shaped like ``targets``: True where the map is constant (e.g. all zero after
        ReLU), so it carries no ranking; normalised degenerate maps are all zero, never noise.
    logits: (B, K) model outputs of the same pass, when the method ran one.
    contrast: (B, k) or (B, M, k) contrast classes of contrastive methods, else None.
    raw: the maps before ReLU/upsampling/normalisation, (B, [M,] h, w), when available.
    """

    maps: Tensor
    targets: Tensor
    degenerate: Tensor
    logits: Tensor | None = None
    contrast: Tensor | None = None
    raw: Tensor | None = None
    method: str = ""
    layer: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        targets = self.targets.tolist()
        shown = targets if len(targets) <= 4 else [*targets[:4], "..."]
        contrast = "none" if self.contrast is None else f"{tuple(self.contrast.shape)} classes"
        return (f"SaliencyMaps(method={self.method!r}, maps {tuple(self.maps.shape)}, targets {shown}, "
                f"layer={self.layer!r}, contrast {contrast}, degenerate {int(self.degenerate.sum())} of "
                f"{self.degenerate.numel()})")

    def overlay(self, images: Any, alpha: float = 0.5) -> Any:
        """Each map over its image in jet (red = salient), display-ready: (B, H, W, 3) uint8, or
        (B, M, H, W, 3) for several targets per image (a NumPy array).

        images: the explained batch (B, C, H, W) (each image is min-max scaled for display), or
            (B, H, W, 3) uint8 / a list of PIL images (resized to the maps).
        """
        from .drawing import display_images, overlay_rgb, scaled_maps

        grid = self.maps if self.maps.ndim == 4 else self.maps[:, None]
        shown = display_images(images, (int(grid.shape[-2]), int(grid.shape[-1])))
        if shown.shape[0] != grid.shape[0]:
            raise ValueError(f"{shown.shape[0]} images for maps of {grid.shape[0]}")
        values = scaled_maps(grid)
        out = np.stack([np.stack([overlay_rgb(shown[i], values[i, j], alpha) for j in range(grid.shape[1])])
                        for i in range(grid.shape[0])])
        return out if self.maps.ndim == 4 else out[:, 0]

    def figure(self, images: Any = None, class_names: Sequence[str] | None = None,
               k_percent: float | None = 5.0) -> Any:
        """A matplotlib ``Figure``: a row per image (the image when given, then each target's map,
        titled by its class name and outlined at its top-k%)."""
        from .drawing import maps_figure

        return maps_figure(self.maps, self.targets, self.degenerate, images, class_names, self.method, k_percent)

    def save(self, path: str | Path, images: Any = None, class_names: Sequence[str] | None = None,
             k_percent: float | None = 5.0, dpi: int = 150) -> Path:
        """Write the figure (see ``figure``) to ``path`` (PNG, PDF or SVG by suffix); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.figure(images, class_names, k_percent).savefig(target, dpi=dpi, facecolor="white")
        return target

    def show(self, images: Any = None, class_names: Sequence[str] | None = None) -> Any:
        """Show the figure: as the output of a notebook cell under IPython, else in a pyplot window.
        Returns the ``Figure``."""
        figure = self.figure(images, class_names)
        return _show(figure)

    def _repr_html_(self) -> str:
        """A notebook cell shows the maps (no images: the result holds none) and the short repr."""
        import base64
        import html
        import io

        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80, facecolor="white")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        return (f"<div><code>{html.escape(repr(self))}</code><br>"
                f"<img src=\"data:image/png;base64,{data}\" alt=\"saliency maps\"></div>")


def _show(figure: Any) -> Any:
    """Display a ``Figure`` made without pyplot: through IPython in a notebook, else in a pyplot window."""
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from IPython.display import display

            display(figure)
            return figure
    except ImportError:
        pass
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, facecolor="white")
    buffer.seek(0)
    window = plt.figure(figsize=figure.get_size_inches(), dpi=figure.dpi)
    window.figimage(plt.imread(buffer))
    plt.show()
    return figure


def constant_maps(maps: Tensor, rtol: float = 1e-6) -> Tensor:
    """True for each map (last two dims) whose values are all equal up to ``rtol`` of its scale."""
    flat = maps.flatten(-2)
    hi, lo = flat.amax(-1), flat.amin(-1)
    scale = torch.maximum(hi.abs(), lo.abs())
    return (hi - lo) <= rtol * scale


def minmax_normalise(maps: Tensor, degenerate: Tensor | None = None) -> Tensor:
    """Scale each map (last two dims) to [0, 1]; constant maps become all zero."""
    flat = maps.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    if degenerate is None:
        degenerate = constant_maps(maps)
    out = torch.where(degenerate[..., None], torch.zeros_like(flat), (flat - lo) / span.clamp_min(1e-30))
    return out.view_as(maps)


def finish_maps(raw: Tensor, size: tuple[int, int], *, relu: bool = True, upsample: bool = True,
                normalize: bool = False) -> tuple[Tensor, Tensor]:
    """Raw maps (..., h, w) -> (maps (..., H, W), degenerate (...)).

    ReLU, then bilinear upsampling to ``size`` (align_corners=False, as OpenCV's resize), then
    optional per-map min-max normalisation. NaN (from a broken model) becomes 0.
    """
    maps = torch.nan_to_num(raw.float(), nan=0.0)
    if relu:
        maps = maps.clamp_min(0)
    if upsample and tuple(maps.shape[-2:]) != tuple(size):
        lead = maps.shape[:-2]
        maps = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]), size=size, mode="bilinear",
                             align_corners=False).view(*lead, *size)
    degenerate = constant_maps(maps)
    if normalize:
        maps = minmax_normalise(maps, degenerate)
    return maps, degenerate
