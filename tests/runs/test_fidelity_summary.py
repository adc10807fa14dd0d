"""`summarize` of a fidelity run: the blur deletion/insertion AUC first and in the verdict lines, the
class-contrastive drop shown, the zero-fill drop secondary with the random maps' drop beside it; runs of
earlier versions (no contrastive drop, deletion with their fill) still summarize."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from case_saliency.metrics.stats import holm
from case_saliency.runs.rows import FidelityRow
from case_saliency.runs.store import format_rows, header_line
from case_saliency.runs.summary import compare_fidelity, format_summary, summarize_run

REPO = Path(__file__).resolve().parents[2]
METHODS = ("gradcam", "case", "random")


def _rows(n: int = 30, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.5, n)
    noise = lambda: rng.normal(0, 0.01, n)  # noqa: E731
    deletion = {"gradcam": base, "case": base - 0.03 + noise(), "random": base + 0.1 + noise()}
    insertion = {"gradcam": base + 0.2, "case": base + 0.2 + noise(), "random": base + noise()}
    rows = []
    for method in METHODS:
        for i in range(n):
            drop = 0.85 + rng.normal(0, 0.01)  # saturated: random maps reach it too
            rows.append({"image_id": f"img{i:03d}", "method": method, "label": 1, "pred": 1, "prob_before": 0.9,
                         "prob_after": 0.9 * (1 - drop), "drop_relative": drop, "drop_absolute": 0.9 * drop,
                         "deletion_auc": float(deletion[method][i]), "insertion_auc": float(insertion[method][i]),
                         "deletion_curve": "", "insertion_curve": "", "degenerate": False, "contrast": "",
                         "class2": 2, "margin_before": 3.0,
                         "contrastive_drop": float({"gradcam": 1.0, "case": 1.5, "random": 0.1}[method]
                                                   + rng.normal(0, 0.1)),
                         "contrastive_drops": "0.5 1 1.5 2", "error": ""})
    rows[len(rows) // 3 + 4]["error"] = "failed"  # one case image not scored: the control pairs on the others
    return rows


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    rows = _rows()
    (folder / "results.csv").write_text(header_line(FidelityRow.columns()) + format_rows(rows, FidelityRow.columns()))
    config = {"kind": "fidelity", "model": "toy", "dataset": "toy", "methods": list(METHODS), "n": 30, "seed": 0,
              "k_percent": [50.0], "alpha": 0.05, "fill": "zero", "steps": 20, "deletion_fill": "blur",
              "contrastive_k": [5, 10, 20, 50], "layer": "features", "contrast": "classifier:3"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_primary_measures_come_first_and_the_random_control_sits_beside_the_drop(run_dir: Path):
    summary = summarize_run(run_dir)
    means = summary["fidelity"].set_index("method")
    measured = [c for c in means.columns if c.endswith(("_mean", "_random"))]
    assert measured == ["deletion_auc_mean", "insertion_auc_mean", "contrastive_drop_mean", "drop_relative_mean",
                        "drop_relative_random", "drop_absolute_mean"]
    rows = _rows()
    frame = {(r["image_id"], r["method"]): r for r in rows}
    case_ids = [r["image_id"] for r in rows if r["method"] == "case" and not r["error"]]
    expected = np.mean([frame[(i, "random")]["drop_relative"] for i in case_ids])
    assert len(case_ids) == 29 and means.loc["case", "drop_relative_random"] == pytest.approx(expected, abs=1e-6)
    assert means.loc["case", "contrastive_drop_mean"] == pytest.approx(
        np.mean([frame[(i, "case")]["contrastive_drop"] for i in case_ids]), abs=1e-6)
    text = format_summary(summary)
    assert "Primary: deletion AUC (removed pixels blur) and insertion AUC (revealed on the blur)" in text
    assert "Secondary: the confidence drop at k = 50% with fill zero" in text and "drop_relative_random" in text


def test_fidelity_verdicts_compare_every_method_with_gradcam_on_the_auc(run_dir: Path):
    summary = summarize_run(run_dir)
    lines = summary["verdicts"]
    assert [line.split(":")[0] for line in lines] == [
        "CASE vs Grad-CAM, deletion AUC", "random maps vs Grad-CAM, deletion AUC",
        "CASE vs Grad-CAM, insertion AUC", "random maps vs Grad-CAM, insertion AUC"]
    assert "more faithful by 0.0272 (difference -0.0272" in lines[0] and "less faithful by 0.1" in lines[1]
    assert "less faithful by 0.2" in lines[3]
    # The p-values against SciPy's paired t-test, Holm across the four comparisons.
    rows = _rows()
    value = {(r["image_id"], r["method"]): r for r in rows if not r["error"]}
    ps, means = [], []
    for measure in ("deletion_auc", "insertion_auc"):
        for method in ("case", "random"):
            ids = sorted(i for i, m in value if m == method and (i, "gradcam") in value)
            mine, theirs = ([value[(i, m)][measure] for i in ids] for m in (method, "gradcam"))
            ps.append(sps.ttest_rel(mine, theirs).pvalue)
            means.append(np.mean(np.subtract(mine, theirs)))
    versus = summary["versus_baseline"]
    assert versus["mean_difference"].to_numpy() == pytest.approx(means, abs=1e-9)
    assert versus["p"].to_numpy() == pytest.approx(ps, rel=1e-6)
    assert versus["p_holm"].to_numpy() == pytest.approx(holm(ps), rel=1e-6)
    assert "Verdicts (every method against Grad-CAM" in format_summary(summary)
    assert compare_fidelity(summarize_run.__globals__["_read"](run_dir)[1], baseline="absent").empty


def test_a_run_of_an_earlier_version_summarizes_without_the_contrastive_drop():
    summary = summarize_run(REPO / "tests/data/legacy/fidelity")
    assert "contrastive_drop_mean" not in summary["fidelity"] and "drop_relative_random" not in summary["fidelity"]
    text = format_summary(summary)
    assert "deletion AUC (removed pixels zero)" in text and "the run has no random method" in text
    assert summary["verdicts"][0].startswith("CASE vs Grad-CAM, deletion AUC")


def test_the_report_opens_a_fidelity_run_with_its_verdicts_and_the_auc_columns(run_dir: Path):
    from case_saliency.report import write_report

    page = write_report(run_dir).read_text()
    assert page.index('id="verdicts"') < page.index('id="summary"')
    assert "CASE vs Grad-CAM, deletion AUC: more faithful" in page
    table = page[page.index('id="summary"'):]
    assert table.index("Deletion AUC (blur)") < table.index("Insertion AUC (blur)") < \
        table.index("Contrastive drop") < table.index("Relative drop at 50% (zero)") < table.index("Random maps")
