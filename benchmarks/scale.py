"""Runs at scale, measured side by side in one invocation (ratios, medians):

1. the cost of a ``diagnose`` run of the 7 gradient CAMs against a run of Grad-CAM alone
   (resnet50, random weights, the 14 sample photos, batch 16);
2. ``fidelity``'s wall time against its forward-pass bound: (1 + 2 (steps + 1)) forwards per image
   and method plus one per image, at the forward rate of the model measured in the same process at
   the evaluation batch size; and that rate at several evaluation batch sizes (the default's choice);
3. ``diagnose`` images per second with the default methods on 512 Fashion-MNIST test images (a
   trained checkpoint): 1 process with 1 thread, and 2 ranks (``torchrun``) with 1 thread each, in
   alternating rounds (median of ``--repeats``, at least 3), with the load average before and after;
4. peak resident memory of a ``diagnose`` run on 200 and on 2,000 Fashion-MNIST test images;
5. ``diagnose`` images per second with DataLoader workers (the default) and without (``--workers 0``).

    .venv/bin/case-saliency train --arch resnet --seed 0 --epochs 1 --out /tmp/train
    .venv/bin/python benchmarks/scale.py --checkpoint /tmp/train/fashion-resnet-seed0.pt

Runs 3-5 are separate processes (``python -m case_saliency``); their images per second come from
the run's own timing of its loop (meta.json ``last_session``), without interpreter start-up. The
machines here have 2 shared, noisy cores: read the ratios.
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

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_images_per_second  # noqa: E402

BIN = Path(sys.executable).parent
CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case"]


def cli(args: list[str], threads: int = 1, ranks: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    if ranks > 1:
        command = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(ranks), "-m", "case_saliency"]
    else:
        command = [sys.executable, "-m", "case_saliency"]
    done = subprocess.run(command + args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command + args)} failed:\n{done.stderr[-3000:]}")
    return done


def session_rate(run_dir: Path) -> float:
    """Images per second of the run's last session (its loop, as meta.json records it)."""
    last = json.loads((run_dir / "meta.json").read_text())["last_session"]
    return last["images"] / last["seconds"]


def cam_ratio(repeats: int) -> None:
    from case_saliency.data import open_dataset
    from case_saliency.models import load_model
    from case_saliency.runs import run_diagnose

    torch.set_num_threads(2)
    model, photos = load_model("resnet50", "random"), open_dataset("samples")
    times: dict[str, list[float]] = {"gradcam": [], "7 CAMs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(repeats + 1):  # round 0 warms up
            for name, methods in (("gradcam", ["gradcam"]), ("7 CAMs", CAMS)):
                start = time.perf_counter()
                run_diagnose(model, photos, Path(tmp) / f"{name}-{round_}", methods=methods, n=14, batch_size=16,
                             gallery=0, progress=False, workers=0)
                if round_:
                    times[name].append(time.perf_counter() - start)
    grad, seven = statistics.median(times["gradcam"]), statistics.median(times["7 CAMs"])
    print(f"1. diagnose run, resnet50, 14 photos, batch 16: Grad-CAM alone {grad:.2f} s, the 7 CAMs {seven:.2f} s; "
          f"7-CAM / Grad-CAM cost ratio {seven / grad:.2f} (median of {repeats})")


def fidelity_bound(images: int, steps: int, batches: list[int], eval_batch: int) -> None:
    from case_saliency.data import open_dataset
    from case_saliency.models import load_model
    from case_saliency.runs import run_fidelity

    torch.set_num_threads(2)
    model, photos = load_model("efficientnet_lite0"), open_dataset("samples")
    x = torch.stack([model.transform(photos[i][0]) for i in range(min(len(photos), max(batches)))])
    while x.shape[0] < max(batches):
        x = torch.cat([x, x])[: max(batches)]

    with torch.no_grad():  # forward img/s per batch size, the sizes timed round robin (shared, drifting machine)
        rates = interleaved_images_per_second({batch: (model.model, x[:batch], 5) for batch in batches})
    print("2. Lite0 forward img/s by evaluation batch: " + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()))
    methods = ["gradcam", "case"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = run_fidelity(model, photos, Path(tmp) / "fid", methods=methods, n=images, steps=steps, batch_size=16,
                           eval_batch_size=eval_batch, progress=False, workers=0)
        wall = time.perf_counter() - start
        done = json.loads((run / "meta.json").read_text())["last_session"]
    forwards = images + images * len(methods) * (1 + 2 * (steps + 1))
    bound = forwards / rates[eval_batch]
    print(f"   fidelity, Lite0, {images} photos x {len(methods)} methods, {steps} steps, eval batch {eval_batch}: "
          f"{forwards} forward images; bound {bound:.1f} s at {rates[eval_batch]:.1f} img/s; wall {wall:.1f} s "
          f"(loop {done['seconds']:.1f} s); wall / bound {wall / bound:.2f}")


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (``os.getloadavg``), as ``uptime`` prints them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def throughput(checkpoint: str, images: int, tmp: Path, rounds: int) -> None:
    """1 process x 1 thread against 2 torchrun ranks x 1 thread each, on the same images, in alternating
    rounds (so that the shared machine's drift hits both alike); medians of ``rounds``."""
    base = ["diagnose", "--model", checkpoint, "--data", "fashion-mnist:test", "--num-images", str(images), "--all",
            "--quiet", "--gallery", "0", "--workers", "0"]
    rates: dict[int, list[float]] = {1: [], 2: []}
    before = load_average()
    for round_ in range(rounds):
        for ranks in (1, 2):
            out = tmp / f"ranks{ranks}-{round_}"
            cli(base + ["--out", str(out)], threads=1, ranks=ranks)
            rates[ranks].append(session_rate(out))
    one, both = statistics.median(rates[1]), statistics.median(rates[2])
    shown = "; ".join(f"{ranks} rank(s): " + " ".join(f"{r:.1f}" for r in values) for ranks, values in rates.items())
    print(f"3. diagnose, default methods, {images} Fashion-MNIST images, 1 thread per process, median of {rounds} "
          f"alternating rounds: 1 process {one:.1f} img/s; 2 ranks {both:.1f} img/s; ratio {both / one:.2f} "
          f"(goal >= 1.8) [{shown}; load average {before} before, {load_average()} after, on "
          f"{os.cpu_count()} cores]")


def peak_rss(checkpoint: str, counts: list[int], tmp: Path) -> None:
    peaks = {}
    for count in counts:
        out = tmp / f"rss-{count}"
        code = ("import resource, sys; from case_saliency.cli import main; sys.argv = ['case-saliency'] + "
                "sys.argv[1:]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
                "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
                "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)")
        env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([sys.executable, "-c", code, "diagnose", "--model", checkpoint, "--data",
                               "fashion-mnist:test", "--num-images", str(count), "--all", "--quiet", "--out", str(out)],
                              env=env, capture_output=True, text=True)
        line = next(line for line in done.stderr.splitlines() if line.startswith("PEAK"))
        own, workers = (int(v) / 1024 for v in line.split()[1:3])
        peaks[count] = own
        print(f"4. diagnose, default methods, {count} images: peak RSS {own:.0f} MiB "
              f"(loader workers: {workers:.0f} MiB)")
    first, last = counts[0], counts[-1]
    print(f"   peak RSS {last} / {first} images: {peaks[last] / peaks[first]:.3f} (bar: <= 1.15)")


def loader_ratio(checkpoint: str, images: int, tmp: Path) -> None:
    base = ["diagnose", "--model", checkpoint, "--data", "fashion-mnist:test", "--num-images", str(images), "--all",
            "--quiet", "--gallery", "0"]
    rates: dict[str, list[float]] = {"workers 0": [], "default workers": []}
    for round_ in range(2):
        for name, extra in (("workers 0", ["--workers", "0"]), ("default workers", [])):
            out = tmp / f"loader-{name.replace(' ', '-')}-{round_}"
            cli(base + ["--out", str(out)] + extra, threads=2)
            rates[name].append(session_rate(out))
    off, on = statistics.median(rates["workers 0"]), statistics.median(rates["default workers"])
    from case_saliency.runs.loading import default_workers

    print(f"5. diagnose, {images} Fashion-MNIST images, 2 threads: --workers 0 {off:.1f} img/s; default "
          f"({default_workers()} workers) {on:.1f} img/s; on / off {on / off:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a Fashion-MNIST checkpoint from `case-saliency train` (for 3-5)")
    parser.add_argument("--only", default="12345", help="which measurements, e.g. 24")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fidelity-images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-batch", type=int, default=None, help="default: the library's")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rss", default="200,2000")
    args = parser.parse_args()
    from case_saliency.runs.fidelity import EVAL_BATCH_SIZE

    if "1" in args.only:
        cam_ratio(args.repeats)
    if "2" in args.only:
        eval_batch = args.eval_batch or EVAL_BATCH_SIZE
        fidelity_bound(args.fidelity_images, args.steps, sorted({4, 8, 16, 32, 64, eval_batch}), eval_batch)
    if set(args.only) & set("345"):
        if not args.checkpoint:
            raise SystemExit("measurements 3-5 need --checkpoint (case-saliency train --arch resnet --seed 0 "
                             "--epochs 1 --out /tmp/train)")
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            if "3" in args.only:
                throughput(args.checkpoint, args.images, tmp, max(3, args.repeats))
            if "4" in args.only:
                peak_rss(args.checkpoint, [int(v) for v in args.rss.split(",")], tmp)
            if "5" in args.only:
                loader_ratio(args.checkpoint, args.images, tmp)


if __name__ == "__main__":
    main()
