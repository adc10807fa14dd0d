"""Throughput of the whole class-sensitivity diagnostic, side by side: images per second and ratios.

The work per image: its top-1 and top-2 classes, maps for both with every gradient CAM (Grad-CAM,
Grad-CAM++, HiResCAM, XGradCAM, LayerCAM, Finer-CAM) and CASE (k=1), and the top-5% agreement of
each pair. Done four ways on the same images:

1. ours, batched: one ``explain(images, "topk:2")`` per method and batch (one forward pass and one
   backward to the target layer for both classes and the contrast classes), agreement vectorised;
2. ours, per image: the same calls one image at a time;
3. pytorch-grad-cam: each of its CAMs called once per class rank (its calls explain one class per
   image), Finer-CAM with its FinerWeightedTarget, CASE as in the paper's public code (per image,
   (k + 1) full forward and backward passes per class), agreement per pair in NumPy as that code;
4. ours, end to end: ``run_diagnose`` on an in-memory dataset (PIL images, transform, Spearman,
   SSIM, rows fsync'd to results.csv), the number a user of ``case-saliency diagnose`` sees.

    .venv/bin/python benchmarks/diagnose.py                      # resnet50 (random init), batch 8
    .venv/bin/python benchmarks/diagnose.py --batch 16 --threads 2 --repeats 3

Random weights (speed does not depend on them). The machine is shared and noisy: read the ratios
of one run, not single timings.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from PIL import Image

from case_saliency import get_method
from case_saliency.core.layers import resolve_layer
from case_saliency.metrics import top_count, topk_agreement
from common import naive_case_map, seconds

OURS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case"]


def ours_batched(methods: dict) -> Callable[[torch.Tensor], list]:
    def run(images: torch.Tensor) -> list:
        out = []
        for method in methods.values():
            maps = method.explain(images, "topk:2", normalize=True).maps
            out.append(topk_agreement(maps[:, 0], maps[:, 1], 5.0))
        return out

    return run


def ours_per_image(methods: dict) -> Callable[[torch.Tensor], list]:
    batched = ours_batched(methods)
    return lambda images: [batched(image[None]) for image in images]


def numpy_agreement(a: np.ndarray, b: np.ndarray, k: float = 5.0) -> float:
    """The public code's agreement: argsort of the flattened maps, ties by position."""
    n = top_count(*a.shape, k)
    top_a = set(np.argsort(-a.ravel(), kind="stable")[:n])
    top_b = set(np.argsort(-b.ravel(), kind="stable")[:n])
    return 100.0 * len(top_a & top_b) / n


def upsample(cam: torch.Tensor, image: torch.Tensor) -> np.ndarray:
    """A layer-resolution map at the image's size, as the public code scores it."""
    size = image.shape[-2:]
    upsampled = torch.nn.functional.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)
    return upsampled[0, 0].numpy()


def grad_cam_library(model: torch.nn.Module, layer_name: str) -> Callable[[torch.Tensor], list]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

    layer = resolve_layer(model, layer_name)[0]
    cams = {name: cls(model, [layer]) for name, cls in [("gradcam", pgc.GradCAM), ("gradcam++", pgc.GradCAMPlusPlus),
                                                          ("hirescam", pgc.HiResCAM), ("xgradcam", pgc.XGradCAM),
                                                          ("layercam", pgc.LayerCAM)]}
    finer = pgc.FinerCAM(model, target_layer=[layer])

    def run(images: torch.Tensor) -> list:
        with torch.no_grad():
            logits = model(images)
        order = logits.argsort(dim=1, descending=True)
        top2 = order[:, :2].tolist()
        out = []
        for cam in cams.values():
            first = cam(images, [ClassifierOutputTarget(c[0]) for c in top2])
            second = cam(images, [ClassifierOutputTarget(c[1]) for c in top2])
            out.append([numpy_agreement(a, b) for a, b in zip(first, second, strict=False)])
        per_rank = []
        for rank in range(2):
            targets = []
            for i, classes in enumerate(top2):
                target = classes[rank]
                distance = (logits[i] - logits[i, target]).abs()
                nearest = [c for c in distance.argsort().tolist() if c != target][:3]
                targets.append(FinerWeightedTarget(target, nearest, 1.0))
            per_rank.append(finer(images, targets))
        out.append([numpy_agreement(a, b) for a, b in zip(*per_rank, strict=False)])
        case_scores = []
        for i, image in enumerate(images):
            first = naive_case_map(model, layer, image, top2[i][0], [top2[i][1]])  # contrast: top-2
            second = naive_case_map(model, layer, image, top2[i][1], [top2[i][0]])  # contrast: top-1
            case_scores.append(numpy_agreement(upsample(first, image), upsample(second, image)))
        out.append(case_scores)
        return out

    return run


class RandomPhotos:
    """An in-memory dataset of seeded random RGB images (PIL), as ``open_dataset`` returns them."""

    name = "random-photos"
    class_names = None

    def __init__(self, count: int, size: int = 256, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], -1, f"random:{index}"

    def identity(self) -> dict:
        return {"name": self.name, "count": len(self)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layer", default="layer4")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    images = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    methods = {name: get_method(name, model, target_layer=args.layer) for name in OURS}
    batched, per_image, library = ours_batched(methods), ours_per_image(methods), grad_cam_library(model, args.layer)
    batched(images[:2])  # warm-up
    library(images[:1])

    from torchvision import transforms as T

    from case_saliency.runs import run_diagnose

    photos = RandomPhotos(args.batch)
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def end_to_end() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            run_diagnose(model, photos, Path(tmp) / "run", methods=OURS, n=args.batch, layer=args.layer,
                         transform=transform, batch_size=args.batch, gallery=0, progress=False)

    rows = {
        "ours, batched (explain topk:2)": seconds(lambda: batched(images), args.repeats),
        "ours, per-image loop": seconds(lambda: per_image(images), args.repeats),
        "pytorch-grad-cam + public-code CASE": seconds(lambda: library(images), args.repeats),
        "ours, run_diagnose end to end": seconds(end_to_end, args.repeats),
    }
    print(f"\nWhole diagnostic (7 methods x top-1/top-2 + top-5% agreement), resnet50 random init, "
          f"{args.layer}, {args.batch} images 224x224, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'':40s} {'img/s':>8s} {'s':>8s}")
    for name, value in rows.items():
        print(f"{name:40s} {args.batch / value:8.3f} {value:8.2f}")
    fast = rows["ours, batched (explain topk:2)"]
    print(f"{'batched / per-image loop':40s} {rows['ours, per-image loop'] / fast:8.2f}x")
    print(f"{'batched / pytorch-grad-cam':40s} {rows['pytorch-grad-cam + public-code CASE'] / fast:8.2f}x")
    print(f"{'run_diagnose / pytorch-grad-cam':40s} "
          f"{rows['pytorch-grad-cam + public-code CASE'] / rows['ours, run_diagnose end to end']:8.2f}x")


if __name__ == "__main__":
    main()
