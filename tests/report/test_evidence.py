"""The reports of the evidence folders: `report` and `summarize` on a folder written by `planted` and
on one written by `sanity` (tiny models, trained here in seconds), their numbers as summary.json has
them, the figures, and the dispatch that leaves run directories to the run report."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.report.evidence import evidence_kind
from case_saliency.report.tables import number
from needs import needs_fashion_mnist

METHODS = ("gradcam", "case")
PLANTED_METHODS = ("gradcam", "hirescam", "case")  # HiResCAM = Grad-CAM at a pooled linear head


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    """A planted folder: 160 steps of 32 images learn the patch (test_planted: 80 do) and make a few
    images confident enough for two mosaics; 8 patched test images."""
    from case_saliency.workflows.planted import PlantedSettings, run_planted
    from needs import require_fashion_mnist

    require_fashion_mnist()
    out = tmp_path_factory.mktemp("planted")
    run_planted(out, seed=0, n=8, n_mosaics=2, methods=PLANTED_METHODS,
                settings=PlantedSettings(seed=0, steps=160, batch_size=32, train_limit=3000))
    return out


@pytest.fixture(scope="module")
def sanity_dir(tmp_path_factory):
    """A sanity folder of a tiny ResNet and its shuffled-label twin (as tests/test_sanity.py trains them)."""
    from needs import require_fashion_mnist

    require_fashion_mnist()
    models = tmp_path_factory.mktemp("models")
    runner = CliRunner()
    common = ["train", "--arch", "resnet", "--epochs", "1", "--train-limit", "256", "--test-limit", "100",
              "--no-confusion", "--out", str(models), "--threads", "1"]
    for extra in ([], ["--shuffle-labels"]):
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 0, result.output
    out = tmp_path_factory.mktemp("sanity")
    result = runner.invoke(app, ["sanity", "--model", str(models / "fashion-resnet-seed0.pt"), "--n", "6",
                                 "--methods", ",".join(METHODS), "--max-steps", "3", "--out", str(out),
                                 "--shuffled", str(models / "fashion-resnet-seed0-shuffled.pt")])
    assert result.exit_code == 0, result.output
    return out


def _png_ok(path, min_width: int = 500, min_height: int = 200) -> None:
    assert path.is_file() and path.with_suffix(".pdf").is_file()
    with Image.open(path) as image:
        assert image.width >= min_width and image.height >= min_height, image.size


def _self_contained(html: str, figures: int) -> None:
    assert html.count("data:image/png;base64,") >= figures
    assert not re.search(r"""(src|href)=["']https?:""", html) and "<script" not in html


@pytest.mark.slow
@needs_fashion_mnist
def test_planted_report_and_summary(planted_dir, tmp_path):
    assert evidence_kind(planted_dir) == "planted"
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(planted_dir)])
    assert result.exit_code == 0, result.output
    html = (planted_dir / "report.html").read_text(encoding="utf-8")
    summary = json.loads((planted_dir / "summary.json").read_text())["summary"]
    assert set(summary) == set(PLANTED_METHODS)
    assert "The same numbers on every score: HiResCAM = Grad-CAM" in html  # shown, and said to be one
    for method, entry in summary.items():
        assert f"<td class=\"text\">{method}</td>" in html
        for score in ("contrast", "patch_share", "garment_share", "focus"):
            value = entry[score]
            assert value["mean"] is not None, (method, score)  # the fixture scores images and mosaics
            assert f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]" in html, (method, score)
    # the gallery's maps, redrawn from the checkpoint, give the shares rows.csv scored
    assert "planted-gallery" in html and "do not give the scored patch shares" not in html
    figures = planted_dir / "figures"
    _png_ok(figures / "planted-forest.png", min_height=150)
    _png_ok(figures / "planted-gallery.png", min_width=300, min_height=1000)  # four images, two rows each
    _self_contained(html, 2)

    from case_saliency.workflows.planted import format_summary

    printed = runner.invoke(app, ["summarize", str(planted_dir)])
    assert printed.exit_code == 0 and printed.output.strip() == format_summary(summary).strip()
    as_json = json.loads(runner.invoke(app, ["summarize", str(planted_dir), "--json"]).output)
    assert as_json["kind"] == "planted" and as_json["summary"] == summary
    wrong = runner.invoke(app, ["report", str(planted_dir), "--threshold", "40"])
    assert wrong.exit_code == 2 and "apply to sanity folders" in wrong.output

    # scores that the checkpoint's maps do not give are flagged on the page
    import pandas as pd

    copy = tmp_path / "changed"
    shutil.copytree(planted_dir, copy, ignore=shutil.ignore_patterns("figures", "report.html"))
    rows = pd.read_csv(copy / "rows.csv")
    rows.loc[rows["method"] == "case", "patch_share"] += 0.1
    rows.to_csv(copy / "rows.csv", index=False)
    flagged = runner.invoke(app, ["report", str(copy)])
    assert flagged.exit_code == 0, flagged.output
    assert "The redrawn maps of case do not give the scored patch shares" in (copy / "report.html").read_text()
    (copy / "planted-seed0.pt").unlink()  # without the checkpoint: the page without its gallery, and why
    bare = runner.invoke(app, ["report", str(copy)])
    assert bare.exit_code == 0 and "No gallery: the checkpoint planted-seed0.pt is not in the folder" in (
        copy / "report.html").read_text()


@pytest.mark.slow
@needs_fashion_mnist
def test_sanity_report_and_summary(sanity_dir, tmp_path):
    assert evidence_kind(sanity_dir) == "sanity"
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(sanity_dir)])
    assert result.exit_code == 0, result.output
    html = (sanity_dir / "report.html").read_text(encoding="utf-8")
    summary = json.loads((sanity_dir / "summary.json").read_text())["summary"]
    assert {s["method"] for s in summary} == set(METHODS) and any(s["step"] == -1 for s in summary)
    for entry in summary:
        assert f"<td class=\"text\">{entry['method']}</td>" in html
        for key in ("median_spearman", "median_ssim"):
            assert f"<td>{number(entry[key])}</td>" in html, (entry["method"], entry["step"], key)
    hollow = 0
    for method in METHODS:
        entries = [s for s in summary if s["method"] == method]
        trained = next(s for s in entries if s["step"] == 0)
        shuffled = next(s for s in entries if s["step"] == -1)
        assert f"{'yes' if shuffled['passes'] else 'no'} (p = {number(shuffled['p_below'])})" in html
        hollow += trained["passes"] and any(s["passes"] for s in entries if s["step"] != 0)
    assert f"{hollow} of {len(METHODS)} methods pass the class-sensitivity test on a randomised" in html
    assert "A method that passes on a random model: its pass means nothing" in html
    _png_ok(sanity_dir / "figures" / "sanity-cascade.png", min_width=1200, min_height=400)
    _self_contained(html, 1)

    # --threshold 0 recomputes the verdicts from rows.csv: agreement is never below 0 %, nothing passes
    page = tmp_path / "strict.html"
    strict = runner.invoke(app, ["report", str(sanity_dir), "--threshold", "0", "--out", str(page)])
    assert strict.exit_code == 0, strict.output
    assert f"0 of {len(METHODS)} methods pass" in page.read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "sanity-cascade.png").is_file()

    from case_saliency.workflows.sanity import format_summary

    printed = runner.invoke(app, ["summarize", str(sanity_dir)])
    assert printed.exit_code == 0 and printed.output.strip() == format_summary(summary).strip()
    as_json = json.loads(runner.invoke(app, ["summarize", str(sanity_dir), "--json", "--threshold", "0"]).output)
    assert as_json["kind"] == "sanity" and not any(s["passes"] for s in as_json["summary"])


def test_other_folders_are_left_to_the_run_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "summary.json").write_text(json.dumps({"planted": {}, "summary": {}}))
    assert evidence_kind(run) is None  # a run directory (config.json) is never taken for an evidence folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"summary": [{"method": "gradcam"}]}))
    assert evidence_kind(other) is None and evidence_kind(tmp_path / "missing") is None
    result = CliRunner().invoke(app, ["report", str(other)])
    assert result.exit_code == 2 and "config.json" in result.output  # the run report's own error
    (other / "summary.json").write_text("{not json")
    broken = CliRunner().invoke(app, ["summarize", str(other)])
    assert broken.exit_code == 2 and "not readable JSON" in broken.output
