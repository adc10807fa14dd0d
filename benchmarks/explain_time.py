"""The time of `case-saliency explain` for one photo on EfficientNet-Lite0, imports included (a fresh
process each time, as a user runs it), beside the floor no command can go under: a process that only
imports torch and timm (Lite0 is built with timm). Runs interleaved, median of --repeats.

    .venv/bin/python benchmarks/explain_time.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from PIL import Image
    from skimage import data

    folder = Path(tempfile.mkdtemp(prefix="explain-time-"))
    photo = folder / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    commands = {
        "explain (gradcam + case, PNG)": [sys.executable, "-m", "case_saliency", "explain", str(photo), "--model",
                                          "efficientnet_lite0", "--out", str(folder / "out")],
        "explain --html": [sys.executable, "-m", "case_saliency", "explain", str(photo), "--model",
                           "efficientnet_lite0", "--out", str(folder / "out"), "--html"],
        "floor: python -c 'import torch, timm'": [sys.executable, "-c", "import torch, timm"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():  # interleaved: the machine's load hits each alike
            times[name].append(timed(command, env))
    floor = statistics.median(times["floor: python -c 'import torch, timm'"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} median {median:5.1f} s  (runs: {', '.join(f'{v:.1f}' for v in values)}; "
              f"{median / floor:.1f}x the import floor)")


if __name__ == "__main__":
    main()
