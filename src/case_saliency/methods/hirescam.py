"""HiResCAM (Draelos & Carin, 2020): gradient times activation, summed over channels, no pooling."""

from typing import Optional

from torch import Tensor

from .base import CAMMethod, register


@register("hirescam")
class HiResCAM(CAMMethod):
    def cam(self, activations: Tensor, gradients: Tensor, contrast_gradients: Optional[Tensor]) -> Tensor:
        return (gradients * activations[:, None]).sum(dim=2)
