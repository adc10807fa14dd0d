"""Regenerate a study from nothing (its checkpoints, runs and tables): the reviewed study of
docs/results.md, or the earlier studies of docs/results/earlier-study.md.

    python -m experiments photos            # ImageNet EfficientNet-Lite0/1/2 on the 14 offline photos
    python -m experiments fashion           # Fashion-MNIST ResNet/DenseNet/VGG-like x 5 seeds
    python -m experiments finetune          # EfficientNet-Lite0 fine-tuned on Fashion-MNIST x 5 seeds
    python -m experiments all               # the three, then the seed table
    python -m experiments photos --quick    # a small version (< 3 minutes), what the drift test reruns
    python -m experiments fashion --tables-only   # rebuild the tables from the runs already there
    python -m experiments fashion --tables-only --publish   # ... and write them into docs/results/earlier-study.md
    python -m experiments review            # the new study: leave-pair-out, planted, sanity, contrastive fidelity
    python -m experiments review --quick --document /tmp/review   # its small version and its document

Run from the repository root (``python -m`` finds the ``experiments`` package there) with the library
importable (installed, or ``PYTHONPATH=src``). Everything goes under ``--out`` (default
``runs/experiments``, ``runs/review`` for the review study, ``-quick`` appended with ``--quick``; all
ignored by git). Every step resumes: a checkpoint that exists is kept, a run directory continues where
it stopped (the library's runs resume), so a killed driver loses at most one batch. The driver prints
the CPU time of each step and of the whole call, and adds each step's CPU time to ``<out>/compute.json``
(summed over sessions: the total compute of the study). Run it under ``nice -n 10`` on a shared
machine; ``--threads`` sets torch's CPU threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from case_saliency.runs.store import atomic_write

try:
    import fcntl
except ImportError:  # not on Windows: one driver at a time there
    fcntl = None  # type: ignore[assignment]

from .review import review
from .studies import STUDIES, DiagnoseOptions, PlantedOptions, SanityOptions, Step, Study, TrainOptions


EVERY_STUDY = {**STUDIES, "review": review}
EARLIER_STUDY = Path("docs/results/earlier-study.md")  # the earlier studies publish here (docs/results.md: review)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Ledger:
    """``<out>/compute.json``: CPU and wall seconds per step, summed over the sessions that worked on it."""

    def __init__(self, out: Path):
        self.path = out / "compute.json"
        self.data: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def add(self, key: str, cpu: float, wall: float, cpu_recorded: bool = True) -> None:
        """Add a step's seconds; drivers running side by side (``--only`` on disjoint steps) take turns
        through a lock file, so none loses another's entry."""
        with open(self.path.with_name("compute.json.lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if self.path.exists():  # what other calls added since this one started
                self.data = json.loads(self.path.read_text())
            entry = self.data.setdefault(key, {"cpu_seconds": 0.0, "wall_seconds": 0.0, "sessions": 0})
            if not cpu_recorded:  # a checkpoint whose metadata has its wall time only
                entry["cpu_unrecorded"] = True
            entry["cpu_seconds"] += cpu
            entry["wall_seconds"] += wall
            entry["sessions"] += 1
            atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    def total(self, prefix: str = "") -> float:
        return sum(v["cpu_seconds"] for k, v in self.data.items() if k.startswith(prefix))


def confusion_file(model: str, data: str, source: str) -> Path:
    """The confusion matrix training stored next to a checkpoint: on the data the step samples
    (``source`` "test"), or on the training images held out of training ("heldout")."""
    path = Path(model)
    if source == "heldout":
        return path.with_name(f"{path.stem}.confusion-fashion-mnist_train-heldout.json")
    return path.with_name(f"{path.stem}.confusion-{re.sub(r'[^A-Za-z0-9._-]+', '_', data)}.json")


def cli_equivalent(step: Step, out: Path) -> str:
    """The `case-saliency` command that does what the step does (stored in the run as its command)."""
    o = step.options
    if isinstance(o, TrainOptions):
        parts = ["case-saliency", "train", "--arch", step.model, "--seed", str(o.seed),
                 "--out", str((out / step.name).parent)]
        if o.pretrained:
            parts.append("--pretrained")
        for value, flag in ((o.epochs, "--epochs"), (o.train_limit, "--train-limit"), (o.test_limit, "--test-limit"),
                            (o.input_size, "--size")):
            if value is not None:
                parts += [flag, str(value)]
        if o.holdout:
            parts += ["--holdout", str(o.holdout)]
        if o.shuffle_labels:
            parts.append("--shuffle-labels")
        return shlex.join(parts)
    if isinstance(o, PlantedOptions):
        parts = ["case-saliency", "planted", "--out", str(out / step.name), "--seed", str(o.seed), "--n", str(o.n),
                 "--mosaics", str(o.mosaics), "--methods", ",".join(step.methods), "--steps", str(o.steps)]
        return shlex.join(parts + (["--train-limit", str(o.train_limit)] if o.train_limit else []))
    if isinstance(o, SanityOptions):
        parts = ["case-saliency", "sanity", "--model", step.model, "--data", step.data, "--out", str(out / step.name),
                 "--methods", ",".join(step.methods), "--n", str(o.n), "--seed", str(o.seed), "--k", f"{o.k:g}",
                 "--max-steps", str(o.max_steps)]
        return shlex.join(parts + (["--shuffled", str(out / o.shuffled)] if o.shuffled else []))
    parts = ["case-saliency", step.kind, "--model", step.model, "--data", step.data, "--methods",
             ",".join(step.methods), "--n", str(step.n), "--contrast", o.contrast, "--batch-size",
             str(o.batch_size), "--out", str(out / step.name)]
    if uses_confusion(o.contrast, step.methods):  # the matrix training stored next to the checkpoint
        where = parts.index("--contrast")
        parts[where:where] = ["--confusion", str(confusion_file(step.model, step.data, o.confusion))]
    if isinstance(o, DiagnoseOptions):
        parts += ["--k", ",".join(f"{k:g}" for k in o.k_percent), "--gallery", str(o.gallery)]
    else:
        parts += ["--k", f"{o.k_percent:g}", "--fill", o.fill, "--steps", str(o.steps),
                  "--correct-only" if o.correct_only else "--all"]
    return shlex.join(parts)


def run_step(step: Step, out: Path, progress: bool) -> str:
    """Do one step (or see that it is done); returns a one-line outcome."""
    target = out / step.name
    o = step.options
    if isinstance(o, TrainOptions):
        if target.exists():
            return f"exists: {target}"
        from case_saliency.workflows.training import train_fashion

        result = train_fashion(step.model, out_dir=target.parent, progress=progress, **o.keywords())
        meta = result.metadata
        return f"trained: test accuracy {meta['test_accuracy']:.2f}% ({meta['train_cpu_seconds']:.0f} CPU s)"
    if isinstance(o, PlantedOptions):
        return run_planted_step(step, o, target)
    if isinstance(o, SanityOptions):
        return run_sanity_step(step, o, out, target)
    from case_saliency.data import open_dataset
    from case_saliency.models import load_model
    from case_saliency.runs.diagnose import run_diagnose
    from case_saliency.runs.fidelity import run_fidelity

    loaded = load_model(step.model)
    dataset = open_dataset(step.data)
    confusion = (stored_confusion(loaded, dataset, o.confusion, step.model)
                 if uses_confusion(o.contrast, step.methods) else None)
    common: dict[str, Any] = dict(methods=list(step.methods), n=step.n, seed=0, contrast=o.contrast,
                                  confusion=confusion, batch_size=o.batch_size, dataset_name=step.data,
                                  progress=progress, command=cli_equivalent(step, out))
    if isinstance(o, DiagnoseOptions):
        run_diagnose(loaded, dataset, target, k_percent=list(o.k_percent), threshold=50.0, gallery=o.gallery,
                     correct_only=False, **common)
    else:
        run_fidelity(loaded, dataset, target, k_percent=o.k_percent, fill=o.fill, steps=o.steps,
                     deletion_fill=o.deletion_fill or o.fill, correct_only=o.correct_only, **common)
    return f"run: {target}"


def run_planted_step(step: Step, o: PlantedOptions, target: Path) -> str:
    """The planted-patch model of one seed, trained (resumably) and scored, as `case-saliency planted` does."""
    if (target / "summary.json").exists():
        return f"exists: {target}"
    from case_saliency.workflows.planted import PlantedSettings, run_planted

    settings = PlantedSettings(seed=o.seed, steps=o.steps, train_limit=o.train_limit)
    run_planted(target, seed=o.seed, n=o.n, n_mosaics=o.mosaics, methods=list(step.methods), settings=settings)
    return f"planted: {target}"


def run_sanity_step(step: Step, o: SanityOptions, out: Path, target: Path) -> str:
    """Cascading randomisation (and the shuffled-label model) of one model, as `case-saliency sanity` does."""
    if (target / "summary.json").exists():
        return f"exists: {target}"
    import pandas as pd
    import torch

    from case_saliency.data import open_dataset
    from case_saliency.models import load_model
    from case_saliency.runs.store import write_json
    from case_saliency.workflows.sanity import sanity_rows, summarise

    loaded = load_model(step.model)
    dataset = open_dataset(step.data)
    shuffled = load_model(str(out / o.shuffled)).model.eval() if o.shuffled else None
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(o.seed))[:o.n].tolist()
    items = [dataset[i] for i in order]
    images = loaded.preprocess([image for image, _, _ in items])
    ids = [image_id for _, _, image_id in items]
    rows = sanity_rows(loaded.model.eval(), list(step.methods), images, ids, layer=loaded.target_layer, seed=o.seed,
                       k=o.k, max_steps=o.max_steps, shuffled=shuffled)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "rows.csv", pd.DataFrame(rows).to_csv(index=False))
    write_json(target / "summary.json", {"model": loaded.identity, "data": step.data, "n": len(ids), "seed": o.seed,
                                         "k": o.k, "shuffled": o.shuffled or None, "threshold": 50.0, "alpha": 0.05,
                                         "command": cli_equivalent(step, out),
                                         "summary": summarise(rows, 50.0, 0.05)})
    return f"sanity: {target}"


def uses_confusion(contrast: str, methods: tuple[str, ...]) -> bool:
    return "confusion" in contrast or any("confusion:" in m for m in methods)


def stored_confusion(loaded: Any, dataset: Any, source: str, model: str) -> Any:
    """The model's confusion neighbours from the matrix training stored next to the checkpoint, checked
    to belong to this model: on this data ("test"; computed and stored if missing, and checked to be
    of this data) or on training images held out of training ("heldout")."""
    from case_saliency.workflows import confusion

    if source == "heldout":
        return confusion.matrix_neighbours(confusion_file(model, dataset.name, source), loaded, dataset.identity())
    path = confusion.default_path(loaded, dataset.name)
    if not path.exists():
        matrix = confusion.compute_confusion(loaded, dataset)
        confusion.save_confusion(path, matrix, loaded.identity, {**dataset.identity(), "used": int(matrix.sum())},
                                 loaded.class_names)
    return confusion.confusion_neighbours(path, loaded, 1, dataset.identity())


def run_study(study: Study, out: Path, progress: bool, ledger: Ledger, only: str | None = None,
              skip: list[str] | None = None) -> None:
    steps = [s for s in study.steps if (only is None or only in s.name) and not any(t in s.name for t in skip or ())]
    print(f"== {study.name}: {study.title} ({len(steps)} steps) -> {out}", flush=True)
    for number, step in enumerate(steps, 1):
        cpu, wall = cpu_seconds(), time.time()
        print(f"[{number}/{len(steps)}] {step.kind} {step.name}", flush=True)
        outcome = run_step(step, out, progress)
        used, took = cpu_seconds() - cpu, time.time() - wall
        key = f"{study.name}/{step.name}"
        if not outcome.startswith("exists"):
            ledger.add(key, used, took)
        elif step.kind == "train" and key not in ledger.data:  # trained by an earlier call: count its training
            meta = json.loads((out / step.name).with_suffix(".json").read_text())
            ledger.add(key, float(meta.get("train_cpu_seconds") or 0.0), float(meta.get("train_seconds") or 0.0),
                       cpu_recorded="train_cpu_seconds" in meta)
        print(f"    {outcome}; {used:.0f} CPU s, {took:.0f} s wall", flush=True)


def publish(document: Path, block: str, markdown: str) -> None:
    from .tables import publish_block

    if publish_block(document, block, markdown):
        print(f"published: {document} ({block})", flush=True)
    else:
        print(f"note: {document} has no <!-- results:{block}:start/end --> block; nothing published", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=[*EVERY_STUDY, "all", "seeds"], help="which study ('seeds': the seed table "
                        "from the fashion and finetune runs; 'all': photos, fashion, finetune and seeds)")
    parser.add_argument("--quick", action="store_true", help="the small version (< 3 minutes)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/experiments[-quick], "
                        "runs/review[-quick] for the review study)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", default=None, help="only the steps whose name contains this text")
    parser.add_argument("--skip", action="append", default=None, help="skip the steps whose name contains this "
                        "text (e.g. scorecam; repeat for more)")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the tables, run nothing")
    parser.add_argument("--publish", type=Path, nargs="?", const=EARLIER_STUDY, default=None,
                        help=f"also write the tables into this document's marked blocks (default {EARLIER_STUDY}; "
                        "with --quick, photos' and review's numbers go to quick-STUDY.json beside it for the drift "
                        "tests)")
    parser.add_argument("--document", type=Path, default=None, help="review study: write its results document "
                        "here (FILE.md, with appendix, numbers and figures in FILE/ beside it; a folder gets "
                        "results.md; default <out>/review/results.md)")
    parser.add_argument("--replace-published", action="store_true", help="review study: allow --document "
                        "docs/results.md (once the full study has run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    default_out = "runs/review" if args.study == "review" else "runs/experiments"
    out: Path = args.out or Path(default_out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from . import tables

    names = list(STUDIES) if args.study == "all" else ([] if args.study == "seeds" else [args.study])
    ledger = Ledger(out)
    start_cpu, start_wall = cpu_seconds(), time.time()
    for name in names:
        study = EVERY_STUDY[name](out, args.quick)
        if not args.tables_only:
            run_study(study, out, not args.quiet, ledger, args.only, args.skip)
        if name == "review":
            from .document import write_review

            try:
                written = write_review(study, out, args.document, args.quick, args.replace_published)
            except ValueError as error:
                print(f"error: {error}", file=sys.stderr, flush=True)
                return 2
            print(f"review: {', '.join(str(p) for p in written)}", flush=True)
            if args.publish and args.quick:  # the numbers the review's drift check compares with
                target = args.publish.parent / "quick-review.json"
                atomic_write(target, written[2].read_text())
                print(f"published: {target}", flush=True)
            elif args.publish:
                print("note: the review study's document is written with --document PATH (docs/results.md with "
                      "--replace-published); --publish only commits its --quick numbers", flush=True)
            continue
        written = tables.write_study_tables(study, out)
        print(f"tables: {', '.join(str(p) for p in written)}", flush=True)
        if args.publish:
            publish(args.publish, f"{name}-quick" if args.quick else name, written[0].read_text())
            if args.quick and name == "photos":
                target = args.publish.parent / "quick-photos.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, written[1].read_text())
                print(f"published: {target}", flush=True)
    if args.study in ("all", "seeds"):
        seeds = tables.write_seed_tables(out, quick=args.quick)
        print(f"tables: {seeds}", flush=True)
        if args.publish and not args.quick:
            publish(args.publish, "seeds", seeds.read_text())
    if args.publish and not args.quick and args.study != "review":
        publish(args.publish, "compute", tables.compute_markdown(out))
        publish(args.publish, "paper", tables.paper_markdown(out))
        publish(args.publish, "headline", tables.headline_markdown(out))
    used = cpu_seconds() - start_cpu
    print(f"CPU time of this call: {used:.0f} s ({used / 60:.1f} min), wall {time.time() - start_wall:.0f} s; "
          f"all sessions in {out}: {ledger.total() / 60:.1f} CPU min", flush=True)
    return 0
