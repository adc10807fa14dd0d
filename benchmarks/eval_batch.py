"""The fidelity evaluation batch (perturbed images per forward pass) chosen by measurement.

Times ``metrics.class_probability`` (the batched no-grad forward that ``fidelity``'s
``--eval-batch-size`` sizes, for the confidence drop and every deletion/insertion step; the masking
around it does not depend on the batch) at several batch sizes on several models, rows interleaved
(every batch size of every model once per round, rounds repeated) and reported as medians, in
images per second. The batch chosen for a model is the smallest within ``--within`` (5%) of its best
(larger ones only cost memory); the one printed for all models is the batch that keeps every model
nearest its best (the highest worst-case share), beside the library's default
(``runs.settings.EVAL_BATCH_SIZE``).

    python benchmarks/eval_batch.py --models efficientnet_lite0,resnet50,fashion --batches 4,8,16,32,64 --images 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from case_saliency import load_model
from case_saliency.data import open_dataset
from case_saliency.metrics import class_probability


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
    parser.add_argument("--batches", default="4,8,16,32,64")
    parser.add_argument("--images", type=int, default=64, help="images per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--within", type=float, default=0.05, help="share of the best rate a chosen batch may lose")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rows = {}
    for name in args.models.split(","):
        model, images = model_and_images(name, args.images)
        with torch.no_grad():
            classes = model(images[:1]).argmax(1).expand(images.shape[0])
        rows[name] = (model, images, classes)
    times: dict[tuple[str, int], list[float]] = {(name, b): [] for name in rows for b in batches}
    for model, images, classes in rows.values():  # warm-up: one call per model
        class_probability(model, images[:2], classes[:2], 2)
    for round_ in range(args.repeats):
        for name, (model, images, classes) in rows.items():
            for batch in batches:
                start = time.perf_counter()
                class_probability(model, images, classes, batch)
                times[(name, batch)].append(time.perf_counter() - start)
        print(f"round {round_ + 1} of {args.repeats} done", flush=True)
    print(f"class_probability on {args.images} images per call, {args.threads} threads, median of {args.repeats} "
          "interleaved rounds; images per second (share of the model's best):")
    chosen, shares = {}, {b: 1.0 for b in batches}
    for name in rows:
        rates = {b: args.images / statistics.median(times[(name, b)]) for b in batches}
        best = max(rates.values())
        chosen[name] = min(b for b, rate in rates.items() if rate >= (1 - args.within) * best)
        shares = {b: min(shares[b], rate / best) for b, rate in rates.items()}
        cells = "  ".join(f"{b:>4d}: {rate:7.1f} ({rate / best:4.0%})" for b, rate in rates.items())
        print(f"  {name:18s} {cells}  -> {chosen[name]}")
    from case_saliency.runs.settings import EVAL_BATCH_SIZE

    # One batch for every model: the one whose worst share of a model's best rate is highest (a large batch
    # helps a small model a little and costs a 224-pixel one up to 3x: caches, not arithmetic).
    overall = max(batches, key=lambda b: (shares[b], -b))
    print(f"chosen evaluation batch (the highest worst-case share of each model's best): {overall} "
          f"({shares[overall]:.0%} at worst); the library's default: {EVAL_BATCH_SIZE}; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")

if __name__ == "__main__":
    main()
