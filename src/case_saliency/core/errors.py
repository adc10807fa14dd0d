"""The base of the library's own error classes.

Every error class case-saliency defines derives from ``CaseSaliencyError`` *and* keeps the builtin
base it had before (``ValueError``, ``RuntimeError``, ...), so ``except CaseSaliencyError`` catches
all of them and existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["CaseSaliencyError", "NonFiniteInput"]


class CaseSaliencyError(Exception):
    """Base class of the errors case-saliency raises on purpose (not of the builtin errors it also raises)."""


class NonFiniteInput(CaseSaliencyError, ValueError):
    """Images (or logits) that hold NaN or infinite values: no class can be chosen from them."""
