"""``RunDir``: the one owner of a run directory (docs/run-format.md).

It opens, creates and resumes a run (the data-identity, weights and settings checks), holds the
directory's lock (one writer at a time), appends validated rows, merges the part files of torchrun
ranks, writes the gallery and meta.json, and is the one reader: ``summarize``, ``report``, the
experiments and the demo read a run through ``RunDir.read``. Importable without torch (the readers
need pandas at most).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from .rows import ROW_TYPES, Row
from .settings import InvalidSettings, RunSettings, _shown
from .store import (RunDirError, ResultsTable, complete_rows, file_stem, legacy_stem, parse_cell, read_json,
                    read_results, save_npz, write_json)

log = logging.getLogger("case_saliency")

PARTS = "parts"
LOCK = "run.lock"
# Files that may be in a folder that holds no run yet: a start killed before config.json (written last).
START_FILES = {"meta.json", "meta.json.tmp", "config.json.tmp", LOCK}


class RunLocked(RunDirError):
    """Another process is writing the run directory."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# One writer at a time.


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunLock:
    """``run.lock`` in a run directory: the pid, host and start time of the one process writing it.

    ``acquire`` refuses (``RunLocked``, naming the holder) while the holder lives; a lock whose process
    is gone (killed) is taken over with a warning. ``release`` removes it if it is still ours.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> None:
        """Take the lock, or raise ``RunLocked`` naming the process that holds it.

        Raises:
            RunLocked: a live process (on this host) holds the lock.
        """
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released meanwhile
                pid, host = holder.get("pid"), holder.get("host")
                if isinstance(pid, int) and host == socket.gethostname() and _alive(pid) and pid != os.getpid():
                    raise RunLocked(f"{self.path.parent} is being written by another process (pid {pid}, since "
                                    f"{holder.get('since')}); a run directory has one writer at a time: wait for it "
                                    "to finish, or stop it and run this command again") from None
                if isinstance(pid, int) and host not in (None, socket.gethostname()):
                    raise RunLocked(f"{self.path.parent} is locked by pid {pid} on host {host!r} (since "
                                    f"{holder.get('since')}); if that run is gone, delete {self.path}") from None
                log.warning("warning: %s: took over the lock of process %s, which is gone (a run killed before "
                            "it could release it)", self.path, pid)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(record + "\n")
            self.held = True
            return
        raise RunLocked(f"{self.path}: could not take the lock (another process keeps taking it)")

    def release(self) -> None:
        if self.held:
            holder = self.holder()
            if holder and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------
# meta.json's fields, checked on read.

_META_FORMS: dict[str, tuple[tuple[type, ...], str]] = {
    "versions": ((dict,), "an object {package: version}"),
    "model": ((dict,), "an object (name, weights sha256, ...)"),
    "layer": ((str, type(None)), "a layer name or null"),
    "dataset": ((dict,), "an object (name, root, count, hash)"),
    "class_names": ((list, type(None)), "a list of class names (one per model output) or null"),
    "protocol": ((str,), "a text"),
    "sample": ((list,), "a list of dataset indices (integers >= 0)"),
    "sample_ids": ((list,), "a list of image ids (texts)"),
    "sample_info": ((dict,), "an object"),
    "started": ((str, type(None)), "a time (text) or null"),
    "finished": ((str, type(None)), "a time (text) or null"),
    "resumed": ((list,), "a list of times"),
    "errors_in_last_session": ((int,), "an integer"),
    "last_session": ((dict,), "an object"),
    "files": ((dict,), "an object {setting: sha256}"),
}


def check_meta(meta: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """meta.json's object, every field it has of its form (one message naming file, field and form).

    Raises:
        RunDirError: a field of another form.
    """
    for key, (types, form) in _META_FORMS.items():
        if key not in meta:
            continue
        value = meta[key]
        good = isinstance(value, types) and not isinstance(value, bool)
        if good and key == "class_names" and value is not None:  # numbers allowed: a label set of numbers
            good = all(isinstance(name, (str, int, float)) and not isinstance(name, bool) for name in value)
        elif good and key == "sample":
            good = all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)
        elif good and key == "sample_ids":
            good = all(isinstance(i, str) for i in value)
        if not good:
            raise RunDirError(f"{path}: {key} is {_shown(value)}, not {form}. Restore the file (from the run's "
                              "command), or start the run again in a new directory")
    if "sample" in meta and "sample_ids" in meta and len(meta["sample"]) != len(meta["sample_ids"]):
        raise RunDirError(f"{path}: 'sample' has {len(meta['sample'])} indices but 'sample_ids' "
                          f"{len(meta['sample_ids'])} ids; expected one id per index")
    return dict(meta)


def _stored_id(path: Path) -> str:
    """The image id a gallery file records (files of earlier versions: their stem)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            if "image_id" in data.files:
                return str(data["image_id"])
    except (OSError, ValueError):
        pass
    return path.stem


# ---------------------------------------------------------------------------------------------
# The run directory.


@dataclass
class RunDir:
    """A run directory: its ``settings`` (typed, from config.json), ``meta`` (meta.json, {} when
    absent), results.csv's ``columns`` and ``rows`` (cells as written, one dict per row; every row
    passed the checks of ``read_results``). ``typed_rows()`` gives each cell as a Python value;
    ``frame()`` a pandas DataFrame; ``gallery_files()`` the gallery by image id.

    Examples:
        >>> run = RunDir.read("runs/lite0")          # doctest: +SKIP
        >>> run.settings.k_percent, len(run.rows)    # doctest: +SKIP
    """

    path: Path
    settings: RunSettings | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    partial_tail: bool = False
    _lock: RunLock | None = field(default=None, repr=False)
    _created: bool = field(default=False, repr=False)

    # -- reading --------------------------------------------------------------------------------

    @classmethod
    def read(cls, run_dir: str | Path, kinds: Sequence[str] | None = None) -> RunDir:
        """Read a run directory without changing it.

        Args:
            run_dir: the directory a run wrote.
            kinds: the run kinds the caller reads (None: any); a run of another kind is refused.
        Returns:
            The run, validated.
        Raises:
            RunDirError: the directory is not a run, a JSON file or field is not valid (the message names
                file, field and expected form), results.csv has damaged lines (rerun the run's command to
                repair and recompute them), or an (image, method) pair appears more than once.
        """
        path = Path(run_dir)
        if not path.is_dir():
            what = "is a file" if path.exists() else "does not exist"
            raise RunDirError(f"{path} {what}, so it is not a run directory; give the directory a diagnose or "
                              "fidelity run wrote")
        if not (path / "config.json").exists():
            raise RunDirError(f"{path} has no config.json, so it is not a run directory; give the directory "
                              "that `case-saliency diagnose` or `case-saliency fidelity` wrote")
        run = cls(path)
        run.settings = run.read_settings()
        if kinds is not None and run.kind not in kinds:
            raise RunDirError(f"{path} holds a {run.kind!r} run; this reads {' and '.join(map(repr, kinds))} runs "
                              "(read any run in Python with case_saliency.RunDir.read(PATH).frame())")
        run.meta = check_meta(read_json(path / "meta.json"), path / "meta.json") if (path / "meta.json").exists() \
            else {}
        row_type = ROW_TYPES[run.kind]
        run.columns = row_type.columns()
        results = path / "results.csv"
        if results.exists() and results.stat().st_size:
            found = read_results(results)
            if found.damaged:
                raise RunDirError(f"{found.describe_damage()}. Run the run's command again (config.json 'command') "
                                  "to drop and recompute the damaged rows")
            if "error" not in found.columns:
                raise RunDirError(f"{results} has no 'error' column; it is not a results table of a {run.kind} run")
            run.columns, run.partial_tail = found.columns, found.partial_tail
            run.rows = [dict(zip(run.columns, cells, strict=True)) for cells in found.rows]
            run._refuse_duplicates(row_type)
        return run

    def read_settings(self) -> RunSettings:
        """config.json's settings, every field checked.

        Raises:
            RunDirError: config.json is not valid JSON, or a field is not of its form.
        """
        where = self.path / "config.json"
        try:
            return RunSettings.from_json(read_json(where), str(where))
        except InvalidSettings as error:
            raise RunDirError(f"{error}. Restore the file, or start the run again in a new directory") from None

    def _refuse_duplicates(self, row_type: type[Row]) -> None:
        keys = ["image_id", "method", *row_type.key_columns()]
        counts = Counter(tuple(row.get(key, "") for key in keys) for row in self.rows)
        twice = [(key, count) for key, count in counts.items() if count > 1]
        if twice:
            shown = "; ".join(f"{dict(zip(keys, key, strict=True))} x{count}" for key, count in twice[:3])
            raise RunDirError(f"{self.results_path} holds {len(twice)} row(s) more than once ({shown}"
                              f"{'; ...' if len(twice) > 3 else ''}): two processes wrote the run, or rows were "
                              "appended by hand. Remove the repeated lines, or run it again in a new directory")

    @property
    def kind(self) -> str:
        return self.settings.kind if self.settings is not None else ""

    @property
    def config(self) -> dict[str, Any]:
        """config.json's object (as the settings write it)."""
        return self.settings.to_json() if self.settings is not None else {}

    @property
    def results_path(self) -> Path:
        return self.path / "results.csv"

    @property
    def class_names(self) -> list[str] | None:
        names = self.meta.get("class_names")
        return [str(n) for n in names] if names else None

    def typed_rows(self) -> list[dict[str, Any]]:
        types = ROW_TYPES[self.kind].cell_types()
        return [{key: parse_cell(types.get(key, "text"), value) for key, value in row.items()} for row in self.rows]

    def frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame: floats (NaN when missing), ints (nullable), bools, text."""
        import pandas as pd

        types = ROW_TYPES[self.kind].cell_types()
        data: dict[str, Any] = {}
        for column in self.columns:
            kind = types.get(column, "text")
            cells = [row[column] for row in self.rows]
            if kind == "float":
                data[column] = pd.Series([parse_cell(kind, c) for c in cells], dtype="float64")
            elif kind == "int":
                values = [parse_cell(kind, c) for c in cells]
                data[column] = (pd.Series(values, dtype="int64") if None not in values
                                else pd.Series(values, dtype="Int64"))
            elif kind == "bool":
                data[column] = pd.Series([c == "True" for c in cells], dtype=bool)
            else:
                data[column] = pd.Series(cells, dtype=object)
        return pd.DataFrame(data, columns=self.columns)

    def gallery_files(self) -> dict[str, Path]:
        """{image_id: gallery file} in the order the images first appear in results.csv, then files
        of images not in the table yet (by name). Half-written ``*.tmp`` files are never listed."""
        folder = self.path / "gallery"
        if not folder.is_dir():
            return {}
        files = sorted(p for p in folder.glob("*.npz") if p.is_file())
        by_stem = {p.stem: p for p in files}
        out: dict[str, Path] = {}
        for image_id in dict.fromkeys(row["image_id"] for row in self.rows):
            path = by_stem.get(file_stem(image_id)) or by_stem.get(legacy_stem(image_id))
            if path is not None:
                out[image_id] = path
        claimed = set(out.values())
        for path in files:
            if path not in claimed:
                out[_stored_id(path)] = path
        return out

    def every_row_failed(self) -> str | None:
        """The first error when the table has rows and every one of them records an error, else None."""
        if self.rows and all(row.get("error") for row in self.rows):
            return self.rows[0]["error"]
        return None

    def finished(self) -> bool:
        """Whether the run's last session finished (meta.json ``finished``)."""
        return bool(self.meta.get("finished"))

    @staticmethod
    def is_finished(run_dir: str | Path) -> bool:
        """Whether the run in ``run_dir`` finished, reading meta.json only (checked as ``read`` does).

        Raises:
            RunDirError: meta.json is not valid, or a field is not of its form.
        """
        path = Path(run_dir) / "meta.json"
        return path.exists() and bool(check_meta(read_json(path), path).get("finished"))

    # -- writing --------------------------------------------------------------------------------

    def existing(self, kind: str) -> tuple[RunSettings, dict[str, Any]] | None:
        """(settings, meta) of the run in the directory; None when it does not exist or holds no run
        yet. Writes nothing: a file, a non-empty folder that is not a run, or a run of another kind is
        refused with ``RunDirError`` and left as it was."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} is a file; give a folder for the run")
        if path.is_symlink() and not path.exists():  # mkdir would fail with a bare "File exists"
            raise RunDirError(f"--out {path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                              "create that folder, or give another --out")
        if not path.is_dir():
            return None
        entries = {entry.name for entry in path.iterdir()}
        if not entries - START_FILES:
            return None
        if not (path / "config.json").exists() or not (path / "meta.json").exists():
            raise RunDirError(f"--out {path} is not empty and holds no run (no config.json and meta.json); give a "
                              "new or empty folder, or the folder of the run to resume")
        found = read_json(path / "config.json").get("kind")
        if found != kind:
            raise RunDirError(f"--out {path} holds a {found!r} run, not a {kind!r} run; give another folder")
        return self.read_settings(), check_meta(read_json(path / "meta.json"), path / "meta.json")

    def take(self, kind: str) -> None:
        """Become the directory's one writer: refuse a folder that is not ours (``existing``), create it
        if needed, take its lock (``RunLock``; held until ``release``).

        Raises:
            RunDirError: the folder holds something else. RunLocked: another process writes it.
        """
        self.existing(kind)  # before anything is written
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(self.path)
        try:
            self._lock.acquire()
        except BaseException:
            self._lock = None
            self.release()
            raise

    def release(self) -> None:
        """Release the lock; a folder ``take`` created and nothing was written to is removed."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()  # nothing was written: leave no trace
        self._created = False

    def resume_problems(self, old: RunSettings, meta: Mapping[str, Any], settings: RunSettings,
                        identity: Mapping[str, Any]) -> list[str]:
        """Why a run may not resume with ``settings`` on a model and data of this ``identity``
        ({"model": ..., "dataset": ..., "files": ...}, as ``meta_identity``); [] when it may."""
        problems = [f"it holds a run with other settings ({'; '.join(differ)}); resume it with the same settings "
                    "or choose a new run directory" for differ in [old.result_differences(settings)] if differ]
        for key in ("sha256", "weights_sha256"):
            was, now_ = (meta.get("model") or {}).get(key), (identity.get("model") or {}).get(key)
            if was and was != now_:
                problems.append(f"the model's weights changed since the run started ({key} {str(was)[:12]}... then, "
                                f"{str(now_)[:12]}... now): a run resumes only with the weights it started with; "
                                "restore them, or start a new run directory")
        for name, digest in (meta.get("files") or {}).items():
            current = (identity.get("files") or {}).get(name)
            if digest != current:
                problems.append(f"the file of setting {name!r} changed since the run started (sha256 "
                                f"{str(digest)[:12]}... then, {str(current)[:12]}... now); restore it, or start a "
                                "new run directory")
        changed = dataset_changes(meta.get("dataset") or {}, identity.get("dataset") or {})
        if changed:
            problems.append(f"the data changed since the run started ({'; '.join(changed)}); a run resumes only on "
                            "the same data: restore it, or start a new run directory")
        return problems

    def check_sample_ids(self, stored: Sequence[str] | None, ids: Sequence[str]) -> None:
        if stored is not None and list(stored) != list(ids):
            moved = next((p for p, (a, b) in enumerate(zip(stored, ids, strict=False)) if a != b),
                         min(len(stored), len(ids)) - 1)
            raise RunDirError(f"the data of {self.path} changed since the run started: sample image {moved + 1} was "
                              f"{stored[moved]!r}, it is now {ids[moved]!r}; start a new run directory")

    def table_files(self) -> list[Path]:
        """results.csv, then the part files of ranks (of this or an earlier, killed session)."""
        return [self.results_path, *sorted((self.path / PARTS).glob("rank-*.csv"))]

    def done_pairs(self, row_type: type[Row], rows_per_pair: int, ids: Sequence[str]) -> set[tuple[str, str]]:
        """The complete (image_id, method) pairs in results.csv and the part files, checked as opening would."""
        done: set[tuple[str, str]] = set()
        for path in self.table_files():
            done |= ResultsTable.inspect(path, row_type.columns(), rows_per_pair, ids)
        return done

    def commit(self, settings: RunSettings, meta: dict[str, Any], resumed: bool) -> None:
        """Write meta.json, then config.json (its presence marks a run): just before the first row."""
        self.path.mkdir(parents=True, exist_ok=True)
        if resumed:
            meta.setdefault("resumed", []).append(now())
        else:
            meta["started"] = now()
        meta["finished"] = None
        write_json(self.path / "meta.json", meta)
        write_json(self.path / "config.json", settings.to_json())

    def table(self, row_type: type[Row], rows_per_pair: int, ids: Sequence[str], rank: int | None) -> ResultsTable:
        """results.csv (``rank`` None) or the part file of a torchrun rank, open for appending."""
        target = self.results_path if rank is None else self.path / PARTS / f"rank-{rank}.csv"
        target.parent.mkdir(exist_ok=True)
        return ResultsTable(target, row_type.columns(), rows_per_pair, ids)

    def finish(self, meta: dict[str, Any], **extra: Any) -> None:
        meta.update(extra)
        meta["finished"] = now()
        write_json(self.path / "meta.json", meta)

    def write_gallery(self, path: Path, arrays: Mapping[str, Any]) -> None:
        """Merge this session's maps into the image's gallery file (an earlier session may hold others)."""
        import numpy as np

        merged: dict[str, Any] = {}
        if path.exists():
            with np.load(path) as old:
                merged = {key: old[key] for key in old.files}
        merged.update(arrays)
        path.parent.mkdir(exist_ok=True)
        save_npz(path, **merged)

    def merge_parts(self, row_type: type[Row], rows_per_pair: int, sample_ids: Sequence[str],
                    order: tuple[Sequence[str], int]) -> int:
        """Append the complete pairs of every ``parts/rank-*.csv`` that results.csv lacks, in the order a
        single process writes them (batch by batch; within a batch, method by method, then image by
        image), then delete the parts. Idempotent: killed half-way, it is simply run again.

        Args:
            order: (the methods in order, images per batch).
        Returns:
            The number of pairs appended.
        """
        parts = sorted((self.path / PARTS).glob("rank-*.csv"))
        if not parts:
            return 0
        methods, batch_size = order
        columns = row_type.columns()
        position = {image_id: p for p, image_id in enumerate(sample_ids)}
        rank_of = {m: i for i, m in enumerate(methods)}
        pairs: dict[tuple[str, str], list[list[str]]] = {}
        for part in parts:
            found = read_results(part, columns)
            if found.damaged:
                log.warning("%s: %d damaged line(s) left out of the merge, their rows are recomputed on resume: %s",
                            part, len(found.damaged), "; ".join(str(d) for d in found.damaged[:10]))
            kept, _ = complete_rows(found, rows_per_pair)
            grouped: dict[tuple[str, str], list[list[str]]] = {}
            for cells in kept:
                grouped.setdefault((cells[0], cells[1]), []).append(cells)
            for pair, rows in grouped.items():
                pairs.setdefault(pair, rows)  # a pair is complete in one part only; keep the first if not

        def key(pair: tuple[str, str]) -> tuple[int, int, int]:
            where = position.get(pair[0], len(position))
            return where // max(batch_size, 1), rank_of.get(pair[1], len(rank_of)), where

        appended = 0
        with ResultsTable(self.results_path, columns, rows_per_pair, sample_ids) as table:
            for pair in sorted(pairs, key=key):
                if pair not in table.done:
                    table.append_cells(pairs[pair])
                    appended += 1
        for part in parts:
            part.unlink()
        shutil.rmtree(self.path / PARTS, ignore_errors=True)
        return appended


def _short(value: Any) -> str:
    text = repr(value)
    return text[:15] + "...'" if isinstance(value, str) and len(value) > 16 else text


def dataset_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two dataset identities (keys both have; the root folder may move)."""
    keys = [key for key in old if key in new and key != "root"]
    return [f"{key} {_short(old[key])} then, {_short(new[key])} now" for key in keys if old[key] != new[key]]
