"""The runner: the run loop every run kind shares, once: start (the model, the settings resolved, the methods
built), plan (a new run's sample, or a resumed run's checks through ``RunDir``), shard the batches over
torchrun ranks, decode them in DataLoader workers, compute each batch's rows (the whole batch first,
image by image after a failed batch), write them, merge the ranks' parts and finish meta.json.

A run kind is a plug-in (docs/run-kinds.md): a ``RunKind`` subclass names its settings type and its
row type and says how to compute a batch's rows; everything else is here.

Distributed runs: rank 0 takes the run directory's lock and plans (a new sample or the resume
checks) and shares the plan; every rank computes its share of the pending batches (round robin)
into ``parts/rank-<r>.csv``; rank 0 merges them into results.csv in the order one process writes.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..core.capture import model_device
from ..core.contrast import ContrastStrategy, classifier_layer, contrast_spec, default_contrast, leave_pair_out
from ..core.errors import CaseSaliencyError
from ..core.maps import SaliencyMaps
from ..methods import SaliencyMethod, explain_shared
from ..methods.spec import build_method as build_from_spec
from ..methods.spec import follows_run_contrast, parse_method_list
from ..models import LoadedModel
from ..models.loader import sha256_file
from .distributed import Group, Ranks, from_env
from .loading import Batch, ImageSource, batch_loader, default_workers, error_text, item_id
from .rows import ROW_TYPES, Row
from .rundir import RunDir
from .sampling import select_sample
from .settings import SETTINGS_TYPES, RunSettings, has_labels, protocol_for, sample_warning
from .store import RunDirError

log = logging.getLogger("case_saliency")

S = TypeVar("S", bound=RunSettings)
State = TypeVar("State")


class SettingsError(CaseSaliencyError, ValueError):
    """Settings that make every image fail (found on the first batch, before any row is written)."""


@dataclass(frozen=True)
class RunOptions:
    """How a run is executed, not what it computes (nothing here goes to config.json).

    Attributes:
        confusion: a confusion matrix (array, file or ``ConfusionNeighbours``) for ``confusion:K``
            contrasts. contrast: CASE's run contrast as a strategy object, when a user built one (its
            spec is the settings' ``contrast``). progress: a progress bar. workers: DataLoader processes
            decoding images per rank (None: from the CPU count).
    """

    confusion: Any = None
    contrast: ContrastStrategy | None = None
    progress: bool = True
    workers: int | None = None


# ---------------------------------------------------------------------------------------------
# Starting: the model, the settings resolved, the methods.

# Keywords of the ``run_*`` conveniences that describe a bare model rather than the run.
MODEL_KEYWORDS = ("transform", "class_names", "model_name")


def settings_from(settings_type: type[S], settings: S | None, keywords: dict[str, Any]) -> S:
    """The settings of a ``run_*`` call: ``settings`` (or the defaults) with the keyword fields.
    ``dataset_name`` is the old name of ``dataset``."""
    if "dataset_name" in keywords:
        keywords["dataset"] = keywords.pop("dataset_name") or ""
    if keywords.get("dataset") is None:
        keywords.pop("dataset", None)
    base = settings if settings is not None else settings_type()
    return base.with_(**keywords) if keywords else base


def as_model(model: LoadedModel | nn.Module, keywords: dict[str, Any]) -> LoadedModel:
    """The run's model: a ``LoadedModel``, or a bare module with ``transform`` (and ``class_names``,
    ``model_name``), popped from ``keywords``."""
    transform, names, name = (keywords.pop(key, None) for key in MODEL_KEYWORDS)
    return LoadedModel.wrap(model, transform, names, None, name)


def contrast_from(keywords: dict[str, Any]) -> ContrastStrategy | None:
    """A contrast strategy object among the keywords, replaced by its spec (the settings hold text)."""
    contrast: ContrastStrategy | str | None = keywords.get("contrast")
    if contrast is None or isinstance(contrast, str):
        return None
    keywords["contrast"] = contrast_spec(contrast)
    return contrast


def check_methods(methods: Sequence[str] | str) -> list[str]:
    """The labels of method specs (``gradcam``, ``case(contrast=top:1)``, ``case:scorecam``, see
    :mod:`case_saliency.methods.spec`), each naming a registered method with options it takes;
    duplicates removed in order.

    Raises:
        ValueError: a bad spec, named, with what exists.
    """
    return [spec.label for spec in parse_method_list(methods if isinstance(methods, str) else list(methods))]


def start(settings: S, model: LoadedModel, dataset: ImageSource, options: RunOptions
          ) -> tuple[S, dict[str, SaliencyMethod]]:
    """The settings resolved (the protocol rule applied, the layer the methods use, CASE's contrast and
    where it comes from, the model and data names) and the built methods."""
    names = check_methods(settings.methods)
    if settings.layer is not None:  # the asked layer (dropping the default layer's token reshape)
        model = LoadedModel.wrap(model, target_layer=settings.layer)
    # The one place the default is decided; the diagnostic's leaves the other compared class out.
    diagnostic = settings.kind == "diagnose"
    contrast = settings.contrast or default_contrast(options.confusion, diagnostic=diagnostic)
    run_contrast: ContrastStrategy | str = options.contrast if options.contrast is not None else contrast
    built = {name: build_from_spec(parse_method_list([name])[0], model, run_contrast=run_contrast,
                                   confusion=options.confusion) for name in names}
    if diagnostic:  # the other contrastive methods' own ranked contrasts (Finer-CAM's) leave the pair out too
        for label, method in built.items():
            spec = parse_method_list([label])[0]
            if method.contrast is not None and "contrast" not in spec.options and not follows_run_contrast(spec):
                method.contrast = leave_pair_out(method.contrast)
    layer = next((m.layer_name for m in built.values() if m.layer_name is not None), model.target_layer)
    keep_correct, protocol = protocol_for(settings.correct_only, has_labels(dataset))
    resolved = settings.with_(
        model=settings.model or model.name,
        dataset=settings.dataset or str(getattr(dataset, "name", type(dataset).__name__)),
        methods=tuple(names), layer=layer, contrast=contrast_spec(run_contrast),
        contrast_source=contrast_source(run_contrast, options.confusion, model.model),
        method_contrasts={label: contrast_spec(m.contrast) if getattr(m, "contrast", None) is not None else None
                          for label, m in built.items()},
        correct_only=keep_correct, protocol=protocol, command=settings.command or " ".join(sys.argv))
    return resolved, built


def contrast_source(contrast: ContrastStrategy | str, confusion: Any, model: nn.Module) -> str | None:
    """Where a run's contrast comes from, beyond its spec: the confusion matrix file, or the
    classifier layer; None for image-level contrasts."""
    spec = contrast_spec(contrast).removeprefix("leave-pair-out:")
    if spec.startswith("confusion"):
        return str(getattr(contrast, "source", None) or getattr(confusion, "source", None) or confusion or "array")
    if spec.startswith("classifier"):
        layer = getattr(contrast, "layer", None)
        if layer:
            return str(layer)
        try:
            return classifier_layer(model)[0]
        except ValueError:  # no linear head: building CASE's contrast says so
            return None
    return None


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("case-saliency", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-image"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def setting_files(settings: RunSettings) -> dict[str, str]:
    """{setting: sha256} of the files settings point to (weights, a confusion matrix), where they exist."""
    out = {}
    for name in ("weights", "contrast_source"):
        value = getattr(settings, name, None)
        if isinstance(value, str) and value and Path(value).is_file():
            out[name] = sha256_file(value)
    return out


def dataset_identity(dataset: ImageSource) -> dict[str, Any]:
    if hasattr(dataset, "identity"):
        return dict(dataset.identity())
    return {"name": getattr(dataset, "name", type(dataset).__name__), "count": len(dataset)}


# ---------------------------------------------------------------------------------------------
# A run kind.


@dataclass
class RunContext:
    """What a kind's batch work uses: the run directory, its settings, the model, the built
    ``methods``, their ``device`` and the (image_id, method) pairs ``done``."""

    run_dir: RunDir
    settings: RunSettings
    model: LoadedModel
    methods: dict[str, SaliencyMethod]
    device: torch.device
    done: set[tuple[str, str]]

    @property
    def net(self) -> nn.Module:
        return self.model.model


@dataclass(frozen=True)
class Pair:
    """One (image, method) pair of a batch: ``row`` is the image's row in the batch's decoded images
    (None when it could not be read), ``result`` what the kind measured for it (None: ``error``)."""

    method: str
    image_id: str
    label: int
    row: int | None
    result: Any
    error: str = ""


@dataclass
class Work:
    """What one batch produced, not yet written: the rows of each (image, method) pair, each method's
    error text per decodable image it tried ("" = success), and gallery files to write."""

    groups: list[list[dict[str, Any]]] = field(default_factory=list)
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    gallery: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)


class RunKind(ABC, Generic[State]):
    """A run kind: its settings type, its row type, and how a batch's rows are computed.

    A kind computes, per batch, one ``State`` (``prepare``: what every method of the batch shares,
    e.g. the classes to explain) and per method the per-image results (``measure``); ``rows`` turns one
    pair's result (or error) into its rows. The loop, sharding, resume, retries and progress are the
    runner's (docs/run-kinds.md).
    """

    name: ClassVar[str]
    settings_type: ClassVar[type[RunSettings]]
    row_type: ClassVar[type[Row]]

    def __init__(self, context: RunContext):
        self.context = context
        self.advance: Callable[[float], None] = lambda fraction: None

    def typed_settings(self, settings_type: type[S]) -> S:
        """The run's settings, as the kind's own settings type."""
        settings = self.context.settings
        assert isinstance(settings, settings_type)
        return settings

    def explained(self, method: str, shared: Mapping[str, SaliencyMaps], images: Tensor, targets: Tensor,
                  one: int | None, **options: bool) -> SaliencyMaps:
        """The maps of ``method`` for the whole batch (those of the shared capture when it computed them),
        or for image ``one`` alone: ``explain(images, targets, **options)``."""
        if one is None and method in shared:
            return shared[method]
        rows = slice(None) if one is None else slice(one, one + 1)
        return self.context.methods[method].explain(images[rows], targets[rows], **options)

    def report(self, fraction: float) -> None:
        """Progress within the current method's share of the batch (``fraction`` of it done; the
        runner completes the share when ``measure`` returns)."""
        self.advance(fraction)

    @classmethod
    def rows_per_pair(cls, settings: RunSettings) -> int:
        """Rows of a complete (image, method) pair."""
        return 1

    @classmethod
    def row_type_for(cls, settings: RunSettings) -> type[Row]:
        """The row type of a run with ``settings`` (a run of an earlier version may keep its columns)."""
        return cls.row_type

    def todo(self, start: int, ids: Sequence[str]) -> dict[str, list[int]]:
        """{method: batch positions whose pair is missing}, for every method with work."""
        done = self.context.done
        todo = {name: [b for b, image_id in enumerate(ids) if (image_id, name) not in done]
                for name in self.context.settings.methods}
        return {name: missing for name, missing in todo.items() if missing}

    @abstractmethod
    def prepare(self, images: Tensor, methods: Sequence[str]) -> State:
        """What the batch's methods share, for the decoded ``images`` (B, C, H, W) on the device."""

    @abstractmethod
    def measure(self, method: str, state: State, one: int | None) -> list[Any]:
        """Per-image results of ``method``: for every decoded image (``one`` None: the whole batch,
        as an uninterrupted run computes it), or for image ``one`` alone (after the batch failed)."""

    @abstractmethod
    def rows(self, pair: Pair, state: State | None) -> list[dict[str, Any]]:
        """The rows of one pair (``pair.result`` None: its error rows; ``state`` None: the image
        could not be read)."""

    def gallery(self, batch: Batch, state: State, results: Mapping[str, list[tuple[Any, str]]]
                ) -> list[tuple[Path, dict[str, Any]]]:
        """Gallery files to write for the batch (none by default)."""
        return []


KINDS: dict[str, type[RunKind[Any]]] = {}


def register(kind: type[RunKind[Any]]) -> type[RunKind[Any]]:
    """Make a run kind known by its name (readers then know its settings and rows). A class decorator.

    Args:
        kind: the ``RunKind`` subclass.
    Returns:
        ``kind``, unchanged.
    """
    KINDS[kind.name] = kind
    SETTINGS_TYPES[kind.name] = kind.settings_type
    ROW_TYPES[kind.name] = kind.row_type
    return kind


def each_on_failure(measure: Callable[[int | None], list[Any]], count: int) -> list[tuple[Any, str]]:
    """The one retry rule: the whole batch first, image by image after a failure.

    Args:
        measure: ``measure(None)``: the per-image results of the whole batch; ``measure(j)``: of image j.
        count: the batch's images.
    Returns:
        (result, "") or (None, error text) per image.
    """
    try:
        return [(result, "") for result in measure(None)]
    except Exception:  # isolate the failing image(s): one at a time
        outcome: list[tuple[Any, str]] = []
        for j in range(count):
            try:
                outcome.append((measure(j)[0], ""))
            except Exception as error:  # recorded in the row; the run goes on
                outcome.append((None, error_text(error)))
        return outcome


def compute_batch(kind: RunKind[Any], batch: Batch, tick: Callable[[float], None]) -> Work:
    """A batch's missing rows: every pending method measured on the decoded images, rows for each
    missing pair, error rows for the images that could not be read.

    Args:
        kind: the kind's job. batch: the decoded batch. tick: advances the progress bar (images).
    Returns:
        The rows, each method's outcome per image and the gallery files, not yet written.
    """
    todo = kind.todo(batch.start, batch.ids)
    work = Work()
    if not todo:
        return work
    state = None
    if batch.images is not None:
        images = batch.images.to(kind.context.device, non_blocking=True)
        state = kind.prepare(images, list(todo))
        position = {b: j for j, b in enumerate(batch.ok)}  # batch position -> row of ``images``
        results: dict[str, list[tuple[Any, str]]] = {}
        share = len(batch.ids) / len(todo)
        for name, missing in todo.items():
            reported = [0.0]

            def advance(fraction: float, reported: list[float] = reported) -> None:
                step = max(0.0, min(fraction, 1.0 - reported[0]))
                reported[0] += step
                tick(share * step)

            kind.advance = advance

            def measure(one: int | None, name: str = name) -> list[Any]:
                return kind.measure(name, state, one)

            outcome = results[name] = each_on_failure(measure, len(batch.ok))
            mine = [b for b in missing if b in position]
            work.outcomes[name] = [outcome[position[b]][1] for b in mine]
            for b in mine:
                result, error = outcome[position[b]]
                work.groups.append(kind.rows(Pair(name, batch.ids[b], batch.labels[b], position[b], result, error),
                                             state))
            if reported[0] < 1.0:
                tick(share * (1.0 - reported[0]))
        work.gallery = kind.gallery(batch, state, results)
    else:
        tick(len(batch.ids))
    for b, error in batch.failures.items():
        for name, missing in todo.items():
            if b in missing:
                work.groups.append(kind.rows(Pair(name, batch.ids[b], -1, None, None, error), None))
    return work


def explain_shared_or_none(methods: dict[str, SaliencyMethod], images: Tensor, targets: Any,
                           **options: bool) -> dict[str, SaliencyMaps]:
    """``explain_shared``: the maps of the gradient CAMs that share one capture, computed in one pass;
    {} when that pass fails, so that each method runs (and records its error) on its own."""
    try:
        return explain_shared(methods, images, targets, **options)
    except Exception:  # each method is retried alone, with its own per-image error handling
        return {}


class FirstBatchCheck:
    """Finds settings that fail on every image (a non-spatial ``--layer``, a confusion matrix of
    another size) on the first batch with decodable images, before any row is written: a method
    that failed on every image it tried there raises ``SettingsError`` with the error."""

    def __init__(self) -> None:
        self.pending = True

    def check(self, outcomes: Mapping[str, list[str]]) -> None:
        if not self.pending:
            return
        for name, errors in outcomes.items():
            if errors and all(errors):
                raise SettingsError(f"method {name!r} failed on every image of the first batch ({len(errors)}), "
                                    f"so the settings are at fault, not an image: {errors[0]}")
        if any(outcomes.values()):
            self.pending = False


# ---------------------------------------------------------------------------------------------
# Planning and executing.


@dataclass
class Plan:
    """What rank 0 found and every rank follows: the ``meta`` to write, the ``sample`` (dataset
    indices) and its ``sample_ids``, whether the run is ``resumed`` and which (image_id, method) pairs
    are ``done``. Nothing is written until the first batch passed."""

    meta: dict[str, Any]
    sample: list[int]
    sample_ids: list[str]
    resumed: bool
    done: set[tuple[str, str]] = field(default_factory=set)


def plan_run(kind: type[RunKind[Any]], settings: RunSettings, model: LoadedModel, dataset: ImageSource, run_dir: RunDir,
             options: RunOptions) -> Plan:
    """Check ``run_dir`` (new, or a run with the same settings, weights and data) and draw the sample
    (new) or read it (resumed); writes nothing.

    Raises:
        RunDirError: a refused resume, naming what differs.
    """
    existing = run_dir.existing(settings.kind)
    identity = {"model": model.identity or {"name": model.name}, "dataset": dataset_identity(dataset),
                "files": setting_files(settings)}
    rows_per_pair = kind.rows_per_pair(settings)
    if existing is not None:
        old, meta = existing
        problems = run_dir.resume_problems(old, meta, settings, identity)
        if problems:
            raise RunDirError(f"{run_dir.path}: {problems[0]}")
        if "sample" not in meta:
            raise RunDirError(f"{run_dir.path / 'meta.json'}: no field 'sample'; expected the list of the sample's "
                              "dataset indices. Start the run again in a new directory")
        sample = list(meta["sample"])
        ids = [item_id(dataset, i) for i in sample]
        run_dir.check_sample_ids(meta.get("sample_ids"), ids)
        meta["sample_ids"] = ids
        meta.setdefault("files", identity["files"])
        return Plan(meta, sample, ids, True, run_dir.done_pairs(kind.row_type_for(settings), rows_per_pair, ids))
    info: dict[str, Any] = {}
    workers = options.workers or 0
    sample = select_sample(model.model, dataset, model.transform, settings, workers=workers,
                           progress=options.progress, record=info)
    ids = [item_id(dataset, i) for i in sample]
    meta = {"versions": versions(), "model": identity["model"], "layer": settings.layer,
            "dataset": identity["dataset"], "class_names": model.class_names or getattr(dataset, "class_names", None),
            "protocol": settings.protocol, "sample": sample, "sample_ids": ids, "sample_info": info,
            "files": identity["files"]}
    return Plan(meta, sample, ids, False, set())


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} images [{elapsed}<{remaining}, {rate_fmt}]"


def run_kind(kind: type[RunKind[Any]], model: LoadedModel, dataset: ImageSource, run_dir: str | Path,
             settings: RunSettings, options: RunOptions) -> Path:
    """Start, plan, shard, compute and write a run of ``kind`` (module docstring).

    Args:
        kind: the run kind. model: the run's model. dataset: ``ds[i] -> (PIL image, label, image_id)``.
        run_dir: the run directory (created, or resumed). settings: the kind's settings.
        options: how to run (``RunOptions``).
    Returns:
        The run directory.
    Raises:
        RunDirError: the directory holds something else, another process writes it, or a resume was
            refused. SettingsError: settings that fail on every image of the first batch.
    """
    if not isinstance(settings, kind.settings_type):
        raise TypeError(f"a {kind.name} run takes {kind.settings_type.__name__}, not {type(settings).__name__}")
    resolved, built = start(settings, model, dataset, options)
    folder = RunDir(Path(run_dir))
    try:
        _execute(kind, model, dataset, folder, resolved, built, options, from_env())
    finally:
        folder.release()  # rank 0's lock; a folder this run created and left empty is removed
    return folder.path


def _execute(kind: type[RunKind[Any]], model: LoadedModel, dataset: ImageSource, folder: RunDir, settings: RunSettings,
             built: dict[str, SaliencyMethod], options: RunOptions, ranks: Ranks) -> None:
    net = model.model.eval()
    device = model_device(net)
    workers = default_workers(ranks.world) if options.workers is None else int(options.workers)
    options = RunOptions(options.confusion, options.contrast, options.progress, workers)
    group = Group(ranks, device)
    rows_per_pair = kind.rows_per_pair(settings)
    try:
        def lock_and_plan() -> Plan:  # rank 0, for every rank: a refusal reaches them all
            folder.take(settings.kind)
            return plan_run(kind, settings, model, dataset, folder, options)

        plan = _shared_plan(group, ranks, lock_and_plan)
        if ranks.main:
            if plan.resumed:
                complete = sum(all((i, m) in plan.done for m in settings.methods) for i in plan.sample_ids)
                log.info("resuming %s: %d of %d images done", folder.path, complete, len(plan.sample))
            text = sample_warning(plan.meta.get("sample_info") or {})
            if text:
                log.warning("warning: %s", text)
        job = kind(RunContext(folder, settings, model, built, device, plan.done))
        size = settings.batch_size
        chunks = [list(range(s, min(s + size, len(plan.sample)))) for s in range(0, len(plan.sample), size)]
        pending = [chunk for chunk in chunks if job.todo(chunk[0], [plan.sample_ids[p] for p in chunk])]
        mine = pending[ranks.rank::ranks.world]
        desc = kind.name if not ranks.distributed else f"{kind.name} (rank 0 of {ranks.world}: its share)"
        bar = tqdm(total=sum(len(c) for c in mine), desc=desc, unit="img", bar_format=BAR_FORMAT,
                   disable=not (options.progress and ranks.main))

        def advance(amount: float) -> None:  # clamped: fractions of images may sum past the total
            bar.update(max(0.0, min(float(amount), bar.total - bar.n)))

        started = time.perf_counter()
        loader = iter(batch_loader(dataset, model.transform, plan.sample, plan.sample_ids, mine, workers=workers,
                                   pin_memory=device.type == "cuda"))
        check = FirstBatchCheck()
        first, problem = None, None
        try:
            batch = next(loader, None)
            if batch is not None:
                first = compute_batch(job, batch, advance)
                check.check(first.outcomes)
        except SettingsError as error:
            problem = str(error)
        problems = [(rank, text) for rank, text in enumerate(group.gather(problem)) if text]
        if problems:
            rank, text = problems[0]
            raise SettingsError(text + (f" (found by rank {rank})" if ranks.distributed else ""))
        if ranks.main:
            folder.commit(settings, plan.meta, plan.resumed)
        group.barrier()
        with folder.table(kind.row_type_for(settings), rows_per_pair, plan.sample_ids,
                          ranks.rank if ranks.distributed else None) as table:
            for work in _works(first, loader, job, advance, check):
                for rows in work.groups:
                    if (str(rows[0]["image_id"]), str(rows[0]["method"])) not in plan.done:
                        table.append(rows)
                table.sync()  # once per batch: a power loss costs at most this batch
                for path, arrays in work.gallery:
                    folder.write_gallery(path, arrays)
            errors = table.errors_written
        bar.close()
        errors = group.total(errors)
        images = group.total(sum(len(chunk) for chunk in mine))
        group.barrier()
        if ranks.main:
            folder.merge_parts(kind.row_type_for(settings), rows_per_pair, plan.sample_ids,
                               (settings.methods, settings.batch_size))
            folder.finish(plan.meta, errors_in_last_session=errors,
                          last_session={"images": images, "seconds": round(time.perf_counter() - started, 3),
                                        "ranks": ranks.world, "workers": workers})
        group.barrier()
    finally:
        group.close()


def _works(first: Work | None, loader: Iterator[Batch], job: RunKind[Any], advance: Callable[[float], None],
           check: FirstBatchCheck) -> Iterator[Work]:
    if first is not None:
        yield first
    for batch in loader:
        work = compute_batch(job, batch, advance)
        check.check(work.outcomes)
        yield work


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


def run_with_keywords(kind: type[RunKind[Any]], model: LoadedModel | nn.Module, dataset: ImageSource | str | Path,
                      run_dir: str | Path, settings: RunSettings | None, keywords: dict[str, Any]) -> Path:
    """The ``run_*`` conveniences: ``keywords`` are settings fields, ``RunOptions`` fields and, for a
    bare module, ``transform``/``class_names``/``model_name``. A dataset given as text or a path is
    opened as the CLI's ``--data`` is (a string is a sequence too, of characters: never iterate it)."""
    if isinstance(dataset, (str, Path)):
        from ..data import open_dataset

        dataset = open_dataset(str(dataset))
    run_options = {key: keywords.pop(key) for key in ("confusion", "progress", "workers") if key in keywords}
    warn_if_confusion_samples_the_split(run_options.get("confusion"), dataset)
    contrast = contrast_from(keywords)
    loaded = as_model(model, keywords)
    chosen = settings_from(kind.settings_type, settings, keywords)
    return run_kind(kind, loaded, dataset, run_dir, chosen, RunOptions(contrast=contrast, **run_options))


def confusion_split(confusion: Any) -> dict[str, Any] | None:
    """The data identity a confusion matrix file records (``case-saliency confusion``'s .json, and what
    ``train`` stores), for a ``ConfusionNeighbours`` read from one (its ``source``); None for a bare
    matrix or a file without one."""
    source = getattr(confusion, "source", None)
    if not source or Path(str(source)).suffix.lower() != ".json" or not Path(str(source)).is_file():
        return None
    try:
        data = json.loads(Path(str(source)).read_text()).get("data")
    except (ValueError, OSError, AttributeError):
        return None
    return data if isinstance(data, dict) and data else None


def warn_if_confusion_samples_the_split(confusion: Any, dataset: ImageSource) -> None:
    """Warn (as the command line does) when ``confusion`` was computed on the split ``dataset`` is: the
    contrast then comes from the images the run scores. Silent for a bare matrix (no record of its data)
    and for a strategy the command line has checked already (``split_checked``)."""
    data = confusion_split(confusion)
    if data is None or getattr(confusion, "split_checked", False):
        return
    sampled = dataset_identity(dataset)
    if all(data.get(key) == sampled.get(key) for key in ("name", "hash", "count")):
        log.warning(
            "the confusion matrix %s was computed on %s, the split this run samples: the contrast comes from "
            "the images it scores; compute the matrix on data it does not sample (e.g. `case-saliency train "
            "--holdout 5000` stores one on held-out training images)", getattr(confusion, "source", ""),
            data.get("name"))
