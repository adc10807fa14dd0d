"""Saliency methods. Each is a small rule on top of the engine (or, for perturbation and gradient
methods, its own short loop), registered by name in ``METHODS``."""

from .base import METHODS, CAMMethod, SaliencyMethod, get_method, method_class, register
from .case import CASE, remove_projection
from .finercam import FinerCAM
from .gradcam import GradCAM
from .gradcam_plusplus import GradCAMPlusPlus
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .xgradcam import XGradCAM
from .ablationcam import AblationCAM  # baselines: perturbation, controls, Captum adapters
from .eigencam import EigenCAM
from .gradients import GuidedGradCAM, InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from .random_map import RandomMap
from .scorecam import ScoreCAM

__all__ = [
    "METHODS", "CAMMethod", "SaliencyMethod", "get_method", "method_class", "register", "CASE", "remove_projection",
    "FinerCAM", "GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM",
]
__all__ += ["AblationCAM", "EigenCAM", "GuidedGradCAM", "InputXGradient", "IntegratedGradients", "RandomMap",
            "Saliency", "ScoreCAM", "SmoothGrad"]
