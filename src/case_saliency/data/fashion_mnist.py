"""Fashion-MNIST from its IDX files (gzipped or not). Default location: Debian's
``dataset-fashion-mnist`` package, ``/usr/share/datasets/fashion-mnist``; override with ``root`` or
the environment variable ``CASE_SALIENCY_FASHION_MNIST``."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .base import ArraySplit

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# IDX type codes (the third byte of the magic number) -> NumPy big-endian dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (``.gz`` or plain) into an array of its declared type and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes of data), "
                         f"the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def resolve_root(root: str | Path | None = None) -> Path:
    """The folder holding the IDX files: ``root``, else $CASE_SALIENCY_FASHION_MNIST, else Debian's path."""
    return Path(root or os.environ.get("CASE_SALIENCY_FASHION_MNIST") or DEFAULT_ROOT)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install Debian's "
                            f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass the folder "
                            f"holding the IDX files (--root / root=..., or CASE_SALIENCY_FASHION_MNIST)")


class FashionMNIST(ArraySplit):
    """Fashion-MNIST ``split`` ("train": 60,000 or "test": 10,000 images, 28x28 grayscale, 10 classes).

    ``images`` (N, 28, 28) uint8 and ``labels`` (N,) int64 are held in memory; items are "L" PIL images
    with ids ``"<split>:<index>"``.
    """

    class_names = CLASS_NAMES

    def __init__(self, split: str = "train", root: str | Path | None = None):
        if split not in FILES:
            raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.root = str(resolve_root(root))
        self.name = f"fashion-mnist:{split}"
        self.files = [_find(Path(self.root), stem) for stem in FILES[split]]
        self.images = read_idx(self.files[0])
        self.labels = read_idx(self.files[1]).astype(np.int64)
        if self.images.ndim != 3 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise ValueError(f"Fashion-MNIST files in {self.root} disagree: images {self.images.shape}, "
                             f"labels {self.labels.shape}")

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = index % len(self)
        return Image.fromarray(self.images[index], mode="L"), int(self.labels[index]), f"{self.split}:{index}"

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images as float (N, 1, 28, 28) in [0, 1] and labels (N,) int64, for fast training loops."""
        images = torch.from_numpy(self.images.copy()).unsqueeze(1).float().div_(255.0)
        return images, torch.from_numpy(self.labels.copy())

