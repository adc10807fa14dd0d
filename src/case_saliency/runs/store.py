"""The files of a run directory (see docs/run-format.md): atomic writes, the file names of images and
the validated results table. ``runs.rundir.RunDir`` is the one owner of the directory; it writes and
reads through these.

Durability: every (image, method) pair's rows are formatted in memory and appended with one
``write`` on a file opened with O_APPEND, so a SIGKILL leaves at worst one partial trailing write;
the file is fsync'd once per batch (``sync``) and on close, so a power loss costs at most the last
batch (an fsync per pair cost more than the model on small images, and serialised torchrun's ranks).
Every row ends with a ``crc32`` cell, a checksum of the row's other cells, so a row cut in the
middle but newline-terminated (or a blank or garbage line) is detected. On open (resume), a
trailing line without its newline is cut off; damaged lines are dropped with a warning naming file
and line; the rows of a pair that has fewer rows than a complete pair are dropped too; then
resuming skips exactly the pairs that are complete and recomputes the rest. Text fields are kept on
one line (newlines become spaces), so "a line" and "a row" are the same thing.

Readers (``read_results``, ``RunDir.read``) never change a run: ``summarize`` and ``report`` refuse a
damaged table, naming the file and the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..core.errors import CaseSaliencyError
from .rows import column_types

log = logging.getLogger("case_saliency")

CHECK_COLUMN = "crc32"  # the last cell of every row: crc32 of the line before it, 8 hex digits


class RunDirError(CaseSaliencyError, ValueError):
    """A directory is not a readable run directory, or a file in it is damaged; the message names
    the file (and line) and what to do."""


# ---------------------------------------------------------------------------------------------
# Atomic writes: the package's one way to replace a file.


def atomic_write(path: str | Path, data: str | bytes | Callable[[IO[bytes]], None]) -> Path:
    """Replace ``path`` atomically: write ``<name>.tmp`` beside it, fsync, rename over ``path``,
    fsync the folder. A reader (or a kill) sees the old file or the new one, never half of one.

    data: text (UTF-8), bytes, or a function that writes to the open binary file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write JSON atomically (strict JSON: NaN and infinities become null)."""
    text = json.dumps(_strict(data), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
    return atomic_write(path, text)


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def save_npz(path: str | Path, **arrays: Any) -> Path:
    """Write a compressed .npz atomically (the temporary ``<name>.npz.tmp`` is never matched by ``*.npz``)."""
    import numpy as np

    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; a file that is not one raises ``RunDirError`` naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} is damaged: not valid JSON ({error}); restore it, or start the run again in "
                          "a new directory") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} is damaged: expected a JSON object, found {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------
# File names.

MAX_STEM = 80  # characters of the readable part; with the hash a name stays far below 255 bytes


def file_stem(text: str) -> str:
    """A file name stem for an image id (or any text): the id's safe characters, cut to ``MAX_STEM``,
    then 12 hex digits of its sha256, so that names stay within file-system limits and two ids
    never share a name ("a b.png" and "a_b.png" differ)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text).strip(".")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{safe[-MAX_STEM:] or 'image'}-{digest}"


def gallery_path(run_dir: str | Path, image_id: str) -> Path:
    """Where a run keeps an image's gallery maps: ``gallery/<file_stem(image_id)>.npz``."""
    return Path(run_dir) / "gallery" / f"{file_stem(image_id)}.npz"


def legacy_stem(image_id: str) -> str:
    """The gallery stem of runs written before ``file_stem`` (read only, for old runs)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)


# ---------------------------------------------------------------------------------------------
# The results table.


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
    text = str(value)
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


def _checksum(line: str) -> str:
    return f"{zlib.crc32(line.encode('utf-8')):08x}"


def _csv_line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()


def format_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The CSV lines of ``rows`` (each ending with its crc32 cell and a newline)."""
    lines = []
    for row in rows:
        extra = set(row) - set(columns)
        if extra:
            raise KeyError(f"row has columns {sorted(extra)} that the results table does not have")
        line = _csv_line([format_value(row.get(column)) for column in columns])
        lines.append(f"{line},{_checksum(line)}\n")
    return "".join(lines)


def header_line(columns: Sequence[str]) -> str:
    return _csv_line([*columns, CHECK_COLUMN]) + "\n"


def check_cell(kind: str, text: str) -> str | None:
    """Why ``text`` is not a valid cell of type ``kind`` (None when it is)."""
    if kind == "text" or text == "":
        return None
    try:
        if kind == "float":
            float(text)
        elif kind == "int":
            int(text)
        elif kind == "bool":
            if text not in ("True", "False"):
                return f"{text!r} is not True/False"
        elif kind == "floats":
            [float(v) for v in text.split(" ")]
        elif kind == "ints":
            [int(v) for v in text.split(" ")]
    except ValueError:
        return f"{text[:40]!r} is not {'an' if kind == 'int' else 'a'} {kind}"
    return None


@dataclass(frozen=True)
class DamagedLine:
    """A line of results.csv that is not a valid row: its 1-based ``line`` number and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ResultsFile:
    """results.csv read and validated, unchanged on disk.

    columns: the data columns (without ``crc32``); rows: the valid rows' cells, as written;
    lines: each row's line number; damaged: lines that are not valid rows (blank, garbage, a row
    cut mid-line, a cell of the wrong type, a checksum that does not match); partial_tail: the
    file ends in a line without its newline (a write cut by a kill; never a row); checked: the
    table has the crc32 column (tables of earlier versions do not).
    """

    path: Path
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    damaged: list[DamagedLine] = field(default_factory=list)
    partial_tail: bool = False
    checked: bool = True

    def describe_damage(self, limit: int = 5) -> str:
        shown = "; ".join(str(d) for d in self.damaged[:limit])
        more = f"; and {len(self.damaged) - limit} more" if len(self.damaged) > limit else ""
        return f"{self.path} {shown}{more}"


def read_results(path: str | Path, columns: Sequence[str] | None = None) -> ResultsFile:
    """Read and validate results.csv without changing it.

    columns: the data columns expected (a different header raises ``RunDirError``); None accepts any
    header of known columns, with or without the crc32 column (tables of earlier versions).
    Every line is checked: cell count, each cell's type (the row types' ``cell_types``), and the checksum.
    """
    path = Path(path)
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    keep_upto = text.rfind("\n") + 1
    physical = text[:keep_upto].split("\n")[:-1]
    if not physical:
        if columns is None:
            raise RunDirError(f"{path} has no header line; it is not a results table of a run")
        return ResultsFile(path, list(columns), partial_tail=keep_upto != len(text))
    header = next(csv.reader([physical[0]]), [])
    checked = bool(header) and header[-1] == CHECK_COLUMN
    found = header[:-1] if checked else header
    if columns is not None:
        if found != list(columns) or not checked:
            raise RunDirError(f"{path} does not have the expected header {header_line(columns).strip()!r} "
                              f"(found {physical[0][:200]!r}); it belongs to another kind of run, or was written by "
                              "another version. Use a new run directory")
    elif not found or found[:2] != ["image_id", "method"]:
        raise RunDirError(f"{path} is not a results table of a run (header {physical[0][:200]!r})")
    known = column_types()
    types = [known.get(column, "text") for column in found]
    result = ResultsFile(path, list(found), partial_tail=keep_upto != len(text), checked=checked)
    width = len(found) + (1 if checked else 0)
    for number, line in enumerate(physical[1:], start=2):
        reason = _line_problem(line, width, types, found, checked)
        if isinstance(reason, str):
            result.damaged.append(DamagedLine(number, reason))
        else:
            result.rows.append(reason)
            result.lines.append(number)
    return result


def _line_problem(line: str, width: int, types: Sequence[str], columns: Sequence[str],
                  checked: bool) -> str | list[str]:
    """The cells of a valid row, or the reason the line is not one."""
    if not line.strip():
        return "blank line"
    if checked:
        body, _, check = line.rpartition(",")
        if not body or _checksum(body) != check:
            return "checksum does not match (a row cut or changed after it was written)"
    try:
        cells = next(csv.reader([line]))
    except csv.Error as error:
        return f"not a CSV row ({error})"
    if len(cells) != width:
        return f"{len(cells)} cells, expected {width}"
    if checked:
        cells = cells[:-1]
    if not cells[0] or not cells[1]:
        return "no image_id or method"
    for kind, column, cell in zip(types, columns, cells, strict=True):
        problem = check_cell(kind, cell)
        if problem:
            return f"column {column}: {problem}"
    return cells


class ResultsTable:
    """results.csv of one run, open for appending rows group by group; knows which (image_id, method)
    pairs are complete.

    rows_per_pair: how many rows a complete pair has (diagnose: one per k; fidelity: 1).
    sample_ids: when given, a table holding rows of other images is refused (the run's data changed).
    Opening repairs the file (module docstring): damaged lines are dropped with a warning that
    names the file and line, so their pairs are recomputed.
    """

    def __init__(self, path: Path, columns: Sequence[str], rows_per_pair: int = 1,
                 sample_ids: Iterable[str] | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        self.rows_per_pair = rows_per_pair
        self.done: set[tuple[str, str]] = set()
        self.rows_written = 0
        self.errors_written = 0
        self._repair_and_load(None if sample_ids is None else set(sample_ids))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._unsynced = False

    @staticmethod
    def inspect(path: Path, columns: Sequence[str], rows_per_pair: int = 1,
                sample_ids: Iterable[str] | None = None) -> set[tuple[str, str]]:
        """The complete pairs of an existing table, checking it as opening would, without writing."""
        if not Path(path).exists() or Path(path).stat().st_size == 0:
            return set()
        found = read_results(path, columns)
        kept, _ = complete_rows(found, rows_per_pair)
        _check_ids(found, kept, None if sample_ids is None else set(sample_ids))
        return {(cells[0], cells[1]) for cells in kept}

    def _repair_and_load(self, sample_ids: set[str] | None) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            atomic_write(self.path, header_line(self.columns))
            return
        found = read_results(self.path, self.columns)
        if found.damaged:
            log.warning("%s: %d damaged line(s) dropped, their rows are recomputed: %s", self.path,
                        len(found.damaged), "; ".join(str(d) for d in found.damaged[:10]))
        kept, dropped = complete_rows(found, self.rows_per_pair)
        _check_ids(found, kept, sample_ids)
        if found.damaged or dropped or found.partial_tail:
            atomic_write(self.path, header_line(self.columns) + "".join(
                f"{line},{_checksum(line)}\n" for line in (_csv_line(cells) for cells in kept)))
        self.done = {(cells[0], cells[1]) for cells in kept}

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append the rows of one (image_id, method) pair in a single write (fsync'd by ``sync`` or ``close``)."""
        if len(rows) != self.rows_per_pair:
            raise ValueError(f"a pair needs {self.rows_per_pair} rows, got {len(rows)}")
        self._write(format_rows(rows, self.columns))
        self.done.add((str(rows[0]["image_id"]), str(rows[0]["method"])))
        self.rows_written += len(rows)
        self.errors_written += sum(bool(row.get("error")) for row in rows)

    def append_cells(self, rows: Sequence[Sequence[str]]) -> None:
        """Append the rows of one pair given as cells already written once (a merge of part files)."""
        if len(rows) != self.rows_per_pair:
            raise ValueError(f"a pair needs {self.rows_per_pair} rows, got {len(rows)}")
        self._write("".join(f"{line},{_checksum(line)}\n" for line in (_csv_line(cells) for cells in rows)))
        self.done.add((str(rows[0][0]), str(rows[0][1])))
        self.rows_written += len(rows)
        error = self.columns.index("error") if "error" in self.columns else None
        self.errors_written += sum(bool(cells[error]) for cells in rows) if error is not None else 0

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (rare; e.g. a full disk) continues where it stopped
            written += os.write(self._fd, data[written:])
        self._unsynced = True

    def sync(self) -> None:
        """fsync what was appended since the last sync (the run calls it after each batch)."""
        if self._fd >= 0 and self._unsynced:
            os.fsync(self._fd)
            self._unsynced = False

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def complete_rows(found: ResultsFile, rows_per_pair: int) -> tuple[list[list[str]], int]:
    """The rows of complete pairs, and how many rows were dropped (pairs with fewer rows: a write
    cut between two of a pair's lines, or a damaged line among them)."""
    counts = Counter((cells[0], cells[1]) for cells in found.rows)
    over = {pair: count for pair, count in counts.items() if count > rows_per_pair}
    if over:
        raise RunDirError(f"{found.path} has more rows than expected for {len(over)} (image, method) pairs "
                          f"(e.g. {next(iter(over))}); it was written by a run with other settings")
    kept = [cells for cells in found.rows if counts[(cells[0], cells[1])] == rows_per_pair]
    return kept, len(found.rows) - len(kept)


def _check_ids(found: ResultsFile, kept: list[list[str]], sample_ids: set[str] | None) -> None:
    if sample_ids is None:
        return
    strangers = sorted({cells[0] for cells in kept} - sample_ids)
    if strangers:
        raise RunDirError(f"{found.path} holds rows of {len(strangers)} image(s) outside the run's sample "
                          f"(e.g. {strangers[0]!r}): the data changed since the run started. Start a new run "
                          "directory")


# ---------------------------------------------------------------------------------------------
# Reading a run directory.


def parse_cell(kind: str, text: str) -> Any:
    """A valid cell as a Python value: float (NaN when missing), int (None when missing), bool,
    text, or a list for the space-separated types."""
    if kind == "text":
        return text
    if kind == "float":
        return float(text) if text else math.nan
    if kind == "int":
        return int(text) if text else None
    if kind == "bool":
        return text == "True"
    if kind == "floats":
        return [float(v) for v in text.split(" ")] if text else []
    if kind == "ints":
        return [int(v) for v in text.split(" ")] if text else []
    raise ValueError(f"unknown column type {kind!r}")
