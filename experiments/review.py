"""The reviewed study (issue 25): what it runs, full and ``--quick``.

The primary endpoint, stated before any table: the mean paired difference in top-1/top-2 agreement at
the top 5 % between CASE and Grad-CAM, on the same images, under the diagnostic's leave-pair-out
contrast (a contrast set never holds the other compared class, so no pair is circular); lower is
more class-specific. Decided by the paired two-sided t-test with Holm's correction across the
methods of a model (``case_saliency.runs.summary.compare_with_baseline``), with its bootstrap 95 %
interval, equivalence within ±5 points by TOST, and the minimum detectable difference at 80 % power.

Steps:

- Lite0/1/2 (ImageNet) on the 14 photos: the diagnostic (every CAM, the gradient methods, the random
  control; contrast ``leave-pair-out:classifier:1``: no confusion matrix exists offline for ImageNet)
  at k = 5, 10, 20; class-contrastive fidelity (blur fill, k sweep 5/10/20/50, curves at 50) and the
  zero-fill drop at 50 % (secondary). The primary set is the in-distribution photos
  (:data:`IN_DISTRIBUTION`); the out-of-distribution ones (:data:`OUT_OF_DISTRIBUTION`) are reported apart.
- The Fashion-MNIST families x 5 seeds (:data:`FAMILY_SEEDS`), trained with ``--holdout 5000``: CASE's contrast is the
  confusion neighbours from the held-out training images (``leave-pair-out:confusion:1``), never
  from the test images the diagnostic samples.
- Lite0 fine-tuned on Fashion-MNIST x 5 seeds (:data:`FINETUNE_SEEDS`) (``--holdout`` is for the families only, so its
  contrast is the classifier neighbours).
- The planted-patch models, seeds 0, 1, 2 (``case-saliency planted``).
- Sanity checks (``case-saliency sanity``): cascading randomisation on Lite0 (photos) and on the ResNet
  family (seed 0, with the model trained on shuffled labels).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .studies import (
    FAMILIES,
    INPUT_GRADIENT_SAMPLES,
    LITES,
    SEEDS,
    DiagnoseOptions,
    FidelityOptions,
    PlantedOptions,
    SanityOptions,
    Step,
    Study,
    TrainOptions,
    model_path,
    split_runs,
)

PRIMARY_K = 5.0
MARGIN = 5.0  # equivalence margin, agreement points
# The 14 offline photos: those of ImageNet-like scenes and objects, and those out of its distribution
# (coins, the moon, the Hubble deep field, a retina, histology, a clock face, an astronaut portrait).
IN_DISTRIBUTION = ("skimage/chelsea", "skimage/coffee", "skimage/rocket", "skimage/stereo_motorcycle",
                   "skimage/camera", "sklearn/china", "sklearn/flower")
OUT_OF_DISTRIBUTION = ("skimage/coins", "skimage/moon", "skimage/hubble_deep_field", "skimage/retina",
                       "skimage/immunohistochemistry", "skimage/clock", "skimage/astronaut")
PHOTO_SETS = {"in-distribution": IN_DISTRIBUTION, "out-of-distribution": OUT_OF_DISTRIBUTION}

CAMS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam", "ablationcam", "finercam", "case",
        "eigencam")
GRADIENTS = ("saliency", "inputxgradient", "integrated_gradients", "smoothgrad", "guided_gradcam")
CONTROLS = ("random",)
FIDELITY_METHODS = ("gradcam", "gradcam++", "layercam", "ablationcam", "finercam", "case", "eigencam", "random")
CONTRASTIVE_KS = (5.0, 10.0, 20.0, 50.0)
PLANTED_SEEDS = (0, 1, 2)
PLANTED_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "ablationcam", "finercam", "case",
                   "eigencam", "random")
SANITY_METHODS = ("gradcam", "gradcam++", "layercam", "finercam", "case", "random")
HOLDOUT = 5000
QUICK_HOLDOUT = 500
# Seeds of the reviewed study: five per Fashion-MNIST family and for the fine-tuned Lite0 (a fine-tuned seed
# costs ~19 CPU minutes here: training and the 200-image fidelity sweep).
FAMILY_SEEDS = SEEDS
FINETUNE_SEEDS = SEEDS


def _quick_training(options: TrainOptions) -> TrainOptions:
    """The quick study's training: one epoch on 3,000 training images (500 of them held out), 500 test images."""
    return replace(options, epochs=1, train_limit=3000, test_limit=500)
LPO_CLASSIFIER = "leave-pair-out:classifier:1"
LPO_CONFUSION = "leave-pair-out:confusion:1"


def _fidelity_sweep(stem: str, model: str, data: str, methods: tuple[str, ...], contrast: str, batch: int, n: int,
                    ks: tuple[float, ...], curves: int, correct_only: bool, confusion: str = "test") -> list[Step]:
    """Class-contrastive fidelity: one blur-fill run per k (deletion/insertion curves in the k = 50 run),
    and the zero-fill drop at 50 % beside it (the paper's measure, secondary)."""
    steps = []
    for k in ks:
        options = FidelityOptions(contrast, batch, "blur", curves if k == 50.0 else 0, correct_only, k, confusion)
        steps.append(Step(f"{stem}/fidelity-blur-k{k:g}", model, options, data, methods, n))
    steps.append(Step(f"{stem}/fidelity-zero-k50", model, FidelityOptions(contrast, batch, "zero", 0, correct_only,
                                                                          50.0, confusion), data, methods, n))
    return steps


def review(out: Path, quick: bool = False) -> Study:
    """The reviewed study's steps (see the module docstring); ``quick``: Lite0 on the photos with four
    methods, one quickly trained ResNet with its held-out matrix and its shuffled-label twin, three
    tiny planted models and short sanity cascades (about a minute on one core)."""
    steps: list[Step] = []
    lites = ("efficientnet_lite0",) if quick else LITES
    photo_methods = ("gradcam", "gradcam++", "layercam", "case", "random") if quick else (*CAMS, *GRADIENTS,
                                                                                         *CONTROLS)
    for lite in lites:
        steps.append(Step(f"{lite}/diagnose", lite, DiagnoseOptions(LPO_CLASSIFIER, 7, (5.0, 10.0) if quick else
                                                                    (5.0, 10.0, 20.0), 14), "samples", photo_methods))
        steps += _fidelity_sweep(lite, lite, "samples", ("gradcam", "case", "random") if quick else FIDELITY_METHODS,
                                 "classifier:1", 7, 0, (5.0, 50.0) if quick else CONTRASTIVE_KS, 0 if quick else 10,
                                 False)
    seeds = (0,) if quick else FAMILY_SEEDS
    families = ("resnet",) if quick else FAMILIES
    family_methods = ("gradcam", "gradcam++", "layercam", "case", "random") if quick else (*CAMS, *CONTROLS)
    for seed in seeds:
        for arch in families:
            options = TrainOptions(seed, holdout=QUICK_HOLDOUT if quick else HOLDOUT)
            if quick:
                options = _quick_training(options)
            model = str(model_path(out, arch, seed))
            steps.append(Step(str(model_path(out, arch, seed).relative_to(out)), arch, options))
            stem = f"{arch}-seed{seed}"
            steps.append(Step(f"{stem}/diagnose", model, DiagnoseOptions(LPO_CONFUSION, 100, (5.0, 10.0, 20.0), 32,
                                                                         "heldout"),
                              "fashion-mnist:test", family_methods, 100 if quick else 1200))
            steps += _fidelity_sweep(stem, model, "fashion-mnist:test",
                                     ("gradcam", "case", "random") if quick else FIDELITY_METHODS, "confusion:1", 100,
                                     50 if quick else 300, (5.0, 50.0) if quick else CONTRASTIVE_KS,
                                     2 if quick else 10, True, "heldout")
    if not quick:
        for seed in FINETUNE_SEEDS:  # Lite0 fine-tuned: no held-out matrix (families only), classifier neighbours
            model = str(model_path(out, "efficientnet_lite0", seed))
            steps.append(Step(str(model_path(out, "efficientnet_lite0", seed).relative_to(out)), "efficientnet_lite0",
                              TrainOptions(seed, pretrained=True)))
            stem = f"efficientnet_lite0-seed{seed}"
            affordable = tuple(m for m in (*CAMS, *CONTROLS) if m != "scorecam")
            steps.append(Step(f"{stem}/diagnose", model, DiagnoseOptions(LPO_CLASSIFIER, 50, (5.0, 10.0, 20.0), 16),
                              "fashion-mnist:test", affordable, 1000))
            steps += _fidelity_sweep(stem, model, "fashion-mnist:test", FIDELITY_METHODS, "classifier:1", 50, 200,
                                     CONTRASTIVE_KS, 10, True)
    planted = PlantedOptions(0, 32, 8, 40, 1000) if quick else PlantedOptions(0)
    for seed in PLANTED_SEEDS:
        steps.append(Step(f"planted/seed{seed}", "planted", replace(planted, seed=seed), "fashion-mnist:train",
                          ("gradcam", "layercam", "case", "random") if quick else PLANTED_METHODS))
    sanity_methods = ("gradcam", "case") if quick else SANITY_METHODS
    steps.append(Step("sanity/efficientnet_lite0", "efficientnet_lite0",
                      SanityOptions(4 if quick else 14, 0, 5.0, 2 if quick else 12), "samples", sanity_methods))
    shuffled = model_path(out, "resnet", 0).with_name("fashion-resnet-seed0-shuffled.pt")
    shuffled_options = TrainOptions(0, holdout=QUICK_HOLDOUT if quick else HOLDOUT, shuffle_labels=True)  # same images
    if quick:
        shuffled_options = _quick_training(shuffled_options)
    steps.append(Step(str(shuffled.relative_to(out)), "resnet", shuffled_options))
    steps.append(Step("sanity/resnet-seed0", str(model_path(out, "resnet", 0)),
                      SanityOptions(16 if quick else 64, 0, 5.0, 3 if quick else 12, str(shuffled.relative_to(out))),
                      "fashion-mnist:test", sanity_methods))
    notes = (f"Primary endpoint: CASE − Grad-CAM mean agreement at the top {PRIMARY_K:g}% under leave-pair-out, "
             "paired two-sided t-test, Holm across the methods of a model, bootstrap 95% interval, TOST within "
             f"±{MARGIN:g} points, minimum detectable difference at 80% power.",
             f"Photos: in-distribution {', '.join(p.split('/')[1] for p in IN_DISTRIBUTION)}; out of distribution "
             f"{', '.join(p.split('/')[1] for p in OUT_OF_DISTRIBUTION)}.",
             f"Fashion-MNIST families: --holdout {QUICK_HOLDOUT if quick else HOLDOUT}; the confusion contrast comes "
             "from the held-out images.")
    return Study("review", "The reviewed study: leave-pair-out, planted ground truth, sanity checks, contrastive "
                 "fidelity", split_runs(steps, {"-gradients": INPUT_GRADIENT_SAMPLES, "-scorecam": ("scorecam",)}),
                 LPO_CLASSIFIER, notes)
