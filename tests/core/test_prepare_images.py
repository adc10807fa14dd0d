"""prepare_images' finite check: a sum as the fast path, the exact mask whenever the sum is not finite
(so large finite pixels whose sum overflows pass, and opposite infinities that could cancel do not)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from case_saliency.core.capture import all_finite, prepare_images
from case_saliency.core.errors import NonFiniteInput


def test_finite_values_whose_sum_overflows_pass_and_every_bad_value_is_caught():
    model = nn.Conv2d(3, 2, 1)
    huge = torch.full((2, 3, 4, 4), 3e38)  # finite, but the sum overflows to inf
    assert all_finite(huge) and prepare_images(huge, model).shape == huge.shape
    half = torch.full((1, 3, 64, 64), 60000.0, dtype=torch.float16)  # float16 sums overflow early
    assert all_finite(half)
    for bad in (float("nan"), float("inf"), -float("inf")):
        images = torch.zeros(3, 3, 4, 4)
        images[2, 1, 0, 0] = bad
        assert not all_finite(images)
        with pytest.raises(NonFiniteInput, match=r"image \[2\]"):
            prepare_images(images, model)
    cancelling = torch.zeros(2, 3, 4, 4)
    cancelling[0, 0, 0, 0], cancelling[1, 0, 0, 0] = float("inf"), -float("inf")  # sum: nan
    with pytest.raises(NonFiniteInput, match=r"images \[0, 1\]"):
        prepare_images(cancelling, model)
