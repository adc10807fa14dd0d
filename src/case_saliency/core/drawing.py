"""Pictures of ``SaliencyMaps`` without leaving the core: display-ready overlays and one figure.

matplotlib is imported inside the functions only, so the core stays torch-only at import. The run
reports' figures (``report.figures``) draw more; this is what a result shows of itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OVERLAY_CMAP = "jet"  # the overlay users know from pytorch-grad-cam: blue = low, red = high


def display_images(images: Any, size: tuple[int, int]) -> np.ndarray:
    """Images as (B, H, W, 3) uint8 at ``size`` (H, W), for display.

    images: a float tensor (B, C, H, W) (normalised or not: each image is min-max scaled, since its
        normalisation is not known here), a uint8 array (B, H, W, 3) or (B, H, W), or a list of PIL
        images / arrays (resized to ``size``).
    """
    if isinstance(images, Tensor):
        batch = images.detach().float().cpu()
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got {tuple(batch.shape)}")
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        batch = batch[:, :3]
        if tuple(batch.shape[-2:]) != tuple(size):
            batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        flat = batch.flatten(1)
        lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
        scaled = ((batch - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
        return (scaled.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    out = []
    for image in images if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]:
        if hasattr(image, "convert"):  # PIL
            image = np.asarray(image.convert("RGB").resize((size[1], size[0])))
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.dtype != np.uint8:
            array = (np.clip(array.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
        if array.shape[:2] != tuple(size):
            from PIL import Image

            array = np.asarray(Image.fromarray(array[..., :3]).resize((size[1], size[0])))
        out.append(array[..., :3])
    return np.stack(out)


def scaled_maps(maps: Tensor) -> np.ndarray:
    """Each map (last two dims) min-max scaled to [0, 1] (constant maps all 0), as a float array."""
    flat = maps.detach().float().cpu().flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), torch.zeros_like(flat))
    out: np.ndarray = scaled.view_as(maps).numpy()
    return out


def overlay_rgb(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W) map in [0, 1] over an (H, W, 3) uint8 image in jet -> (H, W, 3) uint8."""
    from matplotlib import colormaps

    coloured = np.asarray(colormaps[OVERLAY_CMAP](np.clip(np.nan_to_num(saliency), 0, 1)))[..., :3]
    blended = (1 - alpha) * np.asarray(image, dtype=np.float64) / 255.0 + alpha * coloured
    out: np.ndarray = (blended * 255).round().astype(np.uint8)
    return out


def top_share(saliency: np.ndarray, k_percent: float) -> np.ndarray:
    """The (H, W) mask of a map's top-k% pixels (ties: the first in row-major order), positive
    pixels only; the rule of the agreement's default."""
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    count = max(1, int(round(flat.size * k_percent / 100.0)))
    order = np.argsort(-flat, kind="stable")[:count]
    mask = np.zeros(flat.size, dtype=bool)
    mask[order] = True
    return (mask & (flat > 0)).reshape(np.shape(saliency))


def maps_figure(maps: Tensor, targets: Tensor, degenerate: Tensor, images: Any = None,
                class_names: Sequence[str] | None = None, method: str = "", k_percent: float | None = 5.0,
                alpha: float = 0.5) -> Figure:
    """A row per image: the image (when given), then each target's map (over the image when given),
    titled by its class name (or index) and outlined at its top-k%.

    maps: (B, H, W) or (B, M, H, W); targets: (B,) or (B, M); degenerate like targets.
    """
    from matplotlib.figure import Figure

    grid = maps if maps.ndim == 4 else maps[:, None]
    classes = targets if targets.ndim == 2 else targets[:, None]
    flags = degenerate if degenerate.ndim == 2 else degenerate[:, None]
    b, m, h, w = grid.shape
    values = scaled_maps(grid)
    shown = display_images(images, (h, w)) if images is not None else None
    columns = m + (1 if shown is not None else 0)
    fig = Figure(figsize=(2.2 * columns + 0.4, 2.3 * b + 0.3), layout="constrained")
    axes = fig.subplots(b, columns, squeeze=False)
    for i in range(b):
        offset = 0
        if shown is not None:
            axes[i, 0].imshow(shown[i])
            axes[i, 0].set_title("image", fontsize=9)
            offset = 1
        for j in range(m):
            ax = axes[i, offset + j]
            index = int(classes[i, j])
            named = class_names is not None and 0 <= index < len(class_names)
            label = class_names[index] if named and class_names is not None else f"class {index}"
            if shown is not None:
                ax.imshow(overlay_rgb(shown[i], values[i, j], alpha))
            else:
                ax.imshow(values[i, j], cmap=OVERLAY_CMAP, vmin=0, vmax=1)
            if k_percent is not None and values[i, j].max() > 0:
                ax.contour(top_share(values[i, j], k_percent), levels=[0.5], colors="white", linewidths=1.0)
            ax.set_title(f"{method + ': ' if method else ''}{label}" + (" (constant)" if bool(flags[i, j]) else ""),
                         fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig
