"""Finer-CAM (Zhang et al., CVPR 2025, arXiv 2501.11309), as its authors' code and pytorch-grad-cam
1.5.7 (``FinerCAM`` with ``FinerWeightedTarget``) define it: Grad-CAM of

    f = sum_s p_s (y_t - gamma * y_s) / (sum_s p_s + 1e-9),   p = softmax(y),

over the k classes s whose logits are nearest the target's (default k = 3), differentiated through
the softmax weights p_s as well. ``weighting="mean"`` is the simpler unweighted variant,
f = y_t - gamma * mean_s y_s, whose channel weights are w_t - gamma * mean_s w_s (this library's
``finercam`` before it followed the published definition). With one comparison class both differ
only through the derivative of p_s / (p_s + 1e-9), which is negligible unless p_s is tiny.

Cost: as Grad-CAM: one forward and one backward to the layer, for one function per target (its
gradient with respect to the logits is computed on the logits alone, in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.capture import ModelInput
from ..core.contrast import ContrastStrategy, NearestLogits, build_contrast
from ..core.layers import LayerSpec, Reshape
from .base import CAMMethod, register, spatial_mean

WEIGHTINGS = ("softmax", "mean")


@register("finercam")
class FinerCAM(CAMMethod):
    """Finer-CAM: Grad-CAM of the target's logit compared with its nearest-logit classes.

    Args:
        contrast: the comparison classes; default ``NearestLogits(k=3)``, Finer-CAM's three most
            similar classes (pytorch-grad-cam's ``comparison_categories=[1, 2, 3]``). A spec text
            such as ``"nearest:1"`` is accepted.
        gamma: comparison strength (pytorch-grad-cam's ``alpha``), default 1.
        weighting: ``"softmax"`` (default, the published method: comparison classes weighted by
            their softmax probabilities, differentiated through) or ``"mean"`` (unweighted mean).
        eigen_smooth, aug_smooth: pytorch-grad-cam's smoothings, options of every CAM (see ``CAMMethod``).
    """

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 contrast: ContrastStrategy | str | None = None, gamma: float = 1.0, weighting: str = "softmax",
                 eigen_smooth: bool = False, aug_smooth: bool = False):
        super().__init__(model, target_layer=target_layer, reshape=reshape, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r} is not one of {WEIGHTINGS}")
        self.contrast = build_contrast(contrast, model=self.model) if contrast is not None else NearestLogits(k=3)
        self.gamma = float(gamma)
        self.weighting = weighting

    def logit_weights(self, logits: Tensor, targets: Tensor, contrast: Tensor | None) -> Tensor | None:
        """d f / d logits (B, M, K) of the Finer-CAM objective of each target (None without contrast:
        then the map is Grad-CAM's)."""
        if contrast is None:
            return None
        b, m, k = contrast.shape
        if self.weighting == "mean":
            weights = torch.zeros(b, m, logits.shape[1], dtype=logits.dtype, device=logits.device)
            weights.scatter_(2, targets[..., None], 1.0)
            weights.scatter_add_(2, contrast, torch.full(contrast.shape, -self.gamma / k, dtype=logits.dtype,
                                                         device=logits.device))
            return weights
        with torch.enable_grad():
            y = logits.detach().double().requires_grad_(True)
            prob = y.softmax(dim=1)
            flat = contrast.flatten(1)
            target_logit = y.gather(1, targets)[..., None]  # (B, M, 1)
            other_logit = y.gather(1, flat).view(b, m, k)
            weight = prob.gather(1, flat).view(b, m, k)
            objective = (weight * (target_logit - self.gamma * other_logit)).sum(-1) / (weight.sum(-1) + 1e-9)
            rows = [torch.autograd.grad(objective[:, j].sum(), y, retain_graph=j < m - 1)[0] for j in range(m)]
        return torch.stack(rows, dim=1).to(logits.dtype)  # (B, M, K)

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return spatial_mean(gradients)  # Grad-CAM of the objective

    def __repr__(self) -> str:
        return (f"FinerCAM(layer={self.engine.layer_name!r}, contrast={self.contrast!r}, gamma={self.gamma:g}, "
                f"weighting={self.weighting!r})")
