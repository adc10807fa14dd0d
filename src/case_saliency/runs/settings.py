"""A run's settings as typed, frozen values: what ``run_diagnose``/``run_fidelity`` are asked, what the
loops read, and what config.json stores (``to_json``/``from_json``, docs/run-format.md).

``RunSettings`` holds what every kind shares (the sample, the methods, the model and data identity);
``DiagnoseSettings`` and ``FidelitySettings`` add their own fields, each with its default decided here
once. Construction validates every field, so bad settings are named before any row is written.
Importable without torch: ``summarize`` and ``report`` read config.json through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from ..core.errors import CaseSaliencyError
from .defaults import DEFAULT_METHODS


# The agreement's policies and fidelity's fills (the names of ``metrics.agreement`` and ``metrics.fidelity``,
# repeated here so that reading a config needs no torch; tests/runs/test_run_layer.py checks they are equal).
TIE_POLICIES: tuple[str, ...] = ("index", "reverse", "authors", "inclusive")
SPARSE_POLICIES: tuple[str, ...] = ("positive", "pad")
FILLS: tuple[str, ...] = ("zero", "mean", "blur")

# Perturbed images per forward pass of the fidelity test, chosen by measurement (benchmarks/eval_batch.py, batches
# 4-64, a loaded 2-core machine): the fastest for Lite0 (5.5 img/s, 4.7 at 32) and a Fashion-MNIST CNN, 95% of
# resnet50's best (32).
# Perturbed images per forward pass, chosen by benchmarks/eval_batch.py on a quiet 2-core machine: at 8, Lite0,
# ResNet-50 and the Fashion-MNIST CNN each run at >= 85 % of their best rate (1 or 2 threads); at 64, Lite0 ran
# at 31-32 % of its best (14-25 img/s against 46-78 at batch 4).
EVAL_BATCH_SIZE = 8
LEGACY_EVAL_BATCH_SIZE = 64  # what runs written before the choice used


class InvalidSettings(CaseSaliencyError, ValueError):
    """A setting (or a field of config.json / meta.json) that is not of the expected form; the message
    names the file (where one was read), the field and the form expected."""


# config.json's keys in the order earlier versions wrote them (the file format stays; a kind writes the
# other kind's fields as their nulls).
CONFIG_ORDER = ("kind", "model", "dataset", "methods", "n", "seed", "k_percent", "layer", "contrast", "correct_only",
                "protocol", "contrast_source", "method_contrasts", "ties", "sparse", "weights", "threshold", "alpha",
                "fill", "signed", "steps", "batch_size", "eval_batch_size", "gallery", "command")
# What config.json holds for a field a kind does not have.
ABSENT: dict[str, Any] = {"ties": None, "sparse": None, "threshold": None, "fill": None, "signed": False,
                          "steps": None, "eval_batch_size": None, "gallery": 0}
# Settings that do not shape results.csv (the summary's, the batching, provenance): a resume may change them.
MAY_CHANGE = ("threshold", "alpha", "command", "protocol", "batch_size", "eval_batch_size", "gallery")


def _bad(where: str, name: str, value: Any, form: str) -> InvalidSettings:
    """The one form of a bad-field message: "FILE: FIELD is VALUE, not FORM" (FILE where one was read)."""
    prefix = f"{where}: " if where else ""
    return InvalidSettings(f"{prefix}{name} is {_shown(value)}, not {form}")


def _shown(value: Any) -> str:
    """A value as JSON shows it (NaN as nan), cut to 60 characters."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        import json

        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(where: str, name: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise _bad(where, name, value, "an integer" + (f" >= {low}" if low is not None else ""))
    if low is not None and int(value) < low:
        raise _bad(where, name, value, f"an integer >= {low}")
    return int(value)


def _number(where: str, name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    form = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise _bad(where, name, value, form)
    number = float(value)
    if number < low or number > high or (low_open and number == low):
        raise _bad(where, name, value, form)
    return number


def _text(where: str, name: str, value: Any, optional: bool = False, choices: Sequence[str] = ()) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (choices and value not in choices):
        form = f"one of {', '.join(map(repr, choices))}" if choices else "a text"
        raise _bad(where, name, value, form + (" or null" if optional else ""))
    return value


def _flag(where: str, name: str, value: Any, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise _bad(where, name, value, "true or false" + (" or null" if optional else ""))
    return value


Settings = TypeVar("Settings", bound="RunSettings")


@dataclass(frozen=True)
class RunSettings:
    """What every run kind shares (config.json, docs/run-format.md).

    Attributes:
        model: the model's name; weights: the weights file or source given (None: the model's own).
        dataset: the data spec. methods: method specs, in order (each a column of the comparison).
        n: images to sample (0: all); seed: the sample's seed.
        layer: the target layer (None: the model's default; the one used once the run started).
        contrast: CASE's contrast where a method spec sets none (None: ``core.contrast.default_contrast``,
            the one place it is decided, applied when the run starts); contrast_source: its confusion
            matrix file or classifier layer; method_contrasts: each method label's contrast spec (None
            for methods without one).
        correct_only: None keeps the correctly classified images where the data has labels (the paper's
            protocol) and all images where it has none; protocol: that choice in words (set on start).
        batch_size: images per batch (a fixed chunking of the sample: a resume computes the same numbers).
        command: the command line that reproduces the run.
        extra: config.json keys of later versions, kept as read.
    """

    kind: ClassVar[str] = ""
    model: str = ""
    weights: str | None = None
    dataset: str = ""
    methods: tuple[str, ...] = DEFAULT_METHODS
    n: int = 100
    seed: int = 0
    layer: str | None = None
    contrast: str | None = None
    contrast_source: str | None = None
    method_contrasts: Mapping[str, str | None] = field(default_factory=dict)
    correct_only: bool | None = None
    protocol: str = ""
    batch_size: int = 16
    command: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check("")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check(self, where: str) -> None:
        """Validate and normalise every field (``where``: the file read, for the messages)."""
        methods = self.methods
        if isinstance(methods, str) or not isinstance(methods, Sequence) or \
                not all(isinstance(m, str) and m for m in methods):
            raise _bad(where, "methods", methods, "a list of method specs such as ['gradcam', 'case']")
        self._set("methods", tuple(dict.fromkeys(methods)))
        self._set("n", _integer(where, "n", self.n, 0))
        self._set("seed", _integer(where, "seed", self.seed))
        self._set("batch_size", _integer(where, "batch_size", self.batch_size, 1))
        for name in ("model", "dataset", "protocol", "command"):
            _text(where, name, getattr(self, name))
        for name in ("weights", "layer", "contrast", "contrast_source"):
            _text(where, name, getattr(self, name), optional=True)
        _flag(where, "correct_only", self.correct_only, optional=True)
        contrasts = self.method_contrasts
        if not isinstance(contrasts, Mapping) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in contrasts.items()):
            raise _bad(where, "method_contrasts", contrasts, "an object {method label: contrast spec or null}")
        self._set("method_contrasts", dict(contrasts))

    def to_json(self) -> dict[str, Any]:
        """config.json's object: the keys in the order of earlier versions (tuples as lists), the other
        kind's fields as nulls, then ``extra``."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        own["methods"] = list(self.methods)
        own["method_contrasts"] = dict(self.method_contrasts)
        own["k_percent"] = self.k_list()
        data: dict[str, Any] = {"kind": self.kind}
        data.update({key: own[key] if key in own else ABSENT.get(key) for key in CONFIG_ORDER if key != "kind"})
        data.update({key: list(value) if isinstance(value, tuple) else value for key, value in own.items()
                     if key not in data})  # a plug-in kind's own fields
        return {**data, **dict(self.extra)}

    def k_list(self) -> list[float]:
        """config.json's ``k_percent`` list."""
        return []

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "config.json") -> RunSettings:
        """The settings a config.json object holds, of the kind it names (earlier versions too: a
        missing key takes the default of its version; the other kind's nulls are ignored).

        Raises:
            InvalidSettings: a field that is not of its form, named with the file and the form expected.
        """
        kind = data.get("kind")
        if kind in PLUGIN_MODULES and kind not in SETTINGS_TYPES:
            import importlib

            importlib.import_module(PLUGIN_MODULES[str(kind)])  # registers its kind
        settings_type = SETTINGS_TYPES.get(str(kind))
        if settings_type is None:
            raise _bad(where, "kind", kind, f"one of {', '.join(map(repr, SETTINGS_TYPES))}")
        return settings_type._from_json(data, where)

    @classmethod
    def _from_json(cls, data: Mapping[str, Any], where: str) -> RunSettings:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: data[key] for key in known if key in data}
        values.update(cls._legacy_defaults(data))
        if "k_percent" in data and "k_percent" in known:
            values["k_percent"] = cls._k_from_json(data["k_percent"], where)
        extra = {key: value for key, value in data.items() if key not in known and key not in CONFIG_ORDER}
        try:
            settings = cls(**values, extra=extra)
        except InvalidSettings as error:
            message = str(error)
            raise InvalidSettings(message if message.startswith(where) else f"{where}: {message}") from None
        return settings

    @classmethod
    def _legacy_defaults(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Values of keys that configs of earlier versions lack, where the default has changed since."""
        return {}

    @classmethod
    def _k_from_json(cls, value: Any, where: str) -> Any:
        return value

    def result_differences(self, other: RunSettings) -> list[str]:
        """The settings that shape results.csv and differ, as "key: X there, Y now"."""
        mine, theirs = self.to_json(), other.to_json()
        keys = [key for key in dict.fromkeys([*mine, *theirs]) if key not in MAY_CHANGE]
        return [f"{key}: {mine.get(key)!r} there, {theirs.get(key)!r} now" for key in keys
                if mine.get(key) != theirs.get(key)]

    def with_(self: Settings, **changes: Any) -> Settings:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)


def _k_percent(where: str, value: Any) -> float:
    return _number(where, "k_percent", value, 0.0, 100.0, low_open=True)


@dataclass(frozen=True)
class DiagnoseSettings(RunSettings):
    """The class-sensitivity diagnostic's settings (``run_diagnose``).

    Attributes:
        k_percent: the agreement at each k (percent of the pixels, in (0, 100]; repeats dropped).
        threshold: the summary's agreement threshold (percent, [0, 100]); alpha: its significance level.
        ties, sparse: the agreement's tie order and sparse-map policy (``metrics.agreement``).
        signed: rank raw signed maps (no ReLU). gallery: images whose maps are kept for the report.
        similarity: also compute the secondary measures, Spearman and SSIM (False: their cells stay empty;
            on a CPU they cost about a quarter of a small model's run, see ``benchmarks/diagnose_forward.py``).
    """

    kind: ClassVar[str] = "diagnose"
    k_percent: tuple[float, ...] = (5.0,)
    threshold: float = 50.0
    alpha: float = 0.05
    ties: str = "index"
    sparse: str = "positive"
    signed: bool = False
    gallery: int = 8
    similarity: bool = True

    def _check(self, where: str) -> None:
        super()._check(where)
        ks = self.k_percent
        if isinstance(ks, (int, float)) and not isinstance(ks, bool):
            ks = (ks,)
        if isinstance(ks, str) or not isinstance(ks, Sequence) or not ks:
            raise _bad(where, "k_percent", ks, "a list of one or more percentages in (0, 100], e.g. [5]")
        self._set("k_percent", tuple(dict.fromkeys(_k_percent(where, k) for k in ks)))
        self._set("threshold", _number(where, "threshold", self.threshold, 0.0, 100.0))
        self._set("alpha", _number(where, "alpha", self.alpha, 0.0, 1.0))
        _text(where, "ties", self.ties, choices=TIE_POLICIES)
        _text(where, "sparse", self.sparse, choices=SPARSE_POLICIES)
        _flag(where, "signed", self.signed)
        self._set("gallery", _integer(where, "gallery", self.gallery, 0))
        _flag(where, "similarity", self.similarity)

    def k_list(self) -> list[float]:
        return list(self.k_percent)

    @classmethod
    def _legacy_defaults(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        # Runs written before the sparse policy existed counted padding pixels (the paper's "pad"), and
        # before ties existed ranked ties by index; a missing threshold or alpha is the default.
        return {key: value for key, value in (("ties", "index"), ("sparse", "pad"), ("threshold", 50.0),
                                              ("alpha", 0.05)) if data.get(key) is None}


# The class-contrastive drop's sweep (percent of A's map removed) for a new fidelity run.
CONTRASTIVE_K: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0)
# What the deletion curve's removed pixels become in a new fidelity run (runs of earlier versions: their ``fill``).
DELETION_FILL = "blur"
# What the class-contrastive drop's removed pixels become, whatever the run's fill: a blur, so that no
# out-of-distribution colour stands in for them (metrics.contrastive).
CONTRASTIVE_FILL = "blur"


@dataclass(frozen=True)
class FidelitySettings(RunSettings):
    """The fidelity test's settings (``run_fidelity``).

    Attributes:
        k_percent: share of the most salient pixels removed for the confidence drop (percent, (0, 100]).
        fill: what the confidence drop's removed pixels become: "zero" (0 in the normalised input, the
            paper's), "mean" or "blur". steps: deletion/insertion steps (0 skips the curves).
        deletion_fill: what the deletion curve's removed pixels become (the insertion substrate is always
            the blur); None: ``DELETION_FILL`` ("blur") for a new run, the stored one on a resume (runs of
            earlier versions deleted with their ``fill``).
        contrastive_k: the sweep of the class-contrastive drop (percent of the top-1 map removed, blur
            fill, the change of logit top-1 minus logit top-2); () skips it; None: ``CONTRASTIVE_K`` for a
            new run, the stored sweep on a resume (runs of earlier versions have none: ()).
        alpha: the paired tests' significance level. eval_batch_size: perturbed images per forward.
    """

    kind: ClassVar[str] = "fidelity"
    k_percent: float = 50.0
    fill: str = "zero"
    steps: int = 20
    alpha: float = 0.05
    eval_batch_size: int = EVAL_BATCH_SIZE
    deletion_fill: str | None = None
    contrastive_k: tuple[float, ...] | None = None

    def _check(self, where: str) -> None:
        super()._check(where)
        self._set("k_percent", _k_percent(where, self.k_percent))
        _text(where, "fill", self.fill, choices=FILLS)
        self._set("steps", _integer(where, "steps", self.steps, 0))
        self._set("alpha", _number(where, "alpha", self.alpha, 0.0, 1.0))
        self._set("eval_batch_size", _integer(where, "eval_batch_size", self.eval_batch_size, 1))
        _text(where, "deletion_fill", self.deletion_fill, optional=True, choices=FILLS)
        ks = self.contrastive_k
        if ks is not None:
            if isinstance(ks, (int, float)) and not isinstance(ks, bool):
                ks = (ks,)
            if isinstance(ks, str) or not isinstance(ks, Sequence):
                raise _bad(where, "contrastive_k", ks, "a list of percentages in (0, 100] (empty: no "
                           "class-contrastive drop), e.g. [5, 10, 20, 50]")
            self._set("contrastive_k", tuple(sorted(dict.fromkeys(
                _number(where, "contrastive_k", k, 0.0, 100.0, low_open=True) for k in ks))))

    def k_list(self) -> list[float]:
        return [self.k_percent]

    @property
    def deletion_substrate(self) -> str:
        """The deletion curve's fill (``deletion_fill``, its default where unresolved)."""
        return self.deletion_fill if self.deletion_fill is not None else DELETION_FILL

    @property
    def contrastive_sweep(self) -> tuple[float, ...]:
        """The class-contrastive drop's k (``contrastive_k``, its default where unresolved)."""
        return self.contrastive_k if self.contrastive_k is not None else CONTRASTIVE_K

    def resolved(self, stored: RunSettings | None) -> FidelitySettings:
        """The settings with their None fields decided: the ``stored`` run's values when resuming one
        (``stored``: its config.json's settings; a run of an earlier version keeps its columns), the
        defaults of a new run otherwise."""
        previous = stored if isinstance(stored, FidelitySettings) else None
        changes: dict[str, Any] = {}
        if self.deletion_fill is None:
            changes["deletion_fill"] = previous.deletion_substrate if previous is not None else DELETION_FILL
        if self.contrastive_k is None:
            changes["contrastive_k"] = previous.contrastive_sweep if previous is not None else CONTRASTIVE_K
        return self.with_(**changes) if changes else self

    @classmethod
    def _k_from_json(cls, value: Any, where: str) -> Any:
        if isinstance(value, list) and len(value) == 1:
            return value[0]
        if isinstance(value, list):
            raise _bad(where, "k_percent", value, "a list of one percentage in (0, 100]")
        return value

    @classmethod
    def _legacy_defaults(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        # Runs written before the deletion fill and the class-contrastive drop existed deleted with their
        # fill and measured no contrastive drop.
        old = (("alpha", 0.05), ("eval_batch_size", LEGACY_EVAL_BATCH_SIZE), ("steps", 20), ("fill", "zero"))
        legacy: dict[str, Any] = {key: value for key, value in old
                                  if data.get(key) is None}
        if data.get("deletion_fill") is None:
            legacy["deletion_fill"] = data.get("fill") or "zero"
        if data.get("contrastive_k") is None:
            legacy["contrastive_k"] = ()
        return legacy


# Every kind's settings type, by kind (a kind registered by ``runs.runner.register`` adds its own).
SETTINGS_TYPES: dict[str, type[RunSettings]] = {"diagnose": DiagnoseSettings, "fidelity": FidelitySettings}
# The package's plug-in kinds, imported (and so registered) when a reader meets one of their runs.
PLUGIN_MODULES: dict[str, str] = {"explain-many": "case_saliency.runs.explain_many"}


def has_labels(dataset: Any) -> bool:
    """Whether the data has class labels: its ``class_names`` when it declares them (None: no
    labels), else whether its first item's label is a class (>= 0)."""
    if hasattr(dataset, "class_names"):
        return dataset.class_names is not None
    try:
        return int(dataset[0][1]) >= 0
    except Exception:  # an unreadable first item: no labels to rely on
        return False


def protocol_for(correct_only: bool | None, labelled: bool) -> tuple[bool, str]:
    """The one protocol rule of every run kind: (correct_only, the sentence config.json and
    the output state). Unless asked otherwise, the paper's protocol, correctly classified images
    only, where the data has labels; all images where it has none.

    Raises:
        ValueError: ``correct_only`` asked on data without labels.
    """
    if correct_only is None:
        if labelled:
            return True, "correctly classified images only (the default where the data has labels; the paper's)"
        return False, "all images (the default where the data has no labels)"
    if correct_only:
        if not labelled:
            raise ValueError("the data has no labels, so 'correct only' cannot be applied; use all images "
                             "(--all / correct_only=False)")
        return True, "correctly classified images only (asked)"
    return False, "all images (asked)"


def sample_warning(info: Mapping[str, Any]) -> str | None:
    """One line saying that a run's sample is smaller than asked, and why; None when it is not."""
    if not info.get("short") or not info.get("requested"):  # requested 0: all images, never short
        return None
    text = f"the sample has {info.get('size')} images, not the {info.get('requested')} asked for"
    if info.get("correct_only"):
        text += (f": {len(info.get('excluded', []))} of the {info.get('examined')} images examined were "
                 f"misclassified or unreadable and the dataset ({info.get('dataset_size')} images) ran out "
                 "(the ids are in meta.json, sample_info.excluded)")
    else:
        text += f": the dataset has {info.get('dataset_size')} images"
    return text
