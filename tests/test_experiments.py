"""The experiments that docs/results.md reports: the study plans, the drift test (the document's numbers
still come out of the code) and the paper's ImageNet commands, run as written on a small folder."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
EARLIER = ROOT / "docs" / "results" / "earlier-study.md"
QUICK_NUMBERS = ROOT / "docs" / "results" / "quick-photos.json"

# Drift tolerances. The same code on the same machine gives the same numbers to the last digit; another
# CPU or BLAS moves the maps by ~1e-6, which can swap pixels tied at the top-k boundary: a few of the
# 2,508 pixels of a 224x224 map at k = 5%, i.e. well under 1 percentage point of agreement.
AGREEMENT_TOLERANCE = 1.0  # percentage points, on each method's mean and median agreement
FIDELITY_TOLERANCE = 0.01  # on each method's mean confidence drop and deletion/insertion AUC
P_MARGIN = (0.01, 0.2)  # a committed p outside this band must keep its side of alpha = 0.05


def _studies():
    from experiments import studies

    return studies


@pytest.mark.parametrize("study", ["photos", "fashion", "finetune"])
def test_every_study_lists_its_steps_without_running(study, tmp_path):
    studies = _studies()
    from case_saliency.methods.spec import parse_method_spec

    for quick in (False, True):
        plan = studies.STUDIES[study](tmp_path, quick=quick)
        kinds = {step.kind for step in plan.steps}
        assert {"diagnose", "fidelity"} <= kinds
        names = [step.name for step in plan.steps]
        assert len(names) == len(set(names))  # each step has its own folder
        for step in plan.steps:
            for method in step.methods:
                parse_method_spec(method)  # every spec is one the library takes
            if step.kind == "diagnose" and not step.name.endswith(studies.EXTRA_RUNS):
                assert "case" in step.methods and "gradcam" in step.methods and "random" in step.methods
                assert step.n == 0 or step.n >= (1 if quick else 1000)
            if step.kind == "fidelity" and step.name.endswith(studies.EXTRA_RUNS):
                assert step.methods[0] == "case"  # the paired tests' reference, on the same images


def test_extra_runs_split_off_the_costly_and_contrastive_methods(tmp_path):
    studies = _studies()
    plan = studies.STUDIES["photos"](tmp_path)
    by_name = {step.name: step for step in plan.steps}
    main = by_name["efficientnet_lite0/diagnose"]
    assert not set(main.methods) & {"scorecam", "integrated_gradients", "smoothgrad"}
    assert not any(m.startswith("case:") for m in main.methods)
    assert by_name["efficientnet_lite0/diagnose-scorecam"].methods == ("scorecam",)
    assert by_name["efficientnet_lite1/diagnose-scorecam"].methods == ("scorecam",)
    assert not any(step.kind == "fidelity" and "scorecam" in step.methods for step in plan.steps)
    assert by_name["efficientnet_lite1/fidelity-zero-gradients"].methods == ("case", "integrated_gradients",
                                                                             "smoothgrad")
    assert "case:gradcam++" in by_name["efficientnet_lite0/diagnose-cams"].methods


def _tables():
    from experiments import tables

    return tables


def _numbers(data: dict):
    from experiments.records import StudyNumbers

    return StudyNumbers.from_json(data)


def test_agreement_cells_give_the_test_without_the_circular_pairs():
    """A cell of a method whose contrast sometimes holds the other compared class shows the share and the
    mean and p50 over the other pairs; all-circular cells show the share only; others neither."""
    tables = _tables()
    plain = {"n": 14, "mean": 53.41, "median": 59.7, "p50": 0.787, "p70": 0.015, "other_in_contrast": None}
    partly = {"n": 14, "mean": 42.91, "median": 47.4, "p50": 0.181, "p70": 0.00076, "other_in_contrast": 0.214,
              "n_without": 11, "mean_without": 42.45, "p50_without": 0.28, "p70_without": 0.01}
    always = {"n": 14, "mean": 36.28, "median": 38.3, "p50": 0.0247, "p70": 6e-05, "other_in_contrast": 1.0,
              "n_without": 0, "mean_without": None, "p50_without": None, "p70_without": None}
    numbers = {"m": {"diagnose": {"all": {"gradcam": {"5": plain}, "case": {"5": partly}, "case(top)": {"5": always}}}}}
    rows = tables.agreement_table(_numbers(numbers), ["m"]).splitlines()[2:]
    assert rows == ["| `gradcam` | 53.4 / 59.7 (0.79, **0.015**) |",
                    "| `case` | 42.9 / 47.4 (0.18, **0.00076**) [21%; without: 42.5 (p50 0.28)] |",
                    "| `case(top)` | 36.3 / 38.3 (**0.025**, **6e-05**) [100%] |"]


def test_circular_tables_compare_on_the_same_images_and_count_models():
    """The tables of the non-circular pairs: CASE against Grad-CAM per model, each contrastive CAM against
    its base over the models (means, and the models where the paired test says above / below)."""
    tables = _tables()

    def model(case_without: float, gradcam_there: float, p: float, cams_without: float, base_there: float,
              p_base: float) -> dict:
        case = {"n": 100, "mean": 10.0, "median": 0.0, "other_in_contrast": 0.6, "n_without": 40,
                "mean_without": case_without, "gradcam_mean_without": gradcam_there,
                "versus_gradcam_without": {"n": 40, "p": p}}
        cams = {"n": 100, "mean": 30.0, "median": 20.0, "other_in_contrast": 0.5, "n_without": 50,
                "mean_without": cams_without, "base_mean_without": base_there,
                "versus_base_without": {"n": 50, "p": p_base}}
        return {"diagnose": {"all": {"case": {"5": case}, "case:gradcam++": {"5": cams}}}}

    numbers = _numbers({"a": model(12.0, 9.0, 0.001, 60.0, 70.0, 0.01), "b": model(8.0, 8.5, 0.4, 65.0, 75.0, 0.2)})
    rows = tables.circular_table(numbers, ["a", "b"], ("case",)).splitlines()[2:]
    assert rows == ["| a | `case` | 60% | 40 | 12.0 | 9.0 | +3.0 | **0.001** |",
                    "| b | `case` | 60% | 40 | 8.0 | 8.5 | -0.5 | 0.4 |"]
    rows = tables.contrastive_table(numbers, ["a", "b"]).splitlines()[2:]
    assert rows == ["| `case:gradcam++` | 2 | 50% | 62.5 | 72.5 | 0 / 1 of 2 |"]


def test_numbers_json_reads_back_into_records_and_writes_the_same_json():
    """The committed quick numbers round-trip through the typed records unchanged: the records hold every
    number the drift test compares, and the JSON layout is theirs alone."""
    committed = json.loads(QUICK_NUMBERS.read_text())
    numbers = _numbers(committed)
    assert numbers.to_json() == committed
    gradcam = numbers.get("efficientnet_lite0").entry("all", "gradcam", 5.0)
    assert gradcam is not None and gradcam.mean == committed["efficientnet_lite0"]["diagnose"]["all"]["gradcam"]["5"][
        "mean"]
    case = numbers.get("efficientnet_lite0").entry("all", "case", 5.0)
    assert case is not None and case.without is not None and 0 < case.without.n < case.n


def test_experiments_is_a_package_without_path_edits_or_a_writer_of_its_own():
    """The driver imports the library and its own modules as packages, and replaces files only through the
    library's atomic writer."""
    for path in sorted((ROOT / "experiments").glob("*.py")):
        text = path.read_text()
        assert "sys.path" not in text, f"{path.name} edits sys.path"
        for writer in (".write_text(", "os.replace(", ".replace(self.path"):
            assert writer not in text, f"{path.name} writes files with {writer} instead of runs.store.atomic_write"


def _add_to_ledger(folder: str, who: str) -> None:
    from experiments.run import Ledger

    for step in range(25):
        Ledger(Path(folder)).add(f"study/{who}-{step}", 1.0, 2.0)


def test_drivers_side_by_side_keep_every_compute_entry(tmp_path):
    """Two drivers (``--only`` on disjoint steps) adding to one compute.json at once lose no entry."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_to_ledger, args=(str(tmp_path), who)) for who in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    data = json.loads((tmp_path / "compute.json").read_text())
    assert len(data) == 50 and all(entry["sessions"] == 1 for entry in data.values())


def _compare(new: dict, old: dict, where: str, problems: list[str]) -> None:
    """Add to ``problems`` every number of ``new`` that left its tolerance around ``old``."""
    for key, value in old.items():
        here = f"{where}/{key}"
        if key not in new:
            problems.append(f"{here}: missing from the rerun")
            continue
        other = new[key]
        if isinstance(value, dict):
            _compare(other, value, here, problems)
        elif key in ("mean", "median") and value is not None and other is not None and "/diagnose/" in here:
            if abs(other - value) > AGREEMENT_TOLERANCE:
                problems.append(f"{here}: {other:.3f} vs committed {value:.3f}")
        elif key in ("drop_relative", "drop_absolute", "deletion_auc", "insertion_auc") and value is not None:
            if other is None or abs(other - value) > FIDELITY_TOLERANCE:
                problems.append(f"{here}: {other} vs committed {value:.4f}")
        elif key in ("p50", "p70") and value is not None and not P_MARGIN[0] <= value <= P_MARGIN[1]:
            if other is None or (other < 0.05) != (value < 0.05):
                problems.append(f"{here}: p = {other} vs committed {value:.3g} (the test's decision changed)")
        elif key in ("n", "n_images", "errors", "degenerate") and other != value:
            problems.append(f"{here}: {other} vs committed {value}")


@pytest.mark.slow
def test_quick_photos_study_has_not_drifted_from_the_committed_numbers(tmp_path):
    """Reruns ``python -m experiments photos --quick`` (what docs/results.md commits beside it as
    docs/results/quick-photos.json) and compares every number within the tolerances above."""
    committed = json.loads(QUICK_NUMBERS.read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "experiments", "photos", "--quick", "--quiet",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "CPU time of this call" in done.stdout
    rerun = json.loads((tmp_path / "photos" / "numbers.json").read_text())
    assert set(rerun) == set(committed)
    case = rerun["efficientnet_lite0"]["diagnose"]["all"]["case"]["5"]  # classifier:1: some pairs circular
    assert 0 < case["other_in_contrast"] < 1 and 0 < case["n_without"] < case["n"] and case["p50_without"] is not None
    problems: list[str] = []
    _compare(rerun, committed, "", problems)
    assert not problems, "docs/results.md's quick numbers drifted from the code:\n" + "\n".join(problems[:30])
    # the comparison can fail: a moved agreement is caught
    moved = json.loads(json.dumps(committed))
    moved["efficientnet_lite0"]["diagnose"]["all"]["gradcam"]["5"]["mean"] += 2 * AGREEMENT_TOLERANCE
    caught: list[str] = []
    _compare(rerun, moved, "", caught)
    assert caught == [f"/efficientnet_lite0/diagnose/all/gradcam/5/mean: "
                      f"{rerun['efficientnet_lite0']['diagnose']['all']['gradcam']['5']['mean']:.3f} vs committed "
                      f"{moved['efficientnet_lite0']['diagnose']['all']['gradcam']['5']['mean']:.3f}"]


def _published_text() -> str:
    """The earlier study's document (its drift check and the ImageNet recipe), and the reviewed study's
    appendix, which carries the recipe."""
    appendix = RESULTS.with_suffix("") / "appendix.md"
    return EARLIER.read_text() + ("\n" + appendix.read_text() if appendix.exists() else "")


def test_results_md_quotes_the_committed_quick_numbers():
    """The quick table in docs/results.md is the one the committed numbers give (tables.py writes both)."""
    text = _published_text()
    committed = json.loads(QUICK_NUMBERS.read_text())
    gradcam = committed["efficientnet_lite0"]["diagnose"]["all"]["gradcam"]["5"]
    assert f"| `gradcam` | {gradcam['mean']:.1f} / {gradcam['median']:.1f} (" in text


def _paper_commands() -> str:
    text = _published_text()
    match = re.search(r"<!-- paper-commands:start -->\s*```bash\n(.*?)```\s*<!-- paper-commands:end -->", text, re.S)
    assert match, "docs/results.md lost its paper-commands block"
    return match.group(1)


def _imagenet_folder(root: Path, weights: Path) -> dict[str, int]:
    """An ImageNet-layout validation folder (wnid subfolders + LOC_synset_mapping.txt, 1,000 classes)
    for a random-weight ResNet-50: each photo goes into the folder of the class the model predicts for
    it (so --correct-only finds images), one into another class's (so the confusion matrix has an
    off-diagonal entry). Returns {wnid: images}."""
    import torch
    import torchvision
    from PIL import Image

    from case_saliency.models import load_model

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), weights)
    wnids = [f"n{10000000 + i:08d}" for i in range(1000)]
    root.mkdir()
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {i}, alias\n" for i, w in enumerate(wnids)))
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (72 + 8 * i, 96, 3), dtype=np.uint8)) for i in range(5)]
    loaded = load_model("resnet50", weights=str(weights))
    with torch.no_grad():
        predicted = loaded.model(loaded.preprocess(pictures)).argmax(1).tolist()
    counts: dict[str, int] = {}
    for i, (picture, label) in enumerate(zip(pictures, predicted, strict=True)):
        wnid = wnids[label if i < 4 else (label + 1) % 1000]
        (root / wnid).mkdir(exist_ok=True)
        picture.save(root / wnid / f"ILSVRC2012_val_{i:08d}.JPEG")
        counts[wnid] = counts.get(wnid, 0) + 1
    return counts


@pytest.mark.slow
def test_paper_commands_in_results_md_run_as_written_on_an_imagenet_layout_folder(tmp_path):
    """docs/results.md's recipe for Table 1 and Table 3, unchanged, with N=2, two methods, one model and a
    random-weight ResNet-50 state dict; nothing is downloaded."""
    val, weights, out = tmp_path / "val", tmp_path / "resnet50-random.pt", tmp_path / "paper"
    counts = _imagenet_folder(val, weights)
    script = tmp_path / "paper.sh"
    script.write_text(_paper_commands())
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "VAL": str(val), "WEIGHTS": str(weights), "N": "2", "METHODS": "gradcam,case",
           "MODELS": "resnet50", "OUT": str(out), "PATH": bin_dir + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(["bash", "-e", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    matrix = json.loads((out / "resnet50.confusion.json").read_text())
    assert int(np.asarray(matrix["matrix"]).sum()) == sum(counts.values()) == 5
    for run, kind in (("resnet50-table1", "diagnose"), ("resnet50-table3", "fidelity")):
        config = json.loads((out / run / "config.json").read_text())
        assert config["kind"] == kind and config["layer"] in ("layer4[2].conv3", "layer4.2.conv3")
        assert config["correct_only"] is True and config["n"] == 2
        assert config["method_contrasts"]["case"] == "confusion:1"
        with open(out / run / "results.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert {row["method"] for row in rows} == {"gradcam", "case"}
        assert len({row["image_id"] for row in rows}) == 2
        assert not any(row.get("error") for row in rows)
    assert done.stdout.count("gradcam") >= 3 and done.stdout.count("case") >= 3  # the three summarize tables
