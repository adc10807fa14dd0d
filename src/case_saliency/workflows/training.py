"""Training the Fashion-MNIST families (ResNet-, DenseNet- and VGG-like) with a seed.

Writes ``<out>/fashion-<arch>-seed<seed>.pt`` (a dict of tensors and plain values, loadable with
``torch.load(..., weights_only=True)`` and by :func:`case_saliency.models.load_model`) and a
metadata JSON next to it: architecture, seed, hyper-parameters, test accuracy per epoch, the
sha256 of the training and test files and of the checkpoint itself.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.fashion_mnist import CLASS_NAMES, FashionMNIST
from ..models.checkpoint import CHECKPOINT_FORMAT
from ..models.loader import sha256_file
from ..runs.store import atomic_write, write_json
from ..models.fashion import FAMILIES, INPUT_SIZE, MEAN, STD, build



@dataclass
class TrainResult:
    checkpoint: Path
    metadata_path: Path
    metadata: dict


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


def train_fashion(architecture: str, seed: int = 0, epochs: int = 3, out_dir: str | Path = "runs/train",
                  root: str | Path | None = None, batch_size: int = 128, max_lr: float = 5e-3,
                  weight_decay: float = 5e-4, train_limit: int | None = None, test_limit: int | None = None,
                  progress: bool = True) -> TrainResult:
    """Train one Fashion-MNIST family member and write checkpoint + metadata.

    AdamW with a one-cycle learning-rate schedule (peak ``max_lr``) and random horizontal flips.
    Everything random (initialisation, shuffling, flips, the optional subsets) derives from ``seed``.
    ``train_limit`` / ``test_limit`` train / evaluate on seeded random subsets (for quick checks).
    """
    if architecture not in FAMILIES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(FAMILIES)}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, test_set = FashionMNIST("train", root), FashionMNIST("test", root)
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = _subset(*train_set.tensors(), train_limit, generator)
    test_images, test_labels = _subset(*test_set.tensors(), test_limit, generator)

    # Initialisation draws from the global RNG inside torch.nn; fork it so the caller's state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(architecture)
    optimiser = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=weight_decay)
    steps_per_epoch = (len(train_labels) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=max_lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch)
    history = []
    started = time.time()
    for epoch in range(epochs):
        model.train()
        epoch_start = time.time()
        order = torch.randperm(len(train_labels), generator=generator)
        flips = torch.rand(len(train_labels), generator=generator) < 0.5
        running, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{architecture} epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False)
        for step in bar:
            index = order[step * batch_size:(step + 1) * batch_size]
            batch = train_images[index]
            batch = torch.where(flips[index, None, None, None], batch.flip(-1), batch)
            loss = F.cross_entropy(model(normalise(batch)), train_labels[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += loss.item() * len(index)
            seen += len(index)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{running / seen:.3f}")
        accuracy, _ = evaluate(model, test_images, test_labels)
        history.append({"epoch": epoch + 1, "train_loss": running / seen, "test_accuracy": accuracy,
                        "seconds": time.time() - epoch_start})
        if progress:
            tqdm.write(f"{architecture} epoch {epoch + 1}: train loss {running / seen:.4f}, "
                       f"test accuracy {accuracy:.2f}%, {time.time() - epoch_start:.0f} s")

    model.eval()
    stem = f"fashion-{architecture}-seed{seed}"
    checkpoint = out_dir / f"{stem}.pt"
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture,
        "family": "fashion-mnist",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimiser": f"AdamW(weight_decay={weight_decay}) + OneCycleLR(max_lr={max_lr})",
        "augmentation": "random horizontal flip",
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "train_seconds": time.time() - started,
        "num_classes": len(CLASS_NAMES),
        "in_channels": 1,
        "input_size": INPUT_SIZE,
        "mean": list(MEAN),
        "std": list(STD),
        "class_names": list(CLASS_NAMES),
        "target_layer": FAMILIES[architecture][1],
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
    write_json(metadata_path, metadata)
    return TrainResult(checkpoint, metadata_path, metadata)
