"""Top-k% agreement between two saliency maps of the same image: the paper's class-sensitivity
measure.

Definition (the paper's, with an explicit tie policy): for each map, its top set ``S`` is the
``n = max(1, floor(k / 100 * H * W))`` pixels with the largest values; agreement is
``|S_a ∩ S_b| / n * 100``.

Tie policy ("index", the default): pixels are ranked by descending value, and pixels of equal value
by ascending row-major position (a stable sort), so the top set always has exactly ``n`` pixels and
the result is deterministic. This is the order the authors' code uses. Its weakness is sparse maps:
when fewer than ``n`` pixels are positive, the rest of the top set is the first zero pixels in
reading order. ``ties="inclusive"`` instead takes every pixel whose value is at least the n-th
largest value (so ``|S|`` may exceed ``n``) and divides by ``|S_a|``; then nothing depends on pixel
order, at the price of a set size that varies.

A pair in which either map is constant (e.g. all zero after ReLU) has no ranking at all: its
agreement is NaN and it counts as degenerate. Constancy uses the same rule as the methods'
``degenerate`` flag (:func:`case_saliency.core.maps.constant_maps`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core.maps import constant_maps

TIE_POLICIES = ("index", "inclusive")


def top_count(height: int, width: int, k: float) -> int:
    """Number of pixels in a top-k% set of an (H, W) map: ``max(1, floor(k/100 * H * W))``."""
    if not 0 < k <= 100:
        raise ValueError(f"k={k} is not a percentage in (0, 100]; pass e.g. k=5.0 for the top 5%")
    return max(1, math.floor(k / 100.0 * height * width + 1e-9))


def _prepare(maps: Tensor, signed: bool) -> Tensor:
    maps = torch.nan_to_num(maps.detach().float(), nan=0.0)  # NaN -> 0, as the public code does
    return maps if signed else maps.clamp_min(0)


def top_mask(maps: Tensor, k: float = 5.0, *, signed: bool = False, ties: str = "index") -> Tensor:
    """Boolean top-k% masks of maps (B, H, W) -> (B, H, W), under the module's tie policy.

    signed=False clamps negative values to 0 first (the diagnostic uses ReLU maps); signed=True
    ranks the raw signed values.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W); got shape {tuple(maps.shape)}")
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties={ties!r} is not one of {TIE_POLICIES}")
    maps = _prepare(maps, signed)
    b, h, w = maps.shape
    n = top_count(h, w, k)
    flat = maps.reshape(b, h * w)
    if ties == "index":
        # A stable descending sort keeps equal values in position order, so ties go to the
        # earlier (row-major) pixel.
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :n]
        mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
    else:
        kth = torch.topk(flat, n, dim=1).values[:, -1:]
        mask = flat >= kth
    return mask.view(b, h, w)


def topk_agreement(maps_a: Tensor, maps_b: Tensor, k: float = 5.0, signed: bool = False, *,
                   ties: str = "index") -> Tensor:
    """Percentage of the top-k% pixels of ``maps_a`` that are also top-k% pixels of ``maps_b``.

    maps_a, maps_b: (B, H, W) (or (H, W) for one pair), any scale; only the order of values matters.
    k: the top share in percent (the paper: 5). signed: rank raw signed values instead of ReLU maps.
    ties: "index" (default: exactly n pixels, equal values ordered by row-major position) or
        "inclusive" (all pixels >= the n-th largest value); see the module docstring.
    Returns (B,) float percentages in [0, 100]; NaN where either map is constant.
    """
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"maps_a {tuple(maps_a.shape)} and maps_b {tuple(maps_b.shape)} differ in shape")
    single = maps_a.ndim == 2
    if single:
        maps_a, maps_b = maps_a[None], maps_b[None]
    mask_a = top_mask(maps_a, k, signed=signed, ties=ties)
    mask_b = top_mask(maps_b, k, signed=signed, ties=ties)
    shared = (mask_a & mask_b).flatten(1).sum(1).double()
    size_a = mask_a.flatten(1).sum(1).double()
    agreement = (shared / size_a * 100.0).float()
    degenerate = constant_maps(_prepare(maps_a, signed)) | constant_maps(_prepare(maps_b, signed))
    agreement = torch.where(degenerate, torch.full_like(agreement, float("nan")), agreement)
    return agreement[0] if single else agreement
