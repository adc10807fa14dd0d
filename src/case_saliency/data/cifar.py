"""CIFAR-10 and CIFAR-100 in their "python version" format (pickled dicts of NumPy arrays), read from a
user's folder with a restricted unpickler that can build only NumPy arrays and plain containers, so a
tampered file cannot run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from .base import ArraySplit

# (folder inside the archive, training files, test files, meta file, label key, names key)
LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
# The only globals a CIFAR pickle needs: NumPy's array reconstruction (old and new module paths).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR file holds only NumPy arrays, "
                                     "lists and strings; this file is not a genuine CIFAR batch")


def safe_load_pickle(path: str | Path) -> dict:
    """Load a CIFAR python-format pickle (bytes keys decoded to str) with the restricted unpickler."""
    with open(path, "rb") as handle:
        try:
            data = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not a readable CIFAR python-format file: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a dict as CIFAR batches do")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in data.items()}


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class CIFAR(ArraySplit):
    """CIFAR-10 (``variant="cifar10"``) or CIFAR-100 (fine labels) ``split`` from ``root``: the extracted
    folder (``cifar-10-batches-py`` / ``cifar-100-python``) or the folder that contains it.
    Items are 32x32 RGB PIL images with ids ``"<split>:<index>"``."""

    def __init__(self, variant: str, root: str | Path, split: str = "test"):
        if variant not in LAYOUTS:
            raise ValueError(f"CIFAR variant must be one of {sorted(LAYOUTS)}, got {variant!r}")
        if split not in ("train", "test"):
            raise ValueError(f"CIFAR split must be 'train' or 'test', got {split!r}")
        folder, train_files, test_files, meta_file, label_key, names_key = LAYOUTS[variant]
        root_path = Path(root)
        if (root_path / folder).is_dir():
            root_path = root_path / folder
        if not root_path.is_dir():
            raise FileNotFoundError(f"{variant} folder {root} does not exist; download and extract the "
                                    f"'python version' archive and pass the {folder} folder")
        wanted = train_files if split == "train" else test_files
        missing = [name for name in wanted + [meta_file] if not (root_path / name).exists()]
        if missing:
            raise FileNotFoundError(f"{variant} files {missing} missing in {root_path}; expected the extracted "
                                    f"'python version' archive ({folder})")
        self.variant, self.split, self.root = variant, split, str(root_path)
        self.name = f"{variant}:{split}"
        self.files = [root_path / name for name in wanted]
        arrays: list[np.ndarray] = []
        labels: list[int] = []
        for path in self.files:
            batch = safe_load_pickle(path)
            if "data" not in batch or label_key not in batch:
                raise ValueError(f"{path} lacks the 'data' or '{label_key}' entry of a {variant} batch")
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise ValueError(f"{path}: data has shape {data.shape}, expected (N, 3072)")
            arrays.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(int(v) for v in batch[label_key])
        self.images = np.concatenate(arrays)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{variant} {split}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.images) == 0:
            raise ValueError(f"{variant} {split} in {root_path} holds no images")
        self.class_names = _decode(safe_load_pickle(root_path / meta_file)[names_key])

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:
        index = range(len(self))[index]
        return Image.fromarray(self.images[index], mode="RGB"), int(self.labels[index]), f"{self.split}:{index}"

