"""A random-map control: uniform noise in place of a saliency map, from a seeded generator.
A method that does no better than this on a metric has shown nothing on that metric."""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.capture import ModelInput, eval_mode
from ..core.layers import LayerSpec, Reshape
from .base import ClassRequest, RawMaps, SaliencyMethod, register


@register("random")
class RandomMap(SaliencyMethod):
    """Random-map control: independent uniform [0, 1) maps per image and class, seeded.

    The generator is seeded once at construction and advances with every call, so a fresh
    instance with the same seed reproduces the same sequence of maps, and the maps of two
    classes of one image (asked in one call or in two) are independent draws.

    Cost per batch: one forward pass (to resolve targets such as "top1"), no backward.

    Args:
        model: (B, 3, H, W) -> (B, K) logits (or a ``LoadedModel``); target_layer, reshape: ignored.
        seed: seeds the generator (on the CPU; maps are moved to the model's device).
        grid: draw the noise on an (h, w) grid (an int for a square one) and upsample it
            bilinearly, for smooth blobs like a CAM's; None draws one value per pixel.
    """

    uses_layer = False

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 seed: int = 0, grid: int | tuple[int, int] | None = None):
        super().__init__(model, target_layer=target_layer, reshape=reshape)
        self.seed = int(seed)
        self.grid = (grid, grid) if isinstance(grid, int) else grid
        self.generator = torch.Generator().manual_seed(self.seed)

    def raw_maps(self, images: Tensor, request: ClassRequest) -> RawMaps:
        with eval_mode(self.model, no_grad=True):
            logits = self.model(images)
        request(logits)
        grid = self.grid or tuple(images.shape[-2:])
        # Noise on the grid; the template upsamples it bilinearly to the input size.
        raw = torch.rand(images.shape[0], request.m, *grid, generator=self.generator).to(images.device)
        return RawMaps(raw, logits, info={"seed": self.seed})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, grid={self.grid})"
