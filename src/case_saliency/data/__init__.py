"""Datasets by spec string: ``open_dataset("samples")``, ``"fashion-mnist:test"``, ``"folder:PATH"``,
``"imagefolder:PATH"``, ``"cifar10:PATH"`` / ``"cifar100:PATH"`` (add ``:train`` for the training split).
Every dataset yields ``(PIL image "RGB" or "L", label or -1, image_id)``."""

from __future__ import annotations

from pathlib import Path


from .base import ImageDataset, to_model_mode
from .cifar import CIFAR, safe_load_pickle
from .fashion_mnist import FashionMNIST, read_idx
from .images import (SAMPLE_PHOTOS, ImageFiles, ImageFolderDataset, SamplePhotos, out_inside_data,
                     read_class_index)

SPECS = ("samples", "fashion-mnist:train", "fashion-mnist:test", "folder:PATH", "imagefolder:PATH",
         "cifar10:PATH[:train|:test]", "cifar100:PATH[:train|:test]")


def open_dataset(spec: str, root: str | Path | None = None,
                 class_index: str | Path | None = None) -> ImageDataset:
    """Open a dataset by spec (see ``SPECS``).

    ``root`` overrides the Fashion-MNIST folder, or gives the path when the spec has none
    (``open_dataset("cifar10", root=...)``). ``class_index`` is the class-index file of an ImageFolder
    (default: one found in its root, else sorted folder names). A bare existing folder path is read as
    ``folder:PATH``.
    """
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "samples":
        return SamplePhotos([n for n in rest.split(",") if n] or None)
    if kind in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return FashionMNIST(rest or "test", root)
    if kind in ("folder", "imagefolder"):
        path = rest or (str(root) if root else "")
        if not path:
            raise ValueError(f"dataset spec {spec!r} needs a path: {kind}:PATH")
        return ImageFiles(path) if kind == "folder" else ImageFolderDataset(path, class_index)
    if kind in ("cifar10", "cifar100"):
        path, split = rest, "test"
        for name in ("train", "test"):
            if path.endswith(f":{name}") or path == name:
                path, split = path[: -len(name)].rstrip(":"), name
        path = path or (str(root) if root else "")
        if not path:
            raise ValueError(f"dataset spec {spec!r} needs the CIFAR folder: {kind}:PATH")
        return CIFAR(kind, path, split)
    if Path(spec).is_dir():
        return ImageFiles(spec)
    raise ValueError(f"unknown dataset spec {spec!r}; use one of: {', '.join(SPECS)}")


__all__ = ["ImageDataset", "open_dataset", "SPECS", "SamplePhotos", "SAMPLE_PHOTOS", "ImageFiles",
           "ImageFolderDataset", "FashionMNIST", "CIFAR", "read_idx", "read_class_index", "safe_load_pickle",
           "to_model_mode", "out_inside_data"]
