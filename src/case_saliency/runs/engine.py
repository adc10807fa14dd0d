"""The loop every run shares: plan (check the run directory and the data, draw the sample, find what
is done), shard the pending batches over the torchrun ranks, decode them in DataLoader workers,
check the settings on the first batch, write rows as they come, and merge the ranks' part files.

Single process: rows go straight to results.csv. Under ``torchrun`` (``WORLD_SIZE`` > 1): the
sample's fixed batches that still have work are dealt round robin, batch ``j`` to rank
``j % world`` (each image to exactly one rank; the same batches as a single process, so the same
numbers); rank ``r`` appends to ``parts/rank-<r>.csv``; at the end rank 0 merges every part file
into results.csv in sample order, skipping pairs already there, and deletes the parts. A run
killed at any point resumes with any number of ranks: what is done is what results.csv and every
part file hold, checked as a resume always is.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ..methods import SaliencyMethod
from .common import (SettingsError, dataset_changes, dataset_identity, finish_meta, model_device, now,
                     read_existing_run, select_sample, versions, warn_short_sample)
from .distributed import Group, Ranks, from_env
from .loading import Batch, batch_loader, default_workers, item_id
from .settings import RunSettings
from .store import ResultsTable, complete_rows, read_results, write_json

log = logging.getLogger("case_saliency")

PARTS = "parts"


@dataclass
class Plan:
    """What rank 0 found and every rank follows: the ``settings`` to store, the ``meta`` to write,
    the ``sample`` (dataset indices) and its ``sample_ids``, whether the run is ``resumed`` and
    which (image_id, method) pairs are ``done``. Nothing is written until ``commit``."""

    settings: RunSettings
    meta: dict
    sample: list[int]
    sample_ids: list[str]
    resumed: bool
    done: set[tuple[str, str]] = field(default_factory=set)

    def commit(self, run_dir: Path) -> None:
        """Write meta.json, then config.json (its presence marks a run): just before the first row."""
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.resumed:
            self.meta.setdefault("resumed", []).append(now())
        else:
            self.meta["started"] = now()
        self.meta["finished"] = None
        write_json(run_dir / "meta.json", self.meta)
        write_json(run_dir / "config.json", self.settings.to_json())


def table_files(run_dir: Path) -> list[Path]:
    """results.csv, then the part files of ranks (of this or an earlier, killed session)."""
    return [run_dir / "results.csv", *sorted((run_dir / PARTS).glob("rank-*.csv"))]


def plan_run(settings: RunSettings, model: Any, dataset: Any, run_dir: Path, *, columns: Sequence[str],
             rows_per_pair: int, workers: int = 0, progress: bool = False) -> Plan:
    """Check ``run_dir`` (new, or a run with the same settings on the same data) and draw the sample
    (new) or read it (resumed); writes nothing. Refusals raise ``ValueError`` naming what differs."""
    existing = read_existing_run(run_dir, settings.kind)
    identity = dataset_identity(dataset)
    if existing is not None:
        old_config, meta = existing
        differ = RunSettings.from_json(old_config).result_differences(settings)
        if differ:
            raise ValueError(f"{run_dir} holds a run with other settings ({'; '.join(differ)}); resume it with the "
                             "same settings or choose a new run directory")
        changed = dataset_changes(meta.get("dataset") or {}, identity)
        if changed:
            raise ValueError(f"the data of {run_dir} changed since the run started ({'; '.join(changed)}); a run "
                             "resumes only on the same data: restore it, or start a new run directory")
        sample = [int(i) for i in meta["sample"]]
        ids = [item_id(dataset, i) for i in sample]
        stored = meta.get("sample_ids")
        if stored is not None and list(stored) != ids:
            moved = next((p for p, (a, b) in enumerate(zip(stored, ids, strict=False)) if a != b),
                         min(len(stored), len(ids)) - 1)
            raise ValueError(f"the data of {run_dir} changed since the run started: sample image {moved + 1} was "
                             f"{stored[moved]!r}, it is now {ids[moved]!r}; start a new run directory")
        meta["sample_ids"] = ids
        done: set[tuple[str, str]] = set()
        for path in table_files(run_dir):
            done |= ResultsTable.inspect(path, columns, rows_per_pair, ids)
        return Plan(settings, meta, sample, ids, True, done)
    net = model.model
    info: dict = {}
    sample = select_sample(net, dataset, model.transform, settings.n, settings.seed, settings.correct_only,
                           settings.batch_size, model_device(net), workers, progress, record=info)
    ids = [item_id(dataset, i) for i in sample]
    meta = {"versions": versions(), "model": model.identity or {"name": model.name}, "layer": settings.layer,
            "dataset": identity, "class_names": model.class_names or getattr(dataset, "class_names", None),
            "protocol": settings.protocol, "sample": sample, "sample_ids": ids, "sample_info": info}
    return Plan(settings, meta, sample, ids, False, set())


@dataclass
class Work:
    """What one batch produced, not yet written: the rows of each (image, method) pair, each method's
    error text per decodable image it tried ("" = success), and gallery files to write."""

    groups: list[list[dict]] = field(default_factory=list)
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    gallery: list[tuple[Path, dict]] = field(default_factory=list)


@dataclass
class RunContext:
    """What a kind's batch job works with: the run directory, its settings, the model (network,
    ``transform``, ``class_names``), the built ``methods``, their ``device`` and the pairs ``done``."""

    run_dir: Path
    settings: RunSettings
    net: nn.Module
    transform: Callable
    methods: dict[str, SaliencyMethod]
    device: torch.device
    done: set[tuple[str, str]]


class Job(Protocol):
    """A kind's work on one batch."""

    def needs(self, start: int, ids: Sequence[str]) -> bool:
        """Whether the batch at sample position ``start`` with these image ids has anything to do."""
        ...

    def compute(self, batch: Batch, tick: Callable[[float], None]) -> Work:
        """The batch's missing rows (``tick(images)`` advances the progress bar as work is done)."""
        ...


class FirstBatchCheck:
    """Finds settings that fail on every image (a non-spatial ``--layer``, a confusion matrix of
    another size) on the first batch with decodable images, before any row is written: a method
    that failed on every image it tried there raises ``SettingsError`` with the error."""

    def __init__(self) -> None:
        self.pending = True

    def check(self, outcomes: dict[str, list[str]]) -> None:
        if not self.pending:
            return
        for name, errors in outcomes.items():
            if errors and all(errors):
                raise SettingsError(f"method {name!r} failed on every image of the first batch ({len(errors)}), "
                                    f"so the settings are at fault, not an image: {errors[0]}")
        if any(outcomes.values()):
            self.pending = False


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} images [{elapsed}<{remaining}, {rate_fmt}]"


def execute(settings: RunSettings, model: Any, dataset: Any, run_dir: Path, methods: dict[str, SaliencyMethod], *,
            columns: Sequence[str], rows_per_pair: int, make_job: Callable[[RunContext], Job], progress: bool = True,
            workers: int | None = None) -> Path:
    """Plan, shard, compute and write a run (module docstring); returns ``run_dir``.

    model: the run's ``LoadedModel`` (network, transform, class names, identity). methods: built.
    workers: DataLoader processes per rank (None: ``default_workers``).
    """
    ranks = from_env()
    net = model.model.eval()
    device = model_device(net)
    workers = default_workers(ranks.world) if workers is None else int(workers)
    group = Group(ranks, device)
    try:
        plan = _shared_plan(group, ranks, lambda: plan_run(settings, model, dataset, run_dir, columns=columns,
                                                           rows_per_pair=rows_per_pair, workers=workers,
                                                           progress=progress))
        if plan.resumed and ranks.main:
            complete = _images_done(plan, settings.methods)
            log.info("resuming %s: %d of %d images done", run_dir, complete, len(plan.sample))
        if ranks.main:
            warn_short_sample(plan.meta)
        context = RunContext(run_dir, settings, net, model.transform, methods, device, plan.done)
        job = make_job(context)
        size = settings.batch_size
        chunks = [list(range(start, min(start + size, len(plan.sample)))) for start in range(0, len(plan.sample), size)]
        pending = [chunk for chunk in chunks if job.needs(chunk[0], [plan.sample_ids[p] for p in chunk])]
        mine = pending[ranks.rank::ranks.world]
        bar = _bar(settings.kind, ranks, sum(len(c) for c in mine), progress)
        advance = _clamped(bar)
        started = time.perf_counter()
        loader = iter(batch_loader(dataset, model.transform, plan.sample, plan.sample_ids, mine, workers=workers,
                                   pin_memory=device.type == "cuda"))
        check = FirstBatchCheck()
        first, problem = None, None
        try:
            batch = next(loader, None)
            if batch is not None:
                first = job.compute(batch, advance)
                check.check(first.outcomes)
        except SettingsError as error:
            problem = str(error)
        problems = [(rank, text) for rank, text in enumerate(group.gather(problem)) if text]
        if problems:
            rank, text = problems[0]
            raise SettingsError(text + (f" (found by rank {rank})" if ranks.distributed else ""))
        if ranks.main:
            plan.commit(run_dir)
        group.barrier()
        target = run_dir / "results.csv" if not ranks.distributed else run_dir / PARTS / f"rank-{ranks.rank}.csv"
        target.parent.mkdir(exist_ok=True)
        with ResultsTable(target, columns, rows_per_pair, plan.sample_ids) as table:
            if first is not None:
                _write(first, table, plan.done)
            for batch in loader:
                work = job.compute(batch, advance)
                check.check(work.outcomes)
                _write(work, table, plan.done)
            errors = table.errors_written
        bar.close()
        errors = group.total(errors)
        images = group.total(sum(len(chunk) for chunk in mine))
        group.barrier()
        seconds = time.perf_counter() - started
        if ranks.main:
            merge_parts(run_dir, columns, rows_per_pair, plan.sample_ids, settings.methods, settings.batch_size)
            finish_meta(run_dir, plan.meta, errors_in_last_session=errors,
                        last_session={"images": images, "seconds": round(seconds, 3), "ranks": ranks.world,
                                      "workers": workers})
        group.barrier()
    finally:
        group.close()
    return run_dir


def _shared_plan(group: Group, ranks: Ranks, make: Callable[[], Plan]) -> Plan:
    """Rank 0 plans; every rank gets the plan, or raises the error rank 0 met."""
    outcome: Plan | BaseException | None = None
    if ranks.main:
        try:
            outcome = make()
        except (ValueError, FileNotFoundError) as error:
            if not ranks.distributed:
                raise
            outcome = error
    outcome = group.share(outcome)
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome is not None
    return outcome


def _images_done(plan: Plan, methods: Sequence[str]) -> int:
    return sum(all((image_id, m) in plan.done for m in methods) for image_id in plan.sample_ids)


def _bar(kind: str, ranks: Ranks, total: int, progress: bool) -> Any:
    desc = kind if not ranks.distributed else f"{kind} (rank 0 of {ranks.world}: its share)"
    return tqdm(total=total, desc=desc, unit="img", bar_format=BAR_FORMAT, disable=not (progress and ranks.main))


def _clamped(bar: Any) -> Callable[[float], None]:
    """``bar.update`` that stops at the total: the jobs advance in fractions of images, whose float
    sum can pass the total by a rounding error (tqdm then warns "clamping frac")."""

    def advance(amount: float) -> None:
        bar.update(max(0.0, min(float(amount), bar.total - bar.n)))

    return advance


def _write(work: Work, table: ResultsTable, done: set[tuple[str, str]]) -> None:
    for rows in work.groups:
        if (str(rows[0]["image_id"]), str(rows[0]["method"])) not in done:
            table.append(rows)
    for path, arrays in work.gallery:
        write_gallery(path, arrays)


def write_gallery(path: Path, arrays: dict) -> None:
    """Merge this session's maps into the image's gallery file (an earlier session may hold others)."""
    import numpy as np

    from .store import save_npz

    merged: dict = {}
    if path.exists():
        with np.load(path) as old:
            merged = {key: old[key] for key in old.files}
    merged.update(arrays)
    path.parent.mkdir(exist_ok=True)
    save_npz(path, **merged)


def merge_parts(run_dir: Path, columns: Sequence[str], rows_per_pair: int, sample_ids: Sequence[str],
                methods: Sequence[str], batch_size: int = 1) -> int:
    """Append the complete pairs of every ``parts/rank-*.csv`` that results.csv lacks, in the order a
    single process writes them (batch by batch; within a batch, method by method, then image by image),
    then delete the parts. Idempotent: killed half-way, it is simply run again. Returns the number of
    pairs appended."""
    parts = sorted((run_dir / PARTS).glob("rank-*.csv"))
    if not parts:
        return 0
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
    appended = 0
    with ResultsTable(run_dir / "results.csv", columns, rows_per_pair, sample_ids) as table:
        def key(pair: tuple[str, str]) -> tuple[int, int, int]:
            where = position.get(pair[0], len(position))
            return where // max(batch_size, 1), rank_of.get(pair[1], len(rank_of)), where

        order = sorted(pairs, key=key)
        for pair in order:
            if pair in table.done:
                continue
            table.append_cells(pairs[pair])
            appended += 1
    for part in parts:
        part.unlink()
    shutil.rmtree(run_dir / PARTS, ignore_errors=True)
    return appended

