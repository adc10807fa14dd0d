"""LayerCAM (Jiang et al., 2021): positive gradients times activations, per location."""


from torch import Tensor

from .base import CAMMethod, register


@register("layercam")
class LayerCAM(CAMMethod):
    def elementwise(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.clamp_min(0) * activations[:, None]
