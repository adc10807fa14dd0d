"""LayerCAM (Jiang et al., 2021): positive gradients times activations, per location."""


from torch import Tensor

from .base import CAMMethod, register


@register("layercam")
class LayerCAM(CAMMethod):
    def cam(self, activations: Tensor, gradients: Tensor, contrast_gradients: Tensor | None) -> Tensor:
        return (gradients.clamp_min(0) * activations[:, None]).sum(dim=2)
