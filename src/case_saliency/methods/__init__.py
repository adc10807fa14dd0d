"""Saliency methods. Each is a small rule on top of the engine (or, for perturbation and gradient
methods, its own short loop), registered by name in ``METHODS``."""

from .base import (METHODS, CAMMethod, ClassRequest, RawMaps, SaliencyMethod, get_method, lookup_method, method_class,
                   method_names, register)
from .case import CASE, channel_weight_bases, remove_projection
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
from .many import explain_many, explain_shared

__all__ = [
    "METHODS", "CAMMethod", "SaliencyMethod", "get_method", "method_class", "method_names", "lookup_method",
    "register", "ClassRequest", "RawMaps", "CASE", "remove_projection", "channel_weight_bases",
    "FinerCAM", "GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM",
]
__all__ += ["AblationCAM", "EigenCAM", "GuidedGradCAM", "InputXGradient", "IntegratedGradients", "RandomMap",
            "Saliency", "ScoreCAM", "SmoothGrad", "explain_many", "explain_shared"]
