"""Throughput of the baselines, side by side in one run with the reference implementations:
images per second (medians of repeats) and the ratios ours / reference.

    .venv/bin/python benchmarks/speed_baselines.py                  # resnet50, 224x224, 2 threads
    .venv/bin/python benchmarks/speed_baselines.py --perturb-images 2 --perturb-repeats 3
    .venv/bin/python benchmarks/speed_baselines.py --rows scorecam      # one group only

Rows (resnet50 with random weights: speed does not depend on them; target layer "layer4"):
- Score-CAM: ours vs pytorch-grad-cam's ScoreCAM, both with the same channel batch size. 2048
  masked forwards per image on either side, so few images and repeats (``--perturb-images``).
- Ablation-CAM: ours (tail after the layer only) vs pytorch-grad-cam's AblationCAM (a forward of
  everything before the layer per ablation batch), same batch size; at "layer4" and at the
  paper's "layer4[2].conv3". The first call of ours traces the model (once per instance); it is
  timed separately as "split set-up".
- EigenCAM: ours vs pytorch-grad-cam's EigenCAM.
- Captum methods: our adapter vs a direct Captum call on the same batch (the adapter's overhead:
  one extra forward for the targets, the channel reduction).

The bars (issue 5): our Ablation-CAM >= 3x pytorch-grad-cam's; our Score-CAM not slower.
The machine is shared and noisy: read the ratios of rows measured in the same run.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torchvision

from case_saliency import (AblationCAM, EigenCAM, GuidedGradCAM, InputXGradient, IntegratedGradients,
                           RandomMap, Saliency, ScoreCAM, SmoothGrad)
from case_saliency.core.layers import resolve_layer
from common import grad_cam_targets, images_per_second, quiet_tqdm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="images per call for the cheap methods")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--perturb-images", type=int, default=1, help="images for Score-/Ablation-CAM rows")
    parser.add_argument("--perturb-repeats", type=int, default=1, help="repeats for Score-/Ablation-CAM rows")
    parser.add_argument("--channel-batch", type=int, default=64, help="batch_size of both Score-/Ablation-CAMs")
    parser.add_argument("--gradient-images", type=int, default=2, help="images for IG and SmoothGrad")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="+", default=["ablation", "scorecam", "eigencam", "captum"],
                        choices=["ablation", "scorecam", "eigencam", "captum"], help="which groups of rows to run")
    parser.add_argument("--arch", default="resnet50", help="a torchvision ResNet (smoke tests: resnet18)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_tqdm()
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # Captum, direct calls
    from captum.attr import GuidedGradCam as CaptumGuidedGradCam
    from captum.attr import InputXGradient as CaptumInputXGradient
    from captum.attr import IntegratedGradients as CaptumIG
    from captum.attr import NoiseTunnel
    from captum.attr import Saliency as CaptumSaliency
    from pytorch_grad_cam import AblationCAM as RefAblationCAM
    from pytorch_grad_cam import EigenCAM as RefEigenCAM
    from pytorch_grad_cam import ScoreCAM as RefScoreCAM

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)().eval()
    images = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    few = images[: args.perturb_images]
    bs, reps, prep = args.channel_batch, args.repeats, args.perturb_repeats
    pairs: list[tuple[str, float, float]] = []  # (row, ours img/s, reference img/s)
    rows: dict[str, float] = {}

    def forward(x):
        with torch.no_grad():
            return model(x)

    rows["forward only"] = images_per_second(forward, images, reps)

    ablation_layers = ("layer4", "layer4[-1].conv3" if hasattr(model.layer4[-1], "conv3") else "layer4[-1].conv2")
    for layer_name in ablation_layers if "ablation" in args.rows else ():
        layer, _ = resolve_layer(model, layer_name)
        ours = AblationCAM(model, target_layer=layer_name, batch_size=bs)
        start = time.perf_counter()
        ours(few[:1], "top1")  # traces and verifies the split
        rows[f"Ablation-CAM 1st call (trace+check), {layer_name} (s)"] = time.perf_counter() - start
        ref = RefAblationCAM(model, [layer], batch_size=bs)
        targets = grad_cam_targets(model, few)
        theirs = images_per_second(lambda x, ref=ref, targets=targets: ref(x, targets[: len(x)]), few, prep,
                                   warmup=False)
        ref.activations_and_grads.release()
        ours_per_second = images_per_second(lambda x, ours=ours: ours(x, "top1"), few, prep)
        pairs.append((f"Ablation-CAM {layer_name}", ours_per_second, theirs))

    if "scorecam" in args.rows:
        layer, _ = resolve_layer(model, "layer4")
        ref = RefScoreCAM(model, [layer])
        ref.batch_size = bs  # pytorch-grad-cam reads this attribute (default 16)
        targets = grad_cam_targets(model, few)
        theirs = images_per_second(lambda x: ref(x, targets[: len(x)]), few, prep, warmup=False)
        ref.activations_and_grads.release()
        ours = ScoreCAM(model, target_layer="layer4", batch_size=bs)
        ours_per_second = images_per_second(lambda x: ours(x, "top1"), few, prep, warmup=False)
        pairs.append(("Score-CAM layer4", ours_per_second, theirs))

    if "eigencam" in args.rows:
        layer, _ = resolve_layer(model, "layer4")
        ref = RefEigenCAM(model, [layer])
        theirs = images_per_second(lambda x: ref(x, None), images, reps)
        ref.activations_and_grads.release()
        ours_per_second = images_per_second(lambda x: EigenCAM(model, target_layer="layer4")(x), images, reps)
        pairs.append(("EigenCAM layer4", ours_per_second, theirs))
        rows["random control (ours)"] = images_per_second(lambda x: RandomMap(model, seed=0)(x), images, reps)

    def direct(attribution, x, **kwargs):
        with torch.no_grad():
            target = model(x).argmax(1)
        return attribution.attribute(x.clone().requires_grad_(True), target=target, **kwargs)

    grad_images = images[: args.gradient_images]
    captum_rows = [
        ("saliency", Saliency(model), lambda x: direct(CaptumSaliency(model), x, abs=True), images),
        ("inputxgradient", InputXGradient(model), lambda x: direct(CaptumInputXGradient(model), x), images),
        ("integrated_gradients (50 steps)", IntegratedGradients(model),
         lambda x: direct(CaptumIG(model), x, baselines=0.0, n_steps=50, internal_batch_size=64), grad_images),
        ("smoothgrad (25 samples)", SmoothGrad(model),
         lambda x: direct(NoiseTunnel(CaptumSaliency(model)), x, nt_type="smoothgrad", nt_samples=25,
                          stdevs=0.15 * (x.max() - x.min()).item(), nt_samples_batch_size=8, abs=True), grad_images),
        ("guided_gradcam layer4", GuidedGradCAM(model, target_layer="layer4"),
         lambda x: direct(CaptumGuidedGradCam(model, model.layer4), x), images[:4]),
    ]
    for name, method, reference, batch in captum_rows if "captum" in args.rows else ():
        theirs = images_per_second(reference, batch, reps)
        ours_per_second = images_per_second(lambda x, method=method: method(x, "top1"), batch, reps)
        pairs.append((f"{name} (Captum)", ours_per_second, theirs))

    print(f"\n{args.arch} (random weights), {args.size}x{args.size}, {torch.get_num_threads()} threads; "
          f"batch {args.batch} "
          f"(Score-/Ablation-CAM: {args.perturb_images} image(s), median of {prep}, channel batch {bs}; "
          f"IG/SmoothGrad: {args.gradient_images} images; others: median of {reps})")
    for row, value in rows.items():
        print(f"{row:44s} {value:10.3f}")
    print(f"\n{'img/s':44s} {'ours':>10s} {'reference':>10s} {'ratio':>8s}")
    for row, ours_ips, ref_ips in pairs:
        print(f"{row:44s} {ours_ips:10.3f} {ref_ips:10.3f} {ours_ips / ref_ips:7.2f}x")
    print("\nbars: Ablation-CAM ratio >= 3; Score-CAM ratio >= 1 (reference = pytorch-grad-cam; Captum for gradients)")


if __name__ == "__main__":
    main()
