"""Run directories written before the run layer's redesign (tests/data/legacy, by the code of that time)
still resume, summarise and report with the current one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from legacy_support import LAYER, TRANSFORM, tiny_model

REPO = Path(__file__).resolve().parents[2]
LEGACY = Path("tests/data/legacy")
COMMON = dict(methods=["gradcam", "case"], n=0, seed=0, layer=LAYER, correct_only=False, batch_size=2,
              transform=TRANSFORM, class_names=["disc", "square"], model_name="tiny", progress=False, workers=0,
              dataset_name="folder:images")
KINDS = {"diagnose": dict(k_percent=[5, 10], gallery=2, command="legacy diagnose", contrast="classifier:1"),
         "fidelity": dict(k_percent=50, steps=2, command="legacy fidelity")}


@pytest.fixture
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the legacy runs name their data by a path relative to the repository


def _run(kind: str, out: Path) -> Path:
    from case_saliency.data import open_dataset
    from case_saliency.runs import run_diagnose, run_fidelity

    run = run_diagnose if kind == "diagnose" else run_fidelity
    return run(tiny_model(), open_dataset(f"folder:{LEGACY / 'images'}"), out, **COMMON, **KINDS[kind])


@pytest.mark.parametrize("kind", ["diagnose", "fidelity"])
def test_a_legacy_run_killed_half_way_resumes_to_the_same_rows(kind, at_repo, tmp_path):
    """The legacy run with its last two pairs cut off (a kill) resumes: the rows it computes again are
    byte-identical to the ones the earlier code wrote, and meta.json records the resume."""
    from case_saliency.runs import RunDir

    out = tmp_path / kind
    shutil.copytree(LEGACY / kind, out)
    full = (LEGACY / kind / "results.csv").read_text().splitlines(keepends=True)
    per_pair = 2 if kind == "diagnose" else 1
    (out / "results.csv").write_text("".join(full[:-2 * per_pair]))
    _run(kind, out)
    assert (out / "results.csv").read_text() == "".join(full)
    run = RunDir.read(out)
    assert run.meta["resumed"] and run.finished()
    assert run.settings is not None
    resumed, written = run.settings.to_json(), RunDir.read(LEGACY / kind).settings.to_json()
    if kind == "fidelity":  # how to run, not what: a resume takes today's evaluation batch (64 then, 8 now)
        assert (written["eval_batch_size"], resumed["eval_batch_size"]) == (64, 8)
        del written["eval_batch_size"], resumed["eval_batch_size"]
    assert resumed == written


@pytest.mark.parametrize("kind", ["diagnose", "fidelity"])
def test_a_legacy_run_summarises_and_reports(kind, at_repo, tmp_path):
    from case_saliency.report import write_report
    from case_saliency.runs.summary import format_summary, summarize_run

    out = tmp_path / kind
    shutil.copytree(LEGACY / kind, out)
    summary = summarize_run(out)
    assert summary["kind"] == kind and "gradcam" in format_summary(summary)
    page = write_report(out).read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "gradcam" in page
