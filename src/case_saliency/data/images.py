"""Image files on disk (a folder of any nesting, or an ImageFolder with class subfolders) and the
sample photos that ship with scikit-image and scikit-learn."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .base import ImageDataset, sha256_items, to_model_mode, warn_skipped

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
# Files in an ImageFolder root that give the class order (and names); the first found is used.
CLASS_INDEX_FILES = ("class_index.json", "imagenet_class_index.json", "LOC_synset_mapping.txt", "classes.txt")


# How images read from files are oriented (recorded in the dataset's identity).
ORIENTATION = "EXIF applied"


def _open_image(path: Path) -> Image.Image:
    """Decode an image file completely, turn it as its EXIF orientation says (as a viewer shows it,
    not as the pixels are stored) and convert it to "RGB" or "L"."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_model_mode(ImageOps.exif_transpose(image))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise ValueError(f"image file {path} cannot be decoded ({error}); remove or replace it") from error


def shown_path(path: Path | str) -> str:
    """A path as text that prints and encodes anywhere: bytes that are not UTF-8 as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _readable(paths: list[Path], source: str) -> list[Path]:
    """Keep the files PIL can identify and whose header is sane (cheap: no full decode) and whose
    name is valid UTF-8 (ids go into UTF-8 tables); warn once about the rest, naming them."""
    kept, skipped = [], []
    for path in paths:
        try:
            try:
                str(path).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("the file name is not valid UTF-8; rename it to include it") from None
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            with Image.open(path) as image:
                if image.size[0] < 1 or image.size[1] < 1:
                    raise ValueError(f"size {image.size}")
                image.verify()  # checks structure (PNG CRCs, chunk layout) without decoding pixels
                is_jpeg = image.format == "JPEG"
            if is_jpeg and not _has_jpeg_end(path):
                raise ValueError("truncated JPEG (no end-of-image marker)")
            kept.append(path)
        except Exception as error:  # any reason PIL gives; the file is named in the warning
            skipped.append((shown_path(path), f"{type(error).__name__}: {error}".strip()))
    warn_skipped(source, skipped)
    return kept


def _has_jpeg_end(path: Path) -> bool:
    """A complete JPEG ends with the EOI marker FF D9 (allowing a little trailing padding)."""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1024))
        return b"\xff\xd9" in handle.read()


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


class ImageFiles(ImageDataset):
    """All image files under ``root``, at any depth, sorted by relative path; labels are -1.

    Unreadable files are skipped at construction with one warning naming them; a file whose pixel
    data turns out to be truncated raises ``ValueError`` naming it when the item is read.
    """

    def __init__(self, root: str | Path):
        self.root = str(Path(root))
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
        self.name = f"folder:{self.root}"
        self.class_names = None
        found = _image_files(root_path)
        if not found:
            raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}; "
                             "point at the folder that holds the images")
        self.paths = _readable(found, self.root)
        if not self.paths:
            raise ValueError(f"none of the {len(found)} image files under {root} could be read")
        self.labels = [-1] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def image_id(self, index: int) -> str:
        return self.paths[index].relative_to(self.root).as_posix()

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:
        return _open_image(self.paths[index]), self.labels[index], self.image_id(index)

    def _identity_fields(self) -> dict:
        # "hash" (ids and labels) identifies the data for confusion matrices; "files" adds each file's
        # size, so that a run resumed on a folder whose files were replaced is refused.
        return {"hash": sha256_items((self.image_id(i), self.labels[i]) for i in range(len(self))),
                "files": sha256_items((self.image_id(i), path.stat().st_size) for i, path in enumerate(self.paths)),
                "orientation": ORIENTATION}


def out_inside_data(out: str | Path, dataset: object) -> str | None:
    """A warning when a run's ``out`` folder lies inside the folder a dataset reads its images from
    (the files the run writes there would become part of the data, and a resume would then refuse
    the changed data); None when it does not, or when the dataset is not read from a folder.

    Args:
        out: the run (or report) folder the user chose.
        dataset: an ``ImageDataset``; only ``ImageFiles`` and ``ImageFolderDataset`` scan a folder.
    Returns:
        the warning's text, or None.
    """
    if not isinstance(dataset, ImageFiles):
        return None
    root, target = Path(dataset.root).resolve(), Path(out).resolve()
    if target != root and root not in target.parents:
        return None
    return (f"--out {out} is inside the data folder {dataset.root}: image files written there would be read as "
            "data by the next run, which would then refuse the changed data; choose a folder outside it")


_WNID = re.compile(r"^n\d{8}$")
CLASS_NAME_FORMATS = ("a text file with one class name per line, in class-index order (ImageNet's "
                      "LOC_synset_mapping.txt, 'n01440764 tench, Tinca tinca', too); a JSON list of names, or of "
                      "[folder, name] pairs; a JSON object index -> name ({\"0\": \"T-shirt/top\", ...}), "
                      "folder -> index, or Keras' index -> [folder, name]")


def read_class_index(path: str | Path) -> tuple[list[str], list[str]]:
    """Read a class-index file -> (folder names in class-index order, human-readable names).

    Formats (``CLASS_NAME_FORMATS``): text with one class name per line, in index order (the folder
    is the name), or ImageNet's ``LOC_synset_mapping.txt`` ("n01440764 tench, Tinca tinca": wnid
    folder, then names); a JSON list of names or of [folder, name] pairs; a JSON object index -> name,
    folder -> index, or Keras' ``imagenet_class_index.json`` index -> [folder, name].
    Raises ``FileNotFoundError``, or ``ValueError`` naming the formats.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"class-index file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"class-index file {path} is not valid JSON ({error}); formats: {CLASS_NAME_FORMATS}") \
                from error
        if isinstance(data, dict) and data:
            keys, values = list(data), list(data.values())
            if all(str(key).lstrip("-").isdigit() for key in keys):  # index -> name or index -> [folder, name]
                ordered = [data[key] for key in sorted(keys, key=int)]
                if all(isinstance(entry, list) and entry for entry in ordered):
                    return [str(entry[0]) for entry in ordered], [str(entry[-1]) for entry in ordered]
                if all(isinstance(entry, str) for entry in ordered):
                    return [str(e) for e in ordered], [str(e) for e in ordered]
            elif all(isinstance(value, int) or str(value).isdigit() for value in values):  # folder -> index
                folders = sorted(data, key=lambda folder: int(data[folder]))
                return folders, list(folders)
        if isinstance(data, list) and data:
            if all(isinstance(e, list) and e for e in data):
                return [str(e[0]) for e in data], [str(e[-1]) for e in data]
            if all(isinstance(e, (str, int)) for e in data):
                return [str(e) for e in data], [str(e) for e in data]
        raise ValueError(f"class-index file {path}: not a format for class names; formats: {CLASS_NAME_FORMATS}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"class-index file {path} is empty; formats: {CLASS_NAME_FORMATS}")
    if all(_WNID.match(line.split(" ")[0]) and " " in line for line in lines):  # LOC_synset_mapping.txt
        folders = [line.partition(" ")[0] for line in lines]
        return folders, [line.partition(" ")[2].split(",")[0].strip() for line in lines]
    return list(lines), list(lines)


def read_class_names(path: str | Path) -> list[str]:
    """The class names of a class-index file, in index order (see ``read_class_index``)."""
    return read_class_index(path)[1]


class ImageFolderDataset(ImageFiles):
    """``root/<class folder>/**/<image>``: the label is the class folder's index, from a class-index file
    (``class_index`` or one of ``CLASS_INDEX_FILES`` in ``root``; ImageNet's validation layout with
    wnid folders) or, without one, the sorted folder names (torchvision's ImageFolder order)."""

    def __init__(self, root: str | Path, class_index: str | Path | None = None):
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
        if class_index is None:
            class_index = next((root_path / f for f in CLASS_INDEX_FILES if (root_path / f).exists()), None)
        subfolders = sorted(p.name for p in root_path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if class_index is not None:
            folders, names = read_class_index(class_index)
            unknown = sorted(set(subfolders) - set(folders))
            if unknown and all(f.isdigit() and int(f) < len(folders) for f in subfolders):
                folders = [str(i) for i in range(len(folders))]  # folders named by class index
                unknown = []
            if unknown:
                raise ValueError(f"folders {unknown[:5]} of {root} are not in the class-index file {class_index}")
        else:
            if not subfolders:
                raise ValueError(f"{root} has no class subfolders; an ImageFolder is root/<class>/<images> "
                                 "(use folder:PATH for unlabelled images)")
            folders, names = subfolders, subfolders
        super().__init__(root)
        self.name = f"imagefolder:{self.root}"
        self.class_index_file = str(class_index) if class_index else None
        self.class_names = [shown_path(name) for name in names]  # a folder name that is not UTF-8, printable
        index_of = {folder: i for i, folder in enumerate(folders)}
        kept = [p for p in self.paths if p.relative_to(root_path).parts[0] in index_of]
        loose = len(self.paths) - len(kept)
        if loose:
            import warnings

            warnings.warn(f"ignored {loose} image file(s) directly in {root} (not in a class folder)", stacklevel=2)
        if not kept:
            raise ValueError(f"no readable images inside the class folders of {root}")
        self.paths = kept
        self.labels = [index_of[p.relative_to(root_path).parts[0]] for p in kept]

    def _identity_fields(self) -> dict:
        fields = super()._identity_fields()
        fields["class_index"] = self.class_index_file
        return fields


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        array = getattr(data, name)()
        return array[0] if name == "stereo_motorcycle" else array

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


# id -> loader; every one ships inside the installed package (no download). Licences: docs/data.md.
SAMPLE_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    **{f"skimage/{name}": _skimage(name) for name in (
        "chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle", "camera", "clock", "coins", "moon",
        "hubble_deep_field", "retina", "immunohistochemistry")},
    "sklearn/china": _sklearn("china"),
    "sklearn/flower": _sklearn("flower"),
}


class SamplePhotos(ImageDataset):
    """The 14 photos shipped with scikit-image and scikit-learn (``SAMPLE_PHOTOS``), labels -1.
    ``names`` picks a subset by id."""

    def __init__(self, names: list[str] | None = None):
        ids = list(SAMPLE_PHOTOS) if names is None else list(names)
        unknown = [n for n in ids if n not in SAMPLE_PHOTOS]
        if unknown:
            raise ValueError(f"unknown sample photo(s) {unknown}; available: {', '.join(SAMPLE_PHOTOS)}")
        if not ids:
            raise ValueError("no sample photos selected")
        self.ids = ids
        self.name = "samples"
        self.root = None
        self.class_names = None
        self._cache: dict[str, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def image_id(self, index: int) -> str:
        return self.ids[index]

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:
        image_id = self.ids[index]
        if image_id not in self._cache:
            array = np.asarray(SAMPLE_PHOTOS[image_id]())
            if array.dtype == bool:
                array = array.astype(np.uint8) * 255
            self._cache[image_id] = to_model_mode(Image.fromarray(array))
        return self._cache[image_id], -1, image_id

    def _identity_fields(self) -> dict:
        import hashlib

        digest = hashlib.sha256()
        for i in range(len(self)):
            image, _, image_id = self[i]
            digest.update(image_id.encode())
            digest.update(image.tobytes())
        return {"hash": digest.hexdigest(), "ids": list(self.ids)}
