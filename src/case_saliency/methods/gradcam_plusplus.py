"""Grad-CAM++ (Chattopadhyay et al., 2018, eq. 19): positive gradients weighted by alpha_ij,
with the closed form of alpha for an exponential output (as in pytorch-grad-cam)."""

import torch
from torch import Tensor

from .base import CAMMethod, register


@register("gradcam++")
class GradCAMPlusPlus(CAMMethod):
    eps = 1e-6

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        sum_a = activations.sum(dim=(-2, -1))[:, None, :, None, None]  # (B, 1, C, 1, 1)
        alpha = g2 / (2 * g2 + sum_a * g3 + self.eps)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return (gradients.clamp_min(0) * alpha).sum(dim=(-2, -1))
