""""Why A and not B?" for image files: each image's maps of the classes asked for, by each method,
with the classes' probabilities and each method's top-k% agreement of the first two maps.

``explain_images(loaded, paths, ...)`` computes them (``ImageExplanation`` per image); the command
line (`case-saliency explain`) and ``report.figures.explain_figure`` draw them.
"""

from __future__ import annotations

import difflib
import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.contrast import Versus

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_METHODS = ("gradcam", "case")


@dataclass
class ImageExplanation:
    """One image explained.

    image: (H, W, 3) uint8, what the model saw (resized and cropped). classes: the M class indices
    explained, names and probabilities (softmax) alike. maps: {method: (M, H, W) in [0, 1]};
    agreement: {method: percent of shared top-k% pixels of the first two maps, or None}.
    """

    source: str
    image: np.ndarray
    classes: list[int]
    names: list[str]
    probabilities: list[float]
    maps: dict[str, np.ndarray]
    agreement: dict[str, float | None]
    k_percent: float
    chosen: bool = False  # the classes were asked for (not the image's top ones)
    contrast: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line: source, classes with their probabilities, each method's agreement."""
        classes = " vs ".join(f"{name} ({p:.2f})" for name, p in zip(self.names, self.probabilities, strict=True))
        agree = ", ".join(f"{method} {'n/a' if value is None else f'{value:.0f}%'}"
                          for method, value in self.agreement.items())
        return f"{self.source}: {classes}; top-{self.k_percent:g}% agreement: {agree}"


def expand_images(items: Sequence[str | Path]) -> list[Path]:
    """Image files from paths, folders (their image files, sorted, recursively) and glob patterns.
    Raises ``FileNotFoundError`` naming an item that matches nothing."""
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                raise FileNotFoundError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            found += inside
        elif path.is_file():
            found.append(path)
        elif any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True)
                             if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not matched:
                raise FileNotFoundError(f"the pattern {text!r} matches no image file")
            found += matched
        else:
            raise FileNotFoundError(f"image {text} does not exist")
    return list(dict.fromkeys(found))


def resolve_class(text: str, class_names: Sequence[str]) -> int:
    """A class by index ("3") or by name: exact (case-insensitive), else a unique prefix, else a
    unique substring. Raises ``ValueError`` with the closest names for an unknown or ambiguous one."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise ValueError(f"class index {index} is out of range: the model has {len(class_names)} classes "
                             f"(0..{len(class_names) - 1})")
        return index
    lowered = [name.lower() for name in class_names]
    key = text.lower()
    for rule in (lambda name: name == key, lambda name: name.startswith(key), lambda name: key in name):
        hits = [i for i, name in enumerate(lowered) if rule(name)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            shown = ", ".join(repr(class_names[i]) for i in hits[:8])
            raise ValueError(f"class {text!r} is ambiguous: it matches {shown}{' ...' if len(hits) > 8 else ''}; "
                             "give more of the name, or the class index")
    close = difflib.get_close_matches(key, lowered, n=5, cutoff=0.4)
    hint = ", ".join(repr(class_names[lowered.index(c)]) for c in close) or ", ".join(map(repr, class_names[:8]))
    raise ValueError(f"unknown class {text!r}; closest names: {hint}")


def resolve_classes(spec: str | Sequence[str | int], class_names: Sequence[str]) -> list[int]:
    """``"Coat,Shirt"`` or ``["Coat", 6]`` -> class indices (see ``resolve_class``); at least one."""
    items = [part for part in spec.split(",") if part.strip()] if isinstance(spec, str) else list(spec)
    if not items:
        raise ValueError("no class given; name classes as 'Coat,Shirt' or by index '4,6'")
    chosen = [item if isinstance(item, int) else resolve_class(str(item), class_names) for item in items]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"the classes {', '.join(class_names[i] for i in chosen)} repeat one class")
    return chosen


def load_images(items: Sequence[str | Path]) -> tuple[list[Any], list[str]]:
    """(PIL images, their sources) for files, folders, glob patterns and the shipped sample photos
    (``samples`` for all 14, ``samples:skimage/chelsea,skimage/coffee`` for some; see
    ``data.SamplePhotos``), in the order given. Raises ``FileNotFoundError`` / ``ValueError`` naming
    what is missing or undecodable."""
    from ..data.images import SamplePhotos

    images: list[Any] = []
    sources: list[str] = []
    for item in items:
        text = str(item)
        if text == "samples" or (text.startswith("samples:") and not Path(text).exists()):
            photos = SamplePhotos([n for n in text.partition(":")[2].split(",") if n] or None)
            for i in range(len(photos)):
                image, _, image_id = photos[i]
                images.append(image)
                sources.append(image_id)
        else:
            paths = expand_images([text])
            images += open_images(paths)
            sources += [str(p) for p in paths]
    return images, sources


def open_images(paths: Sequence[Path]) -> list[Any]:
    """The decoded images (PIL), in "RGB" or "L"; a file that cannot be decoded raises ValueError naming it."""
    from ..data.images import _open_image

    return [_open_image(Path(path)) for path in paths]


def _display(loaded: Any, image: Any) -> np.ndarray:
    transform = loaded.transform
    if hasattr(transform, "display"):
        return np.asarray(transform.display(image))
    side = loaded.input_size or 224
    return np.asarray(image.convert("RGB").resize((side, side)), dtype=np.uint8)


def explain_images(loaded: Any, images: Sequence[Any], sources: Sequence[str], *, classes: Sequence[int] | None = None,
                   top: int = 2, methods: Sequence[str] = DEFAULT_METHODS, k_percent: float = 5.0,
                   versus: bool = False, contrast: str | None = None,
                   per_image_classes: Sequence[Sequence[int]] | None = None, layer: str | None = None,
                   batch_size: int = 8) -> list[ImageExplanation]:
    """Explain each image for the classes asked for.

    Args:
        loaded: a ``LoadedModel``. images: PIL images; sources: their names (files).
        classes: the class indices to explain for every image (default: each image's top ``top``);
            per_image_classes: a list of them per image instead (``--confused``).
        methods: method specs (``get_method`` names, ``case(contrast=top:1)``...).
        k_percent: the top share outlined and compared by the agreement.
        versus: CASE-type methods contrast each class with the other classes asked for.
        contrast: CASE's contrast spec where ``versus`` is off (default: the method's).
        layer: the target layer of every method at a layer (default: the model's).
    Returns:
        one ``ImageExplanation`` per image.
    """
    from ..methods import explain_many
    from ..methods.spec import build_method
    from ..metrics.agreement import topk_agreement

    names = loaded.require_class_names()
    if len(images) != len(sources):
        raise ValueError(f"{len(images)} images but {len(sources)} sources")
    explained: list[ImageExplanation] = []
    network = loaded.model
    device = next(iter(network.parameters()), torch.zeros(())).device
    for start in range(0, len(images), batch_size):
        batch_images = list(images[start:start + batch_size])
        tensor = loaded.preprocess(batch_images).to(device)
        # The classes: given (one list for all, or per image), else each image's top ones, resolved in the
        # methods' own pass ("topk:N"): one forward pass and one backward for every method at the layer.
        if per_image_classes is not None:
            spec: Any = torch.tensor([list(per_image_classes[start + i]) for i in range(len(batch_images))])
        elif classes is not None:
            spec = torch.tensor([list(classes)] * len(batch_images))
        else:
            spec = f"topk:{max(int(top), 1)}"
        m = int(spec.shape[1]) if isinstance(spec, Tensor) else max(int(top), 1)
        if versus and m < 2:
            raise ValueError("the pair contrast needs at least two classes per image (e.g. --classes Coat,Shirt)")
        run_contrast: Any = Versus() if versus else contrast
        built: dict[str, Any] = {name: build_method(name, loaded, run_contrast=run_contrast, target_layer=layer)
                                 for name in methods}
        contrasts = {name: str(getattr(method.contrast, "spec", method.contrast)) for name, method in built.items()
                     if getattr(method, "contrast", None) is not None}
        results = explain_many(built, tensor, spec.to(device) if isinstance(spec, Tensor) else spec, normalize=True)
        first = next(iter(results.values()))
        targets = first.targets if first.targets.ndim == 2 else first.targets[:, None]
        if first.logits is not None:
            logits = first.logits
        else:
            with torch.no_grad():
                logits = network(tensor)
        probabilities = torch.softmax(logits.detach().float(), dim=1).cpu()
        rows = targets.cpu().tolist()
        for i, image in enumerate(batch_images):
            maps = {label: (result.maps[i] if result.maps.ndim == 4 else result.maps[i][None]).detach().float().cpu()
                    .numpy() for label, result in results.items()}
            agreement: dict[str, float | None] = {}
            if m >= 2:
                for label, values in maps.items():
                    value = float(topk_agreement(torch.from_numpy(values[0]), torch.from_numpy(values[1]), k_percent))
                    agreement[label] = None if not np.isfinite(value) else value
            row = rows[i]
            explained.append(ImageExplanation(
                source=str(sources[start + i]), image=_display(loaded, image), classes=row,
                names=[names[c] for c in row], probabilities=[float(probabilities[i, c]) for c in row],
                maps=maps, agreement=agreement, k_percent=k_percent,
                chosen=classes is not None or per_image_classes is not None, contrast=contrasts))
    return explained


def confused_images(source: str | Path, loaded: Any, images: Sequence[str | Path], n: int = 6,
                    pairs: int = 10) -> tuple[list[Any], list[str], list[list[int]]]:
    """The ``n`` most confused images and their two classes, for ``explain --confused``.

    source: a diagnose run's folder (its rows give each image's top-1/top-2 classes and
    probabilities; the images are read from the run's dataset), or a confusion matrix (JSON of
    `case-saliency confusion`, or a .npy) with ``images`` (files, folders, globs, samples): the
    images whose top-1/top-2 classes are one of the matrix's ``pairs`` most confused pairs. Images
    are ranked by how close their two probabilities are.
    Returns (PIL images, their sources, [[class A, class B] per image]).
    """
    from .confusion import confused_pairs

    path = Path(source)
    if path.is_dir():
        return _confused_in_run(path, n)
    if not images:
        raise ValueError(f"--confused {path}: a confusion matrix needs the images to choose from "
                         "(IMAGE... or a folder)")
    if path.suffix.lower() == ".json":
        import json

        matrix = np.asarray(json.loads(path.read_text())["matrix"], dtype=np.float64)
    elif path.suffix.lower() == ".npy":
        matrix = np.load(path)
    else:
        raise ValueError(f"--confused {path}: give a diagnose run folder, or a confusion matrix (.json or .npy)")
    names = loaded.require_class_names()
    wanted = {frozenset((pair.true, pair.predicted)) for pair in confused_pairs(matrix, names, top=pairs)}
    pictures, sources = load_images(images)
    scored: list[tuple[float, int, list[int]]] = []
    device = next(iter(loaded.model.parameters()), torch.zeros(())).device
    for start in range(0, len(pictures), 32):
        with torch.no_grad():
            logits = loaded.model(loaded.preprocess(pictures[start:start + 32]).to(device)).float()
        probs, top2 = torch.softmax(logits, 1).topk(2, dim=1)
        for offset, (p, classes) in enumerate(zip(probs.tolist(), top2.tolist(), strict=True)):
            if frozenset(classes) in wanted:
                scored.append((p[0] - p[1], start + offset, classes))
    if not scored:
        raise ValueError(f"none of the {len(pictures)} images has a top-1/top-2 pair among the {pairs} most confused "
                         f"pairs of {path}")
    scored.sort(key=lambda item: item[0])
    chosen = scored[:n]
    return [pictures[i] for _, i, _ in chosen], [sources[i] for _, i, _ in chosen], [c for _, _, c in chosen]


def _confused_in_run(run_dir: Path, n: int) -> tuple[list[Any], list[str], list[list[int]]]:
    """The run's images with the closest top-1/top-2 probabilities, read from its dataset."""
    from ..data import open_dataset
    from ..runs.rundir import RunDir

    stored = RunDir.read(run_dir)
    seen: dict[str, tuple[float, list[int]]] = {}
    for row in stored.typed_rows():
        if row.get("error") or row.get("class1") is None:
            continue
        margin = float(row["prob1"]) - float(row["prob2"])
        seen.setdefault(str(row["image_id"]), (margin, [int(row["class1"]), int(row["class2"])]))
    if not seen:
        raise ValueError(f"{run_dir} has no rows with classes (is it a diagnose run?)")
    ranked = sorted(seen.items(), key=lambda item: item[1][0])[:n]
    spec = str(stored.config.get("dataset"))
    try:
        dataset = open_dataset(spec, stored.config.get("root"))
    except (ValueError, FileNotFoundError, OSError) as error:
        raise ValueError(f"--confused {run_dir}: its dataset {spec!r} cannot be opened here ({error})") from None
    getter = getattr(dataset, "image_id", None)
    index = {str(getter(i)) if callable(getter) else str(dataset[i][2]): i for i in range(len(dataset))}
    missing = [image_id for image_id, _ in ranked if image_id not in index]
    if missing:
        raise ValueError(f"--confused {run_dir}: images {missing[:3]} of the run are not in {spec} any more")
    pictures = [dataset[index[image_id]][0] for image_id, _ in ranked]
    return pictures, [image_id for image_id, _ in ranked], [classes for _, (_, classes) in ranked]
