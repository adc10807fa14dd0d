"""Dataset-level runs: the class-sensitivity diagnostic and the fidelity test, streamed row by row
to a run directory (docs/run-format.md) and resumable after being killed at any point."""

from .common import DEFAULT_METHODS, as_bundle, select_sample
from .diagnose import run_diagnose
from .fidelity import run_fidelity
from .store import DIAGNOSE_COLUMNS, FIDELITY_COLUMNS, ResultsTable

__all__ = ["DEFAULT_METHODS", "as_bundle", "select_sample", "run_diagnose", "run_fidelity",
           "DIAGNOSE_COLUMNS",
           "FIDELITY_COLUMNS", "ResultsTable"]


def __getattr__(name: str) -> object:
    if name == "ModelBundle":  # deprecated: folded into LoadedModel
        from . import common

        return common.ModelBundle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
