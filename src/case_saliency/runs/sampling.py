"""The run's sample: a seeded permutation of the dataset, cut to ``n``, with the paper's protocol
(correctly classified images only) applied by walking the permutation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.capture import model_device
from .loading import ImageSource, batch_loader
from .settings import RunSettings


@torch.no_grad()
def select_sample(model: nn.Module, dataset: ImageSource, transform: Callable[[Any], torch.Tensor],
                  settings: RunSettings, *, workers: int = 0, progress: bool = False,
                  record: dict[str, Any] | None = None) -> list[int]:
    """Dataset indices of the run, in processing order: a seeded random permutation of the dataset
    (``torch.randperm`` with its own generator), cut to ``n``; with ``correct_only``, walking the
    permutation and keeping images whose top-1 prediction equals their label until ``n`` are kept
    (fewer if the dataset runs out; an image that cannot be read is not kept). n <= 0 means every image.

    Args:
        model: the network, (B, C, H, W) -> (B, K) logits. dataset: the images. transform: PIL image ->
            (C, H, W) tensor.
        settings: gives ``n``, ``seed``, ``correct_only`` (None counts as False) and ``batch_size``.
        workers: DataLoader processes decoding the images (correct_only only). progress: a bar of the
            correct images found.
        record: a dict filled with what the selection did: ``requested`` (n), ``dataset_size``, ``size``
            (images kept), ``short`` (fewer than requested), and with ``correct_only`` also ``examined``
            (the images looked at, up to the one that completed the sample) and ``excluded`` (those not
            kept: ``{"id", "reason"}``, misclassified or unreadable).
    Returns:
        The sample's dataset indices.
    Raises:
        ValueError: an empty dataset, or ``correct_only`` on data without labels.
    """
    n, seed, correct_only, batch_size = settings.n, settings.seed, bool(settings.correct_only), settings.batch_size
    total = len(dataset)
    if total == 0:
        raise ValueError("the dataset is empty")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed))).tolist()
    want = total if n <= 0 else min(n, total)
    info = record if record is not None else {}
    info.update(requested=int(n), dataset_size=int(total), correct_only=bool(correct_only))
    if not correct_only:
        info.update(size=want, short=0 < n and want < n)
        return order[:want]
    device = model_device(model)
    kept: list[int] = []
    examined = 0
    excluded: list[dict[str, Any]] = []
    chunks = [list(range(start, min(start + batch_size, total))) for start in range(0, total, batch_size)]
    bar = tqdm(total=want, desc="sampling correctly classified images", unit="img", disable=not progress)
    for batch in batch_loader(dataset, transform, order, None, chunks, workers=workers):
        guesses: dict[int, int] = {}
        if batch.images is not None:
            labels = [batch.labels[p] for p in batch.ok]
            if all(label < 0 for label in labels):
                raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} has no labels, so 'correct only' cannot "
                                 "be applied; use all images (--all / correct_only=False)")
            guesses = dict(zip(batch.ok, model(batch.images.to(device)).argmax(1).cpu().tolist(), strict=True))
        for p in range(len(batch.ids)):  # in sample order, up to the image that completes the sample
            if len(kept) >= want:
                break
            examined += 1
            if p in batch.failures:
                excluded.append({"id": batch.ids[p], "reason": "unreadable: " + batch.failures[p]})
            elif guesses[p] == batch.labels[p]:
                kept.append(order[batch.start + p])
                bar.update(1)
            else:
                excluded.append({"id": batch.ids[p], "reason": f"predicted {guesses[p]}, label {batch.labels[p]}"})
        if len(kept) >= want:
            break
    bar.close()
    info.update(size=len(kept), short=0 < n and len(kept) < n, examined=examined,  # n <= 0: all, never short
                excluded=excluded)
    return kept
