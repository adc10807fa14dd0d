"""Many classes: the classifier-neighbour table is built only when a method uses it, and once per run
whatever the number of CASE methods (for a 21,843-class head it takes most of a minute;
benchmarks/many_classes.py measures the memory and time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import case_saliency.core.contrast as contrast_module
from case_saliency.core.contrast import build_contrast
from case_saliency.runs import run_diagnose
from legacy_support import LAYER, TRANSFORM, make_images

CLASSES = 3000


def wide_model() -> nn.Module:
    """The legacy tiny CNN's body with a 3,000-class head."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    model.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.fc = nn.Linear(8, CLASSES)
    return model.eval()


@pytest.fixture
def table_builds(monkeypatch) -> list[int]:
    """Counts the (K, k) neighbour tables computed."""
    calls: list[int] = []
    real = contrast_module.nearest_rows

    def counting(weight, k, *args, **kwargs):
        calls.append(weight.shape[0])
        return real(weight, k, *args, **kwargs)

    monkeypatch.setattr(contrast_module, "nearest_rows", counting)
    monkeypatch.setattr(contrast_module, "_NEAREST_CACHE", {})
    return calls


def diagnose(tmp_path: Path, methods: list[str]) -> Path:
    make_images(tmp_path / "images")
    return run_diagnose(wide_model(), str(tmp_path / "images"), tmp_path / "run", methods=methods, n=2, layer=LAYER,
                        correct_only=False, batch_size=2, gallery=0, transform=TRANSFORM, model_name="wide",
                        progress=False, workers=0, contrast="leave-pair-out:classifier:1")


def test_building_a_classifier_contrast_computes_no_table_until_it_is_used(table_builds):
    model = wide_model()
    strategy = build_contrast("leave-pair-out:classifier:2", model=model)
    assert table_builds == []  # checking a spec (what the CLI does before the run) costs nothing
    strategy(torch.randn(1, CLASSES), torch.tensor([[0, 1]]))
    assert table_builds == [CLASSES]


def test_a_run_without_case_builds_no_table(table_builds, tmp_path):
    diagnose(tmp_path, ["gradcam"])
    assert table_builds == []


def test_a_run_with_two_case_methods_builds_the_table_once(table_builds, tmp_path):
    run = diagnose(tmp_path, ["gradcam", "case", "case(contrast=classifier:1)"])
    assert table_builds == [CLASSES]
    lines = (run / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3 and all(line.split(",")[-2] == "" for line in lines[1:])  # 2 images x 3, no errors


def test_the_shared_table_follows_in_place_changes_of_the_weight(table_builds):
    model = wide_model()
    first = build_contrast("classifier:1", model=model).neighbours
    again = build_contrast("classifier:1", model=model).neighbours
    assert torch.equal(again, first) and table_builds == [CLASSES]  # the same table, not recomputed
    with torch.no_grad():
        model.fc.weight[1:].mul_(-1.0)  # an in-place edit: new version counter, new table
    changed = build_contrast("classifier:1", model=model).neighbours
    assert table_builds == [CLASSES, CLASSES] and not torch.equal(changed, first)
