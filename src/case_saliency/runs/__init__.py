"""Dataset-level runs: the class-sensitivity diagnostic and the fidelity test, streamed row by row
to a run directory (docs/run-format.md) and resumable after being killed at any point.

The names below import lazily (PEP 562), so ``runs.defaults`` is readable without torch."""

# ruff: noqa: F401  (the TYPE_CHECKING imports are for type checkers; __all__ is built from _EXPORTS)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names and the module each one comes from.
_EXPORTS: dict[str, str] = {
    "DEFAULT_METHODS": "defaults",
    **dict.fromkeys(["as_bundle", "select_sample"], "common"),
    "run_diagnose": "diagnose",
    "run_fidelity": "fidelity",
    **dict.fromkeys(["DIAGNOSE_COLUMNS", "FIDELITY_COLUMNS", "ResultsTable"], "store"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "ModelBundle":  # deprecated: folded into LoadedModel
        from . import common

        return common.ModelBundle
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from .common import as_bundle, select_sample
    from .defaults import DEFAULT_METHODS
    from .diagnose import run_diagnose
    from .fidelity import run_fidelity
    from .store import DIAGNOSE_COLUMNS, FIDELITY_COLUMNS, ResultsTable
