"""Preprocessing as models expect it: colour mode, resize of the short side, centre crop, normalise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
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
        """The image as the model sees it, before normalisation: mode converted, resized, cropped
        (with PIL, exactly as torchvision's ``Resize`` and ``CenterCrop`` do on PIL images, without
        importing torchvision: seconds saved on every command)."""
        image = to_model_mode(image)
        image = image.convert("RGB" if self.channels == 3 else "L")
        return _center_crop(_resize_short_side(image, self.resize), self.crop)

    def __call__(self, image: Image.Image) -> Tensor:
        array = np.array(self.geometry(image), dtype=np.uint8, copy=True)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.get_default_dtype()).div(255)
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std)

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


def _resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision's ``resize(image, size)`` for a PIL image: the short side to ``size``, the long
    side to ``int(size * long / short)``, bilinear (PIL antialiases)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), Image.Resampling.BILINEAR)


def _center_crop(image: Image.Image, side: int) -> Image.Image:
    """torchvision's ``center_crop(image, [side, side])`` for a PIL image (zero padding where the
    image is smaller than the crop)."""
    width, height = image.size
    if side > width or side > height:
        left, top = max(side - width, 0) // 2, max(side - height, 0) // 2
        padded = Image.new(image.mode, (max(width, side), max(height, side)), 0)
        padded.paste(image, (left, top))
        image, (width, height) = padded, padded.size
        if (width, height) == (side, side):
            return image
    top = int(round((height - side) / 2.0))
    left = int(round((width - side) / 2.0))
    return image.crop((left, top, left + side, top + side))
