"""The fidelity evaluation batch (perturbed images per forward pass) chosen by measurement.

Times ``metrics.deletion_insertion`` (what ``fidelity``'s ``--eval-batch-size`` batches: 2 (steps + 1)
perturbed copies of every image) at several batch sizes on several models, rows interleaved (every
batch size of every model once per round, rounds repeated) and reported as medians, in perturbed
images per second. Pick the smallest batch within a few percent of each model's best: larger ones
only cost memory.

    python benchmarks/eval_batch.py --models efficientnet_lite0,resnet50,fashion --batches 8,16,32,64,128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from case_saliency import load_model
from case_saliency.data import open_dataset
from case_saliency.metrics import deletion_insertion


class FashionCNN(nn.Module):
    """A small 28 x 28 grayscale classifier (random weights: speed does not depend on them)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def model_and_images(name: str, count: int) -> tuple[nn.Module, torch.Tensor]:
    if name == "fashion":
        return FashionCNN().eval(), torch.randn(count, 1, 28, 28)
    loaded = load_model(name, "random" if name == "resnet50" else None)
    photos = open_dataset("samples")
    return loaded.model, torch.stack([loaded.transform(photos[i % len(photos)][0]) for i in range(count)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0,resnet50,fashion")
    parser.add_argument("--batches", default="8,16,32,64,128")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7, help="curve steps: 2 (steps + 1) copies per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rows = {}
    for name in args.models.split(","):
        model, images = model_and_images(name, args.images)
        maps = torch.rand(images.shape[0], *images.shape[-2:], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            classes = model(images).argmax(1)
        rows[name] = (model, images, maps, classes)
    perturbed = 2 * (args.steps + 1) * args.images
    times: dict[tuple[str, int], list[float]] = {(name, b): [] for name in rows for b in batches}
    for model, images, maps, classes in rows.values():  # warm-up: one call per model
        deletion_insertion(model, images[:1], maps[:1], classes[:1], 1, batch_size=4)
    for _ in range(args.repeats):
        for name, (model, images, maps, classes) in rows.items():
            for batch in batches:
                start = time.perf_counter()
                deletion_insertion(model, images, maps, classes, args.steps, batch_size=batch)
                times[(name, batch)].append(time.perf_counter() - start)
    print(f"deletion/insertion, {args.images} images x {2 * (args.steps + 1)} perturbed copies = {perturbed} per "
          f"call, {args.threads} threads, median of {args.repeats} interleaved rounds; perturbed images per second:")
    for name in rows:
        rates = {b: perturbed / statistics.median(times[(name, b)]) for b in batches}
        best = max(rates.values())
        cells = "  ".join(f"{b:>4d}: {rate:7.1f} ({rate / best:4.0%})" for b, rate in rates.items())
        print(f"  {name:18s} {cells}")


if __name__ == "__main__":
    main()
