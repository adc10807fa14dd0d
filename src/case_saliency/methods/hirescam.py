"""HiResCAM (Draelos & Carin, 2020): gradient times activation, summed over channels, no pooling."""


from torch import Tensor

from .base import CAMMethod, register


@register("hirescam")
class HiResCAM(CAMMethod):
    def cam(self, activations: Tensor, gradients: Tensor, contrast_gradients: Tensor | None) -> Tensor:
        return (gradients * activations[:, None]).sum(dim=2)
