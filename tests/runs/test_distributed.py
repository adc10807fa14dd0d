"""Runs that outgrow one process: ``python -m case_saliency`` under ``torchrun`` (CPU, gloo) shards the
sample over ranks whose part files rank 0 merges into one results.csv equal to a single process's;
a distributed run killed with SIGKILL resumes with another number of ranks and loses nothing; the
README's command runs as written."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from case_saliency.runs.store import read_results
from case_saliency.runs.summary import load_results

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
README = Path(__file__).parents[2] / "README.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
DIAGNOSE = ["diagnose", "--model", "efficientnet_lite0", "--data", "samples", "--num-images", "6", "--methods",
            "gradcam,case", "--batch-size", "2", "--quiet"]
FIDELITY = ["fidelity", "--model", "efficientnet_lite0", "--data", "samples", "--num-images", "4", "--methods",
            "gradcam,case", "--batch-size", "1", "--steps", "2", "--quiet"]


def single(args: list[str], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "case_saliency", *args, "--out", str(out)], env=ENV,
                          capture_output=True, text=True, timeout=600)


def torchrun_command(ranks: int, args: list[str], out: Path) -> list[str]:
    return [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(ranks), "-m", "case_saliency", *args,
            "--out", str(out)]


def torchrun(ranks: int, args: list[str], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(ranks, args, out), env=ENV, capture_output=True, text=True, timeout=600)


def numbers(run: Path) -> pd.DataFrame:
    """The run's rows keyed by (image, method[, k]) with every column."""
    _, frame = load_results(run)
    keys = [c for c in ("image_id", "method", "k_percent") if c in frame]
    assert not frame.duplicated(keys).any(), "duplicate rows"
    return frame.set_index(keys).sort_index()


def assert_same_rows(got: Path, want: Path) -> None:
    a, b = numbers(got), numbers(want)
    assert list(a.index) == list(b.index)  # the same images and methods: no gaps, no extras
    for column in a.columns:
        if a[column].dtype.kind == "f":
            assert np.allclose(a[column], b[column], atol=1e-5, equal_nan=True), column
        elif column.endswith("_curve"):
            for x, y in zip(a[column], b[column], strict=True):
                assert np.allclose([float(v) for v in x.split()], [float(v) for v in y.split()], atol=1e-5)
        else:
            assert list(a[column]) == list(b[column]), column


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    for name, args in (("diagnose", DIAGNOSE), ("fidelity", FIDELITY)):
        done = single(args, folder / name)
        assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.parametrize("kind", ["diagnose", "fidelity"])
def test_two_ranks_equal_one_process(references, tmp_path, kind):
    out = tmp_path / kind
    done = torchrun(2, DIAGNOSE if kind == "diagnose" else FIDELITY, out)
    assert done.returncode == 0, done.stderr
    assert not (out / "parts").exists()
    assert_same_rows(out, references / kind)
    # merged in the order one process writes: the files are equal line for line
    assert (out / "results.csv").read_text() == (references / kind / "results.csv").read_text()
    if kind == "diagnose":
        assert sorted(p.name for p in (out / "gallery").glob("*.npz")) == \
            sorted(p.name for p in (references / kind / "gallery").glob("*.npz"))
    summary = subprocess.run([sys.executable, "-m", "case_saliency", "summarize", str(out)], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0 and "case" in summary.stdout


def test_killed_distributed_run_resumes_on_other_ranks(references, tmp_path):
    out = tmp_path / "fidelity"
    proc = subprocess.Popen(torchrun_command(2, FIDELITY, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None:
            parts = list((out / "parts").glob("rank-*.csv")) if (out / "parts").exists() else []
            if sum(p.read_bytes().count(b"\n") - 1 for p in parts) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and every rank
        proc.wait(timeout=60)
    parts = sorted((out / "parts").glob("rank-*.csv"))
    assert parts and not (out / "results.csv").exists()  # rows only in the parts yet: rank 0 merges at the end
    held = sum(len(read_results(p).rows) for p in parts)
    assert 2 <= held < 8
    resumed = single(FIDELITY, out)  # one process now
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "of 4 images done" in resumed.stderr
    assert not (out / "parts").exists()
    assert_same_rows(out, references / "fidelity")


def test_readme_scaling_out_command_runs_as_written(tmp_path):
    text = README.read_text()
    section = text[text.index("## Scaling out"):]
    commands = [line.strip() for line in re.findall(r"```bash\n(.*?)```", section, re.S)[0].splitlines()
                if line.strip().startswith(".venv/bin/torchrun") and "--standalone" in line]
    assert commands, "the README's single-node torchrun command"
    argv = shlex.split(commands[0].split("#")[0])
    argv[0] = str(BIN / "torchrun")
    done = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    out = Path(tmp_path, argv[argv.index("--out") + 1])
    config, frame = load_results(out)
    assert len(frame) == config["n"] * len(config["methods"]) and (frame["error"] == "").all()
