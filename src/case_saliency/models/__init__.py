"""The model zoo: ``load_model(name_or_path, weights=None) -> LoadedModel`` (see ``loader``)."""

from .checkpoint import CHECKPOINT_FORMAT
from .loader import (OFFLINE_MODELS, PAPER_MODELS, LoadedModel, UnsafeCheckpoint, load_model, safe_torch_load,
                     sha256_file)
from .preprocess import Preprocess

__all__ = ["LoadedModel", "load_model", "Preprocess", "UnsafeCheckpoint", "safe_torch_load", "OFFLINE_MODELS",
           "PAPER_MODELS", "CHECKPOINT_FORMAT", "sha256_file"]
