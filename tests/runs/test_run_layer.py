"""The run layer's contracts: typed settings (validated before any row), one writer per run directory,
resumes that check what shaped the rows, readers that refuse duplicates and malformed files, ids that
survive the CSV, a report that never writes over a run, one forward per diagnose batch, and a third
run kind built on the same engine."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.data import open_dataset
from case_saliency.runs import (DiagnoseSettings, FidelitySettings, InvalidSettings, RunDir, RunDirError, RunLocked,
                                run_diagnose)
from case_saliency.runs.rundir import RunLock
from legacy_support import LAYER, TRANSFORM, make_images, tiny_model

runner = CliRunner()
NAMES = ["disc", "square"]


@pytest.fixture
def images(tmp_path) -> Path:
    make_images(tmp_path / "images")
    return tmp_path / "images"


def diagnose(dataset, out: Path, model=None, **keywords) -> Path:
    # two classes: the diagnostic's default contrast (leaving the compared pair out) has none left
    options = dict(methods=["gradcam", "case"], n=0, layer=LAYER, correct_only=False, batch_size=2, gallery=0,
                   transform=TRANSFORM, class_names=NAMES, model_name="tiny", progress=False, workers=0,
                   contrast="classifier:1")
    options.update(keywords)
    return run_diagnose(model if model is not None else tiny_model(), dataset, out, **options)


# --- settings --------------------------------------------------------------------------------------

def test_settings_are_validated_on_construction_naming_the_field():
    for bad, field in [(dict(n=-1), "n is -1, not"), (dict(k_percent=(0,)), "k_percent is 0"),
                       (dict(threshold=math.nan), "threshold is nan"), (dict(alpha=float("nan")), "alpha is nan"),
                       (dict(ties="sideways"), "ties is \"sideways\""), (dict(batch_size=0), "batch_size is 0"),
                       (dict(methods="gradcam"), "methods is")]:
        with pytest.raises(InvalidSettings, match=field):
            DiagnoseSettings(**bad)
    with pytest.raises(InvalidSettings, match="fill is \"black\", not one of 'zero', 'mean', 'blur'"):
        FidelitySettings(fill="black")
    assert DiagnoseSettings(k_percent=(5, 5.0, 10)).k_percent == (5.0, 10.0)  # repeats dropped
    zero = DiagnoseSettings(threshold=0, alpha=0)
    assert (zero.threshold, zero.alpha) == (0.0, 0.0)


def test_policy_names_are_those_of_the_metrics():
    from case_saliency import metrics
    from case_saliency.runs import settings

    assert settings.TIE_POLICIES == metrics.TIE_POLICIES and settings.SPARSE_POLICIES == metrics.SPARSE_POLICIES
    assert settings.FILLS == metrics.FILLS


def test_config_json_round_trips_and_a_bad_field_is_named_with_its_file(images, tmp_path):
    run = diagnose(open_dataset(f"folder:{images}"), tmp_path / "run", threshold=0.0, alpha=0.0, k_percent=[5, 5])
    config = json.loads((run / "config.json").read_text())
    assert config["k_percent"] == [5.0] and config["threshold"] == 0.0 and config["alpha"] == 0.0
    stored = RunDir.read(run)
    assert stored.settings is not None and stored.settings.to_json() == config
    assert len(stored.rows) == 6 * 2  # one row per image and method: --k 5,5 is one k
    from case_saliency.runs.summary import summarize_run

    summary = summarize_run(run)
    assert summary["threshold"] == 0.0 and summary["alpha"] == 0.0  # 0 stays 0, not the default
    config["n"] = "abc"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError, match=r'config.json: n is "abc", not an integer >= 0'):
        RunDir.read(run)


@pytest.mark.parametrize("field, value, form", [("dataset", "x", "an object"), ("class_names", 5, "a list"),
                                                ("sample", "abc", "a list of dataset indices")])
def test_meta_json_fields_are_checked_on_read_and_resume(field, value, form, images, tmp_path):
    dataset = open_dataset(f"folder:{images}")
    run = diagnose(dataset, tmp_path / "run")
    meta = json.loads((run / "meta.json").read_text())
    meta[field] = value
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match=rf"meta.json: {field} is .*, not {form}"):
        RunDir.read(run)
    with pytest.raises(RunDirError, match=rf"meta.json: {field} is"):
        diagnose(dataset, run)  # a resume meets the same check


def test_cli_refuses_bad_settings_before_loading_anything(tmp_path):
    result = runner.invoke(app, ["diagnose", "-m", "no-such-model", "-d", "samples", "-o", str(tmp_path / "r"),
                                 "--threshold", "nan"])
    assert result.exit_code == 2 and "threshold is nan, not a number in [0, 100]" in result.output
    assert "no-such-model" not in result.output  # refused before the model was looked for
    assert not (tmp_path / "r").exists()


# --- one writer ------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_at_once_naming_the_holder(images, tmp_path):
    dataset = open_dataset(f"folder:{images}")
    run = diagnose(dataset, tmp_path / "run")
    before = (run / "results.csv").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "run.lock").write_text(json.dumps({"pid": holder.pid, "host": __import__("socket").gethostname(),
                                                  "since": "now"}))
        with pytest.raises(RunLocked, match=rf"another process \(pid {holder.pid}"):
            diagnose(dataset, run)
        assert (run / "results.csv").read_bytes() == before and (run / "run.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(images, tmp_path, caplog):
    dataset = open_dataset(f"folder:{images}")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.lock").write_text(json.dumps({"pid": int(gone.stdout), "host": __import__("socket").gethostname()}))
    with caplog.at_level("WARNING", logger="case_saliency"):
        diagnose(dataset, out)
    assert "took over the lock of process" in caplog.text
    assert not (out / "run.lock").exists() and RunDir.read(out).finished()


def test_the_lock_is_released_when_a_run_fails(images, tmp_path):
    with pytest.raises(ValueError):
        diagnose(open_dataset(f"folder:{images}"), tmp_path / "run", layer="fc")  # every image fails
    assert not (tmp_path / "run").exists()  # nothing written: no folder, no lock
    lock = RunLock(tmp_path)
    with lock:
        assert lock.holder()["pid"] == __import__("os").getpid()
    assert lock.holder() is None


# --- readers refuse duplicates -------------------------------------------------------------------

def test_readers_refuse_a_row_appended_twice_and_name_it(images, tmp_path):
    run = diagnose(open_dataset(f"folder:{images}"), tmp_path / "run")
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    with open(run / "results.csv", "a") as handle:
        handle.write(lines[3])
    image_id = lines[3].split(",")[0]
    with pytest.raises(RunDirError, match=rf"more than once \(\{{'image_id': '{image_id}'"):
        RunDir.read(run)
    for command in (["summarize", str(run)], ["report", str(run)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "more than once" in result.output


# --- a resume checks what shaped the rows --------------------------------------------------------

def test_a_resume_with_other_weights_is_refused(images, tmp_path):
    dataset = open_dataset(f"folder:{images}")
    run = diagnose(dataset, tmp_path / "run")
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text("".join(lines[:-4]))  # killed before its last pairs
    other = tiny_model()
    with torch.no_grad():
        other.fc.bias += 1.0  # same architecture and name, other weights
    with pytest.raises(RunDirError, match="the model's weights changed since the run started"):
        diagnose(dataset, run, model=other)
    assert (run / "results.csv").read_text() == "".join(lines[:-4])
    diagnose(dataset, run)  # the same weights resume
    assert (run / "results.csv").read_text() == "".join(lines)


def test_a_resume_checks_the_file_a_setting_points_to(images, tmp_path):
    dataset = open_dataset(f"folder:{images}")
    weights = tmp_path / "w.txt"
    weights.write_text("one")
    run = diagnose(dataset, tmp_path / "run", weights=str(weights))
    assert "weights" in json.loads((run / "meta.json").read_text())["files"]
    weights.write_text("two")
    with pytest.raises(RunDirError, match="the file of setting 'weights' changed"):
        diagnose(dataset, run, weights=str(weights))


# --- ids that survive the CSV --------------------------------------------------------------------

def test_a_file_name_with_a_newline_resumes(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("plain.png", "two\nlines.png", "back\\slash.png"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / name)
    dataset = open_dataset(f"folder:{folder}")
    run = diagnose(dataset, tmp_path / "run")
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 * 2 and any("two\\nlines.png" in line for line in lines)
    (run / "results.csv").write_text("".join(lines[:-2]))
    diagnose(dataset, run)  # formerly: "the data changed"
    assert (run / "results.csv").read_text() == "".join(lines)


# --- a report never writes over a run ------------------------------------------------------------

def test_report_out_never_replaces_a_run_file(images, tmp_path):
    run = diagnose(open_dataset(f"folder:{images}"), tmp_path / "run")
    before = (run / "results.csv").read_bytes()
    (tmp_path / "notes.txt").write_text("mine")
    for target in (run / "results.csv", run / "config.json", tmp_path / "notes.txt", run):
        result = runner.invoke(app, ["report", str(run), "--out", str(target)])
        assert result.exit_code == 2, (target, result.output)
    assert (run / "results.csv").read_bytes() == before and (tmp_path / "notes.txt").read_text() == "mine"
    assert runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "page.html")]).exit_code == 0
    assert runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "page.html")]).exit_code == 0  # ours


# --- one forward per diagnose batch --------------------------------------------------------------

def test_diagnose_runs_one_forward_per_batch(images, tmp_path):
    """The top-2 classes come from the methods' own capture: a batch of Grad-CAM costs one forward."""
    model = tiny_model()
    calls = []
    model.fc.register_forward_hook(lambda module, args, output: calls.append(output.shape[0]))
    run = diagnose(open_dataset(f"folder:{images}"), tmp_path / "run", model=model, methods=["gradcam"],
                   batch_size=3)
    assert calls == [3, 3]  # 6 images in batches of 3; no separate forward for the classes
    reference = diagnose(open_dataset(f"folder:{images}"), tmp_path / "ref", methods=["gradcam", "scorecam"],
                         batch_size=3)
    kept = [line for line in (reference / "results.csv").read_text().splitlines()[1:] if ",gradcam," in line]
    assert (run / "results.csv").read_text().splitlines()[1:] == kept  # the same classes and numbers


# --- a third kind on the same engine -------------------------------------------------------------

def test_explain_many_is_a_resumable_kind_read_by_run_dir(images, tmp_path):
    from case_saliency.runs import ExplainManySettings, run_explain_many

    dataset = open_dataset(f"folder:{images}")
    settings = ExplainManySettings(methods=("gradcam", "case"), n=0, layer=LAYER, correct_only=False, batch_size=4,
                                   top=2)
    options = dict(transform=TRANSFORM, class_names=NAMES, model_name="tiny", progress=False, workers=0)
    run = run_explain_many(tiny_model(), dataset, tmp_path / "run", settings, **options)
    stored = RunDir.read(run)
    assert stored.kind == "explain-many" and len(stored.rows) == 6 * 2 * 2
    frame = stored.frame()
    assert set(frame["rank"]) == {0, 1} and frame["error"].eq("").all()
    assert frame["peak_y"].between(0, 1).all() and frame["positive"].between(0, 100).all()
    probs = torch.softmax(tiny_model()(torch.stack([TRANSFORM(dataset[i][0]) for i in range(6)])), 1)
    first = frame[(frame["method"] == "gradcam") & (frame["rank"] == 0)]
    assert sorted(first["prob"].round(5)) == sorted(probs.max(1).values.detach().numpy().round(5))
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text("".join(lines[:-3]))  # a kill mid-pair: its rows are recomputed
    run_explain_many(tiny_model(), dataset, run, settings, **options)
    assert (run / "results.csv").read_text() == "".join(lines)
    with pytest.raises(RunDirError, match="top: 2 there, 1 now"):
        run_explain_many(tiny_model(), dataset, run, settings.with_(top=1), **options)
    for command in (["summarize", str(run)], ["report", str(run)]):  # no tables for this kind: said so
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "holds a 'explain-many' run" in result.output, result.output


def test_the_read_path_imports_no_torch(tmp_path):
    shutil.copytree(Path(__file__).parents[1] / "data" / "legacy" / "diagnose", tmp_path / "run")
    code = ("import sys; from case_saliency.runs.rundir import RunDir; run = RunDir.read(sys.argv[1]); "
            "run.frame(); assert run.settings.k_percent == (5.0, 10.0); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_kind_in_docs_run_kinds_runs_and_resumes(images, tmp_path):
    """docs/run-kinds.md's example kind, as written: it runs, reads back and resumes."""
    text = (Path(__file__).parents[2] / "docs" / "run-kinds.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"__name__": "run_kinds_example"}
    exec(compile(code, "docs/run-kinds.md", "exec", dont_inherit=True), namespace)  # as a reader's own module
    settings = namespace["KeepSettings"](methods=("gradcam", "case"), n=0, layer=LAYER, correct_only=False)
    options = dict(transform=TRANSFORM, class_names=NAMES, model_name="tiny", progress=False, workers=0)
    dataset = open_dataset(f"folder:{images}")
    run = namespace["run_keep"](tiny_model(), dataset, tmp_path / "keep", settings, **options)
    frame = RunDir.read(run).frame()
    assert len(frame) == 12 and frame["prob_kept"].between(0, 1).all() and frame["error"].eq("").all()
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text("".join(lines[:-5]))
    namespace["run_keep"](tiny_model(), dataset, run, settings, **options)
    assert (run / "results.csv").read_text() == "".join(lines)
