"""EigenCAM (Muhammad & Yeasin, 2020): the projection of the centred activations on their first
principal component. It ignores the class: a control that should fail the class-sensitivity test."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CAMMethod, ClassRequest, RawMaps, register


def first_component_projection(activations: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, h, w): each position's centred activation vector projected on the first
    right singular vector of the (h*w, C) matrix of centred activations (as pytorch-grad-cam's
    ``get_2d_projection``). The SVD leaves the sign free; it is fixed so that the projection
    correlates positively with the channel sum of the activations (salient = strongly active)."""
    b, c, h, w = activations.shape
    x = torch.nan_to_num(activations.double(), nan=0.0).flatten(2).transpose(1, 2)  # (B, hw, C)
    x = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    projection = x @ vh[:, 0, :, None]  # (B, hw, 1)
    total = x.sum(dim=2, keepdim=True)  # centred channel sum
    sign = torch.where((projection * total).sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    projected: Tensor = (projection * sign).view(b, h, w).to(activations.dtype)
    return projected


@register("eigencam")
class EigenCAM(CAMMethod):
    """EigenCAM: the same map for every class of an image (a class-agnostic control).

    Cost per batch: one forward pass (no backward) and one SVD per image of the (h*w, C)
    activation matrix, whatever the number of classes.
    """

    needs_gradients = False

    def raw_maps(self, images: Tensor, request: ClassRequest) -> RawMaps:
        capture = self.capture(images, request)
        raw = first_component_projection(capture.activations)  # (B, h, w)
        return RawMaps(raw[:, None].expand(-1, request.m, -1, -1), capture.logits)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.engine.layer_name!r})"
