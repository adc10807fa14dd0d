"""A run's settings as one typed, frozen value: what ``run_diagnose``/``run_fidelity`` are asked,
what the loops read, and what config.json stores (``to_json``/``from_json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Settings that change the numbers in results.csv: a resumed run must have them unchanged.
RESULT_KEYS = ("kind", "model", "dataset", "methods", "n", "seed", "k_percent", "layer", "contrast",
               "contrast_source", "correct_only", "fill", "signed", "steps", "weights", "ties", "sparse")


@dataclass(frozen=True)
class RunSettings:
    """Everything that defines a diagnose or fidelity run (docs/run-format.md, config.json).

    kind: "diagnose" or "fidelity". model, weights, dataset: names as given (weights: file or source, or
    None). methods: method names, in order. n: images to sample (0: all); seed: the sample's seed.
    k_percent: diagnose: agreement at each k; fidelity: one k, the share of pixels removed. threshold,
    alpha: the summary's test (summary-only: may change on resume). layer: the target layer used;
    contrast: the spec of CASE's contrast where a method spec sets none (``classifier:1``, ...),
    contrast_source: its confusion matrix file or classifier layer (None for image-level contrasts),
    method_contrasts: each method label's contrast spec (None for methods without one). ties, sparse:
    diagnose's agreement policies (``metrics.agreement``; None for fidelity). correct_only and protocol:
    the images kept, and why (``protocol_for``). fill, steps: fidelity's removal fill and
    deletion/insertion steps (None for diagnose); signed: diagnose on raw signed maps. batch_size:
    images per batch (a fixed chunking of the sample, so a resumed run computes the same numbers);
    eval_batch_size: fidelity's perturbed images per forward; gallery: diagnose images whose maps are
    kept; command: the command line.
    """

    kind: str
    model: str
    dataset: str
    methods: tuple[str, ...]
    n: int
    seed: int
    k_percent: tuple[float, ...]
    layer: str | None
    contrast: str
    correct_only: bool
    protocol: str = ""
    contrast_source: str | None = None
    method_contrasts: Mapping[str, str | None] = field(default_factory=dict)
    ties: str | None = None
    sparse: str | None = None
    weights: str | None = None
    threshold: float | None = None
    alpha: float = 0.05
    fill: str | None = None
    signed: bool = False
    steps: int | None = None
    batch_size: int = 16
    eval_batch_size: int | None = None
    gallery: int = 0
    command: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys of later versions, kept as read

    def __post_init__(self) -> None:
        if self.kind not in ("diagnose", "fidelity"):
            raise ValueError(f"kind={self.kind!r}: a run is 'diagnose' or 'fidelity'")
        object.__setattr__(self, "methods", tuple(str(m) for m in self.methods))
        object.__setattr__(self, "k_percent", tuple(float(k) for k in self.k_percent))

    def to_json(self) -> dict[str, Any]:
        """config.json's object: the fields in order (tuples as lists), then ``extra``."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["methods"], data["k_percent"] = list(self.methods), list(self.k_percent)
        data["method_contrasts"] = dict(self.method_contrasts)
        return {**data, **dict(self.extra)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSettings:
        """A config.json object (also of earlier versions: missing keys take their defaults)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: data[key] for key in known if key in data}
        values.setdefault("methods", ())
        values.setdefault("k_percent", ())
        for key in ("model", "dataset", "contrast"):
            values.setdefault(key, "")
        for key, default in (("n", 0), ("seed", 0), ("layer", None), ("correct_only", False)):
            values.setdefault(key, default)
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})

    def result_differences(self, other: RunSettings) -> list[str]:
        """The result-shaping settings (``RESULT_KEYS``) that differ, as "key: this there, other now"."""
        mine, theirs = self.to_json(), other.to_json()
        return [f"{key}: {mine.get(key)!r} there, {theirs.get(key)!r} now" for key in RESULT_KEYS
                if mine.get(key) != theirs.get(key)]

    def with_(self, **changes: Any) -> RunSettings:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """The one protocol rule of diagnose and fidelity: (correct_only, the sentence config.json and
    the output state). Unless asked otherwise, the paper's protocol, correctly classified images
    only, where the data has labels; all images where it has none."""
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


def sample_warning(info: dict) -> str | None:
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
