"""Cost of the seven gradient CAMs against Grad-CAM alone in a ``diagnose`` run (issue 14, item 0).

Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Finer-CAM and CASE at one layer derive from
the same activations and logit gradients: a run gives them one capture per batch (``explain_many``)
with the union of their classes in one batched backward. This times ``run_diagnose`` with those 7
methods and with Grad-CAM alone on the same images, in turn (A, B, A, B, ...), and prints the
median of each and their ratio (the bar: at most 1.5).

    .venv/bin/python benchmarks/cam_group.py                         # resnet50, 42 images, batch 16
    .venv/bin/python benchmarks/cam_group.py --images 42 --batch 16 --repeats 3 --threads 2

Random weights (speed does not depend on them); the images are seeded random photos.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T

from diagnose import RandomPhotos

SEVEN = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=42)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layer", default="layer4")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).eval()
    photos = RandomPhotos(args.images)
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    from case_saliency.runs import run_diagnose

    def run(methods: list[str]) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_diagnose(model, photos, Path(tmp) / "run", methods=methods, n=args.images, layer=args.layer,
                         transform=transform, batch_size=args.batch, progress=False)
            return time.perf_counter() - start

    run(["gradcam"])  # warm-up
    times: dict[str, list[float]] = {"gradcam": [], "seven": []}
    for _ in range(args.repeats):
        times["gradcam"].append(run(["gradcam"]))
        times["seven"].append(run(SEVEN))
    alone, seven = statistics.median(times["gradcam"]), statistics.median(times["seven"])
    print(f"diagnose run, {args.model} {args.layer}, {args.images} images, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} (interleaved)")
    print(f"{'Grad-CAM alone':34s} {alone:8.2f} s")
    print(f"{'7 gradient CAMs (one capture)':34s} {seven:8.2f} s")
    print(f"{'ratio 7 CAMs / Grad-CAM':34s} {seven / alone:8.2f}x   (bar: <= 1.5)")


if __name__ == "__main__":
    main()
