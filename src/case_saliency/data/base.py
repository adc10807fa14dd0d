"""The dataset interface every source implements: items are ``(PIL image, label, image_id)``."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from typing import Any

from PIL import Image


class ImageDataset:
    """A sized, indexable source of images.

    ``dataset[i] -> (image, label, image_id)``: a PIL image in mode "RGB" or "L", the class index
    (-1 when unknown) and a stable id (a relative path, or ``split:index``).
    Subclasses set ``name`` and ``class_names`` (list, or None when the source has no labels) and
    implement ``__len__``, ``__getitem__`` and ``_identity_fields``.
    """

    name: str = "dataset"
    class_names: list[str] | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _identity_fields(self) -> dict:
        return {}

    def identity(self) -> dict:
        """What the data is: name, root, count and a content hash (sha256 of the source files or
        of the ids and labels), used to refuse a confusion matrix computed on other data."""
        fields = {"name": self.name, "root": getattr(self, "root", None), "count": len(self)}
        fields.update(self._identity_fields())
        return fields


class ArraySplit(ImageDataset):
    """A split held in memory (``labels`` array) and read from ``files``: ids ``"<split>:<index>"``,
    identity = split and the sha256 of the files (computed once)."""

    split: str
    labels: Any
    files: list
    _hash: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def image_id(self, index: int) -> str:
        """The id of item ``index`` (``"<split>:<index>"``) without decoding it."""
        return f"{self.split}:{range(len(self))[index]}"

    def _identity_fields(self) -> dict:
        if self._hash is None:
            self._hash = sha256_files(self.files)
        return {"split": self.split, "hash": self._hash}


def to_model_mode(image: Image.Image) -> Image.Image:
    """Grayscale stays "L"; palette, RGBA, CMYK, 16-bit and the rest become "RGB" (alpha composited
    on white, so transparent backgrounds do not turn black)."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        span = array.max() - array.min()
        scaled = (array - array.min()) / span * 255.0 if span > 0 else np.zeros_like(array)
        return Image.fromarray(scaled.astype("uint8"), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def sha256_files(paths: Iterable, chunk: int = 1 << 20) -> str:
    """One sha256 over the bytes of the files, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while True:
                block = handle.read(chunk)
                if not block:
                    break
                digest.update(block)
    return digest.hexdigest()


def sha256_items(items: Iterable[tuple[str, int]]) -> str:
    """A sha256 over ``(id, label)`` pairs: cheap identity for large image folders."""
    digest = hashlib.sha256()
    for image_id, label in items:
        digest.update(f"{image_id}\t{label}\n".encode())
    return digest.hexdigest()


def warn_skipped(source: str, skipped: list[tuple[str, str]]) -> None:
    """One warning naming the unreadable files (first 10) and how many were skipped in all."""
    if not skipped:
        return
    shown = "; ".join(f"{path} ({reason})" for path, reason in skipped[:10])
    more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    warnings.warn(f"skipped {len(skipped)} unreadable image file(s) in {source}: {shown}{more}", stacklevel=3)
