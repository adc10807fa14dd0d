"""The rows of results.csv as typed records, one type per run kind: each carries its columns (in
order), the type of every cell and its error-row form (the defaults of a row whose numbers could not
be computed). Importable without torch (the readers use it).

Cell types: ``text``, ``float`` ("nan" or empty = missing), ``int`` (empty = missing), ``bool``
(True/False), and space-separated lists ``floats`` / ``ints`` (may be empty). A column keeps its type
in every kind of run.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

NAN = math.nan
# Python annotations -> cell types (lists are kept as their space-separated text: ``field(metadata=...)``).
_CELL_OF_ANNOTATION = {"str": "text", "float": "float", "int": "int", "int | None": "int", "bool": "bool"}


def _cell_of(annotation: Any) -> str:
    """The cell type of a field's annotation: its text (``from __future__ import annotations``) or the
    type itself (``int``, ``int | None``)."""
    if not isinstance(annotation, str):
        args = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
        annotation = " | ".join(getattr(a, "__name__", str(a)) for a in args)
        annotation = annotation.replace("int | None", "int")
    try:
        return _CELL_OF_ANNOTATION[annotation]
    except KeyError:
        raise TypeError(f"a row field annotated {annotation!r}: use str, float, int, bool or int | None (lists: "
                        "_cells('ints') / _cells('floats'))") from None


def _cells(kind: str) -> Any:
    """A text field holding a space-separated list of ``kind`` ("ints" or "floats"), empty by default."""
    return field(default="", metadata={"cell": kind})


@dataclass
class Row:
    """One row of results.csv: an (image, method) pair's record (a kind may write several per pair,
    e.g. one per k). Every field but ``image_id`` and ``method`` has its error-row default."""

    kind: ClassVar[str] = ""
    # Columns that, with image_id and method, make a row's key (a kind writing several rows per pair).
    keys: ClassVar[tuple[str, ...]] = ()
    image_id: str
    method: str

    @classmethod
    def key_columns(cls) -> tuple[str, ...]:
        return cls.keys

    @classmethod
    def columns(cls) -> list[str]:
        """The data columns in file order (without the trailing ``crc32``)."""
        order = [f.name for f in fields(cls) if f.name != "error"]
        return [*order, "error"] if any(f.name == "error" for f in fields(cls)) else order

    @classmethod
    def cell_types(cls) -> dict[str, str]:
        """{column: its cell type}."""
        return {f.name: f.metadata.get("cell") or _cell_of(f.type) for f in fields(cls)}

    @classmethod
    def error_row(cls, image_id: str, method: str, error: str, **known: Any) -> dict[str, Any]:
        """The row of a pair whose numbers could not be computed.

        Args:
            image_id, method: the pair. error: the error text ("" for a row the caller fills in).
            **known: cells known despite the error (the label, the predicted classes, ...).
        Returns:
            {column: value} in file order: the fields' defaults (NaN, -1, "", False), then ``known``.
        """
        row: dict[str, Any] = {}
        for f in fields(cls):
            if f.default is not MISSING:
                row[f.name] = f.default
        row.update(image_id=image_id, method=method, **known, error=error)
        return {column: row[column] for column in cls.columns()}

    def as_dict(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in self.columns()}


@dataclass
class DiagnoseRow(Row):
    """A diagnose row: one (image, method, k) of the top-1/top-2 comparison (docs/run-format.md)."""

    kind: ClassVar[str] = "diagnose"
    keys: ClassVar[tuple[str, ...]] = ("k_percent",)
    k_percent: float = NAN
    agreement: float = NAN
    spearman: float = NAN
    ssim: float = NAN
    degenerate: bool = False
    class1: int = -1
    class2: int = -1
    prob1: float = NAN
    prob2: float = NAN
    label: int = -1
    contrast1: str = _cells("ints")
    contrast2: str = _cells("ints")
    other_in_contrast: bool = False
    positive1: int | None = None
    positive2: int | None = None
    sparse: bool = False
    error: str = ""


@dataclass
class EarlierFidelityRow(Row):
    """The columns of fidelity runs written before the class-contrastive drop: such a run resumes with
    them (``FidelitySettings.contrastive_k`` empty), and its summary leaves the drop out."""

    kind: ClassVar[str] = "fidelity"
    label: int = -1
    pred: int = -1
    prob_before: float = NAN
    prob_after: float = NAN
    drop_relative: float = NAN
    drop_absolute: float = NAN
    deletion_auc: float = NAN
    insertion_auc: float = NAN
    deletion_curve: str = _cells("floats")
    insertion_curve: str = _cells("floats")
    degenerate: bool = False
    contrast: str = _cells("ints")
    error: str = ""


@dataclass
class FidelityRow(EarlierFidelityRow):
    """A fidelity row: one (image, method) of the confidence drop, the deletion/insertion test and the
    class-contrastive drop (the change of logit ``pred`` minus logit ``class2``, the image's top-2
    class, when the top-k% of the map of ``pred`` is removed with a blur fill, at each k of the run's
    ``contrastive_k``: ``contrastive_drops``; ``contrastive_drop``: their trapezoid mean over k;
    ``margin_before``: the logit margin on the image)."""

    class2: int = -1
    margin_before: float = NAN
    contrastive_drop: float = NAN
    contrastive_drops: str = _cells("floats")


# Every kind's row type (a kind registered by ``runs.runner.register`` adds its own).
ROW_TYPES: dict[str, type[Row]] = {"diagnose": DiagnoseRow, "fidelity": FidelityRow}


def column_types() -> dict[str, str]:
    """{column: cell type} over every kind's row type."""
    out: dict[str, str] = {}
    for row_type in ROW_TYPES.values():
        out.update(row_type.cell_types())
    return out
