"""What each study runs: its models, data, methods, sample sizes and settings, full and ``--quick``.

A study is a list of ``Step`` values: train a checkpoint, compute a confusion matrix, or a diagnose /
fidelity run of the library (``case_saliency.runs``). ``run.py`` executes the steps (each resumes:
a finished step is skipped, a half-finished run continues where it stopped) and ``tables.py`` reads
the run directories back into the tables of docs/results.md.

Costs on the 2-core machine this was sized on (CPU seconds, 1 thread): a Fashion-MNIST family model
trains in ~300 s (vgg seed 1: 295 CPU s); an EfficientNet-Lite0 fine-tune in ~560 s (seed 0); a Lite0
forward pass costs ~16 ms at 112 px and ~60 ms at 224 px, and Score-CAM needs one per channel of the
layer (1,280 at ``bn2``), so Score-CAM runs on the Lite models only where stated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

FAMILIES = ("resnet", "densenet", "vgg")
SEEDS = (0, 1, 2, 3, 4)
LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
K_PERCENT = (5.0, 10.0, 20.0)
THRESHOLDS = (50.0, 70.0)
FIDELITY_K = 50.0

# Every method of the library, in the order of the tables. ``case`` is CASE with the study's
# model-level default contrast; the contrast variants and the contrastive CAMs follow.
BASE_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam", "ablationcam", "finercam",
                "case", "eigencam", "random", "saliency", "inputxgradient", "integrated_gradients", "smoothgrad",
                "guided_gradcam")
CONTRAST_KS = (1, 3, 5)
COSTLY = ("scorecam", "case:scorecam")  # one forward pass per channel of the layer
# What every seed after the first repeats (the CAMs the paper tests, Finer-CAM, CASE, the controls): the
# gradient methods (Captum) and HiResCAM / XGrad-CAM (equal to Grad-CAM at a pooled linear head) run on seed 0.
SEED_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam", "ablationcam", "finercam", "case", "eigencam", "random")
INPUT_GRADIENT_SAMPLES = ("integrated_gradients", "smoothgrad")  # 50 backward passes to the input per class


def contrast_variants(strategies: tuple[str, ...], default: str) -> list[str]:
    """``case(contrast=S:k)`` for each strategy and k in {1, 3, 5}, except the default (that is ``case``)."""
    specs = []
    for strategy in strategies:
        for k in CONTRAST_KS:
            contrast = f"{strategy}:{k}"
            if contrast != default:
                specs.append(f"case(contrast={contrast})")
    return specs


def contrastive_cams() -> list[str]:
    """CASE over the other channel-weight CAMs (``case:gradcam++``, ...), as the library registers them."""
    try:
        from case_saliency.methods import channel_weight_bases
    except ImportError:  # a library without contrastive variants
        return []
    return [f"case:{base}" for base in channel_weight_bases() if base != "gradcam"]


@dataclass(frozen=True)
class TrainOptions:
    """``case_saliency.workflows.training.train_fashion``'s settings of a train step (None: its default)."""

    kind: ClassVar[str] = "train"
    seed: int
    pretrained: bool = False
    epochs: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    input_size: int | None = None
    holdout: int = 0  # training images held out for the confusion matrix (families only)
    shuffle_labels: bool = False  # the sanity checks' model, trained on permuted labels

    def keywords(self) -> dict[str, Any]:
        """The settings given to ``train_fashion`` (the defaults it has itself left out)."""
        given = {"epochs": self.epochs, "train_limit": self.train_limit, "test_limit": self.test_limit,
                 "input_size": self.input_size}
        out: dict[str, Any] = {"seed": self.seed, "pretrained": self.pretrained,
                               **{k: v for k, v in given.items() if v is not None}}
        if self.holdout:
            out["holdout"] = self.holdout
        if self.shuffle_labels:
            out["shuffle_labels"] = True
        return out


@dataclass(frozen=True)
class DiagnoseOptions:
    """A diagnose step: CASE's contrast, the batch, the k values and the gallery size. ``confusion``:
    where the confusion matrix of a ``confusion`` contrast comes from: "test" (the test split the
    diagnostic samples, what training stores) or "heldout" (training images held out of training)."""

    kind: ClassVar[str] = "diagnose"
    contrast: str
    batch_size: int
    k_percent: tuple[float, ...] = K_PERCENT
    gallery: int = 8
    confusion: str = "test"


@dataclass(frozen=True)
class FidelityOptions:
    """A fidelity step: CASE's contrast, the batch, the fill, the deletion/insertion steps (0: none),
    correctly classified images only or all, and the share removed."""

    kind: ClassVar[str] = "fidelity"
    contrast: str
    batch_size: int
    fill: str = "zero"
    steps: int = 0
    correct_only: bool = False
    k_percent: float = FIDELITY_K
    confusion: str = "test"
    deletion_fill: str | None = None  # None: the step's fill, as the published study's runs deleted


@dataclass(frozen=True)
class PlantedOptions:
    """A planted step (``case_saliency.workflows.planted.run_planted``): the seed of training and
    evaluation, patched test images, 2x2 mosaics, training steps and training images (None: all)."""

    kind: ClassVar[str] = "planted"
    seed: int
    n: int = 200
    mosaics: int = 50
    steps: int = 1200
    train_limit: int | None = None


@dataclass(frozen=True)
class SanityOptions:
    """A sanity step (``case_saliency.workflows.sanity``): images (a seeded sample), the seed of the
    sample and of the randomisation, the top share, cascade steps evaluated, and a shuffled-label
    checkpoint (relative to the study's folder; "" for none)."""

    kind: ClassVar[str] = "sanity"
    n: int = 16
    seed: int = 0
    k: float = 5.0
    max_steps: int = 12
    shuffled: str = ""


StepOptions = TrainOptions | DiagnoseOptions | FidelityOptions | PlantedOptions | SanityOptions


@dataclass(frozen=True)
class Step:
    """One unit of work; its kind ("train", "diagnose", "fidelity", "planted", "sanity") is its options'."""

    name: str  # where it goes, relative to the study's output folder
    model: str  # an architecture (train) or a model spec for load_model (a name or a checkpoint path)
    options: StepOptions
    data: str = ""
    methods: tuple[str, ...] = ()
    n: int = 0

    @property
    def kind(self) -> str:
        return self.options.kind


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    steps: tuple[Step, ...]
    contrast: str = ""  # CASE's default contrast in this study (model-level)
    notes: tuple[str, ...] = ()


# Suffixes of the runs that add methods to a main run, on the same sample: the contrastive CAMs, and
# the costly methods of a study, in runs of their own so that they can go last.
EXTRA_RUNS = ("-cams", "-gradients", "-scorecam")


def split_runs(steps: list[Step], groups: dict[str, tuple[str, ...]] | None = None) -> tuple[Step, ...]:
    """Each run becomes up to four on the same sample: the run without its contrastive CAMs
    (``case:<base>``) and without the methods of ``groups`` ({suffix: methods}, suffixes from
    ``EXTRA_RUNS``), a ``<name>-cams`` run of the contrastive CAMs and a ``<name><suffix>`` run per
    group (each with ``case`` as the fidelity reference). So the main runs do not change when the
    library gains a contrastive variant, a run directory never has to take new methods, and the
    costly runs can be left for last (``run.py --skip scorecam``)."""
    groups = groups or {}
    out = []
    for step in steps:
        if step.kind not in ("diagnose", "fidelity"):
            out.append(step)
            continue
        grouped = {suffix: tuple(m for m in step.methods if m in methods) for suffix, methods in groups.items()}
        taken = {m for methods in grouped.values() for m in methods}
        cams = tuple(m for m in step.methods if m.startswith("case:") and m not in taken)
        main = tuple(m for m in step.methods if m not in cams and m not in taken)
        out.append(replace(step, methods=main))
        extra = ("case",) if step.kind == "fidelity" else ()
        for suffix, methods in (("-cams", cams), *grouped.items()):
            if methods:
                out.append(replace(step, name=f"{step.name}{suffix}", methods=(*extra, *methods)))
    return tuple(out)


def model_path(out: Path, architecture: str, seed: int) -> Path:
    return out / "models" / f"fashion-{architecture}-seed{seed}.pt"


def _train_steps(out: Path, architectures: tuple[str, ...], seeds: tuple[int, ...], quick: bool) -> list[Step]:
    steps = []
    for seed in seeds:
        for arch in architectures:
            pretrained = arch.startswith("efficientnet")
            options = TrainOptions(seed, pretrained)
            if quick:
                options = replace(options, epochs=1, train_limit=2000 if pretrained else 3000, test_limit=1000,
                                  input_size=64 if pretrained else None)
            steps.append(Step(str(model_path(out, arch, seed).relative_to(out)), arch, options))
    return steps


def photos(out: Path, quick: bool = False) -> Study:
    """RQ1 and RQ2 on the ImageNet EfficientNet-Lite0/1/2 and the 14 offline photos."""
    strategies = ("classifier", "top")
    default = "classifier:1"
    full = [m for m in (*BASE_METHODS, *contrast_variants(strategies, default), "case(contrast=rank:3)",
                        *contrastive_cams()) if m != "case:scorecam"]
    steps = []
    models = ("efficientnet_lite0",) if quick else LITES
    for model in models:
        methods = ("gradcam", "gradcam++", "layercam", "case", "case(contrast=top:1)", "eigencam", "random") \
            if quick else tuple(full)
        steps.append(Step(f"{model}/diagnose", model, DiagnoseOptions(default, 7, K_PERCENT, 14), "samples", methods))
        fidelity_methods = ("gradcam", "case", "random") if quick else tuple(m for m in methods if m not in COSTLY)
        curves = 2 if quick else (10 if model == "efficientnet_lite0" else 0)
        steps.append(Step(f"{model}/fidelity-zero", model, FidelityOptions(default, 7, "zero", curves), "samples",
                          fidelity_methods))
        if not quick:
            steps.append(Step(f"{model}/fidelity-blur", model, FidelityOptions(default, 7, "blur", 0), "samples",
                              fidelity_methods))
    notes = ("n = 14 photos: the smallest p-value the one-sided Wilcoxon test can reach is 1/2^14 = 6.1e-5 (exact "
             "null distribution; with tied or zero differences SciPy falls back to the normal approximation, whose "
             "smallest value at n = 14 is 4.9e-4). So 'rejects' here means p < 0.05 out of at best 6.1e-5.",
             "The photos have no labels: all 14 are used, the maps are for the predicted classes (top-1, top-2).",
             "No confusion matrix exists offline for ImageNet: CASE's model-level contrast is the classifier "
             "neighbours (cosine of the final layer's rows, k = 1); the top-logit contrasts are circular here "
             "(with top:1 the top-1 map's contrast is the top-2 class and the reverse).",
             "Costly methods run last, in runs of their own on the same photos: Integrated Gradients and "
             "SmoothGrad (`-gradients`: 50 backward passes to the input per class), Score-CAM (`-scorecam`: 1,280 "
             "forward passes per image at bn2) in the diagnostic of each model and in no fidelity run. CASE over "
             "Score-CAM runs on the Fashion-MNIST families instead. Deletion/insertion curves (10 steps): Lite0 only.")
    return Study("photos", "ImageNet EfficientNet-Lite0/1/2 on the 14 offline photos",
                 split_runs(steps, {"-gradients": INPUT_GRADIENT_SAMPLES, "-scorecam": COSTLY}), default, notes)


def _fashion_runs(stem: str, model: str, methods: tuple[str, ...], curve_methods: tuple[str, ...] | None,
                  contrast: str, quick: bool, *, batch_size: int, gallery: int,
                  sizes: tuple[int, int, int]) -> list[Step]:
    """One Fashion-MNIST model's runs: the diagnostic, the confidence drops (zero fill; blur too unless
    ``quick``) on correctly classified images, and, given ``curve_methods``, deletion/insertion curves.
    sizes: images of the diagnostic, of each drop run and of the curves."""
    diagnose_n, drop_n, curve_n = sizes
    data = "fashion-mnist:test"
    steps = [Step(f"{stem}/diagnose", model, DiagnoseOptions(contrast, batch_size, K_PERCENT, gallery), data, methods,
                  diagnose_n)]
    for fill in ("zero",) if quick else ("zero", "blur"):
        steps.append(Step(f"{stem}/fidelity-{fill}", model, FidelityOptions(contrast, batch_size, fill, 0, True), data,
                          methods, drop_n))
    if curve_methods is not None:  # deletion/insertion curves: 2 x 11 forward passes per image and method
        steps.append(Step(f"{stem}/fidelity-curves", model,
                          FidelityOptions(contrast, batch_size, "zero", 4 if quick else 10, True), data, curve_methods,
                          curve_n))
    return steps


def fashion(out: Path, quick: bool = False) -> Study:
    """RQ1 and RQ2 on the three Fashion-MNIST families x 5 seeds, trained here."""
    seeds = (0,) if quick else SEEDS
    architectures = ("resnet",) if quick else FAMILIES
    steps: list[Step] = []  # each seed's checkpoints, then its runs: seed 0 is complete before seed 1 trains
    strategies = ("confusion", "classifier", "top")
    default = "confusion:1"
    full = (*BASE_METHODS, *contrast_variants(strategies, default), *contrastive_cams())
    circular = ("case(contrast=classifier:1)", "case(contrast=top:1)")
    quick_methods = ("gradcam", "gradcam++", "scorecam", "case", "case(contrast=classifier:1)",
                     "case(contrast=top:1)", "eigencam", "random")
    for seed in seeds:
        steps += _train_steps(out, architectures, (seed,), quick)
        for arch in architectures:
            model = str(model_path(out, arch, seed))
            stem = f"{arch}-seed{seed}"
            # Every method and contrast variant on seed 0; the other seeds repeat the CAMs and controls (what
            # the seed table compares), the other two contrast kinds at k = 1 and the contrastive CAMs.
            methods = quick_methods if quick else (full if seed == 0 else (*SEED_METHODS, *circular,
                                                                          *contrastive_cams()))
            steps += _fashion_runs(stem, model, methods, methods, default, quick,
                                   batch_size=100, gallery=64, sizes=(200, 100, 50) if quick else (1200, 300, 300))
    notes = ("Models: `case-saliency train --arch A --seed S` (3 epochs, all 60,000 training images).",
             "Diagnose: 1,200 test images per model (seeded sample, seed 0), all images; 'correctly classified "
             "only' is the subset whose top-1 class is the label. Every method and contrast variant on seed 0 of "
             "each family; on the other seeds the CAMs, Finer-CAM, CASE under its three contrast kinds at k = 1, "
             "the contrastive CAMs and the controls (`SEED_METHODS`), for CPU time.",
             "CASE's default contrast: the model's own confusion neighbours on the test split (k = 1), "
             "computed by training (what `case-saliency confusion` writes).",
             "Fidelity: the confidence drop (zero and blur fills) on 300 correctly classified test images per "
             "model; deletion/insertion curves (10 steps) on the same 300 images, for every method a seed runs.")
    return Study("fashion", "Fashion-MNIST ResNet-, DenseNet- and VGG-like models, 5 seeds each", split_runs(steps),
                 default, notes)


def finetune(out: Path, quick: bool = False) -> Study:
    """RQ1 and RQ2 on EfficientNet-Lite0 fine-tuned from ImageNet on Fashion-MNIST, 5 seeds."""
    seeds = (0,) if quick else SEEDS
    steps: list[Step] = []
    strategies = ("confusion", "classifier", "top")
    default = "confusion:1"
    affordable = tuple(m for m in BASE_METHODS if m not in COSTLY + INPUT_GRADIENT_SAMPLES)
    variants = (*contrast_variants(strategies, default), *(m for m in contrastive_cams() if m not in COSTLY))
    circular = ("case(contrast=classifier:1)", "case(contrast=top:1)")
    quick_methods = ("gradcam", "gradcam++", "case", "case(contrast=top:1)", "eigencam", "random")
    curve_methods = ("gradcam", "gradcam++", "layercam", "finercam", "case", "eigencam", "random")
    for seed in seeds:
        steps += _train_steps(out, ("efficientnet_lite0",), (seed,), quick)
        model = str(model_path(out, "efficientnet_lite0", seed))
        stem = f"efficientnet_lite0-seed{seed}"
        # Every contrast variant on seed 0; the others repeat the base methods (what the seed table
        # compares), the two other contrast kinds at k = 1 and the contrastive CAMs.
        cams = tuple(m for m in variants if m.startswith("case:"))
        methods = quick_methods if quick else ((*affordable, *variants) if seed == 0 else
                                               (*affordable, *circular, *cams))
        steps += _fashion_runs(stem, model, methods, curve_methods, default, quick,
                               batch_size=50, gallery=32, sizes=(60, 30, 20) if quick else (1000, 200, 100))
    notes = ("Models: `case-saliency train --arch efficientnet_lite0 --pretrained --seed S`: ImageNet weights, "
             "new 10-class head; the 28x28 images resized to 112x112 (4x4 maps at bn2) and replicated to RGB; "
             "stem and stages 0-4 frozen (their output computed once), stages 5-6, the head conv, bn2 and the "
             "classifier fine-tuned; 6,000 training images (seeded subset), 3 epochs, AdamW + one-cycle "
             "(peak lr 1e-3), batch 64, no augmentation. The paper's setting: DenseNet-201 fully fine-tuned on "
             "CIFAR-100 (Adam, lr 1e-5, 20 epochs).",
             "Diagnose: 1,000 test images per seed (seeded sample), all images and correctly classified only; "
             "every contrast variant on seed 0; the base methods, the contrastive CAMs and CASE under its three "
             "contrast kinds at k = 1 on every seed.",
             "Left out here for cost (each > 1 CPU hour per seed at 112 px): Score-CAM and CASE over Score-CAM "
             "(1,280 forward passes per image at bn2), Integrated Gradients and SmoothGrad (50 backward passes "
             "to the input per class); they run on the Fashion-MNIST families and the photos.",
             "Fidelity: the confidence drop on 200 correctly classified test images per seed; deletion/insertion "
             "curves on 100 of them for the main methods, every seed.")
    return Study("finetune", "EfficientNet-Lite0 fine-tuned on Fashion-MNIST from ImageNet weights, 5 seeds",
                 split_runs(steps), default, notes)


STUDIES = {"photos": photos, "fashion": fashion, "finetune": finetune}
