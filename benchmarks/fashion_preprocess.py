"""What a guessed preprocessing costs: a torchvision resnet18(num_classes=10) trained on Fashion-MNIST
at 112 px, saved as a plain state dict, scored by `case-saliency confusion` on an image folder of the
test PNGs with its real preprocessing (--size 112 --no-crop) and with the ImageNet default the
command assumes without it (resize 256, crop 224); and the same model's accuracy computed directly.

    .venv/bin/python benchmarks/fashion_preprocess.py --steps 300 --out /tmp/fashion112
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 112
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the ImageNet statistics: only the size is at stake


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) in [0, 1] -> (B, 3, 112, 112) normalised, as the model was trained."""
    batch = F.interpolate(batch, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    batch = batch.expand(-1, 3, -1, -1)
    return (batch - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train(steps: int, batch_size: int, subset: int, device: str, seed: int = 0) -> torch.nn.Module:
    import torchvision

    from case_saliency.data.fashion_mnist import FashionMNIST

    torch.manual_seed(seed)
    images, labels = FashionMNIST("train").tensors()
    order = torch.randperm(len(labels))[:subset]
    images, labels = images[order], labels[order]
    model = torchvision.models.resnet18(num_classes=10).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    model.train()
    for step in range(steps):
        index = torch.randint(0, len(labels), (batch_size,))
        loss = F.cross_entropy(model(to_input(images[index]).to(device)), labels[index].to(device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    return model.eval().cpu()


def write_folder(root: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` test images as PNGs in ``root/<class index>/``, with classes.txt (one name
    per line); returns them as tensors."""
    from PIL import Image

    from case_saliency.data.fashion_mnist import CLASS_NAMES, FashionMNIST

    test = FashionMNIST("test")
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    for i in range(count):
        folder = root / str(int(test.labels[i]))
        folder.mkdir(exist_ok=True)
        Image.fromarray(test.images[i], mode="L").save(folder / f"{i:05d}.png")
    images, labels = test.tensors()
    return images[:count], labels[:count]


def confusion_accuracy(weights: Path, folder: Path, extra: list[str]) -> tuple[float, str]:
    command = [sys.executable, "-m", "case_saliency", "confusion", "--model", "resnet18", "--weights", str(weights),
               "--data", f"imagefolder:{folder}", "--class-names", str(folder / "classes.txt"),
               "--out", str(weights.with_suffix(".confusion.json")), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"accuracy ([\d.]+)%", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1)), done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--subset", type=int, default=20000, help="training images (a seeded subset)")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/fashion112"))
    args = parser.parse_args()
    started = time.perf_counter()
    model = train(args.steps, args.batch_size, args.subset, args.device)
    print(f"trained {args.steps} steps of {args.batch_size} on {args.device} in {time.perf_counter() - started:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "resnet18-fashion112.pt"
    torch.save(model.state_dict(), weights)  # a plain state dict: no preprocessing stored
    images, labels = write_folder(args.out / "images", args.test_images)
    with torch.no_grad():
        direct = float((model(to_input(images)).argmax(1) == labels).double().mean() * 100)
    real, real_log = confusion_accuracy(weights, args.out / "images", ["--size", str(SIZE), "--no-crop"])
    assumed, assumed_log = confusion_accuracy(weights, args.out / "images", [])
    print(assumed_log)
    print(real_log)
    print(f"accuracy on {len(labels)} test images: computed directly {direct:.1f}%; `confusion --size 112 --no-crop` "
          f"{real:.1f}%; `confusion` with the assumed ImageNet preprocessing {assumed:.1f}%")
    print(np.round([direct, real, assumed], 1).tolist())


if __name__ == "__main__":
    main()
