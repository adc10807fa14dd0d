"""Localisation against a known ground truth: how much of a map's positive mass lies where the
evidence was planted.

- :func:`mass_share`: the share of a map's positive mass inside a region, per image (Quantus'
  ``Focus`` and the relevance-mass accuracy compute the same ratio);
- :func:`planted_evidence`: for an image whose top-1 class is a planted patch's class and whose
  top-2 is the garment's own class, the patch class's map on the patch, the garment class's map on
  the garment outside the patch, and their contrast on the patch (a class-insensitive method gives
  both maps the same place, so the contrast is 0 whatever its localisation);
- :func:`quadrant_masks` and :func:`grid_pointing`: the grid pointing game (Böhle et al., CVPR 2021)
  on 2x2 mosaics: the share of the map of a quadrant's class inside that quadrant;
- :func:`bootstrap_mean`: a seeded percentile-bootstrap interval of a mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def mass_share(maps: Tensor, regions: Tensor) -> Tensor:
    """The share of each map's positive mass inside its region.

    Args:
        maps: (B, H, W) maps (negative values are ignored, as ``Focus`` clips them).
        regions: (B, H, W) or (H, W) bool (or 0/1) masks.
    Returns:
        (B,) float shares in [0, 1]; NaN for a map without positive mass (nothing to place).
    Raises:
        ValueError: shapes that do not match.
    """
    if maps.ndim != 3 or regions.shape[-2:] != maps.shape[-2:]:
        raise ValueError(f"maps (B, H, W) and regions (B, H, W) or (H, W) must match; got {tuple(maps.shape)} "
                         f"and {tuple(regions.shape)}")
    positive = torch.nan_to_num(maps.detach().float(), nan=0.0).clamp_min(0)
    total = positive.flatten(1).sum(1)
    inside = (positive * regions.to(positive.device).float()).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


@dataclass
class PlantedEvidence:
    """Per image (B,): ``patch_share`` (the patch class's map on the patch), ``garment_share`` (the
    garment class's map on the garment outside the patch), ``garment_on_patch`` (the garment class's
    map on the patch) and ``contrast`` = patch_share - garment_on_patch (1: each class's map on its
    own evidence; 0: the two maps in the same place)."""

    patch_share: Tensor
    garment_share: Tensor
    garment_on_patch: Tensor
    contrast: Tensor


def planted_evidence(patch_maps: Tensor, garment_maps: Tensor, patch_regions: Tensor,
                     garment_regions: Tensor) -> PlantedEvidence:
    """The planted-evidence scores of the two maps of each image.

    Args:
        patch_maps, garment_maps: (B, H, W) maps of the patch class and of the garment's class.
        patch_regions: (B, H, W) bool, where the patch was pasted.
        garment_regions: (B, H, W) bool, the garment's pixels (the patch is removed from them here).
    Returns:
        ``PlantedEvidence`` of (B,) tensors (NaN where a map has no positive mass).
    """
    patch = patch_regions.bool()
    garment = garment_regions.bool() & ~patch
    on_patch = mass_share(patch_maps, patch)
    garment_on_patch = mass_share(garment_maps, patch)
    return PlantedEvidence(on_patch, mass_share(garment_maps, garment), garment_on_patch, on_patch - garment_on_patch)


def quadrant_masks(height: int, width: int, quadrants: Tensor) -> Tensor:
    """(B,) quadrant indices (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) -> (B, H, W)
    bool masks; the halves are ``H // 2`` and ``W // 2`` (as Quantus' ``Focus`` cuts them)."""
    quadrants = quadrants.long().flatten()
    if ((quadrants < 0) | (quadrants > 3)).any():
        raise ValueError(f"quadrants must be 0..3 (top-left, top-right, bottom-left, bottom-right), got "
                         f"{sorted(set(quadrants.tolist()))}")
    rows = torch.arange(height)[:, None] >= height // 2  # (H, 1): bottom half
    cols = torch.arange(width)[None, :] >= width // 2  # (1, W): right half
    bottom, right = (quadrants // 2).bool(), (quadrants % 2).bool()
    return (rows[None] == bottom[:, None, None]) & (cols[None] == right[:, None, None])


def grid_pointing(maps: Tensor, quadrants: Tensor) -> Tensor:
    """The grid pointing game: the share of each map's positive mass inside the quadrant (B,) of its
    class in a 2x2 mosaic, (B, H, W) -> (B,). Chance level (a uniform map) is 0.25."""
    return mass_share(maps, quadrant_masks(maps.shape[-2], maps.shape[-1], quadrants).to(maps.device))


def bootstrap_mean(values: Tensor, resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``values`` (N,) (NaN dropped) and its percentile-bootstrap interval.

    Args:
        values: (N,) numbers. resamples: bootstrap draws. confidence: the interval's coverage.
        seed: the draws' seed (the same values and seed give the same interval).
    Returns:
        (mean, low, high); NaNs when no finite value is left.
    """
    finite = values.detach().double().flatten()
    finite = finite[torch.isfinite(finite)].cpu()
    if finite.numel() == 0:
        nan = float("nan")
        return nan, nan, nan
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, finite.numel(), (resamples, finite.numel()), generator=generator)
    means = finite[draws].mean(1)
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=means.dtype)).tolist()
    return float(finite.mean()), float(low), float(high)
