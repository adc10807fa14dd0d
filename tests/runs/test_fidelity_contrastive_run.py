"""The fidelity run kind records the class-contrastive drop (top-1 map removed, blur fill, change of logit
top-1 minus logit top-2) per image and method over its sweep, deletes with the blur by default, and a run
of an earlier version resumes with its own columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from legacy_support import LAYER, TRANSFORM, tiny_model

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests/data/legacy/images"
COMMON = dict(methods=["gradcam", "random"], n=0, seed=0, layer=LAYER, correct_only=False, batch_size=3,
              transform=TRANSFORM, class_names=["disc", "square"], model_name="tiny", progress=False, workers=0,
              k_percent=50, steps=2)


def _run(out: Path, **changes):
    from case_saliency.data import open_dataset
    from case_saliency.runs import RunDir, run_fidelity

    run_fidelity(tiny_model(), open_dataset(f"folder:{IMAGES}"), out, **{**COMMON, **changes})
    return RunDir.read(out)


def test_a_new_fidelity_run_records_the_contrastive_drop_of_each_map(tmp_path):
    from case_saliency.data import open_dataset
    from case_saliency.methods import GradCAM
    from case_saliency.metrics import contrastive_drop, deletion_insertion
    from case_saliency.runs import FidelityRow

    run = _run(tmp_path / "run")
    assert run.config["contrastive_k"] == [5.0, 10.0, 20.0, 50.0] and run.config["deletion_fill"] == "blur"
    assert run.columns == FidelityRow.columns()
    frame = run.frame()
    assert len(frame) == 12 and (frame["error"] == "").all()
    # Recompute Grad-CAM's rows directly: same images, maps, classes, blur fill.
    dataset = open_dataset(f"folder:{IMAGES}")
    ids = list(frame.loc[frame["method"] == "gradcam", "image_id"])
    by_id = {dataset[i][2]: i for i in range(len(dataset))}
    images = torch.stack([TRANSFORM(dataset[by_id[i]][0].convert("RGB")) for i in ids])
    model = tiny_model()
    with torch.no_grad():
        logits = model(images)
    top = logits.topk(2, dim=1).indices
    maps = GradCAM(model, target_layer=LAYER).explain(images, top[:, 0], normalize=True).maps
    expected = contrastive_drop(model, images, maps, top[:, 0], top[:, 1], (5, 10, 20, 50), "blur")
    rows = frame[frame["method"] == "gradcam"]
    assert rows["class2"].tolist() == top[:, 1].tolist() and rows["pred"].tolist() == top[:, 0].tolist()
    assert rows["margin_before"].to_numpy() == pytest.approx(expected.margin_before.numpy(), abs=1e-5)
    assert rows["contrastive_drop"].to_numpy() == pytest.approx(expected.mean_drop.numpy(), abs=1e-5)
    drops = torch.tensor([[float(v) for v in text.split()] for text in rows["contrastive_drops"]])
    assert torch.allclose(drops, expected.drop, rtol=1e-4, atol=1e-7)
    # The deletion curve's removed pixels become the blur (the confidence drop keeps the run's zero fill).
    curves = deletion_insertion(model, images, maps, top[:, 0], 2, deletion_fill="blur")
    assert rows["deletion_auc"].to_numpy() == pytest.approx(curves.deletion_auc.numpy(), abs=1e-5)


def test_a_resume_keeps_the_stored_sweep_and_refuses_another(tmp_path):
    from case_saliency.runs import RunDirError

    out = tmp_path / "run"
    first = _run(out, contrastive_k=[20, 5], methods=["gradcam", "hirescam"])  # maps a resume recomputes
    assert first.config["contrastive_k"] == [5.0, 20.0]
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-3]))
    again = _run(out, methods=["gradcam", "hirescam"])  # contrastive_k left unset: the stored sweep
    assert (out / "results.csv").read_text() == "".join(lines) and again.config["contrastive_k"] == [5.0, 20.0]
    with pytest.raises(RunDirError, match="contrastive_k"):
        _run(out, contrastive_k=[50], methods=["gradcam", "hirescam"])


def test_an_empty_sweep_writes_the_earlier_columns(tmp_path):
    from case_saliency.runs.rows import EarlierFidelityRow

    run = _run(tmp_path / "run", contrastive_k=[], deletion_fill="zero")
    assert run.columns == EarlierFidelityRow.columns() and "contrastive_drop" not in run.columns
    legacy = json.loads((REPO / "tests/data/legacy/fidelity/config.json").read_text())
    assert "contrastive_k" not in legacy  # the legacy run that tests/runs/test_legacy_runs.py resumes
