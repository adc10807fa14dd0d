"""Metrics on saliency maps: pure functions on tensors (agreement, similarity, fidelity)."""

from .agreement import SPARSE_POLICIES, TIE_POLICIES, positive_pixels, top_count, top_mask, topk_agreement
from .fidelity import (FILLS, ConfidenceDrop, Curves, class_probability, confidence_drop,
                       deletion_insertion, remove_top, substrate)
from .contrastive import ContrastiveDrop, contrastive_drop, logit_margin
from .similarity import spearman, ssim

__all__ = ["SPARSE_POLICIES", "TIE_POLICIES", "positive_pixels", "top_count", "top_mask", "topk_agreement",
           "spearman", "ssim", "FILLS", "ConfidenceDrop", "Curves", "class_probability", "confidence_drop",
           "deletion_insertion", "remove_top", "substrate", "ContrastiveDrop", "contrastive_drop", "logit_margin"]
