"""Metrics: hand-computed agreement cases (ties, constant maps, signed maps), Spearman against
SciPy, SSIM against scikit-image, and the fidelity perturbations checked pixel by pixel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from skimage.metrics import structural_similarity

from case_saliency.metrics import (confidence_drop, deletion_insertion, positive_pixels, remove_top, spearman, ssim,
                                   substrate, top_count, top_mask, topk_agreement)


def grid(rows):
    return torch.tensor(rows, dtype=torch.float32)


# 4x4 maps, k = 25% -> n = 4 pixels.
A = grid([[9, 8, 7, 6], [5, 4, 3, 2], [1, 0, 0, 0], [0, 0, 0, 0]])  # top 4: (0,0) (0,1) (0,2) (0,3)


def test_top_count_floor():
    assert top_count(224, 224, 5.0) == 2508  # the paper's 2,508 of 224x224
    assert top_count(4, 4, 25.0) == 4
    assert top_count(4, 4, 10.0) == 1  # floor(1.6)
    assert top_count(4, 4, 1.0) == 1  # at least one pixel
    with pytest.raises(ValueError, match="percentage"):
        top_count(4, 4, 0.0)


def test_agreement_hand_computed():
    same = topk_agreement(A, A, 25.0)
    flipped = topk_agreement(A, A.flip(0), 25.0)  # top row becomes the bottom row: no overlap
    half = grid([[9, 8, 0, 0], [7, 6, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])  # top 4: (0,0) (0,1) (1,0) (1,1)
    assert same.item() == 100.0
    assert flipped.item() == 0.0
    assert topk_agreement(A, half, 25.0).item() == 50.0  # shares (0,0) and (0,1): 2 of 4
    # at k = 50% (8 pixels) A's set is rows 0-1; half has only 5 positive pixels. The paper's
    # definition ("pad") fills half's set with the first 3 zeros in reading order, (0,2) (0,3)
    # (1,2): all but (3,3) fall inside rows 0-1 -> 7/8, most of it agreement on padding.
    assert topk_agreement(A, half, 50.0, sparse="pad").item() == 87.5
    # The default counts positive pixels only: shared (0,0) (0,1) (1,0) (1,1) of max(8, 5) -> 4/8.
    assert topk_agreement(A, half, 50.0).item() == 50.0
    assert positive_pixels(torch.stack([A, half])).tolist() == [9, 5]


def test_agreement_ties_by_position():
    # One clear top pixel, then a plateau of five 3s; n = 4 takes the 5 and the first three 3s
    # in row-major order: (1,1), (1,3), (2,0).
    plateau = grid([[0, 0, 0, 0], [0, 3, 5, 3], [3, 3, 0, 3], [0, 0, 0, 0]])
    mask = top_mask(plateau[None], 25.0)[0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    for r, c in [(1, 1), (1, 2), (1, 3), (2, 0)]:
        expected[r, c] = True
    assert torch.equal(mask, expected)
    other = grid([[0, 0, 0, 0], [0, 0, 9, 0], [0, 8, 0, 7], [0, 0, 0, 6]])  # top 4: (1,2) (2,1) (2,3) (3,3)
    # index policy: shared = (1,2) only -> 25%
    assert topk_agreement(plateau, other, 25.0).item() == 25.0
    # inclusive policy: plateau's set is the 5 and all five 3s (6 pixels); shared (1,2) (2,1) (2,3)
    assert topk_agreement(plateau, other, 25.0, ties="inclusive").item() == pytest.approx(300 / 6)


def test_agreement_constant_maps_are_nan():
    zero, flat = torch.zeros(4, 4), torch.full((4, 4), 0.7)
    negative = -A - 1  # all negative: all zero after ReLU
    assert math.isnan(topk_agreement(zero, zero, 5.0).item())  # the public code would say 100%
    assert math.isnan(topk_agreement(A, flat, 5.0).item())
    assert math.isnan(topk_agreement(negative, A, 25.0).item())
    # signed ranking keeps the negative map's order: its top 4 are the least negative = bottom rows
    # (values -1: (2,1) (2,2) (2,3) (3,0)), none in A's top row
    assert topk_agreement(negative, A, 25.0, signed=True, sparse="pad").item() == 0.0
    assert topk_agreement(negative, -A, 25.0, signed=True, sparse="pad").item() == 100.0
    # Counting positive pixels only, the all-negative map has an empty top set: no agreement with A,
    # and none defined with another map without positive pixels.
    assert topk_agreement(negative, A, 25.0, signed=True).item() == 0.0
    assert math.isnan(topk_agreement(negative, -A - 2, 25.0, signed=True).item())


def blob(top: int, left: int, size: int = 10, shape: int = 224) -> torch.Tensor:
    image = torch.zeros(shape, shape)
    image[top:top + size, left:left + size] = torch.linspace(1.0, 2.0, size * size).view(size, size)
    return image


def test_sparse_maps_cannot_agree_on_padding():
    # Two maps with disjoint 100-pixel blobs: n = 2508 at 5 %, so 2408 pixels of each top set are
    # padding. The paper's definition lets the shared padding (the first zero pixels in reading
    # order) count as agreement: 96 %. The default does not.
    a, b = blob(100, 100), blob(150, 30)
    assert positive_pixels(a).item() == positive_pixels(b).item() == 100
    padded = topk_agreement(a, b, 5.0, sparse="pad").item()
    assert padded > 95.0
    assert topk_agreement(a, b, 5.0).item() == 0.0
    assert topk_agreement(a, a.clone(), 5.0).item() == 100.0  # identical sparse maps still agree fully
    # A sparse blob inside a full map's top set: its 100 pixels of the larger set's 2508.
    full = torch.rand(224, 224, generator=torch.Generator().manual_seed(0))
    full[100:110, 100:110] += 5
    assert topk_agreement(a, full, 5.0).item() == pytest.approx(100 * 100 / 2508)
    # Maps with at least n positive pixels give the paper's number under both policies.
    other = torch.rand(224, 224, generator=torch.Generator().manual_seed(1))
    assert topk_agreement(full, other, 5.0).item() == topk_agreement(full, other, 5.0, sparse="pad").item()


def test_tie_policies_reverse_and_authors():
    # A sparse map: 30 positive pixels, so the 5 % top set of a 32x32 map (51 pixels) ends in 21 zeros.
    g = torch.Generator().manual_seed(2)
    sparse_map = torch.zeros(32, 32)
    sparse_map.view(-1)[torch.randperm(1024, generator=g)[:30]] = torch.rand(30, generator=g) + 0.1
    flat = sparse_map.flatten().numpy()
    n = top_count(32, 32, 5.0)

    def members(mask):
        return set(np.flatnonzero(mask.flatten().numpy()))

    index = top_mask(sparse_map[None], 5.0, sparse="pad")[0]
    reverse = top_mask(sparse_map[None], 5.0, ties="reverse", sparse="pad")[0]
    authors = top_mask(sparse_map[None], 5.0, ties="authors", sparse="pad")[0]
    assert members(index) == set(np.argsort(-flat, kind="stable")[:n])  # first of equal pixels first
    assert members(reverse) == set(np.argsort(flat, kind="stable")[::-1][:n])  # last of equal pixels first
    assert members(authors) == set(np.argsort(flat.astype(np.float32))[::-1][:n])  # the authors' call, literally
    zeros_index = sorted(members(index) - set(np.flatnonzero(flat)))
    zeros_reverse = sorted(members(reverse) - set(np.flatnonzero(flat)))
    assert zeros_index[-1] < 40 and zeros_reverse[0] > 1000  # the padding comes from opposite ends
    # Under the default sparse policy the padding, and so the tie policy, no longer matters here.
    for ties in ("index", "reverse", "authors", "inclusive"):
        assert members(top_mask(sparse_map[None], 5.0, ties=ties)[0]) == set(np.flatnonzero(flat))


def test_agreement_nan_pixels_count_as_zero():
    with_nan = A.clone()
    with_nan[0, 0] = float("nan")
    expected = A.clone()
    expected[0, 0] = 0
    assert topk_agreement(with_nan, A, 25.0).item() == topk_agreement(expected, A, 25.0).item() == 75.0


def test_agreement_batch_equals_pairs_and_reference():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 20, 30, generator=g).clamp_min(0.3)  # many tied values at 0.3
    b = torch.rand(6, 20, 30, generator=g)
    a[2] = 0.0  # a degenerate pair inside the batch
    batch = topk_agreement(a, b, 10.0)
    n = top_count(20, 30, 10.0)
    for i in range(6):
        single = topk_agreement(a[i], b[i], 10.0)
        assert torch.equal(batch[i], single) or (math.isnan(batch[i]) and math.isnan(single))
        if i == 2:
            assert math.isnan(batch[i])
            continue
        # Reference in NumPy: stable argsort of the negated values = descending, ties by position.
        sa = set(np.argsort(-a[i].flatten().numpy(), kind="stable")[:n])
        sb = set(np.argsort(-b[i].flatten().numpy(), kind="stable")[:n])
        assert batch[i].item() == pytest.approx(100 * len(sa & sb) / n)


def test_agreement_shape_errors():
    with pytest.raises(ValueError, match="differ"):
        topk_agreement(torch.rand(2, 4, 4), torch.rand(2, 4, 5))
    with pytest.raises(ValueError, match="ties"):
        topk_agreement(torch.rand(2, 4, 4), torch.rand(2, 4, 4), ties="random")
    with pytest.raises(ValueError, match="sparse"):
        topk_agreement(torch.rand(2, 4, 4), torch.rand(2, 4, 4), sparse="ignore")


def test_spearman_equals_scipy_with_ties():
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(4, 12, 15, generator=g) * 5).round()  # heavy ties
    b = (a + torch.rand(4, 12, 15, generator=g) * 3).round()
    ours = spearman(a, b)
    for i in range(4):
        ref = sps.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert math.isnan(spearman(torch.zeros(1, 5, 5), torch.rand(1, 5, 5)).item())


def test_ssim_equals_scikit_image():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(3, 28, 33, generator=g)
    b = (a + 0.3 * torch.rand(3, 28, 33, generator=g)) * 4.0 + 1.0  # another scale: normalised first
    ours = ssim(a, b)
    for i in range(3):
        x, y = a[i].double().numpy(), b[i].double().numpy()
        x = (x - x.min()) / (x.max() - x.min())
        y = (y - y.min()) / (y.max() - y.min())
        ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)
    assert ssim(a, a)[0].item() == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(ssim(torch.zeros(1, 20, 20), a[:1, :20, :20]).item())


class PixelSum(torch.nn.Module):
    """Logits (B, 2): [sum of channel 0, 0]: removing bright pixels lowers class 0's probability."""

    def forward(self, x):
        s = x[:, 0].flatten(1).sum(1) / 10.0
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_confidence_drop_by_hand():
    images = torch.ones(1, 3, 4, 6)
    maps = torch.zeros(1, 4, 6)
    maps[0, 0, :] = torch.arange(6, 0, -1)  # the first row (6 pixels, 25%) is the most salient
    removed = remove_top(images, maps, 25.0)
    expected = images.clone()
    expected[:, :, 0, :] = 0  # the row, not the transposed column
    assert torch.equal(removed, expected)
    model = PixelSum()
    drop = confidence_drop(model, images, maps, torch.tensor([0]), 25.0)
    p0 = torch.softmax(torch.tensor([2.4, 0.0]), 0)[0]
    p1 = torch.softmax(torch.tensor([1.8, 0.0]), 0)[0]
    assert drop.prob_before.item() == pytest.approx(p0.item(), abs=1e-6)
    assert drop.prob_after.item() == pytest.approx(p1.item(), abs=1e-6)
    assert drop.drop_absolute.item() == pytest.approx((p0 - p1).item(), abs=1e-6)
    assert drop.drop_relative.item() == pytest.approx(((p0 - p1) / p0).item(), abs=1e-6)
    # class 1 gains probability: its absolute drop is negative, its relative drop clipped to 0
    gain = confidence_drop(model, images, maps, torch.tensor([1]), 25.0)
    assert gain.drop_absolute.item() < 0 and gain.drop_relative.item() == 0.0


def test_fills():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 16, 16, generator=g)
    assert torch.equal(substrate(images, "zero"), torch.zeros_like(images))
    mean = substrate(images, "mean")
    assert torch.allclose(mean[:, :, 5, 7], images.mean(dim=(-2, -1)))
    blurred = substrate(images, "blur")
    assert blurred.shape == images.shape and blurred.std() < images.std()
    with pytest.raises(ValueError, match="fill"):
        substrate(images, "noise")


def test_deletion_insertion_curves():
    g = torch.Generator().manual_seed(4)
    images = torch.rand(3, 3, 8, 8, generator=g) + 0.5
    maps = torch.rand(3, 8, 8, generator=g)
    model = PixelSum()
    classes = torch.tensor([0, 0, 1])
    curves = deletion_insertion(model, images, maps, classes, steps=4, batch_size=5)
    one_at_a_time = deletion_insertion(model, images, maps, classes, steps=4, batch_size=1)
    assert torch.allclose(curves.deletion, one_at_a_time.deletion) and torch.allclose(curves.insertion,
                                                                                     one_at_a_time.insertion)
    probs = model(images).softmax(1).gather(1, classes[:, None])[:, 0]
    assert torch.allclose(curves.deletion[:, 0], probs, atol=1e-6)  # nothing removed yet
    assert torch.allclose(curves.insertion[:, -1], probs, atol=1e-6)  # everything revealed
    # the point at 50% deletion equals the confidence drop at k = 50
    drop = confidence_drop(model, images, maps, classes, 50.0)
    assert torch.allclose(curves.deletion[:, 2], drop.prob_after, atol=1e-6)
    # AUC = trapezoid rule over fractions 0, .25, .5, .75, 1
    ref = np.trapezoid(curves.deletion.numpy(), dx=0.25, axis=1)
    assert np.allclose(curves.deletion_auc.numpy(), ref, atol=1e-6)
    # class 0 loses probability monotonically as bright pixels go (logit = sum / 10)
    assert (curves.deletion[:2].diff(dim=1) <= 1e-7).all()
