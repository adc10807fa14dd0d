"""Class-contrastive fidelity: removing A's evidence against B lowers logit A - logit B; removing
evidence A and B share does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from case_saliency.metrics import contrastive_drop, logit_margin


class RegionLogits(nn.Module):
    """Logit c = the sum of the pixels of region c (a fixed (H, W) mask per class): a model whose
    evidence for each class is known exactly."""

    def __init__(self, masks: torch.Tensor):
        super().__init__()
        self.register_buffer("masks", masks.float())  # (K, H, W)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,khw->bk", images, self.masks)


def _setup():
    h = w = 10
    masks = torch.zeros(3, h, w)
    masks[0, :, :5] = 1  # class 0: the left half
    masks[1, :, 5:] = 1  # class 1: the right half
    masks[2, :5, :] = 1  # class 2: the top half (shares a quadrant with each)
    images = torch.rand(4, 1, h, w, generator=torch.Generator().manual_seed(0)) + 0.5
    return RegionLogits(masks), images, masks


def test_contrastive_drop_equals_the_removed_unique_evidence():
    model, images, masks = _setup()
    a, b = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    own = masks[0].expand(4, -1, -1) + 0.01 * torch.rand(4, 10, 10, generator=torch.Generator().manual_seed(1))
    result = contrastive_drop(model, images, own, a, b, k_percent=(50, 10), fill="zero")
    assert result.k_percent.tolist() == [10.0, 50.0]  # sorted
    margin = (images[:, 0] * masks[0]).sum((1, 2)) - (images[:, 0] * masks[1]).sum((1, 2))
    assert torch.allclose(result.margin_before, margin, atol=1e-4)
    assert torch.allclose(logit_margin(model, images, a, b), margin, atol=1e-4)
    # At 50 % the whole left half goes: the margin loses all of class 0's evidence.
    assert torch.allclose(result.drop[:, 1], (images[:, 0] * masks[0]).sum((1, 2)), atol=1e-4)
    # At 10 % the ten highest-ranked left pixels go, by hand:
    flat = own.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :10]
    removed = images[:, 0].flatten(1).gather(1, flat).sum(1)
    assert torch.allclose(result.drop[:, 0], removed, atol=1e-4)
    expected_mean = (result.drop[:, 0] + result.drop[:, 1]) / 2  # trapezoid over one interval
    assert torch.allclose(result.mean_drop, expected_mean, atol=1e-5)
    assert len(result.rows()) == 4 and result.rows()[0][1]["k_percent"] == 50.0


def test_shared_evidence_leaves_the_margin_and_blur_fill_runs():
    model, images, masks = _setup()
    a, b = torch.zeros(4, dtype=torch.long), torch.full((4,), 2, dtype=torch.long)
    shared = (masks[0] * masks[2]).expand(4, -1, -1)  # top-left quadrant: evidence of both 0 and 2
    unique = (masks[0] * (1 - masks[2])).expand(4, -1, -1)  # bottom-left: class 0's alone
    by_shared = contrastive_drop(model, images, shared, a, b, k_percent=(25,), fill="zero")
    by_unique = contrastive_drop(model, images, unique, a, b, k_percent=(25,), fill="zero")
    assert torch.allclose(by_shared.drop, torch.zeros(4, 1), atol=1e-4)
    assert (by_unique.drop > 1.0).all()
    blurred = contrastive_drop(model, images, unique, a, b, k_percent=(5, 25), blur_kernel=3, blur_sigma=1.0)
    assert blurred.drop.shape == (4, 2) and torch.isfinite(blurred.drop).all()
    with pytest.raises(ValueError, match="percentages in"):
        contrastive_drop(model, images, unique, a, b, k_percent=(0,))
