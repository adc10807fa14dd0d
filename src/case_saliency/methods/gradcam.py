"""Grad-CAM (Selvaraju et al., 2017): channel weights are the spatially averaged gradients."""

from torch import Tensor

from .base import CAMMethod, register, spatial_mean


@register("gradcam")
class GradCAM(CAMMethod):
    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return spatial_mean(gradients)
