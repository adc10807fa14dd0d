"""Runs: the run store's crash repair, small diagnose and fidelity runs on Fashion-MNIST (a small
CNN trained here) and on EfficientNet-Lite0 photos, checked against numbers recomputed directly,
per-row error capture, and a run killed with SIGKILL and resumed equal to an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from torchvision import transforms as T

from case_saliency import METHODS, ClassifierNeighbours, get_method
from case_saliency.data import open_dataset
from case_saliency.data.fashion_mnist import FashionMNIST
from needs import require_fashion_mnist
from case_saliency.metrics import top_count, topk_agreement
from case_saliency.runs import run_diagnose, run_fidelity
from case_saliency.runs.rows import DiagnoseRow
from case_saliency.runs.store import ResultsTable
from case_saliency.runs.summary import format_summary, load_results, summarize_run

DIAGNOSE_COLUMNS = DiagnoseRow.columns()

TESTS = Path(__file__).parents[1]
sys.path.insert(0, str(TESTS))
from runs_support import LAYER, TRANSFORM, load_small_cnn, train_small_cnn  # noqa: E402

ALL_CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case"]


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory) -> Path:
    return train_small_cnn(tmp_path_factory.mktemp("cnn") / "small.pt", steps=200)


@pytest.fixture(scope="module")
def cnn(cnn_path):
    return load_small_cnn(cnn_path)


@pytest.fixture(scope="module")
def fashion():
    require_fashion_mnist()
    return FashionMNIST("test")


def lite_transform():
    return T.Compose([T.Lambda(lambda im: im.convert("RGB")), T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize([0.5] * 3, [0.5] * 3)])


def row(pair_id="a", method="m", k=5.0):
    return {"image_id": pair_id, "method": method, "k_percent": k, "agreement": 1.5, "error": ""}


def test_store_drops_partial_writes(tmp_path):
    path = tmp_path / "results.csv"
    with ResultsTable(path, DIAGNOSE_COLUMNS, rows_per_pair=2) as table:
        table.append([row("a", "m", 5), row("a", "m", 10)])
        table.append([row("b", "m", 5), row("b", "m", 10)])
    complete = path.read_bytes()
    # a write cut after the first row of a pair and inside the second line
    with open(path, "ab") as handle:
        handle.write(b"c,m,5,1.5,,,,,,,,,,,\nc,m,10,1.")
    table = ResultsTable(path, DIAGNOSE_COLUMNS, rows_per_pair=2)
    assert table.done == {("a", "m"), ("b", "m")}
    assert path.read_bytes() == complete
    table.append([row("c", "m", 5), row("c", "m", 10)])
    table.close()
    frame = pd.read_csv(path)
    assert list(frame["image_id"]) == ["a", "a", "b", "b", "c", "c"]
    bad = tmp_path / "other.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        ResultsTable(bad, DIAGNOSE_COLUMNS)


def test_text_cells_stay_on_one_line(tmp_path):
    path = tmp_path / "results.csv"
    with ResultsTable(path, DIAGNOSE_COLUMNS) as table:
        table.append([{**row(), "error": "RuntimeError: line one\nline two, with a comma"}])
    frame = pd.read_csv(path, keep_default_na=False)
    assert frame.loc[0, "error"] == "RuntimeError: line one line two, with a comma"
    assert path.read_text().count("\n") == 2


@pytest.mark.slow
def test_diagnose_fashion_mnist(cnn, fashion, tmp_path):
    run = run_diagnose(cnn, fashion, tmp_path / "run", methods=ALL_CAMS, n=10, seed=1, k_percent=[5, 10],
                       layer=LAYER, transform=TRANSFORM, class_names=fashion.class_names, batch_size=4, gallery=2,
                       progress=False, model_name="small-cnn")
    config, frame = load_results(run)
    meta = json.loads((run / "meta.json").read_text())
    assert config["kind"] == "diagnose" and config["k_percent"] == [5.0, 10.0] and config["layer"] == LAYER
    # labelled data: the paper's protocol by default, as in fidelity, and config.json says why
    assert config["correct_only"] is True and "the data has labels" in config["protocol"]
    assert (frame["class1"] == frame["label"]).all()
    assert meta["dataset"]["name"] == "fashion-mnist:test" and meta["class_names"][0] == "T-shirt/top"
    assert "torch" in meta["versions"] and meta["finished"]
    assert len(frame) == 10 * len(ALL_CAMS) * 2 and not frame.duplicated(["image_id", "method", "k_percent"]).any()
    assert (frame["error"] == "").all()
    # CASE's default contrast in the diagnostic is model-level and never circular: each class's classifier
    # neighbour, the other compared class left out (then the next neighbour)
    assert config["contrast"] == "leave-pair-out:classifier:1" and config["contrast_source"] == "fc"
    assert config["method_contrasts"]["case"] == "leave-pair-out:classifier:1"
    assert config["method_contrasts"]["gradcam"] is None
    assert config["method_contrasts"]["finercam"] == "leave-pair-out:nearest:3"  # its own contrast, never circular
    ranked = ClassifierNeighbours(cnn, k=2).neighbours.numpy()
    case = frame[frame["method"] == "case"]
    for first, second, got in [("class1", "class2", "contrast1"), ("class2", "class1", "contrast2")]:
        own, other = ranked[case[first].to_numpy()], case[second].to_numpy()
        expected = np.where(own[:, 0] == other, own[:, 1], own[:, 0])
        assert (case[got].astype(int) == expected).all()
    inside = (case["contrast1"].astype(int) == case["class2"]) | (case["contrast2"].astype(int) == case["class1"])
    assert not inside.any() and not case["other_in_contrast"].any()
    assert (frame[frame["method"] == "gradcam"]["contrast1"] == "").all()
    assert not frame[frame["method"] == "gradcam"]["other_in_contrast"].any()
    # recompute one image's numbers directly
    first = frame.iloc[0]
    index = int(first["image_id"].split(":")[1])
    image, label, _ = fashion[index]
    x = TRANSFORM(image)[None]
    with torch.no_grad():
        top = cnn(x).softmax(1).topk(2)
    assert [first["class1"], first["class2"]] == top.indices[0].tolist() and first["label"] == label
    assert first["prob1"] == pytest.approx(top.values[0, 0].item(), rel=1e-5)
    for method in ("gradcam", "case", "layercam"):
        maps = get_method(method, cnn, target_layer=LAYER).explain(x, top.indices, normalize=True).maps[0]
        positive = [int((m > 0).sum()) for m in maps]
        for k in (5.0, 10.0):
            expected = topk_agreement(maps[0], maps[1], k).item()
            got = frame[(frame["image_id"] == first["image_id"]) & (frame["method"] == method)
                        & (frame["k_percent"] == k)].iloc[0]
            assert (math.isnan(expected) and math.isnan(got["agreement"])) or \
                got["agreement"] == pytest.approx(expected, abs=1e-4)
            assert [got["positive1"], got["positive2"]] == positive
            assert got["sparse"] == (min(positive) < top_count(28, 28, k))
    # gallery: the first two images, every method, top-1 and top-2 maps
    gallery = sorted((run / "gallery").glob("*.npz"))
    assert len(gallery) == 2
    with np.load(gallery[0]) as data:
        assert data["image"].shape == (28, 28, 3) and data["image"].dtype == np.uint8
        assert all(data[f"map_{m}"].shape == (2, 28, 28) and data[f"map_{m}"].dtype == np.float16 for m in ALL_CAMS)
    # the summary's test is SciPy's on the rows
    summary = summarize_run(run)["agreement"].set_index(["method", "k_percent"])
    scored = frame[(frame["method"] == "gradcam") & (frame["k_percent"] == 5.0) & ~frame["degenerate"]]["agreement"]
    ref = sps.wilcoxon(scored - 50.0, alternative="less")
    assert summary.loc[("gradcam", 5.0), "pvalue"] == pytest.approx(ref.pvalue)
    assert summary.loc[("gradcam", 5.0), "n"] == len(scored)
    # resuming a finished run adds nothing; other settings are refused
    before = (run / "results.csv").read_bytes()
    run_diagnose(cnn, fashion, run, methods=ALL_CAMS, n=10, seed=1, k_percent=[5, 10], layer=LAYER,
                 transform=TRANSFORM, batch_size=4, gallery=2, progress=False, model_name="small-cnn")
    assert (run / "results.csv").read_bytes() == before
    with pytest.raises(ValueError, match="k_percent"):
        run_diagnose(cnn, fashion, run, methods=ALL_CAMS, n=10, seed=1, k_percent=[5], layer=LAYER,
                     transform=TRANSFORM, progress=False, model_name="small-cnn")


def test_failing_method_records_error_and_goes_on(cnn, fashion, tmp_path, monkeypatch):
    # The method's rule, which runs both in the capture shared with Grad-CAM and in explain alone.
    original = METHODS["hirescam"].maps_from
    poison = TRANSFORM(fashion[int(torch.randperm(len(fashion), generator=torch.Generator().manual_seed(2))[1])][0])

    def maps_from(self, images, *args, **kwargs):
        if any(torch.equal(image, poison) for image in images):
            raise RuntimeError("this image breaks the method")
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(METHODS["hirescam"], "maps_from", maps_from)
    run = run_diagnose(cnn, fashion, tmp_path / "run", methods=["gradcam", "hirescam"], n=5, seed=2, layer=LAYER,
                       transform=TRANSFORM, batch_size=5, gallery=0, progress=False, correct_only=False)
    _, frame = load_results(run)
    failed = frame[frame["error"] != ""]
    assert len(frame) == 10 and len(failed) == 1
    assert failed.iloc[0]["method"] == "hirescam" and "this image breaks" in failed.iloc[0]["error"]
    assert math.isnan(failed.iloc[0]["agreement"])
    assert frame[(frame["method"] == "hirescam") & (frame["error"] == "")]["agreement"].notna().all()
    assert summarize_run(run)["agreement"].set_index("method").loc["hirescam", "errors"] == 1


def test_fidelity_fashion_mnist(cnn, fashion, tmp_path):
    # deletion_fill zero: the curve at 50 % is then the confidence drop's image (new runs delete with the blur)
    run = run_fidelity(cnn, fashion, tmp_path / "run", methods=["gradcam", "layercam", "case"], n=8, seed=4,
                       k_percent=50, steps=4, layer=LAYER, transform=TRANSFORM, batch_size=4, progress=False,
                       deletion_fill="zero")
    _, frame = load_results(run)
    assert len(frame) == 24 and (frame["error"] == "").all()
    assert (frame["pred"] == frame["label"]).all()  # correctly classified images only (the default)
    assert frame["drop_relative"].between(0, 1).all()
    expected_rel = (frame["prob_before"] - frame["prob_after"]).clip(lower=0) / frame["prob_before"]
    assert np.allclose(frame["drop_relative"], expected_rel, atol=1e-6)
    curves = frame["deletion_curve"].str.split().map(lambda v: [float(x) for x in v])
    assert curves.map(len).eq(5).all()
    assert np.allclose([c[0] for c in curves], frame["prob_before"], atol=1e-5)
    assert np.allclose([c[2] for c in curves], frame["prob_after"], atol=1e-5)  # step 2 of 4 = 50% removed
    # one row recomputed by hand: zero the 392 most salient pixels (ties by position), read the probability
    first = frame[frame["method"] == "case"].iloc[0]
    image, _, _ = fashion[int(first["image_id"].split(":")[1])]
    x = TRANSFORM(image)[None]
    result = get_method("case", cnn, target_layer=LAYER).explain(x, torch.tensor([first["pred"]]), normalize=True)
    saliency = result.maps[0]
    assert first["contrast"] == str(int(result.contrast[0, 0])) and first["degenerate"] == bool(result.degenerate[0])
    order = np.argsort(-saliency.flatten().numpy(), kind="stable")[:392]
    removed = x.clone().flatten(2)
    removed[:, :, order] = 0
    with torch.no_grad():
        prob = cnn(removed.view_as(x)).softmax(1)[0, int(first["pred"])].item()
    assert first["prob_after"] == pytest.approx(prob, abs=1e-5)
    summary = summarize_run(run)
    assert set(summary["paired"]["method"]) == {"gradcam", "layercam"}
    assert set(summary["paired"]["measure"]) == {"drop_relative", "drop_absolute", "deletion_auc", "insertion_auc",
                                                 "contrastive_drop"}


@pytest.mark.slow
def test_lite0_photos(lite0, tmp_path):
    photos = open_dataset("samples:skimage/chelsea,skimage/coffee,skimage/rocket")
    names = T_IMAGENET()
    run = run_diagnose(lite0, photos, tmp_path / "diag", methods=["gradcam", "case"], n=0, seed=0,
                       layer="bn2", transform=lite_transform(), class_names=names, batch_size=4, gallery=1,
                       progress=False)
    _, frame = load_results(run)
    assert len(frame) == 6 and (frame["error"] == "").all() and (frame["label"] == -1).all()
    # Every pair is scored (no constant map on these photos): an all-NaN column must fail here.
    assert frame["agreement"].notna().all() and frame["agreement"].between(0, 100).all()
    assert not frame["degenerate"].any()
    top1 = frame.drop_duplicates("image_id").set_index("image_id")["class1"]
    assert names[top1["skimage/coffee"]] == "espresso" and names[top1["skimage/chelsea"]].endswith("cat")
    with pytest.raises(ValueError, match="no labels"):
        run_fidelity(lite0, photos, tmp_path / "fid-correct", methods=["gradcam"], n=2, layer="bn2",
                     transform=lite_transform(), progress=False, correct_only=True)
    assert not (tmp_path / "fid-correct").exists()
    # photos have no labels: by default, fidelity (like diagnose) takes all images, and says so
    fid = run_fidelity(lite0, photos, tmp_path / "fid", methods=["gradcam", "case"], n=2, seed=0, steps=1,
                       layer="bn2", transform=lite_transform(), batch_size=2, progress=False)
    config, frame = load_results(fid)
    assert config["correct_only"] is False and config["protocol"].startswith("all images (the default")
    assert len(frame) == 4 and (frame["error"] == "").all()
    assert frame["prob_before"].gt(frame["prob_after"]).any()  # removing half the salient pixels hurts


def T_IMAGENET():
    import torchvision

    return torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


WORKER = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from runs_support import LAYER, TRANSFORM, load_small_cnn
from case_saliency.data.fashion_mnist import FashionMNIST
from case_saliency.runs import run_diagnose
run_diagnose(load_small_cnn(sys.argv[1]), FashionMNIST("test"), sys.argv[2], methods={methods!r}, n=24, seed=3,
             k_percent=[5, 20], layer=LAYER, transform=TRANSFORM, batch_size=4, gallery=3, progress=False,
             command="worker")
"""


@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGKILL, signal.SIGKILL), (signal.SIGTERM, signal.SIGINT)],
                         ids=["sigkill", "sigterm-then-sigint"])
def test_sigkill_then_resume_equals_uninterrupted(cnn_path, tmp_path, signals):
    """Killed twice at different points (SIGKILL twice; or SIGTERM, then SIGINT, which unwinds through
    the run's own clean-up), then resumed: the rows, config, gallery equal an uninterrupted run's."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), methods=ALL_CAMS))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def start(run_dir):
        return subprocess.Popen([sys.executable, str(script), str(cnn_path), str(run_dir)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    full_lines = 1 + 24 * len(ALL_CAMS) * 2
    reference = tmp_path / "reference"
    assert start(reference).wait(timeout=300) == 0
    assert len((reference / "results.csv").read_text().splitlines()) == full_lines

    killed = tmp_path / "killed"
    for at_least, kill in zip((40, 200), signals, strict=True):  # killed twice, at different points
        proc = start(killed)
        results = killed / "results.csv"
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if results.exists() and results.read_bytes().count(b"\n") >= at_least:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the worker finished before it could be killed"
        proc.send_signal(kill)
        proc.wait(timeout=30)
        assert results.read_bytes().count(b"\n") < full_lines
    assert start(killed).wait(timeout=300) == 0

    assert (killed / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()
    assert json.loads((killed / "config.json").read_text()) == json.loads((reference / "config.json").read_text())
    assert len(json.loads((killed / "meta.json").read_text())["resumed"]) == 2
    ref_gallery = sorted(p.name for p in (reference / "gallery").glob("*.npz"))
    got_gallery = sorted(p.name for p in (killed / "gallery").glob("*.npz"))
    assert ref_gallery == got_gallery and len(ref_gallery) == 3
    for name in ref_gallery:
        with np.load(reference / "gallery" / name) as a, np.load(killed / "gallery" / name) as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[key], b[key]) for key in a.files)


def test_cli_summarize_and_bad_inputs(cnn, fashion, tmp_path):
    from typer.testing import CliRunner

    from case_saliency.cli import app

    run = run_diagnose(cnn, fashion, tmp_path / "run", methods=["gradcam", "case"], n=6, seed=5, layer=LAYER,
                       transform=TRANSFORM, batch_size=6, gallery=0, progress=False)
    runner = CliRunner()
    result = runner.invoke(app, ["summarize", str(run), "--threshold", "70", "--holm"])
    assert result.exit_code == 0, result.output
    assert "H1 median < 70%" in result.output and "p_holm" in result.output and "case" in result.output
    as_json = runner.invoke(app, ["summarize", str(run), "--json"])
    records = json.loads(as_json.output)["agreement"]
    assert {r["method"] for r in records} == {"gradcam", "case"} and all(r["n"] + r["degenerate"] == 6 for r in records)
    missing = runner.invoke(app, ["summarize", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a run directory" in missing.output
    bad_method = runner.invoke(app, ["diagnose", "-m", "efficientnet_lite0", "-d", "samples", "-o", str(tmp_path / "x"),
                                     "--methods", "gradcam,nope"])
    assert bad_method.exit_code == 2 and "nope" in bad_method.output
    bad_k = runner.invoke(app, ["diagnose", "-m", "efficientnet_lite0", "-d", "samples", "-o", str(tmp_path / "x"),
                                "--k", "0"])
    assert bad_k.exit_code == 2 and "--k" in bad_k.output


class FirstImages:
    """The first ``count`` images of a dataset (a sample that can run out)."""

    def __init__(self, dataset, count: int):
        self.dataset, self.count, self.name = dataset, count, f"first{count}"
        self.class_names = dataset.class_names

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        return self.dataset[index]


def test_correct_only_records_examined_kept_and_excluded(cnn, fashion, tmp_path, caplog):
    small = FirstImages(fashion, 24)
    with caplog.at_level("WARNING", logger="case_saliency"):
        run = run_diagnose(cnn, small, tmp_path / "run", methods=["gradcam"], n=24, seed=2, correct_only=True,
                           layer=LAYER, transform=TRANSFORM, batch_size=8, gallery=0, progress=False)
    meta = json.loads((run / "meta.json").read_text())
    info = meta["sample_info"]
    order = torch.randperm(24, generator=torch.Generator().manual_seed(2)).tolist()
    with torch.no_grad():
        pred = {i: int(cnn(TRANSFORM(fashion[i][0])[None]).argmax()) for i in order}
    wrong = [fashion[i][2] for i in order if pred[i] != fashion[i][1]]
    assert wrong, "the small CNN should misclassify some of 24 images"
    assert info["requested"] == 24 and info["examined"] == 24 and info["short"]
    assert info["size"] == len(meta["sample"]) == 24 - len(wrong)
    assert [e["id"] for e in info["excluded"]] == wrong and all("predicted" in e["reason"] for e in info["excluded"])
    assert f"the sample has {info['size']} images, not the 24 asked for" in caplog.text
    assert "warning:" in format_summary(summarize_run(run))
    # With enough images, the walk stops at the image that completes the sample.
    enough = run_diagnose(cnn, fashion, tmp_path / "enough", methods=["gradcam"], n=10, seed=2, correct_only=True,
                          layer=LAYER, transform=TRANSFORM, batch_size=8, gallery=0, progress=False)
    info = json.loads((enough / "meta.json").read_text())["sample_info"]
    assert not info["short"] and info["size"] == 10 and info["examined"] == 10 + len(info["excluded"])


def test_variants_side_by_side_and_what_flatters_them(cnn, fashion, tmp_path):
    methods = ["gradcam", "case", "case(contrast=top:1)", "case(contrast=rank:3)", "finercam(weighting=mean)"]
    run = run_diagnose(cnn, fashion, tmp_path / "run", methods=methods, n=12, seed=6, layer=LAYER,
                       transform=TRANSFORM, batch_size=6, gallery=1, progress=False)
    config, frame = load_results(run)
    assert config["methods"] == methods and config["contrast"] == "leave-pair-out:classifier:1"
    assert config["method_contrasts"] == {"gradcam": None, "case": "leave-pair-out:classifier:1",
                                          "case(contrast=top:1)": "top:1",
                                          "case(contrast=rank:3)": "rank:3",
                                          "finercam(weighting=mean)": "leave-pair-out:nearest:3"}
    top = frame[frame["method"] == "case(contrast=top:1)"]
    assert top["other_in_contrast"].all() and (top["contrast1"].astype(int) == top["class2"]).all()
    assert not frame[frame["method"] == "case(contrast=rank:3)"]["other_in_contrast"].any()
    table = summarize_run(run)["agreement"].set_index("method")
    assert table.loc["case(contrast=top:1)", "in_contrast"] == 100.0
    assert table.loc["case(contrast=top:1)", "n_without"] == 0 and math.isnan(table.loc["case(contrast=top:1)",
                                                                                         "mean_without"])
    assert table.loc["case", "contrast"] == "leave-pair-out:classifier:1" and table.loc["gradcam", "in_contrast"] == 0.0
    assert table.loc["case", "in_contrast"] == 0.0  # leave-pair-out: no pair is circular
    case = frame[(frame["method"] == "case") & ~frame["degenerate"]]
    without = case.loc[~case["other_in_contrast"], "agreement"].dropna()
    assert table.loc["case", "in_contrast"] == pytest.approx(100 * case["other_in_contrast"].mean())
    assert table.loc["case", "mean_without"] == pytest.approx(without.mean())
    assert table.loc["case", "sparse"] == pytest.approx(100 * case["sparse"].mean())
    with np.load(next((run / "gallery").glob("*.npz"))) as data:
        assert {f"map_{m}" for m in methods} <= set(data.files)
    with pytest.raises(ValueError, match="has no option 'k'"):
        run_diagnose(cnn, fashion, tmp_path / "bad", methods=["case(k=3)"], n=2, layer=LAYER, transform=TRANSFORM,
                     progress=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_cli_default_diagnose_is_non_circular_and_says_so(lite0, tmp_path):
    from typer.testing import CliRunner

    from case_saliency.cli import app
    from case_saliency.report.page import write_report

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["diagnose", "-m", "efficientnet_lite0", "-d",
                                      "samples:skimage/chelsea,skimage/coffee,skimage/rocket", "--n", "3", "--quiet",
                                      "--methods", "gradcam,case,case(contrast=top:1)", "-o", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["contrast"] == "leave-pair-out:classifier:1" and config["contrast_source"] == "classifier"
    assert config["ties"] == "index" and config["sparse"] == "positive"
    assert "CASE contrast leave-pair-out:classifier:1: model-level neighbours without the other compared class" \
        in result.output and "in_contrast" in result.output
    html = write_report(out).read_text()
    assert "leave-pair-out:classifier:1" in html and "case(contrast=top:1)" in html
    bad = CliRunner().invoke(app, ["diagnose", "-m", "efficientnet_lite0", "-d", "samples", "-o", str(tmp_path / "b"),
                                   "--contrast", "nearby:2"])
    assert bad.exit_code == 2 and "--contrast nearby:2" in bad.output


def test_a_run_without_similarity_has_the_same_agreement_and_no_spearman_or_ssim(cnn, fashion, tmp_path):
    """``similarity=False`` (``--no-similarity``) leaves Spearman and SSIM empty and changes nothing else;
    the summary reads it; a resume with the measures back on is refused (it would mix rows)."""
    from case_saliency.runs.settings import InvalidSettings

    common = dict(methods=["gradcam", "case"], n=6, seed=5, k_percent=[5, 10], layer=LAYER, transform=TRANSFORM,
                  batch_size=3, gallery=0, progress=False, correct_only=False)
    with_all = load_results(run_diagnose(cnn, fashion, tmp_path / "all", **common))[1]
    fast_run = run_diagnose(cnn, fashion, tmp_path / "fast", similarity=False, **common)
    fast = load_results(fast_run)[1]
    assert fast["spearman"].isna().all() and fast["ssim"].isna().all()
    assert with_all["spearman"].notna().all() and with_all["ssim"].notna().all()
    kept = [c for c in DIAGNOSE_COLUMNS if c not in ("spearman", "ssim")]
    pd.testing.assert_frame_equal(fast[kept], with_all[kept])
    assert json.loads((fast_run / "config.json").read_text())["similarity"] is False
    table = summarize_run(fast_run)["agreement"]
    mine = table[(table["method"] == "gradcam") & (table["k_percent"] == 5)]["mean"]
    assert mine.item() == pytest.approx(with_all[(with_all["method"] == "gradcam")
                                                 & (with_all["k_percent"] == 5)]["agreement"].mean())
    with pytest.raises((InvalidSettings, ValueError), match="similarity"):
        run_diagnose(cnn, fashion, fast_run, similarity=True, **common)
