"""case-saliency: class-sensitive saliency maps (CASE) and the diagnostics that tell whether a
saliency method separates classes at all.

Layers, each importing only those before it: ``core`` (capture, layers, targets, contrast, maps) <-
``methods`` <- ``metrics`` <- ``models`` / ``data`` <- ``runs`` / ``workflows`` <- ``report`` <- ``cli``.
The package root exports what a user needs to run the diagnostic from Python and what the author of
a new method needs; it imports nothing above ``runs``.

Examples:
    >>> from case_saliency import DiagnoseSettings, load_model, open_dataset, run_diagnose  # doctest: +SKIP
    >>> run = run_diagnose(load_model("efficientnet_lite0"), open_dataset("samples"), "runs/lite0",
    ...                    DiagnoseSettings(methods=("gradcam", "case"), n=0))  # doctest: +SKIP

The names below import lazily (PEP 562): ``import case_saliency`` costs no torch import, so the
command line's ``--help`` and modules that need no tensors stay fast.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are for type checkers; __all__ is built from _EXPORTS)
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .core.lazy import lazy_exports

try:
    __version__ = version("case-saliency")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# The public names and the module each one comes from: the one list of the package's exports.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["ActivationCapture", "Capture", "eval_mode"], "core.capture"),
    **dict.fromkeys(["ClassifierNeighbours", "ConfusionNeighbours", "ContrastStrategy", "ExplicitContrast",
                     "NearestLogits", "RankContrast", "TopLogits"], "core.contrast"),
    **dict.fromkeys(["resolve_layer", "vit_reshape"], "core.layers"),
    "SaliencyMaps": "core.maps",
    **dict.fromkeys(["CaseSaliencyError", "NonFiniteInput"], "core.errors"),
    "resolve_targets": "core.targets",
    **dict.fromkeys(["CASE", "METHODS", "AblationCAM", "CAMMethod", "EigenCAM", "FinerCAM", "GradCAM",
                     "GradCAMPlusPlus", "GuidedGradCAM", "HiResCAM", "InputXGradient", "IntegratedGradients",
                     "LayerCAM", "RandomMap", "Saliency", "SaliencyMethod", "ScoreCAM", "SmoothGrad", "XGradCAM",
                     "explain_many", "get_method", "method_names", "register"], "methods"),
    **dict.fromkeys(["ClassRequest", "RawMaps"], "methods.base"),
    "topk_agreement": "metrics.agreement",
    **dict.fromkeys(["LoadedModel", "load_model"], "models"),
    "open_dataset": "data",
    **dict.fromkeys(["DiagnoseSettings", "FidelitySettings", "InvalidSettings", "RunSettings"], "runs.settings"),
    "RunDir": "runs.rundir",
    "run_diagnose": "runs.diagnose",
    "run_fidelity": "runs.fidelity",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names above resolve lazily
    from .core.capture import ActivationCapture, Capture, eval_mode
    from .core.contrast import (ClassifierNeighbours, ConfusionNeighbours, ContrastStrategy, ExplicitContrast,
                                NearestLogits, RankContrast, TopLogits)
    from .core.errors import CaseSaliencyError, NonFiniteInput
    from .core.layers import resolve_layer, vit_reshape
    from .core.maps import SaliencyMaps
    from .core.targets import resolve_targets
    from .methods import (CASE, METHODS, AblationCAM, CAMMethod, EigenCAM, FinerCAM, GradCAM, GradCAMPlusPlus,
                          GuidedGradCAM, HiResCAM, InputXGradient, IntegratedGradients, LayerCAM, RandomMap, Saliency,
                          SaliencyMethod, ScoreCAM, SmoothGrad, XGradCAM, explain_many, get_method, method_names,
                          register)
    from .data import open_dataset
    from .methods.base import ClassRequest, RawMaps
    from .metrics.agreement import topk_agreement
    from .models import LoadedModel, load_model
    from .runs.diagnose import run_diagnose
    from .runs.fidelity import run_fidelity
    from .runs.rundir import RunDir
    from .runs.settings import DiagnoseSettings, FidelitySettings, InvalidSettings, RunSettings
