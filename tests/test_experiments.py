"""The experiments that docs/results.md reports: the study plans."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("study", ["photos", "fashion", "finetune"])
def test_every_study_lists_its_steps_without_running(study, tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import studies
    finally:
        sys.path.pop(0)
    for quick in (False, True):
        plan = studies.STUDIES[study](tmp_path, quick=quick)
        kinds = {step.kind for step in plan.steps}
        assert {"diagnose", "fidelity"} <= kinds
        names = [step.name for step in plan.steps]
        assert len(names) == len(set(names))  # each step has its own folder
        for step in plan.steps:
            if step.kind == "diagnose":
                assert "case" in step.methods and "gradcam" in step.methods and "random" in step.methods
                assert step.n == 0 or step.n >= (1 if quick else 1000)

