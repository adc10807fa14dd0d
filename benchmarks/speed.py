"""Throughput of the engine, side by side in one run: images per second and ratios.

Rows per model: forward-only inference; pytorch-grad-cam's GradCAM (one class); our GradCAM; our
CASE with k=1 and k=5; and a naive CASE k=5 as in the paper's public code (per image, k + 1 full
forward and backward passes with the input requiring grad).

    .venv/bin/python benchmarks/speed.py                 # resnet50 and EfficientNet-Lite0, batch 16
    .venv/bin/python benchmarks/speed.py --repeats 5 --models resnet50
    .venv/bin/python benchmarks/speed.py --baselines     # then Score-/Ablation-/EigenCAM and Captum rows

``--baselines`` appends the rows of ``speed_baselines.py`` (each baseline next to pytorch-grad-cam's
or Captum's implementation, same run); they take several minutes, so they are opt-in.

Random weights for resnet50 (speed does not depend on them); real weights for EfficientNet-Lite0.
The machine is shared and noisy: rows are timed in turn (round robin) and reported as medians;
read the ratios, not single timings.
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from case_saliency import CASE, GradCAM, TopLogits
from case_saliency.core.layers import resolve_layer
from common import interleaved_images_per_second, naive_case_map


def naive_case(model: torch.nn.Module, layer_name: str, images: torch.Tensor, k: int) -> torch.Tensor:
    """The public code's cost model: per image, a ranking forward, then one full forward and backward
    per class in {t} + S (S = the next k logits)."""
    layer, _ = resolve_layer(model, layer_name)
    maps = []
    for image in images:
        with torch.no_grad():
            order = model(image[None]).argsort(dim=1, descending=True)[0, : k + 1].tolist()
        maps.append(naive_case_map(model, layer, image, order[0], order[1:]))
    return torch.stack(maps)


def bench_model(name: str, model: torch.nn.Module, layer: str, batch: int, repeats: int, naive_images: int) -> dict:
    from pytorch_grad_cam import GradCAM as RefGradCAM

    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ref = RefGradCAM(model, [resolve_layer(model, layer)[0]])

    def forward(x):
        with torch.no_grad():
            return model(x)

    gradcam = GradCAM(model, target_layer=layer)
    case1 = CASE(model, target_layer=layer, contrast=TopLogits(1))
    case5 = CASE(model, target_layer=layer, contrast=TopLogits(5))
    rows = interleaved_images_per_second({
        "forward only": (forward, images, repeats),
        "pytorch-grad-cam GradCAM": (lambda x: ref(x, None), images, repeats),
        "GradCAM (ours)": (lambda x: gradcam(x, "top1"), images, repeats),
        "CASE k=1 (ours)": (lambda x: case1(x, "top1"), images, repeats),
        "CASE k=5 (ours)": (lambda x: case5(x, "top1"), images, repeats),
        "naive CASE k=5": (lambda x: naive_case(model, layer, x, 5), images[:naive_images], max(1, repeats // 2)),
    })
    ref.activations_and_grads.release()
    print(f"\n{name}, batch {batch}, 224x224, {torch.get_num_threads()} threads, median of {repeats}")
    print(f"{'':28s} {'img/s':>8s}")
    for row, value in rows.items():
        print(f"{row:28s} {value:8.2f}")
    case5 = rows["CASE k=5 (ours)"]
    ratios = {
        "CASE k=5 / forward only (bar >= 0.7)": case5 / rows["forward only"],
        "CASE k=5 / naive CASE k=5 (bar >= 15)": case5 / rows["naive CASE k=5"],
        "CASE k=5 / pytorch-grad-cam GradCAM (bar >= 3)": case5 / rows["pytorch-grad-cam GradCAM"],
        "GradCAM ours / pytorch-grad-cam GradCAM": rows["GradCAM (ours)"] / rows["pytorch-grad-cam GradCAM"],
    }
    for row, value in ratios.items():
        print(f"{row:48s} {value:6.2f}x")
    return {"rows": rows, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "efficientnet_lite0"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-images", type=int, default=4, help="images for the (slow) naive CASE row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baselines", action="store_true", help="also run speed_baselines.py (minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        if name == "resnet50":
            torch.manual_seed(0)
            model, layer = torchvision.models.resnet50().eval(), "layer4"
        elif name == "efficientnet_lite0":
            from case_saliency.models.efficientnet_lite import efficientnet_lite

            model, layer = efficientnet_lite(0), "bn2"
        else:
            raise SystemExit(f"unknown model {name!r}: use resnet50 or efficientnet_lite0")
        bench_model(name, model, layer, args.batch, args.repeats, args.naive_images)
    if args.baselines:
        import speed_baselines

        speed_baselines.main(["--batch", str(args.batch), "--repeats", str(args.repeats),
                              "--threads", str(args.threads)])


if __name__ == "__main__":
    main()
