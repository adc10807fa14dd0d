"""Finer-CAM (Zhang et al., CVPR 2025, arXiv 2501.11309): explains y_t - gamma * mean_s y_s for the
classes s whose logits are nearest the target's. The objective is linear in the gradients, so its
channel weights are w_t - gamma * mean_s w_s.

Difference from pytorch-grad-cam's FinerCAM: that one weights the comparison classes by their
softmax probabilities (and differentiates through them); with one comparison class both agree.
Cost: as Grad-CAM, with 1 + k classes in the same backward.
"""

from __future__ import annotations


from torch import Tensor

from ..core.capture import ModelInput
from ..core.contrast import ContrastStrategy, NearestLogits
from ..core.layers import LayerSpec, Reshape
from .base import CAMMethod, register, spatial_mean


@register("finercam")
class FinerCAM(CAMMethod):
    """Finer-CAM: Grad-CAM of y_t - gamma * mean_s y_s over the nearest-logit classes s.

    Args:
        contrast: default ``NearestLogits(k=3)``, Finer-CAM's three most similar classes.
        gamma: comparison strength, default 1.
    """

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 contrast: ContrastStrategy | None = None, gamma: float = 1.0):
        super().__init__(model, target_layer=target_layer, reshape=reshape)
        self.contrast = contrast if contrast is not None else NearestLogits(k=3)
        self.gamma = gamma

    def cam(self, activations: Tensor, gradients: Tensor, contrast_gradients: Tensor | None) -> Tensor:
        weights = spatial_mean(gradients)  # (B, M, C)
        if contrast_gradients is not None:
            weights = weights - self.gamma * spatial_mean(contrast_gradients).mean(dim=2)
        return (weights[..., None, None] * activations[:, None]).sum(dim=2)
