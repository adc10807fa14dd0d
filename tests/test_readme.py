"""The README as a user reads it: every Python block runs as written, in order, in one fresh
interpreter; every shell command parses against the real command line, and the quick ones run as
written (in a scratch folder). The long runs (fidelity on 14 photos, training for 3 epochs, a
confusion matrix over 10,000 images) are parsed here and exercised at small sizes by the other tests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import case_saliency
from needs import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV = {**os.environ, "PYTHONPATH": str(Path(case_saliency.__file__).parents[1])}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def commands() -> list[list[str]]:
    """Each shell command of the README's bash blocks, as argv (comments dropped, continuations joined)."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                for part in line.split("&&"):
                    found.append(shlex.split(part))
    return found


def cli_commands() -> list[list[str]]:
    return [argv[1:] for argv in commands() if argv[0] in (".venv/bin/case-saliency", "case-saliency")]


def torchrun_commands() -> list[list[str]]:
    """The case-saliency command lines that torchrun starts (``torchrun ... -m case_saliency ARGS``)."""
    return [argv[argv.index("case_saliency") + 1:] for argv in commands() if argv[0] == ".venv/bin/torchrun"]


def test_readme_lists_the_commands_this_test_checks():
    names = [argv[0] for argv in cli_commands()]
    assert {"demo", "methods", "diagnose", "fidelity", "summarize", "report", "train", "confusion"} <= set(names)
    # Runnable as written after the first command: the venv's script, not a bare name off PATH.
    assert all(argv[0] in (".venv/bin/case-saliency", ".venv/bin/python", ".venv/bin/torchrun", "bash")
               for argv in commands())


def _parse(argv: list[str]) -> dict:
    """The parameters the command line reads from ``argv``, without running the command."""
    from case_saliency.cli import app

    group = typer.main.get_command(app)
    with group.make_context("case-saliency", [argv[0]]) as context:
        command = group.get_command(context, argv[0])
        assert command is not None, f"no command {argv[0]!r}"
        with command.make_context(argv[0], list(argv[1:]), parent=context) as sub:
            return dict(sub.params)


@pytest.mark.parametrize("argv", cli_commands() + torchrun_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_every_readme_command_parses(argv):
    """Options and arguments as the command line reads them: a misspelt option would fail here."""
    params = _parse(argv)
    assert all(value is not None for key, value in params.items() if f"--{key.replace('_', '-')}" in argv)
    with pytest.raises(Exception, match="No such option"):
        _parse([*argv, "--no-such-option"])


# Runs each script as ``python SCRIPT --help`` would, in one interpreter (torch is imported once),
# and prints what each one's exit code was after its usage text.
HELP_DRIVER = """
import runpy, sys
from pathlib import Path
for script in sys.argv[1:]:
    sys.argv, sys.path[0] = [script, "--help"], str(Path(script).parent)
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    print(f"== {script} exited {code}", flush=True)
"""


def test_benchmark_scripts_start():
    scripts = sorted({argv[1] for argv in commands() if argv[0] == ".venv/bin/python" and argv[1].endswith(".py")})
    assert scripts, "the README names no benchmark script"
    result = subprocess.run([sys.executable, "-c", HELP_DRIVER, *(str(ROOT / s) for s in scripts)],
                            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    parts = result.stdout.split("== ")
    for script in scripts:
        usage = next((i for i, part in enumerate(parts) if part.startswith(f"{ROOT / script} exited ")), None)
        assert usage is not None and parts[usage].startswith(f"{ROOT / script} exited 0"), (script, result.stdout)
        assert "usage" in parts[usage - 1].lower(), (script, parts[usage - 1][-500:])


@pytest.mark.slow
def test_python_blocks_run_as_written(tmp_path):
    """The blocks share one interpreter, in order, as a reader pasting them would."""
    code = "\n\n".join(blocks("python"))
    assert "load_model" in code and "compat" in code
    check = ("\nimport torch\nassert maps.shape == (2, 224, 224) and both.shape == (2, 2, 224, 224)"
             "\nassert grayscale.shape == (2, 224, 224) and 0 <= grayscale.min() and grayscale.max() <= 1"
             "\nassert result.layer == 'bn2' and mine.shape == (2, 224, 224)\nprint('readme: ok')\n")
    result = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, env=ENV,
                            cwd=tmp_path, timeout=900)
    assert result.returncode == 0 and "readme: ok" in result.stdout, result.stderr[-3000:]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "case_saliency.cli", *argv], capture_output=True, text=True,
                            env=ENV, cwd=cwd, timeout=1800)
    assert result.returncode == 0, (argv, result.stderr[-3000:])
    return result


def _readme(first: str, *more: str) -> list[list[str]]:
    """The README's commands that start with these words."""
    found = [argv for argv in cli_commands() if argv[:1 + len(more)] == [first, *more]]
    assert found, (first, more)
    return found


@pytest.mark.slow
def test_quick_commands_run_as_written(tmp_path):
    """methods, demo, the Lite0 diagnose run on the sample photos, its summary and its report."""
    assert "gradcam" in _run(_readme("methods")[0], tmp_path).stdout
    demo = _run(_readme("demo")[0], tmp_path)
    assert "mean top-5% agreement" in demo.stdout and (tmp_path / "demo-output" / "report.html").is_file()
    diagnose = [argv for argv in _readme("diagnose") if "samples" in argv][0]  # the quick one, not "What it finds"
    _run(diagnose, tmp_path)
    assert "case" in _run(_readme("summarize")[0], tmp_path).stdout
    (report,) = _readme("report")
    run_dirs = [arg for arg in report[1:] if not arg.startswith("-")]
    report = [report[0], *[arg for arg in run_dirs if (tmp_path / arg).is_dir()]]  # the fidelity run is not made here
    _run(report, tmp_path)
    assert (tmp_path / run_dirs[0] / "report.html").is_file()


@needs_fashion_mnist
def test_fashion_commands_find_their_data():
    """The Fashion-MNIST commands read Debian's files where setup.sh puts them."""
    from case_saliency.data import open_dataset

    for argv in cli_commands():
        if "--data" in argv and argv[argv.index("--data") + 1].startswith("fashion-mnist"):
            assert len(open_dataset(argv[argv.index("--data") + 1])) == 10000
