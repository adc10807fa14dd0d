"""The run engine: settings as one frozen value that config.json stores, one protocol rule for both
kinds, progress that advances within a batch and says what a resume found, DataLoader workers that
change no number, and the merge of rank part files."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from case_saliency.metrics import deletion_insertion
from case_saliency.runs import run_diagnose, run_fidelity
from case_saliency.runs import runner
from case_saliency.runs.rows import DiagnoseRow
from case_saliency.runs.rundir import RunDir
from case_saliency.runs.settings import RunSettings, protocol_for
from case_saliency.runs.store import ResultsTable, read_results
from case_saliency.runs.summary import format_summary, summarize_run

TESTS = Path(__file__).parents[1]
sys.path.insert(0, str(TESTS))
from runs_support import LAYER, TRANSFORM  # noqa: E402


def diagnose(cnn, fashion, run_dir, **options):
    settings = dict(methods=["gradcam", "case"], n=6, seed=1, layer=LAYER, transform=TRANSFORM, batch_size=3,
                    gallery=0, progress=False, model_name="small-cnn", workers=0)
    settings.update(options)
    return run_diagnose(cnn, fashion, run_dir, **settings)


def test_settings_are_one_frozen_value_that_config_json_stores(cnn, fashion, tmp_path):
    run = diagnose(cnn, fashion, tmp_path / "run", k_percent=[5, 10])
    config = json.loads((run / "config.json").read_text())
    settings = RunSettings.from_json(config)
    assert settings.to_json() == config
    assert settings.kind == "diagnose" and settings.methods == ("gradcam", "case") and settings.k_percent == (5.0, 10.0)
    assert settings.layer == LAYER and settings.batch_size == 3 and settings.correct_only is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.n = 7  # type: ignore[misc]
    assert settings.result_differences(settings.with_(alpha=0.01, command="x")) == []
    assert settings.result_differences(settings.with_(seed=2)) == ["seed: 1 there, 2 now"]
    old = {key: value for key, value in config.items() if key not in ("protocol", "eval_batch_size")}
    assert RunSettings.from_json(old).result_differences(settings) == []  # configs of earlier versions load


def test_one_protocol_rule_for_both_kinds():
    assert protocol_for(None, True)[0] is True and "the data has labels" in protocol_for(None, True)[1]
    assert protocol_for(None, False) == (False, "all images (the default where the data has no labels)")
    assert protocol_for(False, True) == (False, "all images (asked)")
    with pytest.raises(ValueError, match="no labels"):
        protocol_for(True, False)


def test_fidelity_default_is_the_same_rule_and_is_printed(cnn, fashion, tmp_path):
    run = run_fidelity(cnn, fashion, tmp_path / "fid", methods=["gradcam"], n=3, steps=0, layer=LAYER,
                       transform=TRANSFORM, progress=False, workers=0)
    config = json.loads((run / "config.json").read_text())
    assert config["correct_only"] is True and "the data has labels" in config["protocol"]
    assert "images: correctly classified images only" in format_summary(summarize_run(run))


class RecordingBar:
    """Stands in for tqdm: records every update."""

    instances: list[RecordingBar] = []

    def __init__(self, *args, total=None, **kwargs):
        self.total, self.updates, self.n = total, [], 0.0
        RecordingBar.instances.append(self)

    def update(self, amount=1):
        self.updates.append(amount)
        self.n += amount

    def close(self):
        pass


def test_progress_advances_within_a_batch(cnn, fashion, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "tqdm", RecordingBar)
    RecordingBar.instances.clear()
    run_fidelity(cnn, fashion, tmp_path / "fid", methods=["gradcam", "case"], n=4, steps=3, layer=LAYER,
                 transform=TRANSFORM, batch_size=4, eval_batch_size=4, workers=0)
    bar = RecordingBar.instances[-1]
    # one batch of 4 images, 2 methods, each with 1 + 2 (3 + 1) = 9 forward passes of 4 images and the
    # class-contrastive sweep (4 k, reported once)
    assert bar.total == 4 and len(bar.updates) == 2 * 10 and sum(bar.updates) == pytest.approx(4)
    diagnose(cnn, fashion, tmp_path / "diag", progress=True)
    bar = RecordingBar.instances[-1]
    assert bar.total == 6 and len(bar.updates) == 2 * 2 and sum(bar.updates) == pytest.approx(6)


def test_deletion_insertion_reports_each_forward_pass(cnn, fashion):
    images = torch.stack([TRANSFORM(fashion[i][0]) for i in range(3)])
    maps = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0))
    seen: list[int] = []
    deletion_insertion(cnn, images, maps, torch.tensor([0, 1, 2]), steps=4, batch_size=4, progress=seen.append)
    assert sum(seen) == 2 * 3 * 5 and max(seen) <= 4 and len(seen) == 2 * 4  # 15 images in batches of 4, twice


def test_resume_says_how_many_images_are_done(cnn, fashion, tmp_path, caplog):
    run = diagnose(cnn, fashion, tmp_path / "run", k_percent=[5, 10])
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    ids = list(dict.fromkeys(line.split(",")[0] for line in lines[1:]))
    kept = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] not in ids[4:]]
    (run / "results.csv").write_text("".join(kept))
    with caplog.at_level(logging.INFO, logger="case_saliency"):
        diagnose(cnn, fashion, run, k_percent=[5, 10])
    assert f"resuming {run}: 4 of 6 images done" in caplog.text
    assert len((run / "results.csv").read_text().splitlines()) == 1 + 6 * 2 * 2


def test_loader_workers_change_no_number(cnn, fashion, tmp_path):
    serial = diagnose(cnn, fashion, tmp_path / "serial", gallery=2, workers=0)
    parallel = diagnose(cnn, fashion, tmp_path / "parallel", gallery=2, workers=2)
    assert (serial / "results.csv").read_bytes() == (parallel / "results.csv").read_bytes()


def test_merge_of_part_files(tmp_path):
    columns, ids = DiagnoseRow.columns(), ["a", "b", "c", "d"]

    def rows(image_id, method):
        return [{"image_id": image_id, "method": method, "k_percent": 5.0, "agreement": float(len(image_id)),
                 "error": ""}]

    with ResultsTable(tmp_path / "results.csv", columns) as table:
        table.append(rows("a", "m1"))
    (tmp_path / "parts").mkdir()
    with ResultsTable(tmp_path / "parts" / "rank-0.csv", columns) as table:
        table.append(rows("c", "m2"))
        table.append(rows("a", "m1"))  # already in results.csv: not duplicated
    with ResultsTable(tmp_path / "parts" / "rank-3.csv", columns) as table:  # a leftover of 4 ranks
        table.append(rows("b", "m2"))
        table.append(rows("b", "m1"))
        table.append(rows("d", "m1"))
    with open(tmp_path / "parts" / "rank-3.csv", "a") as handle:
        handle.write("d,m2,5,1.0,,,,,,,,,,,,deadbeef\n")  # damaged: left out
    appended = RunDir(tmp_path).merge_parts(DiagnoseRow, 1, ids, (["m1", "m2"], 2))
    assert appended == 4 and not (tmp_path / "parts").exists()
    found = read_results(tmp_path / "results.csv", columns)
    assert not found.damaged
    # batch [a, b] then [c, d]; within a batch method by method
    assert [(cells[0], cells[1]) for cells in found.rows] == [("a", "m1"), ("b", "m1"), ("b", "m2"), ("d", "m1"),
                                                              ("c", "m2")]
    assert RunDir(tmp_path).merge_parts(DiagnoseRow, 1, ids, (["m1", "m2"], 1)) == 0


def test_python_m_case_saliency_is_the_cli():
    done = subprocess.run([sys.executable, "-m", "case_saliency", "diagnose", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "--num-images" in done.stdout and "--workers" in done.stdout
