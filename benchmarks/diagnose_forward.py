"""A diagnose run's cost against the model's own forward pass, side by side (issue: one forward per batch).

For each model (EfficientNet-Lite0 and resnet50, random weights: speed does not depend on them), on the
same images and batch: forward-only img/s (one no-grad forward of the batch) and ``run_diagnose``
img/s with Grad-CAM only (end to end: decoding, transform, maps of the top-1 and top-2 classes,
agreement, Spearman, SSIM, rows written), and the same run with ``similarity=False`` (agreement only,
``--no-similarity``: Spearman and SSIM ask for two sorts and two banded matrix products of every
224x224 pair, a quarter of a small model's run on a CPU), timed in turn (interleaved) so that the shared
machine's drift hits all alike. The goal: diagnose img/s >= 0.8x forward img/s (one forward and one
backward to the layer per batch); a 7-CAM run is printed beside it.

A run of ``--images`` images (default four batches) pays its once-per-run costs (the weights' sha256,
config and meta files, building the methods) once, as a real run of many batches does; ``--images``
equal to ``--batch`` shows them in full. ``--compare SRC`` (another checkout's ``src`` folder, e.g.
an ``git archive`` of main) times that code and this one in alternating processes, each process
measuring its own forward-only rate in turn with its runs, and prints both ratios side by side
(medians over the rounds). Each ratio is also given in CPU time (``time.process_time``: with one
thread, what a quiet machine's wall clock would show; time slices lost to other processes on a
shared machine do not count, the files' fsync waits do not either).

    .venv/bin/python benchmarks/diagnose_forward.py --batch 8 --repeats 5 --threads 1
    .venv/bin/python benchmarks/diagnose_forward.py --compare /tmp/before/src --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

SEVEN = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case"]


class Photos:
    """Seeded random RGB images (PIL) in memory, as ``open_dataset`` returns them."""

    name = "random-photos"
    class_names = None

    def __init__(self, count: int, size: int = 224, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int, str]:
        return self.images[index], -1, f"random:{index}"

    def identity(self) -> dict:
        return {"name": self.name, "count": len(self)}


def models() -> dict[str, tuple[torch.nn.Module, str]]:
    from case_saliency.models.efficientnet_lite import build

    torch.manual_seed(0)
    return {"efficientnet_lite0": (build(0).eval(), "conv_head"), "resnet50": (torchvision.models.resnet50().eval(),
                                                                               "layer4")}


def measure(batch: int, count: int, repeats: int, seven: bool, agreement_only: bool = True
            ) -> dict[str, dict[str, float]]:
    """Per model: forward-only, Grad-CAM diagnose, (``agreement_only``) the same without Spearman and SSIM
    and (``seven``) 7-CAM diagnose img/s, medians of ``repeats`` rounds timed in turn."""
    from case_saliency.runs import run_diagnose

    transform = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    photos = Photos(count)
    images = torch.stack([transform(image) for image in photos.images])
    found = {}
    for name, (net, layer) in models().items():
        def forward(net: torch.nn.Module = net) -> None:
            with torch.no_grad():
                for start in range(0, count, batch):
                    net(images[start:start + batch])

        def diagnose(methods: list[str], net: torch.nn.Module = net, layer: str = layer, similarity: bool = True
                     ) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                run_diagnose(net, photos, Path(tmp) / "run", methods=methods, n=count, layer=layer,
                             transform=transform, batch_size=batch, gallery=0, progress=False, workers=0,
                             correct_only=False, similarity=similarity)

        rows = {"forward": forward, "diagnose": lambda: diagnose(["gradcam"])}
        if agreement_only:  # not in --compare's processes: code before it has no ``similarity``
            rows["agreement only"] = lambda: diagnose(["gradcam"], similarity=False)
        if seven:
            rows["seven"] = lambda: diagnose(SEVEN)
        for fn in rows.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {key: [] for key in rows}
        cpu: dict[str, list[float]] = {key: [] for key in rows}
        for _ in range(repeats):
            for key, fn in rows.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                times[key].append(time.perf_counter() - start)
                cpu[key].append(time.process_time() - start_cpu)
        found[name] = {key: count / statistics.median(t) for key, t in times.items()}
        found[name].update({f"{key} cpu": count / statistics.median(t) for key, t in cpu.items()})
    return found


def compare(args: argparse.Namespace) -> None:
    """This checkout's ``src`` and ``args.compare`` in alternating processes; both ratios side by side."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    sources = {"before": str(Path(args.compare).resolve()), "after": here}
    ratios: dict[str, dict[str, list[float]]] = {label: {} for label in sources}
    cpu_ratios: dict[str, dict[str, list[float]]] = {label: {} for label in sources}
    for _ in range(args.rounds):
        for label, src in sources.items():
            command = [sys.executable, __file__, "--batch", str(args.batch), "--images", str(args.images),
                       "--repeats", str(args.repeats), "--threads", str(args.threads), "--json"]
            done = subprocess.run(command, env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True,
                                  check=True)
            for model, rates in json.loads(done.stdout.splitlines()[-1]).items():
                ratios[label].setdefault(model, []).append(rates["diagnose"] / rates["forward"])
                cpu_ratios[label].setdefault(model, []).append(rates["diagnose cpu"] / rates["forward cpu"])
    print(f"diagnose (Grad-CAM) img/s / forward img/s, {args.images} images, batch {args.batch}, {args.threads} "
          f"thread(s); median of {args.rounds} alternating rounds (each the median of {args.repeats}); "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for clock, found in (("wall", ratios), ("CPU", cpu_ratios)):
        print(f"{'model':20s} {clock + ' before':>11s} {clock + ' after':>10s}   rounds before | after")
        for model in found["after"]:
            before, after = found["before"][model], found["after"][model]
            print(f"{model:20s} {statistics.median(before):11.2f} {statistics.median(after):10.2f}   "
                  f"{' '.join(f'{r:.2f}' for r in before)} | {' '.join(f'{r:.2f}' for r in after)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=None, help="images per run (default: 4 batches)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-seven", action="store_true", help="skip the 7-CAM run")
    parser.add_argument("--compare", metavar="SRC", help="another checkout's src folder to time against this one")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of --compare")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.images = args.images or 4 * args.batch
    if args.compare:
        compare(args)
        return
    torch.set_num_threads(args.threads)
    found = measure(args.batch, args.images, args.repeats, seven=not (args.no_seven or args.json),
                    agreement_only=not args.json)
    if args.json:
        print(json.dumps(found))
        return
    print(f"{args.images} images 224x224, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}, "
          "interleaved")
    print(f"{'model':20s} {'forward img/s':>14s} {'diagnose img/s':>15s} {'ratio':>7s} {'agreement only':>15s} "
          f"{'ratio':>7s} {'7-CAM img/s':>12s} {'ratio':>7s} {'CPU-time ratios':>24s}")
    nan = float("nan")  # the 7-CAM columns under --no-seven
    for name, rate in found.items():
        seven, seven_cpu = rate.get("seven", nan), rate.get("seven cpu", nan)
        fast = rate["agreement only"]
        print(f"{name:20s} {rate['forward']:14.2f} {rate['diagnose']:15.2f} {rate['diagnose'] / rate['forward']:7.2f} "
              f"{fast:15.2f} {fast / rate['forward']:7.2f} {seven:12.2f} {seven / rate['forward']:7.2f} "
              f"{rate['diagnose cpu'] / rate['forward cpu']:8.2f} "
              f"{rate['agreement only cpu'] / rate['forward cpu']:7.2f} {seven_cpu / rate['forward cpu']:7.2f}")


if __name__ == "__main__":
    main()
