"""case-saliency: class-sensitive saliency maps (CASE) and the diagnostics that tell whether a
saliency method separates classes at all."""

from .capture import ActivationCapture, Capture
from .contrast import ConfusionNeighbours, ExplicitContrast, NearestLogits, TopLogits
from .layers import resolve_layer, vit_reshape
from .maps import SaliencyMaps
from .methods import (CASE, METHODS, FinerCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                      SaliencyMethod, XGradCAM, get_method)
from .targets import resolve_targets
from .methods import (AblationCAM, EigenCAM, GuidedGradCAM, InputXGradient, IntegratedGradients,  # baselines
                      RandomMap, Saliency, ScoreCAM, SmoothGrad)

__version__ = "0.1.0"

__all__ = [
    "ActivationCapture", "Capture", "ConfusionNeighbours", "ExplicitContrast", "NearestLogits",
    "TopLogits", "resolve_layer", "vit_reshape", "SaliencyMaps", "CASE", "METHODS", "FinerCAM",
    "GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "SaliencyMethod", "XGradCAM", "get_method",
    "resolve_targets", "__version__",
]
__all__ += ["AblationCAM", "EigenCAM", "GuidedGradCAM", "InputXGradient", "IntegratedGradients", "RandomMap",
            "Saliency", "ScoreCAM", "SmoothGrad"]
