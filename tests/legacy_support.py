"""The tiny model and images of the legacy run directories in tests/data/legacy (written by the run layer
before its redesign; tests/test_legacy_runs.py resumes and reads them with the current one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

TRANSFORM = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
LAYER = "features.3"


def tiny_model() -> nn.Module:
    """A seeded 2-class CNN on 24x24 RGB images (the same weights on every call)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential()
        model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                       nn.ReLU())
        model.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        model.fc = nn.Linear(8, 2)
    return model.eval()


def make_images(folder: Path) -> None:
    """Six 24x24 PNGs in two class folders (a disc, a square), drawn from a seed."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    for label, name in enumerate(("disc", "square")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            cy, cx = rng.integers(7, 17, size=2)
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < 25) if label == 0 else (
                (abs(yy - cy) < 5) & (abs(xx - cx) < 5))
            pixels = (rng.random((24, 24, 3)) * 60).astype(np.uint8)
            pixels[mask] = (200, 120 + 40 * label, 60)
            Image.fromarray(pixels).save(folder / name / f"{name}{i}.png")
