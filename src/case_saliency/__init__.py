"""case-saliency: class-sensitive saliency maps (CASE) and the diagnostics that tell whether a
saliency method separates classes at all.

Layers, each importing only those before it: ``core`` (engine, layers, targets, contrast, maps) <-
``methods`` <- ``metrics`` <- ``models`` / ``data`` <- ``runs`` / ``workflows`` <- ``report`` <- ``cli``.
"""

from . import _moved
from .core.capture import ActivationCapture, Capture
from .core.errors import CaseSaliencyError
from .core.contrast import ConfusionNeighbours, ExplicitContrast, NearestLogits, TopLogits
from .core.layers import resolve_layer, vit_reshape
from .core.maps import SaliencyMaps
from .core.targets import resolve_targets
from .methods import (CASE, METHODS, AblationCAM, EigenCAM, FinerCAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM,
                      HiResCAM, InputXGradient, IntegratedGradients, LayerCAM, RandomMap, Saliency, SaliencyMethod,
                      ScoreCAM, SmoothGrad, XGradCAM, get_method)

_moved.install()

__version__ = "0.1.0"

__all__ = [
    "ActivationCapture", "Capture", "ConfusionNeighbours", "ExplicitContrast", "NearestLogits",
    "TopLogits", "resolve_layer", "vit_reshape", "SaliencyMaps", "CASE", "METHODS", "FinerCAM",
    "GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "SaliencyMethod", "XGradCAM", "get_method",
    "resolve_targets", "AblationCAM", "EigenCAM", "GuidedGradCAM", "InputXGradient", "IntegratedGradients",
    "RandomMap", "Saliency", "ScoreCAM", "SmoothGrad", "CaseSaliencyError", "__version__",
]
