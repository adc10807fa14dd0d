"""`case-saliency summarize` and `report` on a run directory: no torch import on their path, and the
verdict lines (every method against Grad-CAM on the same images) in the text, the JSON and first on
the report page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from case_saliency.metrics.stats import compare_paired, holm
from case_saliency.runs.rows import DiagnoseRow
from case_saliency.runs.store import format_rows, header_line
from case_saliency.runs.summary import compare_with_baseline, summarize_run

SRC = Path(__file__).resolve().parents[2] / "src"
METHODS = ("gradcam", "hirescam", "case", "layercam")


def _rows(n: int = 40, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 80, n)
    values = {"gradcam": base, "hirescam": base.copy(), "case": base - 15 + rng.normal(0, 3, n),
              "layercam": base + rng.normal(0.2, 2, n)}
    rows = []
    for method in METHODS:
        for i in range(n):
            rows.append({"image_id": f"img{i:03d}", "method": method, "k_percent": 5.0,
                         "agreement": float(np.round(values[method][i], 1)), "spearman": 0.3, "ssim": 0.4,
                         "degenerate": False, "class1": 1, "class2": 2, "prob1": 0.6, "prob2": 0.2, "label": 1,
                         "contrast1": "", "contrast2": "", "other_in_contrast": False, "positive1": 100,
                         "positive2": 100, "sparse": False, "error": ""})
    return rows


def _write_run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir()
    (folder / "results.csv").write_text(header_line(DiagnoseRow.columns()) + format_rows(rows, DiagnoseRow.columns()))
    config = {"kind": "diagnose", "model": "toy", "dataset": "toy", "methods": list(METHODS), "n": 40, "seed": 0,
              "k_percent": [5.0], "threshold": 50.0, "alpha": 0.05, "layer": "features", "contrast": "classifier:3"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return _write_run(tmp_path / "run", _rows())


def _cli(args: list[str], code: str = "") -> subprocess.CompletedProcess:
    """The command line in a fresh interpreter; ``code`` runs after it (e.g. to inspect sys.modules)."""
    script = ("import sys\nfrom case_saliency.cli import main\nsys.argv = ['case-saliency', *sys.argv[1:]]\n"
              f"try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n{code}")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          check=True, timeout=300)


def test_summarize_and_report_import_no_torch(run_dir: Path):
    check = ("torch_modules = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
             "print('TORCH', torch_modules)\n")
    for command in (["summarize", str(run_dir)], ["report", str(run_dir)]):
        out = _cli(command, check).stdout
        assert "TORCH []" in out, (command, out[-2000:])


def test_summarize_ends_with_one_verdict_line_per_method_against_gradcam(run_dir: Path):
    out = _cli(["summarize", str(run_dir)]).stdout.strip().splitlines()
    verdicts = out[out.index("Verdicts:") + 1:]
    assert [line.split(":")[0] for line in verdicts] == ["HiResCAM vs Grad-CAM", "CASE vs Grad-CAM",
                                                         "LayerCAM vs Grad-CAM"]
    assert verdicts[0].endswith("identical agreement on all 40 images (difference 0)")
    assert "more class-specific by 14.1 points" in verdicts[1]
    assert "(Holm)" in verdicts[1] and "at n = 40" in verdicts[1]
    assert "equal within ±5 points" in verdicts[2] and "TOST p" in verdicts[2]
    data = json.loads(_cli(["summarize", str(run_dir), "--json"]).stdout)
    assert data["verdicts"] == verdicts
    versus = {row["method"]: row for row in data["versus_baseline"]}
    assert versus["case"]["verdict"] == "lower" and versus["layercam"]["verdict"] == "equal"


def test_the_report_opens_with_the_verdicts(run_dir: Path):
    _cli(["report", str(run_dir)])
    page = (run_dir / "report.html").read_text()
    body = page[page.index("<body>"):]
    first = body.index('<section id="')
    assert body[first:].startswith('<section id="verdicts"')
    assert "CASE vs Grad-CAM: more class-specific by" in page
    assert body.index('id="verdicts"') < body.index('id="summary"')


def test_compare_with_baseline_pairs_by_image_and_holm_corrects_across_methods():
    rows = _rows(30, seed=3)
    rows = [r for r in rows if r["method"] != "case"] + [r for r in reversed(rows) if r["method"] == "case"]
    rows.append({**rows[0], "method": "case", "image_id": "only-here", "agreement": 1.0})  # no baseline: unpaired
    failed = next(r for r in rows if r["method"] == "case" and r["image_id"] == "img007")
    failed.update(agreement=float("nan"), error="RuntimeError: boom")  # a failed row is never paired
    frame = pd.DataFrame(rows)
    table = compare_with_baseline(frame).set_index("method")
    by_id = {m: {r["image_id"]: r["agreement"] for r in rows if r["method"] == m and not r["error"]} for m in METHODS}
    ids = sorted(set(by_id["case"]) & set(by_id["gradcam"]))
    case = np.array([by_id["case"][i] for i in ids])
    gradcam = np.array([by_id["gradcam"][i] for i in ids])
    assert table.loc["case", "n"] == 29
    assert table.loc["case", "mean_difference"] == pytest.approx(np.mean(case - gradcam))
    assert table.loc["case", "p"] == pytest.approx(sps.ttest_rel(case, gradcam).pvalue, rel=1e-10)
    assert table.loc["case", "wilcoxon_p"] == pytest.approx(sps.wilcoxon(case, gradcam).pvalue, rel=1e-10)
    reference = compare_paired(case, gradcam)
    assert (table.loc["case", "ci_low"], table.loc["case", "ci_high"]) == (reference.mean_low, reference.mean_high)
    # Holm over the two real comparisons; HiResCAM (identical to Grad-CAM) is no test and is left out
    real = table.loc[["case", "layercam"]]
    assert np.allclose(real["p_holm"], holm(real["p"].to_numpy()))
    assert np.allclose(real["tost_p_holm"], holm(real["tost_p"].to_numpy()))
    assert np.isnan(table.loc["hirescam", "p_holm"]) and table.loc["hirescam", "verdict"] == "identical"
    uncorrected = compare_with_baseline(frame, correction=None).set_index("method")
    assert uncorrected["p_holm"].isna().all() and "(Holm)" not in uncorrected.loc["case", "line"]
    assert compare_with_baseline(frame[frame["method"] != "gradcam"]).empty  # no baseline, no verdicts


def test_an_undetermined_verdict_names_its_interval(tmp_path: Path):
    rng = np.random.default_rng(11)
    gradcam = [r for r in _rows(8, seed=2) if r["method"] == "gradcam"]
    case = [{**r, "method": "case", "agreement": float(np.clip(r["agreement"] + rng.normal(-3, 12), 0, 100))}
            for r in gradcam]
    rows = gradcam + case
    summary = summarize_run(_write_run(tmp_path / "few", rows))
    (line,) = summary["verdicts"]
    assert line.startswith("CASE vs Grad-CAM: undetermined at n = 8: difference ")
    assert "95% CI" in line and "neither a difference" in line and "MDD" in line


def test_summarize_options_choose_the_baseline_and_the_margin(run_dir: Path):
    from typer.testing import CliRunner

    from case_saliency.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["summarize", str(run_dir), "--baseline", "case", "--margin", "2"])
    assert out.exit_code == 0, out.output
    verdicts = out.output.strip().splitlines()
    verdicts = verdicts[verdicts.index("Verdicts:") + 1:]
    assert verdicts[0].startswith("Grad-CAM vs CASE: less class-specific by 14.1 points")
    assert all("±5" not in line for line in verdicts)
    missing = runner.invoke(app, ["summarize", str(run_dir), "--baseline", "nope"])
    assert missing.exit_code == 0 and "No verdicts: the run has no nope rows" in missing.output
    bad = runner.invoke(app, ["summarize", str(run_dir), "--margin", "0"])
    assert bad.exit_code == 2 and "--margin 0 must be positive" in bad.output
