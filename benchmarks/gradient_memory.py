"""Peak resident memory of Integrated Gradients and SmoothGrad on EfficientNet-Lite2 (260 px, the
7 first sample photos in one batch, top-1 class), before and after the memory budget.

Each configuration runs in its own interpreter, which reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the method's wall time:

- ``before``: the source tree of ``--before`` (a git revision, via ``git archive``): fixed batches
  (IG 64 interpolated inputs per pass, SmoothGrad 8 noisy samples x the batch);
- ``after``: this tree with its default budget (half the memory available at the call);
- ``after, max_memory=X``: this tree with ``--max-memory`` bytes (e.g. what an 8 GB laptop can spare).

The per-pass copies, not the number of steps or samples, set the peak, so IG runs 10 steps and
SmoothGrad 8 samples (the defaults, 50 and 25, take longer for the same peak).

    python benchmarks/gradient_memory.py --before main --max-memory 3e9
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
PHOTOS = 7
STEPS, SAMPLES = 10, 8


def child(method: str, max_memory: float | None) -> None:
    import torch

    from case_saliency import IntegratedGradients, SmoothGrad, load_model
    from case_saliency.data import open_dataset

    torch.set_num_threads(2)
    model, photos = load_model("efficientnet_lite2"), open_dataset("samples")
    images = torch.stack([model.transform(photos[i][0]) for i in range(PHOTOS)])
    options = {} if max_memory is None else {"max_memory": int(max_memory)}
    if method == "integrated_gradients":
        explain = IntegratedGradients(model, n_steps=STEPS, **options)
    else:
        explain = SmoothGrad(model, samples=SAMPLES, **options)
    start = time.perf_counter()
    maps = explain(images)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"peak_bytes": peak, "seconds": seconds, "shape": list(maps.shape),
                      "input": list(images.shape)}))




def measure(src: Path, method: str, max_memory: float | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "2"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", method]
    if max_memory is not None:
        command += ["--max-memory", str(max_memory)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main")
    parser.add_argument("--max-memory", type=float, default=3e9, help="bytes, for the bounded 'after' row")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.max_memory if "--max-memory" in sys.argv else None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        before = export_tree(args.before, Path(tmp))
        print(f"EfficientNet-Lite2, {PHOTOS} photos at 260 px in one batch, top-1 class; IG {STEPS} steps, "
              f"SmoothGrad {SAMPLES} samples; peak RSS of each run's own interpreter:")
        for method in ("integrated_gradients", "smoothgrad"):
            rows = [(f"before ({args.before})", measure(before, method, None)),
                    ("after (default budget)", measure(ROOT / "src", method, None)),
                    (f"after (max_memory={args.max_memory:.3g})", measure(ROOT / "src", method, args.max_memory))]
            for name, row in rows:
                print(f"  {method:21s} {name:28s} peak RSS {row['peak_bytes'] / 2**30:5.2f} GiB, "
                      f"{row['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
