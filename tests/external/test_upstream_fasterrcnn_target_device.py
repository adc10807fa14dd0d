# ruff: noqa  (vendored code, kept as upstream wrote it)
# Vendored from pytorch-grad-cam (MIT, see LICENSE here), commit 084273b3f30b54ad0c64cf8020a4337d979a66e0,
# tests/test_fasterrcnn_target_device.py. Changed: the import from case_saliency.compat, which has no detection targets: marked as a refusal (xfail).
"""Regression test: FasterRCNNBoxScoreTarget must not hardcode cuda/mps.

Mirrors the fix for SemanticSegmentationTarget (#546). The target must
inherit the device of the model outputs instead of assuming cuda/mps.
"""
import numpy as np
import pytest
import torch

try:
    from case_saliency.compat import FasterRCNNBoxScoreTarget
except ImportError:
    FasterRCNNBoxScoreTarget = None

pytestmark = pytest.mark.xfail(FasterRCNNBoxScoreTarget is None, strict=True, raises=TypeError,
                               reason="detection targets are refused by case_saliency.compat: its CAMs need (B, K) "
                                      "classifier outputs")


def test_target_inherits_output_device_cpu():
    target = FasterRCNNBoxScoreTarget(
        labels=[1],
        bounding_boxes=[np.array([0.0, 0.0, 10.0, 10.0], dtype=np.float32)],
    )
    outputs = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]], device="cpu"),
        "labels": torch.tensor([1], device="cpu"),
        "scores": torch.tensor([0.9], device="cpu"),
    }
    score = target(outputs)
    assert score.device.type == "cpu"
    assert score.item() > 0


def test_target_returns_zero_on_empty_boxes():
    target = FasterRCNNBoxScoreTarget(labels=[1], bounding_boxes=[np.zeros(4)])
    outputs = {
        "boxes": torch.zeros((0, 4), device="cpu"),
        "labels": torch.zeros((0,), dtype=torch.int64, device="cpu"),
        "scores": torch.zeros((0,), device="cpu"),
    }
    score = target(outputs)
    assert score.device.type == "cpu"
    assert score.item() == 0.0


def test_target_preserves_boxes_dtype():
    """box_iou requires both inputs to share dtype; the target must not
    silently upcast/downcast relative to model_outputs['boxes']."""
    target = FasterRCNNBoxScoreTarget(
        labels=[1],
        bounding_boxes=[np.array([0.0, 0.0, 10.0, 10.0], dtype=np.float64)],
    )
    outputs = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=torch.float64),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9], dtype=torch.float64),
    }
    score = target(outputs)
    assert score.dtype == torch.float64
