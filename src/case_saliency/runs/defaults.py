"""Defaults of the run commands, importable without torch: the command line shows them in its
``--help`` without loading the library."""

from __future__ import annotations

# The methods a diagnose or fidelity run compares when none are named: the Grad-CAM family, Finer-CAM
# and CASE.
DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case")
