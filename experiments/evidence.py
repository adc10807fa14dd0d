"""The reviewed study's runs read back into typed records: each method against Grad-CAM per model,
setting and k (``case_saliency.runs.summary.compare_with_baseline``: paired t, bootstrap interval,
Holm across the methods of a model, TOST, minimum detectable difference), the per-photo agreements
of the slope plots, the planted-evidence scores, the sanity checks' outcomes and the
class-contrastive fidelity. No statistic is computed here: the library computes every one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .numbers import contrastive_columns, finished, run_table
from .records import finite
from .review import CONTROLS, MARGIN, PHOTO_SETS, PRIMARY_K
from .studies import EXTRA_RUNS, FidelityOptions, Study

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05
SIMILAR = 0.5  # median Spearman to the trained model's maps at or above which a randomised model's maps "stay"


@dataclass(frozen=True)
class Difference:
    """A method minus Grad-CAM in agreement points on the same images: one model, setting and k.

    Attributes:
        mean, low, high: the mean paired difference and its bootstrap 95 % interval. sd: of the differences.
        p_holm, tost_p_holm: the paired t-test and TOST (±margin) p, Holm across the model's methods at k
            (these decide the verdict). p: the paired t-test's p before Holm.
        mdd: the minimum detectable difference at 80 % power. verdict: lower / higher / equal /
        identical / undetermined ("lower": more class-specific than Grad-CAM). line: the verdict in words.
    """

    model: str
    setting: str
    method: str
    k: float
    n: int
    mean: float
    low: float
    high: float
    sd: float
    p_holm: float
    tost_p_holm: float
    mdd: float
    verdict: str
    line: str
    p: float = math.nan  # the paired t-test's p before Holm (the primary endpoint is one pre-stated comparison)


@dataclass(frozen=True)
class Agreements:
    """Per image, Grad-CAM's and CASE's top-1/top-2 agreement at the primary k (a slope plot's lines)."""

    model: str
    image_ids: tuple[str, ...]
    gradcam: tuple[float, ...]
    case: tuple[float, ...]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class PlantedScore:
    """One method on one planted model (seed): images with the planted top-1/top-2, and the contrast
    (patch map on the patch minus garment map on the patch), both shares and the grid focus, each with
    its bootstrap 95 % interval (``workflows.planted.summarise``)."""

    seed: int
    method: str
    n: int
    contrast: Interval
    patch_share: Interval
    garment_share: Interval
    focus: Interval


@dataclass(frozen=True)
class SanityOutcome:
    """One method under cascading randomisation of one model: the trained model's class-sensitivity test,
    the fully randomised model's median similarity to the trained maps and its test, and the
    shuffled-label model's (None where not run). ``fails`` (Adebayo et al.'s sanity check): the maps stay
    similar (median Spearman >= ``SIMILAR``) after full randomisation or for the shuffled-label model.
    ``test_uninformative``: a randomised or shuffled-label model still passes the class-sensitivity test,
    so a pass of the trained model says nothing about what it learned."""

    model: str
    method: str
    passes_trained: bool
    last_layer: str
    spearman_randomised: float | None
    passes_randomised: bool
    spearman_shuffled: float | None
    passes_shuffled: bool | None

    @property
    def fails(self) -> bool:
        return any(s is not None and s >= SIMILAR for s in (self.spearman_randomised, self.spearman_shuffled))

    @property
    def test_uninformative(self) -> bool:
        return self.passes_randomised or bool(self.passes_shuffled)


@dataclass(frozen=True)
class SanityStep:
    """One method at one step of a cascade (``workflows.sanity.summarise``): step 0 the trained model,
    1.. layers randomised down to ``layer``, -1 the shuffled-label model."""

    model: str
    method: str
    step: int
    layer: str
    median_spearman: float | None
    median_ssim: float | None
    median_topk: float | None
    mean_agreement: float | None
    p_below: float | None
    passes: bool


@dataclass(frozen=True)
class FidelityPoint:
    """One method of one fidelity run: the fill, the share removed, images, the mean relative drop and
    the means of the class-contrastive columns the run has (none in runs without them)."""

    model: str
    method: str
    fill: str
    k: float
    n: int
    drop_relative: float | None
    deletion_auc: float | None
    insertion_auc: float | None
    contrastive: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ReviewNumbers:
    """Everything the reviewed study's document shows."""

    differences: tuple[Difference, ...]
    agreements: tuple[Agreements, ...]
    planted: tuple[PlantedScore, ...]
    sanity: tuple[SanityOutcome, ...]
    fidelity: tuple[FidelityPoint, ...]
    floors: Mapping[str, str]  # "model/setting" -> a note when Grad-CAM sits at the random maps' agreement
    layers: Mapping[str, str]  # model -> the diagnostic's target layer
    ties: str
    sanity_steps: tuple[SanityStep, ...] = ()

    def at(self, k: float = PRIMARY_K, method: str | None = None) -> list[Difference]:
        return [d for d in self.differences if d.k == k and (method is None or d.method == method)]

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            return value

        return clean({"differences": [asdict(d) for d in self.differences],
                      "agreements": [asdict(a) for a in self.agreements],
                      "planted": [asdict(p) for p in self.planted], "sanity": [asdict(s) for s in self.sanity],
                      "fidelity": [asdict(f) for f in self.fidelity], "floors": dict(self.floors),
                      "layers": dict(self.layers), "ties": self.ties,
                      "sanity_steps": [asdict(s) for s in self.sanity_steps]})


def settings_of(model: str, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The settings a model's diagnostic is read in: the photos (all, then in- and out-of-distribution
    apart), or a test split (all images, then those whose top-1 class is the label)."""
    if setting_is_photos(frame):
        return {"all photos": frame, **{name: frame[frame["image_id"].isin(ids)] for name, ids in PHOTO_SETS.items()}}
    return {"all images": frame, "correctly classified": frame[(frame["label"] >= 0) &
                                                               (frame["label"] == frame["class1"])]}


def diagnose_frame(out: Path, model: str) -> tuple[tuple[str, ...], dict[str, Any], pd.DataFrame] | None:
    """A model's diagnostic with its extra runs' rows (same images), or None before it finished."""
    import pandas as pd

    main = out / model / "diagnose"
    if not finished(main):
        return None
    methods, config, frame = run_table(main)
    frames = [frame]
    for suffix in EXTRA_RUNS:
        extra = main.with_name(f"diagnose{suffix}")
        if finished(extra):
            more, _, rows = run_table(extra)
            methods, frames = (*methods, *more), [*frames, rows]
    return methods, config, pd.concat(frames, ignore_index=True)


def differences(model: str, methods: Sequence[str], frame: pd.DataFrame) -> list[Difference]:
    """Every method against Grad-CAM in every setting and k of one model: Holm across the model's methods
    at each k; the random maps (a control, not a method) are compared apart, outside that family."""
    import pandas as pd

    from case_saliency.runs.summary import compare_with_baseline

    out = []
    family = [m for m in methods if m not in CONTROLS]
    controls = [m for m in methods if m in CONTROLS]
    for setting, part in settings_of(model, frame).items():
        for k in sorted(part["k_percent"].unique()):
            at_k = part[part["k_percent"] == k]
            tables = [compare_with_baseline(at_k, "gradcam", MARGIN, ALPHA, "holm", family)]
            tables += [compare_with_baseline(at_k[at_k["method"].isin(["gradcam", c])], "gradcam", MARGIN, ALPHA,
                                             "holm", ["gradcam", c]) for c in controls]
            table = pd.concat([t for t in tables if not t.empty], ignore_index=True) if any(
                not t.empty for t in tables) else pd.DataFrame()
            for _, row in table.iterrows():
                out.append(Difference(model, setting, str(row["method"]), float(k), int(row["n"]),
                                      float(row["mean_difference"]), float(row["ci_low"]), float(row["ci_high"]),
                                      float(row["sd_difference"]), float(row["p_holm"]), float(row["tost_p_holm"]),
                                      float(row["mdd"]), str(row["verdict"]), str(row["line"]), float(row["p"])))
    return out


def floor_note(frame: pd.DataFrame, k: float = PRIMARY_K) -> str:
    """A note when Grad-CAM's mean agreement lies within the margin of the random maps' (a floor: the
    diagnostic cannot tell a method that separates the classes from one that draws noise)."""
    part = frame[(frame["k_percent"] == k) & (frame["error"].astype(str) == "")]
    means = part.groupby("method")["agreement"].mean()
    if "random" not in means or "gradcam" not in means:
        return ""
    gap = float(means["gradcam"] - means["random"])
    return (f"at the floor: Grad-CAM's mean agreement {means['gradcam']:.1f} is within {MARGIN:g} points of the "
            f"random maps' {means['random']:.1f}") if abs(gap) < MARGIN else ""


def agreements(model: str, frame: pd.DataFrame, k: float = PRIMARY_K) -> Agreements | None:
    part = frame[(frame["k_percent"] == k) & (frame["error"].astype(str) == "")]
    table = part.pivot_table(index="image_id", columns="method", values="agreement", aggfunc="first")
    if not {"gradcam", "case"} <= set(table.columns):
        return None
    table = table[["gradcam", "case"]].dropna()
    return Agreements(model, tuple(map(str, table.index)), tuple(map(float, table["gradcam"])),
                      tuple(map(float, table["case"])))


def planted_scores(folder: Path, seed: int) -> list[PlantedScore]:
    path = folder / "summary.json"
    if not path.exists():
        return []
    summary = json.loads(path.read_text())["summary"]

    def interval(entry: Mapping[str, Any]) -> Interval:
        return Interval(*(finite(entry.get(key)) or math.nan for key in ("mean", "low", "high")))

    return [PlantedScore(seed, method, int(e["n"]), interval(e["contrast"]), interval(e["patch_share"]),
                         interval(e["garment_share"]), interval(e["focus"])) for method, e in summary.items()]


def sanity_outcomes(folder: Path, model: str) -> list[SanityOutcome]:
    path = folder / "summary.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["summary"]
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        trained = next(r for r in mine if r["step"] == 0)
        cascade = [r for r in mine if r["step"] > 0]
        last = max(cascade, key=lambda r: r["step"]) if cascade else trained
        shuffled = next((r for r in mine if r["step"] == -1), None)
        out.append(SanityOutcome(model, method, bool(trained["passes"]), str(last["layer"]),
                                 finite(last["median_spearman"]), bool(last["passes"]) if cascade else False,
                                 None if shuffled is None else finite(shuffled["median_spearman"]),
                                 None if shuffled is None else bool(shuffled["passes"])))
    return out


def sanity_steps(folder: Path, model: str) -> list[SanityStep]:
    path = folder / "summary.json"
    if not path.exists():
        return []
    return [SanityStep(model, str(r["method"]), int(r["step"]), str(r["layer"]), finite(r["median_spearman"]),
                       finite(r["median_ssim"]), finite(r["median_topk"]), finite(r["mean_agreement"]),
                       finite(r["p_below"]), bool(r["passes"])) for r in json.loads(path.read_text())["summary"]]


def fidelity_points(run_dir: Path, model: str, options: FidelityOptions) -> list[FidelityPoint]:
    if not finished(run_dir):
        return []
    from case_saliency.runs.summary import summarize_fidelity

    methods, _, frame = run_table(run_dir)
    means, _ = summarize_fidelity(frame, "case", ALPHA, "holm", list(methods))
    columns = contrastive_columns(frame)
    points = []
    for _, row in means.iterrows():
        part = frame[(frame["method"] == row["method"]) & (frame["error"].astype(str) == "")]
        points.append(FidelityPoint(model, str(row["method"]), options.fill, options.k_percent, int(row["n"]),
                                    finite(row["drop_relative_mean"]), finite(row["deletion_auc_mean"]),
                                    finite(row["insertion_auc_mean"]), {c: finite(part[c].mean()) for c in columns}))
    return points


def review_numbers(study: Study, out: Path) -> ReviewNumbers:
    """Read every finished step of the reviewed study (a step not run yet is left out, never guessed)."""
    found: list[Difference] = []
    slopes: list[Agreements] = []
    planted: list[PlantedScore] = []
    sanity: list[SanityOutcome] = []
    steps: list[SanityStep] = []
    fidelity: list[FidelityPoint] = []
    floors: dict[str, str] = {}
    layers: dict[str, str] = {}
    ties = ""
    for step in study.steps:
        model = step.name.split("/")[0]
        if step.kind == "diagnose" and step.name.endswith("/diagnose"):
            read = diagnose_frame(out, model)
            if read is None:
                continue
            methods, config, frame = read
            layers[model], ties = str(config.get("layer")), str(config.get("ties"))
            found += differences(model, methods, frame)
            for setting, part in settings_of(model, frame).items():
                note = floor_note(part)
                if note:
                    floors[f"{model}/{setting}"] = note
            if setting_is_photos(frame):
                slope = agreements(model, frame)
                if slope is not None:
                    slopes.append(slope)
        elif step.kind == "planted":
            planted += planted_scores(out / step.name, int(step.name.rsplit("seed", 1)[1]))
        elif step.kind == "sanity":
            sanity += sanity_outcomes(out / step.name, step.name.split("/", 1)[1])
            steps += sanity_steps(out / step.name, step.name.split("/", 1)[1])
        elif isinstance(step.options, FidelityOptions) and not step.name.endswith(EXTRA_RUNS):
            fidelity += fidelity_points(out / step.name, model, step.options)
    return ReviewNumbers(tuple(found), tuple(slopes), tuple(planted), tuple(sanity), tuple(fidelity), floors, layers,
                         ties, tuple(steps))


def setting_is_photos(frame: pd.DataFrame) -> bool:
    return bool(set(frame["image_id"]) & {p for photos in PHOTO_SETS.values() for p in photos})
