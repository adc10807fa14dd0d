"""A diagnose run's cost against the model's own forward pass, side by side (issue: one forward per batch).

For each model (EfficientNet-Lite0 and resnet50, random weights: speed does not depend on them), on the
same images and batch: forward-only img/s (one no-grad forward of the batch) and ``run_diagnose``
img/s with Grad-CAM only (end to end: decoding, transform, maps of the top-1 and top-2 classes,
agreement, rows written), timed in turn (interleaved) so that the shared machine's drift hits both
alike. The goal: diagnose img/s >= 0.8x forward img/s (one forward and one backward to the layer per
batch); a 7-CAM run is printed beside it.

    .venv/bin/python benchmarks/diagnose_forward.py --batch 8 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

SEVEN = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case"]


class Photos:
    """Seeded random RGB images (PIL) in memory, as ``open_dataset`` returns them."""

    name = "random-photos"
    class_names = None

    def __init__(self, count: int, size: int = 224, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:
        return self.images[index], -1, f"random:{index}"

    def identity(self) -> dict:
        return {"name": self.name, "count": len(self)}


def models() -> dict[str, tuple[torch.nn.Module, str]]:
    from case_saliency.models.efficientnet_lite import build

    torch.manual_seed(0)
    return {"efficientnet_lite0": (build(0).eval(), "conv_head"), "resnet50": (torchvision.models.resnet50().eval(),
                                                                               "layer4")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from case_saliency.runs import run_diagnose

    transform = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    photos = Photos(args.batch)
    images = torch.stack([transform(image) for image in photos.images])
    print(f"{args.batch} images 224x224, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}, "
          "interleaved")
    print(f"{'model':20s} {'forward img/s':>14s} {'diagnose img/s':>15s} {'ratio':>7s} {'7-CAM img/s':>12s} "
          f"{'ratio':>7s}")
    for name, (net, layer) in models().items():
        def forward(net: torch.nn.Module = net) -> None:
            with torch.no_grad():
                net(images)

        def diagnose(methods: list[str], net: torch.nn.Module = net, layer: str = layer) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                run_diagnose(net, photos, Path(tmp) / "run", methods=methods, n=args.batch, layer=layer,
                             transform=transform, batch_size=args.batch, gallery=0, progress=False, workers=0,
                             correct_only=False)

        rows = {"forward": forward, "diagnose": lambda: diagnose(["gradcam"]), "seven": lambda: diagnose(SEVEN)}
        for fn in rows.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {key: [] for key in rows}
        for _ in range(args.repeats):
            for key, fn in rows.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        rate = {key: args.batch / statistics.median(t) for key, t in times.items()}
        print(f"{name:20s} {rate['forward']:14.2f} {rate['diagnose']:15.2f} {rate['diagnose'] / rate['forward']:7.2f} "
              f"{rate['seven']:12.2f} {rate['seven'] / rate['forward']:7.2f}")


if __name__ == "__main__":
    main()
