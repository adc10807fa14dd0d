"""Regenerate a study of docs/results.md from nothing: its checkpoints, runs and tables.

    python experiments/run.py photos            # ImageNet EfficientNet-Lite0/1/2 on the 14 offline photos
    python experiments/run.py fashion           # Fashion-MNIST ResNet/DenseNet/VGG-like x 5 seeds
    python experiments/run.py finetune          # EfficientNet-Lite0 fine-tuned on Fashion-MNIST x 5 seeds
    python experiments/run.py all               # the three, then the seed table
    python experiments/run.py photos --quick    # a small version (< 3 minutes), what the drift test reruns
    python experiments/run.py fashion --tables-only   # rebuild the tables from the runs already there
    python experiments/run.py fashion --tables-only --publish   # ... and write them into docs/results.md

Everything goes under ``--out`` (default ``runs/experiments``, or ``runs/experiments-quick`` with
``--quick``; both ignored by git). Every step resumes: a checkpoint that exists is kept, a run directory
continues where it stopped (the library's runs resume), so a killed driver loses at most one batch.
The driver prints the CPU time of each step and of the whole call, and adds each step's CPU time to
``<out>/compute.json`` (summed over sessions: the total compute of the study).
Run it under ``nice -n 10`` on a shared machine; ``--threads`` sets torch's CPU threads (default 1).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if (HERE.parent / "src" / "case_saliency").is_dir():  # a source checkout: use its package
    sys.path.insert(0, str(HERE.parent / "src"))

from studies import STUDIES, Step, Study  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Ledger:
    """``<out>/compute.json``: CPU and wall seconds per step, summed over the sessions that worked on it."""

    def __init__(self, out: Path):
        self.path = out / "compute.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def add(self, key: str, cpu: float, wall: float, cpu_recorded: bool = True) -> None:
        if self.path.exists():  # what other calls added since this one started
            self.data = json.loads(self.path.read_text())
        entry = self.data.setdefault(key, {"cpu_seconds": 0.0, "wall_seconds": 0.0, "sessions": 0})
        if not cpu_recorded:  # a checkpoint whose metadata has its wall time only
            entry["cpu_unrecorded"] = True
        entry["cpu_seconds"] += cpu
        entry["wall_seconds"] += wall
        entry["sessions"] += 1
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def total(self, prefix: str = "") -> float:
        return sum(v["cpu_seconds"] for k, v in self.data.items() if k.startswith(prefix))


def cli_equivalent(step: Step, out: Path) -> str:
    """The `case-saliency` command that does what the step does (stored in the run as its command)."""
    o = step.options
    if step.kind == "train":
        parts = ["case-saliency", "train", "--arch", step.model, "--seed", str(o["seed"]),
                 "--out", str((out / step.name).parent)]
        if o.get("pretrained"):
            parts.append("--pretrained")
        for key, flag in (("epochs", "--epochs"), ("train_limit", "--train-limit"), ("test_limit", "--test-limit"),
                          ("input_size", "--size")):
            if key in o:
                parts += [flag, str(o[key])]
        return shlex.join(parts)
    parts = ["case-saliency", step.kind, "--model", step.model, "--data", step.data, "--methods",
             ",".join(step.methods), "--n", str(step.n), "--contrast", o["contrast"], "--batch-size",
             str(o["batch_size"]), "--out", str(out / step.name)]
    if uses_confusion(o["contrast"], step.methods):  # the matrix training stored next to the checkpoint
        model = Path(step.model)
        matrix = model.with_name(f"{model.stem}.confusion-{re.sub(r'[^A-Za-z0-9._-]+', '_', step.data)}.json")
        where = parts.index("--contrast")
        parts[where:where] = ["--confusion", str(matrix)]
    if step.kind == "diagnose":
        parts += ["--k", ",".join(f"{k:g}" for k in o["k_percent"]), "--gallery", str(o["gallery"])]
    else:
        parts += ["--k", "50", "--fill", o["fill"], "--steps", str(o["steps"]),
                  "--correct-only" if o["correct_only"] else "--all"]
    return shlex.join(parts)


def run_step(step: Step, out: Path, progress: bool) -> str:
    """Do one step (or see that it is done); returns a one-line outcome."""
    target = out / step.name
    if step.kind == "train":
        if target.exists():
            return f"exists: {target}"
        from case_saliency.workflows.training import train_fashion

        o = dict(step.options)
        result = train_fashion(step.model, out_dir=target.parent, progress=progress, **o)
        meta = result.metadata
        return f"trained: test accuracy {meta['test_accuracy']:.2f}% ({meta['train_cpu_seconds']:.0f} CPU s)"
    from case_saliency.data import open_dataset
    from case_saliency.models import load_model
    from case_saliency.runs import run_diagnose, run_fidelity

    loaded = load_model(step.model)
    dataset = open_dataset(step.data)
    o = dict(step.options)
    contrast = o.pop("contrast")
    confusion = stored_confusion(loaded, dataset) if uses_confusion(contrast, step.methods) else None
    common = dict(methods=list(step.methods), n=step.n, seed=0, contrast=contrast, confusion=confusion,
                  batch_size=o.pop("batch_size"), dataset_name=step.data, progress=progress,
                  command=cli_equivalent(step, out))
    if step.kind == "diagnose":
        run_diagnose(loaded, dataset, target, k_percent=list(o.pop("k_percent")), threshold=50.0,
                     gallery=o.pop("gallery"), correct_only=False, **common, **o)
    elif step.kind == "fidelity":
        run_fidelity(loaded, dataset, target, k_percent=50.0, **common, **o)
    else:
        raise ValueError(f"unknown step kind {step.kind!r}")
    return f"run: {target}"


def uses_confusion(contrast: str, methods: tuple[str, ...]) -> bool:
    return contrast.startswith("confusion") or any("confusion:" in m for m in methods)


def stored_confusion(loaded, dataset):
    """The model's confusion matrix on this data, as training (or `case-saliency confusion`) stored it
    next to the checkpoint, checked to belong to this model and data; computed and stored if missing."""
    from case_saliency.workflows import confusion

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
    import tables

    if tables.publish_block(document, block, markdown):
        print(f"published: {document} ({block})", flush=True)
    else:
        print(f"note: {document} has no <!-- results:{block}:start/end --> block; nothing published", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=[*STUDIES, "all", "seeds"], help="which study ('seeds': the seed table "
                        "from the fashion and finetune runs)")
    parser.add_argument("--quick", action="store_true", help="the small version (< 3 minutes)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/experiments[-quick])")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", default=None, help="only the steps whose name contains this text")
    parser.add_argument("--skip", action="append", default=None, help="skip the steps whose name contains this "
                        "text (e.g. scorecam; repeat for more)")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the tables, run nothing")
    parser.add_argument("--publish", type=Path, nargs="?", const=Path("docs/results.md"), default=None,
                        help="also write the tables into this document's marked blocks (default docs/results.md; "
                        "with --quick, photos' numbers go to docs/results/quick-photos.json for the drift test)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    out = args.out or Path("runs/experiments-quick" if args.quick else "runs/experiments")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import tables

    names = list(STUDIES) if args.study == "all" else ([] if args.study == "seeds" else [args.study])
    ledger = Ledger(out)
    start_cpu, start_wall = cpu_seconds(), time.time()
    for name in names:
        study = STUDIES[name](out, quick=args.quick)
        if not args.tables_only:
            run_study(study, out, not args.quiet, ledger, args.only, args.skip)
        written = tables.write_study_tables(study, out)
        print(f"tables: {', '.join(str(p) for p in written)}", flush=True)
        if args.publish:
            publish(args.publish, f"{name}-quick" if args.quick else name, written[0].read_text())
            if args.quick and name == "photos":
                target = args.publish.parent / "results" / "quick-photos.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(written[1].read_text())
                print(f"published: {target}", flush=True)
    if args.study in ("all", "seeds"):
        seeds = tables.write_seed_tables(out, quick=args.quick)
        print(f"tables: {seeds}", flush=True)
        if args.publish and not args.quick:
            publish(args.publish, "seeds", seeds.read_text())
    if args.publish and not args.quick:
        publish(args.publish, "compute", tables.compute_markdown(out))
        publish(args.publish, "paper", tables.paper_markdown(out))
        headline = tables.headline_markdown(out)
        publish(args.publish, "headline", headline)
        readme = args.publish.resolve().parent.parent / "README.md"  # its "What it finds" keeps the same table
        if readme.exists():
            publish(readme, "headline", headline)
    used = cpu_seconds() - start_cpu
    print(f"CPU time of this call: {used:.0f} s ({used / 60:.1f} min), wall {time.time() - start_wall:.0f} s; "
          f"all sessions in {out}: {ledger.total() / 60:.1f} CPU min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
