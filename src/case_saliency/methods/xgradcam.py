"""XGrad-CAM (Fu et al., 2020): gradients weighted by the activation's share of its channel sum."""

from torch import Tensor

from .base import CAMMethod, register


@register("xgradcam")
class XGradCAM(CAMMethod):
    eps = 1e-7

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        share = activations / (activations.sum(dim=(-2, -1), keepdim=True) + self.eps)  # (B, C, h, w)
        return (gradients * share[:, None]).sum(dim=(-2, -1))
