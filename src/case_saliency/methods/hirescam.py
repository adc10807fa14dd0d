"""HiResCAM (Draelos & Carin, 2020): gradient times activation, summed over channels, no pooling."""


from torch import Tensor

from .base import CAMMethod, register


@register("hirescam")
class HiResCAM(CAMMethod):
    def elementwise(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients * activations[:, None]
