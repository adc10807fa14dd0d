"""The numbers of a study as typed, frozen records, and their JSON form (``<out>/<study>/numbers.json``).

A study's numbers are :class:`StudyNumbers`: per model a :class:`ModelNumbers` with its training
(:class:`ModelInfo`), its diagnostic (:class:`DiagnoseNumbers`: one :class:`AgreementEntry` per
view, method and k) and its fidelity runs (:class:`FidelityNumbers`), and for studies over seeds a
:class:`FamilySeeds` per family. ``to_json`` writes the layout the drift test and the committed
``docs/results/quick-photos.json`` use (``{model: {"diagnose": {view: {method: {k: {...}}}}}}``);
``from_json`` reads it back. Only these two functions know that layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

THRESHOLDS = (50.0, 70.0)
VIEWS = ("all", "correct")  # every image; the images whose top-1 class is their label
MEASURES = ("drop_relative", "drop_absolute", "deletion_auc", "insertion_auc")

Json = dict[str, Any]


def finite(value: object) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def k_text(k: float) -> str:
    """The JSON key of a k: 5.0 -> "5"."""
    return f"{k:g}"


def _p_key(threshold: float, suffix: str = "") -> str:
    return f"p{threshold:g}{suffix}"


# ------------------------------------------------------------------------------------------- diagnose


@dataclass(frozen=True)
class Versus:
    """A method against another on the same images (its non-circular pairs): the other's mean
    agreement there, the pairs compared and the two-sided paired Wilcoxon p."""

    other_mean: float | None
    n: int
    p: float | None


@dataclass(frozen=True)
class WithoutCircular:
    """A method over the pairs whose contrast sets do not hold the other compared class: how many,
    their mean agreement and the one-sided test's p at each threshold ({threshold: p})."""

    n: int
    mean: float | None
    p: Mapping[float, float | None]


@dataclass(frozen=True)
class AgreementEntry:
    """One method at one k in one view of a diagnose run.

    Attributes:
        n: scored pairs. mean, median, sd: of the top-1/top-2 agreement (percent).
        degenerate, errors: pairs left out. p: {threshold: one-sided p of agreement below it}.
        other_in_contrast: share (0-1) of pairs whose contrast set holds the other compared class
            (None: the run records none). without: the test over the other pairs (when some are circular).
        versus_gradcam: on those pairs against Grad-CAM; versus_base: a ``case:X`` against X there.
    """

    n: int
    mean: float | None
    median: float | None
    sd: float | None
    degenerate: int
    errors: int
    p: Mapping[float, float | None]
    other_in_contrast: float | None = None
    without: WithoutCircular | None = None
    versus_gradcam: Versus | None = None
    versus_base: Versus | None = None

    def p_at(self, threshold: float, without: bool = False) -> float | None:
        """The one-sided p at ``threshold`` (over the non-circular pairs with ``without``)."""
        if without:
            return None if self.without is None else self.without.p.get(threshold)
        return self.p.get(threshold)

    def to_json(self) -> Json:
        out: Json = {"n": self.n, "mean": self.mean, "median": self.median, "sd": self.sd,
                     "degenerate": self.degenerate, "errors": self.errors, "other_in_contrast": self.other_in_contrast,
                     **{_p_key(t): p for t, p in self.p.items()}}
        if self.without is not None:
            out.update(n_without=self.without.n, mean_without=self.without.mean,
                       **{_p_key(t, "_without"): p for t, p in self.without.p.items()})
        if self.versus_gradcam is not None:
            out.update(gradcam_mean_without=self.versus_gradcam.other_mean,
                       versus_gradcam_without={"n": self.versus_gradcam.n, "p": self.versus_gradcam.p})
        if self.versus_base is not None:
            out.update(base_mean_without=self.versus_base.other_mean,
                       versus_base_without={"n": self.versus_base.n, "p": self.versus_base.p})
        return out

    @classmethod
    def from_json(cls, data: Json) -> AgreementEntry:
        def versus(mean_key: str, key: str) -> Versus | None:
            if key not in data:
                return None
            return Versus(data.get(mean_key), int(data[key]["n"]), data[key]["p"])

        without = None
        if "n_without" in data:
            without = WithoutCircular(int(data["n_without"]), data.get("mean_without"),
                                      {t: data.get(_p_key(t, "_without")) for t in THRESHOLDS})
        return cls(n=int(data["n"]), mean=data.get("mean"), median=data.get("median"), sd=data.get("sd"),
                   degenerate=int(data.get("degenerate", 0)), errors=int(data.get("errors", 0)),
                   p={t: data.get(_p_key(t)) for t in THRESHOLDS}, other_in_contrast=data.get("other_in_contrast"),
                   without=without, versus_gradcam=versus("gradcam_mean_without", "versus_gradcam_without"),
                   versus_base=versus("base_mean_without", "versus_base_without"))


@dataclass(frozen=True)
class DiagnoseNumbers:
    """A diagnose run (with the methods of its extra runs merged in): entries by (view, method, k)."""

    entries: Mapping[tuple[str, str, float], AgreementEntry] = field(default_factory=dict)

    def entry(self, view: str, method: str, k: float = 5.0) -> AgreementEntry | None:
        return self.entries.get((view, method, float(k)))

    def methods(self, view: str = "all") -> list[str]:
        """The methods of ``view``, in the run's order."""
        return list(dict.fromkeys(m for v, m, _ in self.entries if v == view))

    def views(self) -> list[str]:
        return list(dict.fromkeys(v for v, _, _ in self.entries))

    def at(self, view: str, k: float = 5.0) -> dict[str, AgreementEntry]:
        """{method: entry} of one view at one k."""
        return {m: e for (v, m, kk), e in self.entries.items() if v == view and kk == float(k)}

    def merged(self, other: DiagnoseNumbers) -> DiagnoseNumbers:
        """These entries and ``other``'s (an extra run's methods on the same sample)."""
        entries = dict(self.entries)
        entries.update(other.entries)
        return DiagnoseNumbers(_ordered(entries))

    def with_versus_base(self, extra: Mapping[tuple[str, str, float], Versus]) -> DiagnoseNumbers:
        entries = {key: replace(e, versus_base=extra[key]) if key in extra else e for key, e in self.entries.items()}
        return DiagnoseNumbers(entries)

    def to_json(self) -> Json:
        out: Json = {}
        for (view, method, k), e in self.entries.items():
            out.setdefault(view, {}).setdefault(method, {})[k_text(k)] = e.to_json()
        return out

    @classmethod
    def from_json(cls, data: Json) -> DiagnoseNumbers:
        return cls({(view, method, float(k)): AgreementEntry.from_json(e)
                    for view, methods in data.items() for method, ks in methods.items() for k, e in ks.items()})


def _ordered(entries: dict[tuple[str, str, float], AgreementEntry]) -> dict[tuple[str, str, float], AgreementEntry]:
    """Entries grouped by view, then method, in first-seen order (the nested JSON's order)."""
    views = list(dict.fromkeys(v for v, _, _ in entries))
    out = {}
    for view in views:
        methods = list(dict.fromkeys(m for v, m, _ in entries if v == view))
        for method in methods:
            out.update({key: e for key, e in entries.items() if key[0] == view and key[1] == method})
    return out


# ------------------------------------------------------------------------------------------- fidelity


@dataclass(frozen=True)
class FidelityMethod:
    """One method of a fidelity run: images scored, errors, each measure's mean and SD, and the means
    of any further numeric column the run has (``extra``: e.g. the class-contrastive margin drop)."""

    n: int
    errors: int
    means: Mapping[str, float | None]
    sds: Mapping[str, float | None]
    extra: Mapping[str, float | None] = field(default_factory=dict)

    def mean(self, measure: str) -> float | None:
        return self.means.get(measure, self.extra.get(measure))

    def to_json(self) -> Json:
        out: Json = {"n": self.n, "errors": self.errors, **self.means, **{f"{m}_sd": v for m, v in self.sds.items()}}
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Json) -> FidelityMethod:
        return cls(int(data["n"]), int(data.get("errors", 0)), {m: data.get(m) for m in MEASURES},
                   {m: data.get(f"{m}_sd") for m in MEASURES}, dict(data.get("extra") or {}))


@dataclass(frozen=True)
class PairedTest:
    """The reference method (CASE) minus another on one measure, on the images both scored."""

    n: int
    mean_difference: float | None
    median_difference: float | None
    ci_low: float | None
    ci_high: float | None
    wilcoxon_p: float | None
    wilcoxon_p_holm: float | None
    t_p: float | None
    t_p_holm: float | None

    def to_json(self) -> Json:
        return {"n": self.n, "mean_difference": self.mean_difference, "median_difference": self.median_difference,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "wilcoxon_p": self.wilcoxon_p,
                "wilcoxon_p_holm": self.wilcoxon_p_holm, "t_p": self.t_p, "t_p_holm": self.t_p_holm}

    @classmethod
    def from_json(cls, data: Json) -> PairedTest:
        return cls(int(data["n"]), data.get("mean_difference"), data.get("median_difference"), data.get("ci_low"),
                   data.get("ci_high"), data.get("wilcoxon_p"), data.get("wilcoxon_p_holm"), data.get("t_p"),
                   data.get("t_p_holm"))


@dataclass(frozen=True)
class FidelityNumbers:
    """A fidelity run (with its extra runs' methods merged in): per method its means, and CASE's paired
    tests against each method per measure; ``holm_families``: the methods of each merged extra run (a
    Holm family of its own)."""

    methods: Mapping[str, FidelityMethod]
    paired: Mapping[str, Mapping[str, PairedTest]]
    fill: str | None = None
    steps: int | None = None
    n_images: int | None = None
    holm_families: tuple[tuple[str, ...], ...] | None = None

    def test(self, method: str, measure: str = "drop_relative") -> PairedTest | None:
        return self.paired.get(method, {}).get(measure)

    def merged(self, extra: FidelityNumbers) -> FidelityNumbers:
        """These numbers with an extra run's methods (its reference ``case`` left out) and tests added."""
        methods = {**self.methods, **{m: v for m, v in extra.methods.items() if m != "case"}}
        paired = {**self.paired, **extra.paired}
        families = (*(self.holm_families or ()), tuple(sorted(extra.methods)))
        return replace(self, methods=methods, paired=paired, holm_families=families)

    def to_json(self) -> Json:
        out: Json = {"methods": {m: e.to_json() for m, e in self.methods.items()},
                     "paired": {m: {k: t.to_json() for k, t in tests.items()} for m, tests in self.paired.items()},
                     "fill": self.fill, "steps": self.steps, "n_images": self.n_images}
        if self.holm_families is not None:
            out["holm_families"] = [list(f) for f in self.holm_families]
        return out

    @classmethod
    def from_json(cls, data: Json) -> FidelityNumbers:
        families = data.get("holm_families")
        return cls({m: FidelityMethod.from_json(e) for m, e in data.get("methods", {}).items()},
                   {m: {k: PairedTest.from_json(t) for k, t in tests.items()}
                    for m, tests in data.get("paired", {}).items()},
                   data.get("fill"), data.get("steps"), data.get("n_images"),
                   None if families is None else tuple(tuple(f) for f in families))


# --------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelInfo:
    """A checkpoint's training, from its metadata JSON."""

    test_accuracy: float
    train_cpu_seconds: float | None
    train_seconds: float | None
    epochs: int
    train_images: int
    input_size: int

    def to_json(self) -> Json:
        return {"test_accuracy": self.test_accuracy, "train_cpu_seconds": self.train_cpu_seconds,
                "train_seconds": self.train_seconds, "epochs": self.epochs, "train_images": self.train_images,
                "input_size": self.input_size}

    @classmethod
    def from_json(cls, data: Json) -> ModelInfo:
        return cls(data["test_accuracy"], data.get("train_cpu_seconds"), data.get("train_seconds"), data["epochs"],
                   data["train_images"], data["input_size"])

    @classmethod
    def from_metadata(cls, meta: Json) -> ModelInfo:
        return cls(meta["test_accuracy"], meta.get("train_cpu_seconds"), meta.get("train_seconds"), meta["epochs"],
                   meta["train_data"]["used"], meta["input_size"])


@dataclass(frozen=True)
class ModelNumbers:
    """One model's runs, read back: its training, its diagnostic and its fidelity runs by name
    (``fidelity-zero``, ``fidelity-blur``, ``fidelity-curves``, ...)."""

    model: ModelInfo | None = None
    diagnose: DiagnoseNumbers | None = None
    fidelity: Mapping[str, FidelityNumbers] = field(default_factory=dict)

    def entry(self, view: str, method: str, k: float = 5.0) -> AgreementEntry | None:
        return None if self.diagnose is None else self.diagnose.entry(view, method, k)

    def at(self, view: str = "all", k: float = 5.0) -> dict[str, AgreementEntry]:
        return {} if self.diagnose is None else self.diagnose.at(view, k)

    def fidelity_run(self, name: str) -> FidelityNumbers | None:
        return self.fidelity.get(name)

    def drop(self, method: str, run: str = "fidelity-zero") -> float | None:
        numbers = self.fidelity.get(run)
        entry = None if numbers is None else numbers.methods.get(method)
        return None if entry is None else entry.mean("drop_relative")

    def to_json(self) -> Json:
        out: Json = {name: f.to_json() for name, f in self.fidelity.items()}
        if self.model is not None:
            out["model"] = self.model.to_json()
        if self.diagnose is not None:
            out["diagnose"] = self.diagnose.to_json()
        return out

    @classmethod
    def from_json(cls, data: Json) -> ModelNumbers:
        return cls(ModelInfo.from_json(data["model"]) if "model" in data else None,
                   DiagnoseNumbers.from_json(data["diagnose"]) if "diagnose" in data else None,
                   {name: FidelityNumbers.from_json(v) for name, v in data.items() if name.startswith("fidelity")})


# ---------------------------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class SeedsWithout:
    """A method over the seeds, on the pairs its contrast does not make circular."""

    circular_mean: float
    mean_without_mean: float | None
    gradcam_mean_without_mean: float | None
    versus_gradcam_seeds: int
    above_gradcam_without: int
    below_gradcam_without: int
    seeds_without: int
    rejections: Mapping[float, int]


@dataclass(frozen=True)
class MethodOverSeeds:
    """A method over the seeds of a family: mean of the per-seed mean and median agreement, SD of the
    medians, and in how many seeds the one-sided test rejects at each threshold."""

    seeds: int
    mean_mean: float | None
    median_mean: float | None
    median_sd: float | None
    rejections: Mapping[float, int]
    without: SeedsWithout | None = None

    def to_json(self) -> Json:
        out: Json = {"seeds": self.seeds, "mean_mean": self.mean_mean, "median_mean": self.median_mean,
                     "median_sd": self.median_sd, **{f"reject{t:g}": r for t, r in self.rejections.items()}}
        w = self.without
        if w is not None:
            out.update(circular_mean=w.circular_mean, mean_without_mean=w.mean_without_mean,
                       gradcam_mean_without_mean=w.gradcam_mean_without_mean,
                       versus_gradcam_seeds=w.versus_gradcam_seeds, above_gradcam_without=w.above_gradcam_without,
                       below_gradcam_without=w.below_gradcam_without, seeds_without=w.seeds_without,
                       **{f"reject{t:g}_without": r for t, r in w.rejections.items()})
        return out

    @classmethod
    def from_json(cls, data: Json) -> MethodOverSeeds:
        without = None
        if "circular_mean" in data:
            without = SeedsWithout(data["circular_mean"], data.get("mean_without_mean"),
                                   data.get("gradcam_mean_without_mean"), data["versus_gradcam_seeds"],
                                   data["above_gradcam_without"], data["below_gradcam_without"], data["seeds_without"],
                                   {t: data[f"reject{t:g}_without"] for t in THRESHOLDS})
        return cls(data["seeds"], data.get("mean_mean"), data.get("median_mean"), data.get("median_sd"),
                   {t: data[f"reject{t:g}"] for t in THRESHOLDS}, without)


@dataclass(frozen=True)
class FamilySeeds:
    """A family's seeds: the models (keys) and each method over them, all images and correct only."""

    models: tuple[str, ...]
    all: Mapping[str, MethodOverSeeds]
    correct: Mapping[str, MethodOverSeeds]

    def view(self, view: str) -> Mapping[str, MethodOverSeeds]:
        return self.all if view == "all" else self.correct

    def to_json(self) -> Json:
        return {"models": list(self.models), "all": {m: e.to_json() for m, e in self.all.items()},
                "correct": {m: e.to_json() for m, e in self.correct.items()}}

    @classmethod
    def from_json(cls, data: Json) -> FamilySeeds:
        return cls(tuple(data["models"]), {m: MethodOverSeeds.from_json(e) for m, e in data["all"].items()},
                   {m: MethodOverSeeds.from_json(e) for m, e in data["correct"].items()})


@dataclass(frozen=True)
class StudyNumbers:
    """Every model of a study, and (for studies over seeds) each family's seed summary."""

    models: Mapping[str, ModelNumbers]
    seeds: Mapping[str, FamilySeeds] | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def get(self, key: str) -> ModelNumbers:
        """The model's numbers (empty when the study has no such model)."""
        return self.models.get(key, ModelNumbers())

    def keys_with(self, prefix: str) -> list[str]:
        return sorted(k for k in self.models if k.startswith(prefix))

    def to_json(self) -> Json:
        out: Json = {key: m.to_json() for key, m in self.models.items()}
        if self.seeds is not None:
            out["_seeds"] = {family: s.to_json() for family, s in self.seeds.items()}
        return out

    @classmethod
    def from_json(cls, data: Json) -> StudyNumbers:
        seeds = data.get("_seeds")
        return cls({key: ModelNumbers.from_json(m) for key, m in data.items() if key != "_seeds"},
                   None if seeds is None else {f: FamilySeeds.from_json(s) for f, s in seeds.items()})
