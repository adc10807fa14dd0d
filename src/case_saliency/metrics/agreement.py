"""Top-k% agreement between two saliency maps of the same image: the paper's class-sensitivity
measure.

Definition (the paper's, with explicit tie and sparse-map policies): for each map, its top set ``S``
is the ``n = max(1, floor(k / 100 * H * W))`` pixels with the largest values; agreement is
``|S_a ∩ S_b| / n * 100``.

Sparse maps (``sparse=``). A map with fewer than ``n`` positive pixels (common after ReLU, and more
so for contrastive methods) has no ``n`` salient pixels to offer; the paper's definition fills its
top set with zero pixels in tie order, and two such maps then "agree" on their shared padding: two
maps whose 100-pixel blobs are disjoint score 96 % at 224 x 224.
- ``"positive"`` (default): a top set holds positive pixels only (at most ``n``), and agreement is
  ``|S_a ∩ S_b| / max(|S_a|, |S_b|) * 100``. Padding never counts as agreement; identical sparse maps
  still score 100 and disjoint ones 0; on pairs where neither map is sparse this is the paper's
  number exactly. (Where neither map has a positive pixel the agreement is NaN.)
- ``"pad"``: the paper's definition, padding included, ``|S_a ∩ S_b| / |S_a|``.
:func:`positive_pixels` counts each map's positive pixels, so a run can record which pairs are
sparse (either map below ``n``) and report their share.

Ties (``ties=``), which decide the padding and any equal values:
- ``"index"`` (default): equal values by ascending row-major position (a stable sort): the first of
  equal pixels first; exactly ``n`` pixels, deterministic.
- ``"reverse"``: the last of equal pixels first (a stable sort, reversed), deterministic.
- ``"authors"``: the authors' public code, literally: ``np.argsort(flat)[::-1][:n]`` in NumPy on
  float32 values. Its order of equal values is whatever NumPy's default (unstable) sort leaves,
  reversed; that can depend on the NumPy version and the CPU (its vectorised sorts), so use it to
  compare with numbers the paper's code produced, not as a definition. Where NumPy's sort keeps
  equal values in order it equals ``"reverse"``.
- ``"inclusive"``: every pixel whose value is at least the n-th largest value (so ``|S|`` may exceed
  ``n``); nothing depends on pixel order, at the price of a set size that varies.

A pair in which either map is constant (e.g. all zero after ReLU) has no ranking at all: its
agreement is NaN and it counts as degenerate. Constancy uses the same rule as the methods'
``degenerate`` flag (:func:`case_saliency.core.maps.constant_maps`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..core.maps import constant_maps

TIE_POLICIES = ("index", "reverse", "authors", "inclusive")
SPARSE_POLICIES = ("positive", "pad")


def top_count(height: int, width: int, k: float) -> int:
    """Number of pixels in a top-k% set of an (H, W) map: ``max(1, floor(k/100 * H * W))``."""
    if not 0 < k <= 100:
        raise ValueError(f"k={k} is not a percentage in (0, 100]; pass e.g. k=5.0 for the top 5%")
    return max(1, math.floor(k / 100.0 * height * width + 1e-9))


def _prepare(maps: Tensor, signed: bool) -> Tensor:
    maps = torch.nan_to_num(maps.detach().float(), nan=0.0)  # NaN -> 0, as the public code does
    return maps if signed else maps.clamp_min(0)


def _check_policies(ties: str, sparse: str) -> None:
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties={ties!r} is not one of {TIE_POLICIES}")
    if sparse not in SPARSE_POLICIES:
        raise ValueError(f"sparse={sparse!r} is not one of {SPARSE_POLICIES}")


def positive_pixels(maps: Tensor) -> Tensor:
    """Number of pixels with a value above 0 in each map (last two dims): (..., H, W) -> (...) long.
    NaN counts as 0 (not positive)."""
    return (torch.nan_to_num(maps.detach().float(), nan=0.0) > 0).flatten(-2).sum(-1)


def top_mask(maps: Tensor, k: float = 5.0, *, signed: bool = False, ties: str = "index",
             sparse: str = "positive") -> Tensor:
    """Boolean top-k% masks of maps (B, H, W) -> (B, H, W), under the module's tie and sparse policies.

    signed=False clamps negative values to 0 first (the diagnostic uses ReLU maps); signed=True
    ranks the raw signed values. sparse="positive" keeps positive pixels only (a sparse map's set
    has fewer than n pixels); "pad" fills it to n in tie order.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W); got shape {tuple(maps.shape)}")
    _check_policies(ties, sparse)
    maps = _prepare(maps, signed)
    b, h, w = maps.shape
    n = top_count(h, w, k)
    flat = maps.reshape(b, h * w)
    if ties == "inclusive":
        kth = torch.topk(flat, n, dim=1).values[:, -1:]
        mask = flat >= kth
    else:
        if ties in ("index", "reverse"):
            # The first n of a stable descending sort, without the sort: every pixel above the n-th
            # largest value, then as many of the pixels equal to it as are left, the earlier ones first
            # ("index") or the later ones first ("reverse").
            kth = torch.topk(flat, n, dim=1).values[:, -1:]
            above = flat > kth
            left = n - above.sum(1, keepdim=True)
            tied = flat == kth
            seen = tied.cumsum(1) if ties == "index" else tied.flip(1).cumsum(1).flip(1)
            mask = above | (tied & (seen <= left))
        else:  # "authors": np.argsort(flat)[::-1], as their code does
            values = flat.cpu().numpy().astype(np.float32)
            # copy(), not ascontiguousarray: a (B, 1) slice counts as contiguous and keeps its negative stride
            order = torch.from_numpy(np.argsort(values, axis=1)[:, ::-1][:, :n].copy()).to(flat.device)
            mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
    if sparse == "positive":
        mask &= flat > 0
    return mask.view(b, h, w)


def topk_agreement(maps_a: Tensor, maps_b: Tensor, k: float = 5.0, signed: bool = False, *,
                   ties: str = "index", sparse: str = "positive") -> Tensor:
    """Percentage of top-k% pixels the two maps share.

    maps_a, maps_b: (B, H, W) (or (H, W) for one pair), any scale; only the order of values matters.
    k: the top share in percent (the paper: 5). signed: rank raw signed values instead of ReLU maps.
    ties: "index" (default), "reverse", "authors" or "inclusive"; sparse: "positive" (default:
        ``|S_a ∩ S_b| / max(|S_a|, |S_b|)`` over positive pixels, padding never agrees) or "pad"
        (the paper's: ``|S_a ∩ S_b| / |S_a|`` with zero-padded sets). See the module docstring.
    Returns (B,) float percentages in [0, 100]; NaN where either map is constant (or, under
    "positive", neither has a positive pixel).
    """
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"maps_a {tuple(maps_a.shape)} and maps_b {tuple(maps_b.shape)} differ in shape")
    single = maps_a.ndim == 2
    if single:
        maps_a, maps_b = maps_a[None], maps_b[None]
    mask_a = top_mask(maps_a, k, signed=signed, ties=ties, sparse=sparse)
    mask_b = top_mask(maps_b, k, signed=signed, ties=ties, sparse=sparse)
    shared = (mask_a & mask_b).flatten(1).sum(1).double()
    size_a = mask_a.flatten(1).sum(1).double()
    size = torch.maximum(size_a, mask_b.flatten(1).sum(1).double()) if sparse == "positive" else size_a
    agreement = (shared / size * 100.0).float()  # 0/0 -> NaN: no positive pixel in either map
    degenerate = constant_maps(_prepare(maps_a, signed)) | constant_maps(_prepare(maps_b, signed))
    agreement = torch.where(degenerate, torch.full_like(agreement, float("nan")), agreement)
    return agreement[0] if single else agreement
