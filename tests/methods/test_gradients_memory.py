"""The gradient methods' memory budget: the per-image estimate of the activations a backward pass
keeps, the default budget (a share of the memory available), and Integrated Gradients' and
SmoothGrad's passes held within it without changing IG's maps."""

from __future__ import annotations

import torch
from torch import nn

import pytest

from case_saliency.methods.gradients import (MEMORY_SHARE, OVERHEAD, IntegratedGradients, SmoothGrad,
                                             available_memory, backward_bytes_per_image, default_memory_budget)


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


def test_the_per_image_estimate_counts_the_saved_activations():
    # A convolution saves its input (its weight is a parameter, not counted) and the ReLU its output:
    # 3 + 8 channels of H x W float32 per image; the pooling and the head save (1, 8) and (1, 8)-sized tensors.
    model = _small_cnn()
    for size in (16, 32):
        estimate = backward_bytes_per_image(model, torch.randn(1, 3, size, size))
        activations = (3 + 8) * size * size * 4
        assert activations * OVERHEAD <= estimate <= (activations + 1024) * OVERHEAD
    assert backward_bytes_per_image(model, torch.randn(4, 3, 16, 16)) == backward_bytes_per_image(
        model, torch.randn(1, 3, 16, 16))  # one image of the batch


def test_the_default_budget_is_a_share_of_the_memory_available():
    with open("/proc/meminfo") as handle:
        available = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    assert available_memory() == pytest.approx(available, rel=0.2)
    assert default_memory_budget() == pytest.approx(MEMORY_SHARE * available, rel=0.2)
    with pytest.raises(ValueError, match="max_memory"):
        IntegratedGradients(_small_cnn(), max_memory=0)


class _BatchSizes:
    """Records the batch size of every forward pass of a model."""

    def __init__(self, model: nn.Module):
        self.sizes: list[int] = []
        self.handle = model.register_forward_hook(lambda module, args, output: self.sizes.append(args[0].shape[0]))


def test_integrated_gradients_within_a_small_budget_gives_the_same_maps():
    model = _small_cnn()
    images = torch.randn(6, 3, 16, 16)
    per_image = backward_bytes_per_image(model, images[:1])
    unbounded = IntegratedGradients(model, n_steps=20, internal_batch_size=None, max_memory=2**40)(images)
    for copies in (1, 4, 9, 50):
        method = IntegratedGradients(model, n_steps=20, max_memory=copies * per_image)
        recorder = _BatchSizes(model)
        bounded = method(images)
        recorder.handle.remove()
        passes = recorder.sizes[2:]  # after the targets' forward and the one-image measurement
        assert max(passes) <= max(copies, 1) and sum(passes) == 6 * 20  # every point of every image, once
        torch.testing.assert_close(bounded, unbounded, rtol=1e-4, atol=1e-6)


def test_smoothgrad_keeps_its_batches_below_the_cap_and_cuts_them_above():
    model = _small_cnn()
    images = torch.randn(4, 3, 16, 16)
    per_image = backward_bytes_per_image(model, images[:1])
    roomy = SmoothGrad(model, samples=6, samples_batch_size=3, max_memory=2**40)
    recorder = _BatchSizes(model)
    first = roomy(images)
    assert set(recorder.sizes[2:]) == {4 * 3}  # the given batches: 4 images x 3 samples
    again = SmoothGrad(model, samples=6, samples_batch_size=3, max_memory=4 * 3 * per_image)(images)
    torch.testing.assert_close(again, first)  # the budget holds them: the same draws, the same maps
    recorder.sizes.clear()
    tight = SmoothGrad(model, samples=6, samples_batch_size=3, max_memory=2 * per_image)(images)
    recorder.handle.remove()
    assert max(recorder.sizes[2:]) <= 2 and sum(recorder.sizes[2:]) == 4 * 6
    assert torch.isfinite(tight).all() and tight.shape == first.shape


def test_an_enclosing_budget_replaces_the_default_and_a_method_budget_wins():
    from case_saliency.methods.gradients import memory_budget

    unbounded, given = IntegratedGradients(_small_cnn()), IntegratedGradients(_small_cnn(), max_memory=3e9)
    with memory_budget(5 * 10**6):
        assert default_memory_budget() == 5 * 10**6 == unbounded.memory_budget()
        with memory_budget(None):  # None: leaves the enclosing budget
            assert unbounded.memory_budget() == 5 * 10**6
        with memory_budget(2e6):
            assert unbounded.memory_budget() == 2 * 10**6
        assert unbounded.memory_budget() == 5 * 10**6 and given.memory_budget() == 3 * 10**9
        image = torch.randn(1, 3, 16, 16)
        assert unbounded.copies_per_pass(image) == 5 * 10**6 // backward_bytes_per_image(unbounded.model, image)
    assert unbounded.memory_budget() == pytest.approx(MEMORY_SHARE * available_memory(), rel=0.2)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="positive number of bytes"), memory_budget(bad):
            pass
