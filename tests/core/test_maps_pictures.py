"""Pictures on the result: ``SaliencyMaps.overlay/save/show/_repr_html_``, short reprs, and a core
that imports no matplotlib until a picture is asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import case_saliency
from case_saliency import CASE, GradCAM


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


IMAGES = torch.randn(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
NAMES = ["apple", "banana", "cherry", "date"]


def test_overlay_is_display_ready_rgb_for_one_or_several_targets():
    one = GradCAM(_model(), target_layer="1").explain(IMAGES)
    rgb = one.overlay(IMAGES)
    assert rgb.shape == (2, 20, 24, 3) and rgb.dtype == np.uint8
    two = CASE(_model(), target_layer="1").explain(IMAGES, "topk:2")
    assert two.overlay(IMAGES).shape == (2, 2, 20, 24, 3)
    pictures = [Image.fromarray(np.full((40, 48, 3), 200, dtype=np.uint8))] * 2  # resized to the maps
    assert two.overlay(pictures).shape == (2, 2, 20, 24, 3)
    # the report's overlay (jet over the image, half and half) on the same image and scaled map
    from case_saliency.core.drawing import display_images
    from case_saliency.report.figures import overlay

    image = display_images(IMAGES, (20, 24))[0]
    assert image.min() == 0 and image.max() == 255  # each image min-max scaled for display
    scaled = one.maps[0].numpy() / one.maps[0].numpy().max()
    assert np.abs(rgb[0].astype(int) - np.round(overlay(image, scaled) * 255).astype(int)).max() <= 1


def test_save_show_and_html_draw_the_classes_by_name(tmp_path, monkeypatch):
    result = CASE(_model(), target_layer="1").explain(IMAGES, "topk:2")
    path = result.save(tmp_path / "maps.png", IMAGES, class_names=NAMES)
    with Image.open(path) as figure:
        assert figure.size[0] > figure.size[1] > 100
    titles = [ax.get_title() for ax in result.figure(IMAGES, NAMES).axes]
    expected = [f"case: {NAMES[int(c)]}" for c in result.targets.flatten()]
    assert [t for t in titles if t.startswith("case:")] == expected
    html = result._repr_html_()
    assert html.startswith("<div>") and "data:image/png;base64," in html and "SaliencyMaps(" in html
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert result.show(IMAGES, NAMES) is not None


def test_reprs_are_short():
    result = CASE(_model(), target_layer="1").explain(IMAGES, "topk:2")
    text = repr(result)
    assert len(text) < 300 and "maps (2, 2, 20, 24)" in text and "method='case'" in text
    assert "degenerate" in text and "contrast (2, 2, 1) classes" in text
    from case_saliency.models import LoadedModel

    loaded = LoadedModel.wrap(_model(), transform=lambda image: torch.zeros(3, 20, 24), class_names=NAMES)
    assert len(repr(loaded)) < 200 and "4 classes" in repr(loaded)


def test_core_maps_import_no_matplotlib():
    code = ("import sys; import case_saliency.core.maps, case_saliency.core.drawing; "
            "print('matplotlib' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(case_saliency.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.strip() == "False", done.stderr
