"""Preprocessing as models expect it: colour mode, resize of the short side, centre crop, normalise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from ..data.base import to_model_mode


@dataclass(frozen=True)
class Preprocess:
    """PIL image -> (C, H, W) float tensor.

    Converts the colour mode first ("RGB" for ``channels=3``, grayscale replicated; "L" for
    ``channels=1``, colour averaged to luminance; alpha composited on white), then resizes the short
    side to ``resize`` (bilinear, antialiased), centre-crops ``crop`` x ``crop`` and normalises with
    ``mean``/``std`` per channel. ``resize == crop`` with a non-square image still crops the centre.
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3

    @property
    def transforms(self) -> list:
        """The equivalent torchvision steps (after the mode conversion), so tools that look for a
        ``Normalize`` in ``.transforms`` (to undo it for display) find one."""
        from torchvision import transforms as T

        return [T.Resize(self.resize, antialias=True), T.CenterCrop(self.crop), T.ToTensor(),
                T.Normalize(list(self.mean), list(self.std))]

    def geometry(self, image: Image.Image) -> Image.Image:
        """The image as the model sees it, before normalisation: mode converted, resized, cropped."""
        image = to_model_mode(image)
        image = image.convert("RGB" if self.channels == 3 else "L")
        image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        return TF.center_crop(image, [self.crop, self.crop])

    def __call__(self, image: Image.Image) -> Tensor:
        tensor = TF.to_tensor(self.geometry(image))
        return TF.normalize(tensor, list(self.mean), list(self.std))

    def display(self, image: Image.Image) -> np.ndarray:
        """(crop, crop, 3) uint8: what the model saw, as RGB, for figures and galleries."""
        return np.asarray(self.geometry(image).convert("RGB"), dtype=np.uint8)

    def batch(self, images: list[Image.Image]) -> Tensor:
        """A list of PIL images -> (B, C, crop, crop)."""
        return torch.stack([self(image) for image in images])
