"""Run directories written before the run layer's redesign (tests/data/legacy, by the code of that time)
still resume, summarise and report with the current one."""

from __future__ import annotations

import csv
import math
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


def _same_cells(resumed: str, written: str) -> list[str]:
    """Where two results.csv lines differ: text, integers and flags exactly, decimals to 1e-6 relative
    (float32 kernels round differently on another CPU: the fixture was written on an Intel machine, and
    an AMD one differs in the eighth digit), the row checksum not at all (it covers those digits)."""
    a, b = next(csv.reader([resumed])), next(csv.reader([written]))
    if len(a) != len(b):
        return [f"{len(a)} cells vs {len(b)}"]
    problems = []
    for x, y in zip(a[:-1], b[:-1], strict=True):
        try:
            same = x == y or (("." in x or "e" in x) and math.isclose(float(x), float(y), rel_tol=1e-6,
                                                                     abs_tol=1e-9))
        except ValueError:
            same = False
        if not same:
            problems.append(f"{x!r} vs {y!r}")
    return problems


@pytest.mark.parametrize("kind", ["diagnose", "fidelity"])
def test_a_legacy_run_killed_half_way_resumes_to_the_same_rows(kind, at_repo, tmp_path):
    """The legacy run with its last two pairs cut off (a kill) resumes: the rows it kept are untouched,
    the rows it computes again are the ones the earlier code wrote (to float32 rounding), and meta.json
    records the resume."""
    from case_saliency.runs import RunDir

    out = tmp_path / kind
    shutil.copytree(LEGACY / kind, out)
    full = (LEGACY / kind / "results.csv").read_text().splitlines(keepends=True)
    per_pair = 2 if kind == "diagnose" else 1
    kept = "".join(full[:-2 * per_pair])
    (out / "results.csv").write_text(kept)
    _run(kind, out)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    assert "".join(lines[:len(full) - 2 * per_pair]) == kept
    assert len(lines) == len(full)
    for resumed, written in zip(lines[len(full) - 2 * per_pair:], full[len(full) - 2 * per_pair:], strict=True):
        assert _same_cells(resumed.rstrip("\n"), written.rstrip("\n")) == [], (resumed, written)
    from case_saliency.runs.store import read_results

    found = read_results(out / "results.csv")
    assert len(found.rows) == len(full) - 1 and not found.damaged  # every row's checksum holds
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
