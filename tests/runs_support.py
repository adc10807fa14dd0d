"""Helpers for tests/test_runs.py (also imported by its SIGKILL worker subprocess): a small
Fashion-MNIST CNN trained for a few hundred steps, seeded, and its preprocessing."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import transforms as T

MEAN, STD = (0.2860,), (0.3530,)
TRANSFORM = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
LAYER = "features.7"  # the ReLU after the last (7x7) convolution


class SmallCNN(nn.Module):
    """28x28 grayscale -> 10 logits; conv 16 @28, conv 32 @14, conv 32 @7, global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def train_small_cnn(path: Path, steps: int = 300, seed: int = 0) -> Path:
    """Train SmallCNN on a seeded subset of the Fashion-MNIST training split; save its state dict."""
    from case_saliency.data.fashion_mnist import FashionMNIST
    from needs import require_fashion_mnist

    require_fashion_mnist()
    images, labels = FashionMNIST("train").tensors()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_all = (images - MEAN[0]) / STD[0]  # tensors() gives pixels in [0, 1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is fastest, and immune to a busy machine
    try:
        for _ in range(steps):
            index = torch.randint(0, len(labels), (64,), generator=generator)
            loss = nn.functional.cross_entropy(model(x_all[index]), labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    torch.save(model.eval().state_dict(), path)
    return path


def load_small_cnn(path: Path) -> SmallCNN:
    model = SmallCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
