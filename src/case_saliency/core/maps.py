"""The result type of every method and the shared post-processing of raw maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
