"""The main job end to end: `case-saliency demo` offline, its JSON, figures and run directory."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from case_saliency.cli import app
from needs import needs_chromium

pytestmark = pytest.mark.slow  # the demo's one run (Lite0 on the photos) is shared by these tests: in the full suite

CAT_CLASSES = {281, 282, 283, 284, 285}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_summary_json(demo_run):
    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["demo"] is True and summary["model"]["name"] == "efficientnet_lite0"
    assert summary["layer"] == "bn2" and summary["methods"] == ["gradcam", "case"]
    photos = summary["photos"]
    assert len(photos) == 14 and photos[0]["id"] == "skimage/chelsea"
    assert photos[0]["top1"]["class"] in CAT_CLASSES
    for photo in photos:
        assert 1.0 >= photo["top1"]["prob"] >= photo["top2"]["prob"] > 0.0
        assert photo["top1"]["class"] != photo["top2"]["class"]
        for method in ("gradcam", "case"):
            value = photo["agreement"][method]
            assert value is not None and 0.0 <= value <= 100.0  # no photo gives a constant map here
        assert not photo["errors"]
        assert (out / photo["figure"]).stat().st_size > 1000
    for method in ("gradcam", "case"):
        values = [p["agreement"][method] for p in photos if p["agreement"][method] is not None]
        assert summary["mean_agreement"][method] == pytest.approx(np.mean(values))


def test_demo_is_a_diagnose_run_directory(demo_run):
    out, _ = demo_run
    config = json.loads((out / "config.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    assert config["kind"] == "diagnose" and config["methods"] == ["gradcam", "case"] and config["k_percent"] == [5.0]
    assert len(meta["class_names"]) == 1000 and meta["model"]["weights_sha256"]
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 28 and {r["method"] for r in rows} == {"gradcam", "case"}
    gallery = sorted((out / "gallery").glob("*.npz"))
    assert len(gallery) == 14
    with np.load(gallery[0]) as data:
        assert data["image"].shape == (224, 224, 3) and data["image"].dtype == np.uint8
        assert data["map_case"].shape == (2, 224, 224) and data["map_gradcam"].shape == (2, 224, 224)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["report"] == "report.html"


def test_demo_report_is_small_and_shows_the_contrast(demo_run):
    """Under 3 MB (JPEG thumbnails; full-size figures beside it), six gallery photos chosen where the
    two methods differ most and least."""
    out, _ = demo_run
    report = out / "report.html"
    page = report.read_text(encoding="utf-8")
    assert 100_000 < report.stat().st_size < 3_000_000
    assert page.count("data:image/jpeg;base64,") == 6 and "differ most" in page and "differ least" in page
    summary = json.loads((out / "summary.json").read_text())
    spread = {p["id"]: abs(p["agreement"]["gradcam"] - p["agreement"]["case"]) for p in summary["photos"]}
    widest = max(spread, key=spread.get)
    assert f"<b>{widest}</b> (methods differ most" in page
    for photo in summary["photos"]:  # every photo's figure is on disk, at full size
        assert (out / photo["figure"]).stat().st_size > 20_000


@needs_chromium
def test_demo_report_renders_in_chromium(demo_run, tmp_path):
    """The page a user opens, as a browser draws it; the screenshot is kept in test-artifacts/."""
    from test_report import ARTIFACTS, render_in_chromium

    out, _ = demo_run
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "demo-report.png"
    screenshot.unlink(missing_ok=True)
    seen = render_in_chromium(out / "report.html", screenshot, tmp_path)
    assert seen["unloaded"] == [] and seen["errors"] == [] and seen["console"] == [] and seen["images"] == 7
    assert screenshot.stat().st_size > 100_000


def test_demo_prints_the_table(demo_run):
    _, output = demo_run
    assert "skimage/chelsea" in output and "mean top-5% agreement" in output and "Grad-CAM" in output


def test_demo_replaces_its_own_output_but_not_other_folders(demo_run, tmp_path):
    out, _ = demo_run
    from case_saliency.workflows.demo import OutputFolderInUse, prepare_out

    prepare_out(out)  # a previous demo: cleared for the new run
    assert not (out / "results.csv").exists() and not (out / "gallery").exists()
    (tmp_path / "thesis.tex").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    with pytest.raises(OutputFolderInUse):
        prepare_out(tmp_path / "thesis.tex")
