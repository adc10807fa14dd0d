"""`run_diagnose(..., confusion=...)` from Python warns, as the command line does, when the matrix file records
the split the diagnostic samples (the contrast then comes from the images it scores); not for another split, and
only once when the command line has checked already."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from legacy_support import LAYER, TRANSFORM, tiny_model

IMAGES = Path(__file__).resolve().parents[2] / "tests/data/legacy/images"
WARNING = "the split this run samples"


def _matrix(tmp_path: Path, identity: dict):
    from case_saliency.models import LoadedModel
    from case_saliency.workflows.confusion import confusion_neighbours, save_confusion

    loaded = LoadedModel.wrap(tiny_model(), transform=TRANSFORM, class_names=["disc", "square"], name="tiny",
                              target_layer=LAYER)
    path = save_confusion(tmp_path / "confusion.json", np.array([[2, 1], [1, 2]]), loaded.identity, identity,
                          ["disc", "square"])
    return loaded, path, confusion_neighbours(path, loaded)


def _run(loaded, dataset, out: Path, confusion) -> None:
    from case_saliency.runs import run_diagnose

    run_diagnose(loaded, dataset, out, methods=["case"], n=2, seed=0, correct_only=False, contrast="confusion:1",
                 gallery=0, progress=False, workers=0, confusion=confusion)


@pytest.mark.parametrize("same", [True, False])
def test_run_diagnose_warns_when_the_matrix_is_of_the_sampled_split(tmp_path, caplog, same):
    from case_saliency.data import open_dataset

    dataset = open_dataset(f"folder:{IMAGES}")
    identity = dataset.identity() if same else {**dataset.identity(), "name": "folder:other", "hash": "0" * 64}
    loaded, _, strategy = _matrix(tmp_path, identity)
    with caplog.at_level(logging.WARNING, logger="case_saliency"):
        _run(loaded, dataset, tmp_path / "run", strategy)
    warned = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warned) == (1 if same else 0)
    if same:
        assert "confusion.json" in warned[0].getMessage() and "--holdout" in warned[0].getMessage()


def test_a_strategy_the_command_line_checked_warns_once(tmp_path, caplog):
    from case_saliency.data import open_dataset
    from case_saliency.workflows.confusion import matrix_neighbours

    dataset = open_dataset(f"folder:{IMAGES}")
    loaded, path, _ = _matrix(tmp_path, dataset.identity())
    with caplog.at_level(logging.WARNING, logger="case_saliency"):
        checked = matrix_neighbours(path, loaded, dataset.identity())  # what `case-saliency diagnose` does
        _run(loaded, dataset, tmp_path / "run", checked)
    assert len([r for r in caplog.records if WARNING in r.getMessage()]) == 1
