"""--max-memory: the gradient methods' memory budget for a whole command, parsed with units, reaching
the methods of a run (a spec's own max_memory= still wins), a bad value refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.cli.run_options import parse_memory

SMALL = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3))
'''


def test_sizes_parse_with_decimal_and_binary_units():
    assert parse_memory(None) is None
    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory("500MB") == 500 * 10**6
    assert parse_memory("500 mb") == 500 * 10**6
    assert parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert parse_memory("3e9") == 3 * 10**9
    assert parse_memory("4096") == 4096
    for bad in ("abc", "2 GBs", "-1GB", "", "0"):
        with pytest.raises(typer.Exit):
            parse_memory(bad)


@pytest.mark.parametrize("command", ["diagnose", "fidelity", "explain"])
def test_a_bad_value_exits_2_naming_it_before_any_work(command, tmp_path):
    args = ["--model", "no-such-model", "--max-memory", "abc"]
    args += ["samples"] if command == "explain" else ["--data", "samples", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [command, *args])
    assert result.exit_code == 2, result.output
    assert "--max-memory 'abc': expected e.g. 2GB or 500MB" in result.output
    assert "no-such-model" not in result.output  # refused before the model is looked up


def test_the_flag_reaches_the_gradient_methods_and_a_spec_wins(tmp_path, monkeypatch):
    from case_saliency.methods.gradients import CaptumMethod
    from case_saliency.runs import RunDir

    source = tmp_path / "small.py"
    source.write_text(SMALL)
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(4):
        folder = data / "abc"[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    budgets: list[tuple[str, int]] = []
    copies = CaptumMethod.copies_per_pass

    def recording(self, images):
        budgets.append((self.name, self.memory_budget(images.device)))
        return copies(self, images)

    monkeypatch.setattr(CaptumMethod, "copies_per_pass", recording)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["diagnose", "--model", f"{source}:build", "--data", f"imagefolder:{data}",
                                      "--n", "0", "--all", "--methods",
                                      "integrated_gradients(n_steps=4),smoothgrad(samples=2,max_memory=7777)",
                                      "--max-memory", "150KB", "--out", str(out), "--quiet", "--workers", "0",
                                      "--gallery", "0", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert {name for name, _ in budgets} == {"integrated_gradients", "smoothgrad"}
    assert all(budget == (150_000 if name == "integrated_gradients" else 7777) for name, budget in budgets)
    rows = RunDir.read(out).typed_rows()
    assert len(rows) == 8 and not any(row["error"] for row in rows)
    # outside the command, the default (a share of the memory available) is back
    from case_saliency.methods.gradients import default_memory_budget
    assert default_memory_budget() > 10**6
