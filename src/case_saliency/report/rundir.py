"""Reading a run directory (docs/run-format.md) into plain arrays for the figures and the page.

Only reads: a report never changes a run. Numbers come back as float64 arrays with NaN where the
table holds NaN or nothing (failed rows, degenerate pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runs.rows import ROW_TYPES
from ..runs.rundir import RunDir
from ..runs.store import RunDirError, legacy_stem

KINDS = tuple(ROW_TYPES)
__all__ = ["KINDS", "RunDirError", "GalleryItem", "Run", "read_run", "to_float", "safe_name", "check_report_target"]


@dataclass
class GalleryItem:
    """One gallery image: ``image`` (H, W, 3) uint8 as the model saw it, ``classes`` (2,) top-1 and
    top-2 class ids, ``probs`` (2,), ``label`` (-1 if unknown), ``maps`` {method: (2, H, W) float32}."""

    image_id: str
    image: np.ndarray
    classes: np.ndarray
    probs: np.ndarray
    label: int
    maps: dict[str, np.ndarray]


@dataclass
class Run:
    """The report's view of a run directory (``runs.rundir.RunDir``, the one reader): its rows,
    settings and meta, plus the gallery images and confusion.npy read as arrays."""

    stored: RunDir
    gallery: list[GalleryItem] = field(default_factory=list)
    confusion: np.ndarray | None = None

    @property
    def path(self) -> Path:
        return self.stored.path

    @property
    def kind(self) -> str:
        return self.stored.kind

    @property
    def config(self) -> dict:
        return self.stored.config

    @property
    def meta(self) -> dict:
        return self.stored.meta

    @property
    def rows(self) -> list[dict[str, str]]:
        return self.stored.rows

    @property
    def class_names(self) -> list[str] | None:
        return self.stored.class_names

    @property
    def model(self) -> str:
        return str(self.config.get("model") or (self.meta.get("model") or {}).get("name") or "model")

    @property
    def methods(self) -> list[str]:
        """Methods in the config's order, then any others found in the table."""
        listed = [str(m) for m in self.config.get("methods") or []]
        seen = {row["method"] for row in self.rows}
        return [m for m in listed if m in seen] + sorted(seen - set(listed))

    def class_name(self, class_id: int) -> str:
        """The class's name from meta.json, or ``class <id>`` when the run has no names."""
        names = self.class_names
        if names is not None and 0 <= class_id < len(names):
            return str(names[class_id])
        return f"class {class_id}"

    def column(self, method: str, name: str, **where: str) -> np.ndarray:
        """Values of a numeric column for one method's rows, in table order: (N,) float64."""
        return np.array([to_float(row.get(name, "")) for row in self.select(method, **where)], dtype=np.float64)

    def select(self, method: str, **where: str) -> list[dict[str, str]]:
        return [row for row in self.rows
                if row["method"] == method and all(row.get(key) == value for key, value in where.items())]

    def k_percents(self) -> list[str]:
        """The distinct k_percent cells of a diagnose table, in numeric order (as written)."""
        values = {row.get("k_percent", "") for row in self.rows}
        return sorted(values, key=lambda v: to_float(v))

    def curves(self, method: str, name: str) -> np.ndarray:
        """A fidelity curve column (``deletion_curve``/``insertion_curve``) as (N, S+1); rows without
        a curve (errors) are left out."""
        parsed = [np.array(row[name].split(), dtype=np.float64) for row in self.select(method)
                  if row.get(name, "").strip()]
        if not parsed:
            return np.zeros((0, 0))
        lengths = {len(p) for p in parsed}
        if len(lengths) != 1:
            raise RunDirError(f"{self.path / 'results.csv'}: {name} has curves of lengths {sorted(lengths)}; "
                              "the steps must be equal across rows of a run")
        return np.stack(parsed)


def to_float(cell: str | float | None) -> float:
    """A CSV cell as a float: empty -> NaN."""
    if isinstance(cell, (int, float)):
        return float(cell)
    cell = (cell or "").strip()
    if not cell:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return math.nan


def safe_name(text: str) -> str:
    """A short file stem for a label such as a k or a model name (image ids: ``runs.store.file_stem``)."""
    return legacy_stem(str(text))


def read_run(run_dir: Path) -> Run:
    """Read a run directory through ``RunDir.read`` (config.json, meta.json and a validated
    results.csv, every field checked), plus its gallery and confusion.npy."""
    stored = RunDir.read(run_dir, kinds=("diagnose", "fidelity"))
    run = Run(stored)
    run.gallery = _read_gallery(stored.gallery_files())
    if (stored.path / "confusion.npy").exists():
        run.confusion = np.load(stored.path / "confusion.npy", allow_pickle=False).astype(np.float64)
    return run


def _read_gallery(files: dict[str, Path]) -> list[GalleryItem]:
    """Gallery files in the order their images first appear in results.csv (``RunDir.gallery_files``)."""
    items = []
    for image_id, path in files.items():
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise RunDirError(f"{path} is damaged ({error}); delete it and rerun the run's command") from None
        with data:
            maps = {key[len("map_"):]: data[key].astype(np.float32) for key in data.files if key.startswith("map_")}
            items.append(GalleryItem(image_id, np.asarray(data["image"], dtype=np.uint8),
                                     np.asarray(data["classes"]).astype(np.int64).ravel(),
                                     np.asarray(data["probs"], dtype=np.float64).ravel(),
                                     int(np.asarray(data["label"]).ravel()[0]) if "label" in data.files else -1,
                                     maps))
    return items


# What a run directory holds (docs/run-format.md): a report never writes over one of these.
RUN_FILES = ("results.csv", "config.json", "meta.json", "confusion.npy", "run.lock")


def check_report_target(out: Path) -> None:
    """Refuse a report ``out`` that would replace something that is not a report: a folder, a file of
    a run directory, or an existing file that is not an HTML page this package wrote.

    Raises:
        RunDirError: naming ``out`` and what it holds.
    """
    out = Path(out)
    if out.is_dir():
        raise RunDirError(f"--out {out} is a folder; give the HTML file to write, e.g. {out / 'report.html'}")
    if out.name in RUN_FILES or out.suffix in (".csv", ".npz", ".npy", ".pt", ".pth"):
        raise RunDirError(f"--out {out} would replace a run's data file; give an .html file")
    if out.exists():
        try:
            head = out.open("rb").read(512).decode("utf-8", errors="replace").lstrip().lower()
        except OSError:
            head = ""
        if not head.startswith("<!doctype html"):
            raise RunDirError(f"--out {out} exists and is not an HTML report; give a new file (a report is only "
                              "written over an earlier report)")
