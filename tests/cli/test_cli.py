"""What a user meets first on the command line: help without loading torch, errors as one line with
exit code 2, the layer a run uses, clean warnings, plain-text method summaries."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import case_saliency
from case_saliency.cli import app

HEAVY = ("torch", "numpy", "matplotlib", "pandas", "scipy", "PIL", "timm", "captum")


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(case_saliency.__file__).parents[1])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _imported(importtime_stderr: str) -> set[str]:
    """Top-level packages named in ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("command", [[], ["diagnose"], ["fidelity"], ["report"], ["demo"], ["train"]])
def test_help_loads_no_heavy_module(command):
    """--help is fast because it imports neither torch nor the scientific stack (lazy imports)."""
    result = _python("-X", "importtime", "-m", "case_saliency.cli", *command, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage:" in result.stdout and "<bool>" not in result.stdout
    heavy = _imported(result.stderr) & set(HEAVY)
    assert not heavy, f"`case-saliency {' '.join(command)} --help` imported {sorted(heavy)}"


def test_package_import_is_lazy_and_exports_resolve():
    result = _python("-X", "importtime", "-c", "import case_saliency, case_saliency.runs.defaults")
    assert result.returncode == 0 and "torch" not in _imported(result.stderr)
    for name in case_saliency.__all__:
        assert getattr(case_saliency, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        case_saliency.nope  # noqa: B018
    # The names type checkers see are the names exported at run time.
    tree = ast.parse(Path(case_saliency.__file__).read_text())
    checked = {alias.name for node in ast.walk(tree) if isinstance(node, ast.If)
               for stmt in node.body if isinstance(stmt, ast.ImportFrom) for alias in stmt.names}
    assert checked == set(case_saliency._EXPORTS)


def test_offline_model_without_weights_is_one_line_naming_weights(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    result = CliRunner().invoke(app, ["diagnose", "--model", "resnet50", "--data", "samples", "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --model 'resnet50'") and "--weights FILE" in lines[0]
    assert not (tmp_path / "run").exists()


def test_unknown_lite_variant_is_an_unknown_name(tmp_path):
    for command in (["diagnose", "--data", "samples", "--out", str(tmp_path / "run")], ["demo", "--out",
                                                                                        str(tmp_path / "demo")]):
        result = CliRunner().invoke(app, [*command, "--model", "efficientnet_lite3"])
        assert result.exit_code == 2, result.output
        assert "unknown model 'efficientnet_lite3'" in result.stderr and "network" not in result.stderr
        assert "efficientnet_lite0" in result.stderr


def test_missing_layer_suggests_the_default_and_spatial_layers(tmp_path):
    result = CliRunner().invoke(app, ["diagnose", "--model", "efficientnet_lite0", "--data", "samples", "--out",
                                      str(tmp_path / "run"), "--layer", "layer4"])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "no module named 'layer4'" in line
    assert "default layer: bn2" in line and "conv_head" in line and "classifier" not in line


def test_methods_print_plain_text():
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0 and "``" not in result.output
    assert "captum.attr.IntegratedGradients" in result.output


@pytest.mark.slow
def test_unreadable_file_is_one_warning_line_and_the_layer_is_printed(tmp_path):
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.chelsea()).save(folder / "cat.jpg")
    (folder / "broken.jpg").write_text("not an image")
    result = _python("-m", "case_saliency.cli", "diagnose", "--model", "efficientnet_lite0", "--data",
                     f"folder:{folder}", "--n", "0", "--methods", "gradcam", "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    stderr = result.stderr.strip().splitlines()
    warnings = [line for line in stderr if "broken.jpg" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped 1 unreadable image file")
    assert "UserWarning" not in result.stderr and "self.paths" not in result.stderr
    assert "layer: bn2 (efficientnet_lite0's default" in result.stderr


def test_out_inside_the_data_folder_is_warned_about_when_chosen(tmp_path):
    """--out inside the image folder: the warning comes before any work (here a bad --layer then
    stops the run, so the test costs a model load and no maps)."""
    from PIL import Image

    data = tmp_path / "images"
    data.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32), (120, 60, 30)).save(data / name)
    result = CliRunner().invoke(app, ["diagnose", "--model", "efficientnet_lite0", "--data", f"folder:{data}",
                                      "--out", str(data / "runs" / "x"), "--layer", "layer4"])
    assert result.exit_code == 2, result.output
    assert "inside the data folder" in result.stderr and str(data) in result.stderr
