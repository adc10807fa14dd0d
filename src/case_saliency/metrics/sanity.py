"""Sanity checks (Adebayo et al., NeurIPS 2018): how similar are a method's maps on a randomised
model to those on the trained one? A method whose maps survive the randomisation of the weights
explains the architecture or the image, not what the model learned.

:func:`map_similarity` gives, per image, the three similarities the paper reports: Spearman's rank
correlation, SSIM, and the top-k% overlap (the diagnostic's agreement, in percent).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .agreement import topk_agreement
from .similarity import spearman, ssim


def map_similarity(original: Tensor, other: Tensor, k: float = 5.0) -> dict[str, Tensor]:
    """Similarities of two sets of maps of the same images.

    Args:
        original, other: (B, H, W) maps (ReLU'd; any scale).
        k: the top share in percent for the overlap.
    Returns:
        {"spearman": (B,), "ssim": (B,) (NaN for maps smaller than SSIM's 11-pixel window),
        "topk": (B,) percent}.
    """
    if original.shape != other.shape or original.ndim != 3:
        raise ValueError(f"maps must both be (B, H, W); got {tuple(original.shape)} and {tuple(other.shape)}")
    a, b = original.detach().float(), other.detach().float()
    small = min(a.shape[-2:]) < 11
    similar = torch.full((a.shape[0],), float("nan"), device=a.device) if small else ssim(a, b)
    return {"spearman": spearman(a, b).float(), "ssim": similar.float(), "topk": topk_agreement(a, b, k).float()}
