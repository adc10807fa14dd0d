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

    def describe(self) -> str:
        """One line: "resize 256, crop 224, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"."""
        geometry = (f"resize {self.resize}, crop {self.crop}" if self.resize != self.crop
                    else f"resize to {self.crop} (no crop)")
        fmt = lambda values: "(" + ", ".join(f"{v:g}" for v in values) + ")"  # noqa: E731
        return f"{geometry}, mean {fmt(self.mean)}, std {fmt(self.std)}" + (", grayscale" if self.channels == 1 else "")

    def to_dict(self) -> dict:
        """What a checkpoint stores (``from_dict`` reads it back)."""
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                "channels": self.channels}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        """From ``to_dict``'s keys (``input_size`` stands for resize = crop)."""
        crop = int(data.get("crop", data.get("input_size", 224)))
        return cls(int(data.get("resize", crop)), crop, tuple(float(v) for v in data["mean"]),
                   tuple(float(v) for v in data["std"]), int(data.get("channels", data.get("in_channels", 3))))

    def with_options(self, size: int | None = None, crop: bool | None = None, mean: tuple[float, ...] | None = None,
                     std: tuple[float, ...] | None = None) -> Preprocess:
        """This preprocessing with the given options replaced: ``size`` the model's input side;
        ``crop`` True resizes the short side to round(size / 0.875) and centre-crops ``size`` (the
        ImageNet way), False resizes to ``size`` (a non-square image still loses its long side's
        ends); None keeps the current resize-to-crop ratio."""
        side = self.crop if size is None else int(size)
        if crop is None:
            resize = side if self.resize == self.crop else int(round(side * self.resize / self.crop))
        else:
            resize = int(round(side / 0.875)) if crop else side
        return Preprocess(resize, side, tuple(mean) if mean is not None else self.mean,
                          tuple(std) if std is not None else self.std, self.channels)

    def batch(self, images: list[Image.Image]) -> Tensor:
        """A list of PIL images -> (B, C, crop, crop)."""
        return torch.stack([self(image) for image in images])
