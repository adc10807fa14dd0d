"""A random-map control: uniform noise in place of a saliency map, from a seeded generator.
A method that does no better than this on a metric has shown nothing on that metric."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.capture import ModelInput, check_images, model_device
from ..core.layers import LayerSpec, Reshape
from ..core.maps import SaliencyMaps, finish_maps
from ..core.targets import TargetSpec, resolve_targets
from .base import SaliencyMethod, register
from .channel_batches import eval_no_grad


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
    legacy_positional = "seed"

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 seed: int = 0, grid: int | tuple[int, int] | None = None):
        super().__init__(model, target_layer=target_layer, reshape=reshape)
        self.seed = int(seed)
        self.grid = (grid, grid) if isinstance(grid, int) else grid
        self.generator = torch.Generator().manual_seed(self.seed)

    def explain(self, images: Tensor, targets: TargetSpec = "top1", *, relu: bool = True,
                upsample: bool = True, normalize: bool = False) -> SaliencyMaps:
        check_images(images)
        device = model_device(self.model)
        with eval_no_grad(self.model):
            logits = self.model(images.detach().to(device))
        chosen = resolve_targets(targets, logits)
        size = tuple(images.shape[-2:])
        grid = self.grid or size
        raw = torch.rand(*chosen.shape, *grid, generator=self.generator).to(device)
        if upsample and tuple(grid) != size:
            raw = F.interpolate(raw.reshape(-1, 1, *grid), size=size, mode="bilinear",
                                align_corners=False).view(*chosen.shape, *size)
        maps, degenerate = finish_maps(raw, size, relu=relu, upsample=upsample, normalize=normalize)
        return SaliencyMaps(maps=maps, targets=chosen, degenerate=degenerate, logits=logits, raw=raw,
                            method=self.name, info={"seed": self.seed})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, grid={self.grid})"
