"""The README's first screen: its figure is committed, and the `explain` commands beside it run as
written (in a scratch folder) and write that figure."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from PIL import Image

from test_readme import ENV, README, ROOT, cli_commands


def _explain_commands() -> list[list[str]]:
    return [argv for argv in cli_commands() if argv[0] == "explain"]


def test_the_first_screen_shows_the_figure_and_the_commands():
    first_screen = README.split("\n## ")[0]
    figure = re.search(r"!\[[^\]]*\]\((docs/[\w.-]+\.png)\)", first_screen)
    assert figure and (ROOT / figure[1]).is_file()
    assert "bash scripts/setup.sh && .venv/bin/case-saliency demo" in first_screen
    assert ".venv/bin/python -m pytest -q" in first_screen
    assert ".venv/bin/case-saliency explain samples:skimage/chelsea" in first_screen
    assert len(_explain_commands()) >= 3


@pytest.mark.slow
def test_the_readme_explain_commands_run_as_written(tmp_path):
    for argv in _explain_commands():
        result = subprocess.run([sys.executable, "-m", "case_saliency.cli", *argv], capture_output=True, text=True,
                                env=ENV, cwd=tmp_path, timeout=1800)
        assert result.returncode == 0, (argv, result.stderr[-3000:])
        out = tmp_path / argv[argv.index("--out") + 1]
        assert any(out.glob("*.explain.png")), argv
    regenerated, committed = tmp_path / "docs" / "chelsea.explain.png", ROOT / "docs" / "chelsea.explain.png"
    with Image.open(regenerated) as new, Image.open(committed) as old:
        assert new.size == old.size  # the command beside the figure makes it (pixels may differ by fonts)
    page = (tmp_path / "explain-output" / "explain.html").read_text()
    assert page.count("<section>") == 14 and "Egyptian cat" in page
