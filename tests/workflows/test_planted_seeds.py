"""`case-saliency planted --seeds 0,1`: a planted folder per seed and their pooled summary (the mean of the
seeds' means with a t 95 % interval over the seeds), which `summarize` prints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from case_saliency.cli import app
from needs import needs_fashion_mnist

pytestmark = needs_fashion_mnist


@pytest.mark.slow
def test_planted_seeds_pool_the_seeds_with_a_t_interval(tmp_path):
    out = tmp_path / "planted"
    runner = CliRunner()
    result = runner.invoke(app, ["planted", "--out", str(out), "--seeds", "0,1", "--steps", "80", "--train-limit",
                                 "3000", "--n", "16", "--mosaics", "2", "--methods", "gradcam,case", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "planted evidence over 2 seed(s) 0, 1" in result.output
    pooled = json.loads((out / "summary.json").read_text())
    assert pooled["seeds"] == [0, 1] and pooled["folders"] == ["seed-0", "seed-1"]
    per_seed = {s: json.loads((out / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)}
    assert [per_seed[s]["seed"] for s in (0, 1)] == [0, 1] and per_seed[0]["planted"]["seed"] == 0
    for method in ("gradcam", "case"):
        for score in ("contrast", "patch_share", "garment_share", "focus"):
            # NaN (JSON null) where a seed's short training left no image with top-1 patch and top-2 garment
            means = [per_seed[s]["summary"][method][score]["mean"] for s in (0, 1)]
            entry = pooled["pooled"][method][score]
            assert entry["seeds"] == {"0": means[0], "1": means[1]}
            finite = [m for m in means if m is not None]
            assert entry["mean"] == (pytest.approx(np.mean(finite), abs=1e-12) if finite else None)
            if len(finite) == 2 and means[0] != means[1]:
                low, high = stats.t.interval(0.95, 1, loc=np.mean(means), scale=stats.sem(means))
                assert (entry["low"], entry["high"]) == pytest.approx((low, high), abs=1e-9)
    # summarize prints the pooled table; each seed's folder summarizes alone.
    text = runner.invoke(app, ["summarize", str(out)])
    assert text.exit_code == 0 and "t 95 % interval over the seeds" in text.output and "seed 1" in text.output
    assert runner.invoke(app, ["summarize", str(out / "seed-1")]).exit_code == 0
    as_json = json.loads(runner.invoke(app, ["summarize", str(out), "--json"]).output)
    assert as_json["kind"] == "planted-seeds" and set(as_json["pooled"]) == {"gradcam", "case"}
    assert pooled["pooled"]["gradcam"]["focus"]["mean"] is not None  # the mosaics score on every seed


def test_one_seed_has_no_interval_over_seeds():
    from case_saliency.workflows.planted import pool_seeds

    summary = {"gradcam": {s: {"mean": 0.5, "low": 0.4, "high": 0.6} for s in
                           ("contrast", "patch_share", "garment_share", "focus")}}
    pooled = pool_seeds({3: summary})
    assert pooled["gradcam"]["contrast"]["mean"] == 0.5 and math.isnan(pooled["gradcam"]["contrast"]["low"])
    assert pooled["gradcam"]["n_seeds"] == 1


def test_bad_seeds_are_refused(tmp_path):
    result = CliRunner().invoke(app, ["planted", "--out", str(tmp_path), "--seeds", "0,x"])
    assert result.exit_code == 2 and "--seeds '0,x'" in result.output
