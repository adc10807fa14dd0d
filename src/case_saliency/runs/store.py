"""The run directory on disk (see docs/run-format.md): config.json, meta.json and an append-only
results.csv that survives being killed at any point.

Durability: every (image, method) pair's rows are formatted in memory and appended with one
``write`` on a file opened with O_APPEND, then fsync'd, so a SIGKILL leaves at worst one partial
trailing write. On open, a trailing line without its newline is cut off, and so are the rows of a
pair that has fewer rows than a complete pair has (a write cut between two of its lines); then
resuming skips exactly the pairs that are complete, and nothing is duplicated. Text fields are
kept on one line (newlines become spaces), so "a line" and "a row" are the same thing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

DIAGNOSE_COLUMNS = ["image_id", "method", "k_percent", "agreement", "spearman", "ssim", "degenerate", "class1",
                    "class2", "prob1", "prob2", "label", "contrast1", "contrast2", "error"]
FIDELITY_COLUMNS = ["image_id", "method", "label", "pred", "prob_before", "prob_after", "drop_relative",
                    "drop_absolute", "deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve", "error"]
COLUMNS = {"diagnose": DIAGNOSE_COLUMNS, "fidelity": FIDELITY_COLUMNS}


def format_value(value: Any) -> str:
    """One CSV cell: floats with 8 significant digits ("nan" for NaN), bools as True/False,
    text on one line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.8g}"
    if isinstance(value, int):
        return str(value)
    return " ".join(str(value).split()) if ("\n" in str(value) or "\r" in str(value)) else str(value)


def _csv_lines(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        extra = set(row) - set(columns)
        if extra:
            raise KeyError(f"row has columns {sorted(extra)} that the results table does not have")
        writer.writerow([format_value(row.get(column)) for column in columns])
    return buffer.getvalue()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically: a temporary file, fsync, then rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class ResultsTable:
    """results.csv of one run: append rows group by group; know which (image_id, method) pairs
    are complete.

    rows_per_pair: how many rows a complete pair has (diagnose: one per k; fidelity: 1).
    """

    def __init__(self, path: Path, columns: Sequence[str], rows_per_pair: int = 1):
        self.path = Path(path)
        self.columns = list(columns)
        self.rows_per_pair = rows_per_pair
        self.done: set[tuple[str, str]] = set()
        self._repair_and_load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _repair_and_load(self) -> None:
        header = _csv_lines([dict(zip(self.columns, self.columns, strict=False))], self.columns)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._atomic_write(header)
            return
        text = self.path.read_bytes().decode("utf-8", errors="replace")
        keep_upto = text.rfind("\n") + 1  # drop a trailing partial line (a cut write)
        lines = text[:keep_upto].splitlines(keepends=True)
        if not lines or lines[0] != header:
            raise ValueError(f"{self.path} does not start with the expected header {header.strip()!r}; "
                             "it belongs to another kind of run or format. Use a new run directory")
        rows = list(csv.reader(io.StringIO("".join(lines[1:]))))
        pairs = [(row[0], row[1]) for row in rows]
        counts = Counter(pairs)
        incomplete = {pair for pair, count in counts.items() if count < self.rows_per_pair}
        over = {pair: count for pair, count in counts.items() if count > self.rows_per_pair}
        if over:
            raise ValueError(f"{self.path} has more rows than expected for {len(over)} (image, method) pairs "
                             f"(e.g. {next(iter(over))}); it was written by a run with other settings")
        if incomplete:
            lines = [lines[0]] + [line for line, pair in zip(lines[1:], pairs, strict=False) if pair not in incomplete]
        if incomplete or keep_upto != len(text):
            self._atomic_write("".join(lines))
        self.done = set(counts) - incomplete

    def _atomic_write(self, text: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append the rows of one (image_id, method) pair in a single write, then fsync."""
        if len(rows) != self.rows_per_pair:
            raise ValueError(f"a pair needs {self.rows_per_pair} rows, got {len(rows)}")
        data = _csv_lines(rows, self.columns).encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (rare; e.g. a full disk) continues where it stopped
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        self.done.add((str(rows[0]["image_id"]), str(rows[0]["method"])))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
