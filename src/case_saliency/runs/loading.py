"""Decoding and preprocessing a run's images in ``torch.utils.data.DataLoader`` workers, overlapping
with the model: the loader yields one ``Batch`` per fixed chunk of the sample, and an image that
cannot be read or transformed becomes a recorded failure of its batch, never an exception."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


class ImageSource(Protocol):
    """What a run reads images from (``case_saliency.data.open_dataset`` returns one): a sized,
    indexable source, ``source[i] -> (PIL image, label (-1 unknown), image_id)``. It may also tell an
    id without decoding (``image_id(i)``), its ``identity()``, ``name`` and ``class_names``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, int, str]: ...


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, for the ``error`` column."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def one_line(image_id: str) -> str:
    """An image id as the run stores it: ids holding a line break (a file name with a newline) get it
    escaped (``\\n``, ``\\r``, and ``\\\\`` for a backslash), so that the id survives results.csv's
    one-row-per-line format and a resume finds it again; every other id is kept as it is."""
    if "\n" not in image_id and "\r" not in image_id:
        return image_id
    return image_id.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def item_id(dataset: ImageSource, index: int) -> str:
    """The stable id of dataset item ``index`` without decoding it where the dataset can tell
    (``dataset.image_id(index)``); else from the item itself; ``#<index>`` when it cannot be read."""
    getter = getattr(dataset, "image_id", None)
    try:
        return one_line(str(getter(int(index))) if callable(getter) else str(dataset[int(index)][2]))
    except Exception:  # an unreadable item still needs a name in the error row
        return f"#{int(index)}"


@dataclass
class Batch:
    """One batch of a run's sample, decoded: for every position ``ids`` and ``labels`` (-1 when the
    item could not be read); ``images`` (B_ok, C, H, W) holds the decoded items at positions ``ok``;
    ``failures`` maps the other positions to their error text; ``start`` is the batch's first
    position in the sample."""

    ids: list[str]
    labels: list[int]
    images: Tensor | None
    ok: list[int]
    failures: dict[int, str]
    start: int = 0

    def pin_memory(self) -> Batch:  # DataLoader(pin_memory=True) calls this on custom batch types
        if self.images is not None:
            self.images = self.images.pin_memory()
        return self

    def __len__(self) -> int:
        return len(self.ids)


class SampleItems(torch.utils.data.Dataset[tuple[Tensor | None, int, str, str]]):
    """Map-style view of a run's sample: item ``p`` is the sample's ``p``-th image, transformed:
    ``(tensor or None, label, image_id, error text)``."""

    def __init__(self, dataset: ImageSource, transform: Callable[[Any], Tensor], sample: Sequence[int],
                 sample_ids: Sequence[str] | None = None):
        self.dataset, self.transform = dataset, transform
        self.sample = list(sample)
        self.sample_ids = list(sample_ids) if sample_ids is not None else None

    def __len__(self) -> int:
        return len(self.sample)

    def __getitem__(self, position: int) -> tuple[Tensor | None, int, str, str]:
        try:
            image, label, image_id = self.dataset[int(self.sample[position])]
            return self.transform(image), int(label), one_line(str(image_id)), ""
        except Exception as error:  # recorded in this image's rows; the run goes on
            image_id = self.sample_ids[position] if self.sample_ids is not None else \
                item_id(self.dataset, self.sample[position])
            return None, -1, image_id, error_text(error)


def collate(items: list[tuple[Tensor | None, int, str, str]]) -> Batch:
    """Items of one chunk (``SampleItems``) -> ``Batch``."""
    tensors = [item[0] for item in items if item[0] is not None]
    ok = [p for p, item in enumerate(items) if item[0] is not None]
    failures = {p: item[3] for p, item in enumerate(items) if item[0] is None}
    return Batch([item[2] for item in items], [item[1] for item in items],
                 torch.stack(tensors) if tensors else None, ok, failures)


def default_workers(world: int = 1) -> int:
    """Loader workers per process: the CPUs this process may use, shared among the ``world``
    processes of a node, less one for the model's own threads; at most 4 (decoding rarely needs more)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus // max(world, 1) - 1))


def batch_loader(dataset: ImageSource, transform: Callable[[Any], Tensor], sample: Sequence[int],
                 sample_ids: Sequence[str] | None,
                 chunks: Sequence[Sequence[int]], *, workers: int = 0, pin_memory: bool = False) -> Iterator[Batch]:
    """Batches of the sample positions in each of ``chunks``, in order, decoded by ``workers``
    processes (0: in this process). Each batch's ``start`` is its chunk's first position."""
    lists: list[list[int]] = [list(chunk) for chunk in chunks]
    if not lists:
        return iter(())
    loader = torch.utils.data.DataLoader(
        SampleItems(dataset, transform, sample, sample_ids), batch_sampler=lists, num_workers=workers,
        collate_fn=collate, pin_memory=pin_memory, prefetch_factor=2 if workers else None)

    def batches() -> Iterator[Batch]:
        for chunk, batch in zip(lists, loader, strict=True):
            batch.start = chunk[0]
            yield batch

    return batches()
