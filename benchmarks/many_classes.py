"""A 21,843-class head (ImageNet-21k's size): peak memory and wall time of `diagnose` with and without
CASE, whose classifier-neighbour contrast is the only part that grows with K².

ResNet-18 with a seeded random 21,843-class head, saved as a state dict (what a user's ImageNet-21k
checkpoint is), diagnosed on 2 sample photos with ``--methods gradcam`` and ``--methods gradcam,case``.
Each command runs in its own interpreter (``python -m case_saliency diagnose``), which reports its
peak RSS (``ru_maxrss``) and wall time; ``--before REV`` adds the same two runs from the source tree
of a git revision (e.g. the one before the chunked neighbour table, ``99f55fc^``).

The goal: with CASE, under 2x the memory of the run without it.

    python benchmarks/many_classes.py                 # this tree
    python benchmarks/many_classes.py --before 99f55fc^
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from source_tree import export_tree

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 21843




def child(argv: list[str]) -> None:
    """Run the CLI in this interpreter, then print its peak RSS and wall time as JSON."""
    from case_saliency.cli import main

    sys.argv = ["case-saliency", *argv]
    start = time.perf_counter()
    try:
        main()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def measure(src: Path, weights: Path, methods: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    argv = ["diagnose", "--model", "resnet18", "--weights", str(weights), "--data", "samples", "--n", "2",
            "--methods", methods, "--gallery", "0", "--out", str(out)]
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *argv], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{methods} on {src}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="a git revision to measure beside this tree")
    args = parser.parse_args()

    import torch
    import torchvision

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = Path(tmp) / "resnet18-21k.pth"
        torch.save(torchvision.models.resnet18(num_classes=CLASSES).state_dict(), weights)
        trees = [("this tree", ROOT / "src")]
        if args.before:
            trees.append((f"before ({args.before})", export_tree(args.before, Path(tmp) / "before")))
        print(f"ResNet-18 with a {CLASSES:,}-class head, 2 sample photos, one thread; each run in its own interpreter:")
        for name, src in trees:
            rows = {methods: measure(src, weights, methods, Path(tmp) / f"{name[:6]}-{methods}")
                    for methods in ("gradcam", "gradcam,case")}
            plain, with_case = rows["gradcam"], rows["gradcam,case"]
            for methods, row in rows.items():
                print(f"  {name:24s} --methods {methods:13s} peak RSS {row['peak_bytes'] / 2**20:7.0f} MiB, "
                      f"{row['seconds']:6.1f} s")
            print(f"  {name:24s} CASE's cost: x{with_case['peak_bytes'] / plain['peak_bytes']:.2f} memory, "
                  f"x{with_case['seconds'] / plain['seconds']:.2f} time (goal: under x2 memory)")


if __name__ == "__main__":
    main()
