"""pytorch-grad-cam's GradCAM against case_saliency.compat's GradCAM, the same call on the same batch.

    .venv/bin/python benchmarks/compat_speed.py                    # resnet50 (random weights), batch 16, 224 px
    .venv/bin/python benchmarks/compat_speed.py --repeats 5 --batch 16 --threads 2

The two are timed in turn (round robin, after one warm-up call each), ``--repeats`` times each, and
reported as medians with their ratio; on a shared machine read the ratio, not the seconds. Both are
given ``targets=None`` (each image's top class) and one target layer, ``model.layer4``'s last block.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import pytorch_grad_cam

    from case_saliency import compat

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(args.device)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    images = images.to(args.device)
    theirs = pytorch_grad_cam.GradCAM(model=model, target_layers=[model.layer4[-1]])
    ours = compat.GradCAM(model=model, target_layers=[model.layer4[-1]])
    rows = {"pytorch-grad-cam GradCAM": theirs, "case_saliency.compat GradCAM": ours}

    def sync() -> None:
        if images.is_cuda:
            torch.cuda.synchronize()

    for cam in rows.values():  # warm-up
        cam(input_tensor=images[:1], targets=None)
    times: dict[str, list[float]] = {name: [] for name in rows}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, cam in rows.items():
            sync()
            start = time.perf_counter()
            results[name] = cam(input_tensor=images, targets=None)
            sync()
            times[name].append(time.perf_counter() - start)
    theirs.activations_and_grads.release()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"resnet50 (random weights), batch {args.batch}, {args.size} px, {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved runs")
    for name, value in medians.items():
        print(f"  {name:32s} {value:7.3f} s  ({args.batch / value:6.1f} images/s)  runs: "
              + " ".join(f"{t:.3f}" for t in times[name]))
    ratio = medians["pytorch-grad-cam GradCAM"] / medians["case_saliency.compat GradCAM"]
    difference = float(np.abs(results["pytorch-grad-cam GradCAM"] - results["case_saliency.compat GradCAM"]).max())
    print(f"  ratio (pytorch-grad-cam time / compat time): {ratio:.2f}x; max |map difference| {difference:.2e}")


if __name__ == "__main__":
    main()
