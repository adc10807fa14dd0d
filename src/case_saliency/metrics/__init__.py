"""Metrics on saliency maps: pure functions on tensors (agreement, similarity, fidelity)."""

from .agreement import top_count, top_mask, topk_agreement

__all__ = ["top_count", "top_mask", "topk_agreement"]
