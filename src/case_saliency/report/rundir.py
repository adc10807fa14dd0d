"""Reading a run directory (docs/run-format.md) into plain arrays for the figures and the page.

Only reads: a report never changes a run. Numbers come back as float64 arrays with NaN where the
table holds NaN or nothing (failed rows, degenerate pairs).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("diagnose", "fidelity")


class RunDirError(ValueError):
    """The directory is not a readable run directory; the message says what is missing."""


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
    """A run directory read into memory."""

    path: Path
    kind: str
    config: dict
    meta: dict
    rows: list[dict[str, str]]
    class_names: list[str] | None
    gallery: list[GalleryItem] = field(default_factory=list)
    confusion: np.ndarray | None = None

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


def to_float(cell: str) -> float:
    """A CSV cell as a float: empty -> NaN."""
    cell = (cell or "").strip()
    if not cell:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return math.nan


def safe_name(image_id: str) -> str:
    """The gallery file stem the runs write for an image id (ids may be relative paths)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path} is not valid JSON ({error}); rewrite it or rerun the run") from error


def read_run(run_dir: Path) -> Run:
    """Read config.json, meta.json, results.csv, gallery/*.npz and confusion.npy of a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a directory; give the directory a diagnose or fidelity run wrote")
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise RunDirError(f"{run_dir} has no config.json, so it is not a run directory; give the directory "
                          "that `case-saliency diagnose` or `case-saliency fidelity` wrote")
    config = _read_json(config_path)
    kind = config.get("kind")
    if kind not in KINDS:
        raise RunDirError(f"{config_path}: kind={kind!r}; a report needs a run of kind 'diagnose' or 'fidelity'")
    meta = _read_json(run_dir / "meta.json") if (run_dir / "meta.json").exists() else {}
    results = run_dir / "results.csv"
    rows: list[dict[str, str]] = []
    if results.exists():
        with open(results, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("method")]
    names = meta.get("class_names")
    run = Run(run_dir, kind, config, meta, rows, [str(n) for n in names] if names else None)
    run.gallery = _read_gallery(run_dir / "gallery", [row["image_id"] for row in rows])
    if (run_dir / "confusion.npy").exists():
        run.confusion = np.load(run_dir / "confusion.npy", allow_pickle=False).astype(np.float64)
    return run


def _read_gallery(folder: Path, image_ids: list[str]) -> list[GalleryItem]:
    """Gallery files in the order their images first appear in results.csv (files whose image is
    not in the table yet come last, by name). Half-written ``*.tmp.npz`` files are skipped."""
    if not folder.is_dir():
        return []
    files = {p.stem: p for p in folder.glob("*.npz") if not p.name.endswith(".tmp.npz")}
    order: list[tuple[str, str]] = []
    for image_id in dict.fromkeys(image_ids):
        stem = safe_name(image_id)
        if stem in files and all(stem != s for s, _ in order):
            order.append((stem, image_id))
    order += [(stem, stem) for stem in sorted(files) if all(stem != s for s, _ in order)]
    items = []
    for stem, image_id in order:
        with np.load(files[stem], allow_pickle=False) as data:
            maps = {key[len("map_"):]: data[key].astype(np.float32) for key in data.files if key.startswith("map_")}
            items.append(GalleryItem(image_id, np.asarray(data["image"], dtype=np.uint8),
                                     np.asarray(data["classes"]).astype(np.int64).ravel(),
                                     np.asarray(data["probs"], dtype=np.float64).ravel(),
                                     int(np.asarray(data["label"]).ravel()[0]) if "label" in data.files else -1,
                                     maps))
    return items
