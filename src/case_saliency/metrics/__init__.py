"""Metrics on saliency maps: pure functions on tensors (agreement, similarity, fidelity), and the
statistics of their results (``metrics.stats``: NumPy and SciPy only).

The names below import lazily (PEP 562), so ``metrics.stats`` (what ``summarize`` and ``report``
need) is importable without torch."""

# ruff: noqa: F401  (the TYPE_CHECKING imports are for type checkers; __all__ is built from _EXPORTS)
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

# The public names and the module each one comes from.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["SPARSE_POLICIES", "TIE_POLICIES", "positive_pixels", "top_count", "top_mask",
                     "topk_agreement"], "agreement"),
    **dict.fromkeys(["FILLS", "ConfidenceDrop", "Curves", "class_probability", "confidence_drop",
                     "deletion_insertion", "remove_top", "substrate", "Road", "road",
                     "noisy_linear_imputation"], "fidelity"),
    **dict.fromkeys(["ContrastiveDrop", "contrastive_drop", "logit_margin"], "contrastive"),
    **dict.fromkeys(["spearman", "ssim"], "similarity"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:
    from .agreement import SPARSE_POLICIES, TIE_POLICIES, positive_pixels, top_count, top_mask, topk_agreement
    from .fidelity import (FILLS, ConfidenceDrop, Curves, class_probability, confidence_drop,
                           Road, deletion_insertion, noisy_linear_imputation, remove_top, road, substrate)
    from .contrastive import ContrastiveDrop, contrastive_drop, logit_margin
    from .similarity import spearman, ssim
