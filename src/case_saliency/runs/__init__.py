"""Dataset-level runs: the class-sensitivity diagnostic, the fidelity test and the explain-many run,
streamed row by row to a run directory (docs/run-format.md) and resumable after being killed at any
point. A run kind is a plug-in (docs/run-kinds.md); ``RunDir`` is the one owner of a run directory.

The names below import lazily (PEP 562), so ``runs.settings`` and ``runs.rundir`` are readable without
torch."""

# ruff: noqa: F401  (the TYPE_CHECKING imports are for type checkers; __all__ is built from _EXPORTS)
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

# The public names and the module each one comes from.
_EXPORTS: dict[str, str] = {
    "DEFAULT_METHODS": "defaults",
    **dict.fromkeys(["DiagnoseSettings", "FidelitySettings", "InvalidSettings", "RunSettings"], "settings"),
    **dict.fromkeys(["DiagnoseRow", "FidelityRow", "Row"], "rows"),
    **dict.fromkeys(["RunDir", "RunLocked"], "rundir"),
    "RunDirError": "store",
    **dict.fromkeys(["RunKind", "RunOptions", "SettingsError", "register", "run_kind"], "runner"),
    "select_sample": "sampling",
    "run_diagnose": "diagnose",
    "run_fidelity": "fidelity",
    **dict.fromkeys(["ExplainManySettings", "run_explain_many"], "explain_many"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:
    from .defaults import DEFAULT_METHODS
    from .diagnose import run_diagnose
    from .runner import RunKind, RunOptions, SettingsError, register, run_kind
    from .explain_many import ExplainManySettings, run_explain_many
    from .fidelity import run_fidelity
    from .rows import DiagnoseRow, FidelityRow, Row
    from .rundir import RunDir, RunLocked
    from .sampling import select_sample
    from .settings import DiagnoseSettings, FidelitySettings, InvalidSettings, RunSettings
    from .store import RunDirError
