"""Reports: the figure functions draw exactly their data, and the HTML page of small real runs
(a Fashion-MNIST CNN and EfficientNet-Lite0 on real photos) is self-contained, escaped, and renders
in headless Chromium with every image loaded and no console error (screenshots in test-artifacts/)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import PolyCollection
from PIL import Image

from case_saliency import ConfusionNeighbours
from case_saliency.data import open_dataset
from case_saliency.data.fashion_mnist import FashionMNIST
from needs import chromium, needs_chromium, require_fashion_mnist
from case_saliency.metrics import top_count
from case_saliency.report import RunDirError, read_run, write_report
from case_saliency.report import figures as F
from case_saliency.report.tables import e
from case_saliency.runs import run_diagnose, run_fidelity
from case_saliency.runs.summary import summarize_run

TESTS = Path(__file__).parents[1]
ARTIFACTS = TESTS.parent / "test-artifacts"
sys.path.insert(0, str(TESTS))
from runs_support import LAYER, MEAN, STD, TRANSFORM  # noqa: E402

SPECIAL = "Shirt <b>&\"'"  # a class name that breaks HTML unless escaped
SHIRT = 6  # Fashion-MNIST's "Shirt": the class most confused with others


# ---------------------------------------------------------------- fixtures: small real runs


@pytest.fixture(scope="module")
def confusion(cnn) -> np.ndarray:
    """The CNN's confusion matrix (10, 10) on 2,000 Fashion-MNIST test images, rows = true class."""
    images, labels = FashionMNIST("test").tensors()
    images, labels = images[:2000], labels[:2000]
    with torch.no_grad():
        predicted = cnn((images - MEAN[0]) / STD[0]).argmax(1)
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels.numpy(), predicted.numpy()), 1)
    return matrix


@pytest.fixture(scope="module")
def fashion_names() -> list[str]:
    require_fashion_mnist()
    names = list(FashionMNIST("test").class_names)
    names[SHIRT] = SPECIAL
    return names


@pytest.fixture(scope="module")
def fashion_diagnose(cnn, confusion, fashion_names, tmp_path_factory) -> Path:
    """A diagnose run with CASE's contrast from the confusion matrix, which the run dir keeps."""
    run = run_diagnose(cnn, FashionMNIST("test"), tmp_path_factory.mktemp("runs") / "diagnose",
                       methods=["gradcam", "gradcam++", "case"], n=16, seed=3, k_percent=[5, 10], layer=LAYER,
                       transform=TRANSFORM, class_names=fashion_names, model_name="small-cnn", gallery=3,
                       contrast=ConfusionNeighbours(confusion, k=1), progress=False,
                       command="case-saliency diagnose --model small.pt --data fashion-mnist:test --n 16")
    np.save(run / "confusion.npy", confusion)
    return run


@pytest.fixture(scope="module")
def fashion_fidelity(cnn, fashion_names, tmp_path_factory) -> Path:
    return run_fidelity(cnn, FashionMNIST("test"), tmp_path_factory.mktemp("runs") / "fidelity",
                        methods=["gradcam", "layercam", "case"], n=12, seed=4, steps=8, layer=LAYER,
                        transform=TRANSFORM, class_names=fashion_names, model_name="small-cnn", progress=False)


@pytest.fixture(scope="module")
def photo_diagnose(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 (ImageNet weights) on three real photos: the gallery a reader looks at."""
    from case_saliency.models import load_model

    return run_diagnose(load_model("efficientnet_lite0"), open_dataset("samples"),
                        tmp_path_factory.mktemp("runs") / "photos", methods=["gradcam", "gradcam++", "case"], n=3,
                        seed=0, gallery=3, progress=False,
                        command="case-saliency diagnose --model efficientnet_lite0 --data samples --n 3")


# ---------------------------------------------------------------- figure functions draw their data


def test_histograms_draw_relative_frequencies_and_the_threshold(fashion_diagnose):
    run = read_run(fashion_diagnose)
    k5 = run.k_percents()[0]  # as written in results.csv
    assert float(k5) == 5.0
    agreement = {m: run.column(m, "agreement", k_percent=k5) for m in run.methods}
    assert all(values.size == 16 for values in agreement.values())
    agreement["with NaN"] = np.append(agreement["gradcam"], [np.nan, np.nan])  # degenerate pairs left out
    fig = F.agreement_histograms(agreement, threshold=50.0, k_percent=5.0)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    bins = np.arange(0.0, 101.0, 5.0)
    for ax, (method, values) in zip(axes, agreement.items(), strict=False):
        finite = values[np.isfinite(values)]
        heights = np.array([bar.get_height() for bar in ax.patches])
        assert heights.sum() == pytest.approx(1.0)
        expected, _ = np.histogram(finite, bins=bins)
        np.testing.assert_allclose(heights, expected / finite.size)
        lefts = np.array([bar.get_x() for bar in ax.patches])
        np.testing.assert_allclose(lefts, bins[:-1])
        verticals = {line.get_linestyle(): line.get_xdata()[0] for line in ax.lines}
        assert verticals["--"] == 50.0  # the threshold
        assert verticals[":"] == pytest.approx(finite.mean())
        assert ax.get_title().startswith(f"{method}: n={finite.size}")
    assert "2 degenerate" in axes[-1].get_title()


def test_boxplots_show_the_quartiles_and_means_of_the_data(fashion_fidelity):
    run = read_run(fashion_fidelity)
    drops = {m: run.column(m, "drop_relative") for m in run.methods}
    fig = F.drop_boxplots(drops)
    ax = fig.axes[0]
    medians = [line for line in ax.lines if line.get_gid() == "median"]
    means = [line for line in ax.lines if line.get_gid() == "mean"]
    assert len(medians) == len(means) == 3
    for i, values in enumerate(drops.values()):
        finite = values[np.isfinite(values)]
        assert medians[i].get_ydata()[0] == pytest.approx(np.median(finite))
        assert means[i].get_ydata()[0] == pytest.approx(finite.mean())
        q1, q3 = np.percentile(finite, [25, 75])
        box = ax.patches[i].get_path().vertices[:, 1]
        assert box.min() == pytest.approx(q1) and box.max() == pytest.approx(q3)
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == list(drops)


def test_curves_are_the_mean_with_a_band_of_one_sd(fashion_fidelity):
    run = read_run(fashion_fidelity)
    deletion = {m: run.curves(m, "deletion_curve") for m in run.methods}
    insertion = {m: run.curves(m, "insertion_curve") for m in run.methods}
    assert deletion["case"].shape == (12, 9)
    fractions = np.linspace(0, 1, 9)
    fig = F.deletion_insertion_curves(fractions, deletion, insertion)
    for ax, table in zip(fig.axes, (deletion, insertion), strict=False):
        lines = [line for line in ax.lines if line.get_label() in table]
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert [line.get_label() for line in lines] == list(table) and len(bands) == len(table)
        for line, band, curves in zip(lines, bands, table.values(), strict=False):
            mean, sd = curves.mean(0), curves.std(0, ddof=1)
            np.testing.assert_allclose(line.get_xdata(), fractions)
            np.testing.assert_allclose(line.get_ydata(), mean)
            vertices = band.get_paths()[0].vertices
            for x, low, high in zip(fractions, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), strict=False):
                at_x = vertices[np.isclose(vertices[:, 0], x), 1]
                assert at_x.min() == pytest.approx(low) and at_x.max() == pytest.approx(high)
    # Distinct line styles, so the methods stay apart in greyscale.
    assert len({line.get_linestyle() for line in fig.axes[0].lines}) == 3


def test_gallery_shows_the_image_then_top1_and_top2_overlays(photo_diagnose):
    run = read_run(photo_diagnose)
    item = run.gallery[0]
    assert item.image.shape == (224, 224, 3) and set(item.maps) == {"gradcam", "gradcam++", "case"}
    names = [run.class_name(int(c)) for c in item.classes]
    agreement = {"gradcam": 74.0, "gradcam++": None, "case": 12.5}
    fig = F.gallery_figure(item.image, item.maps, names, item.probs, agreement=agreement, k_percent=5)
    photo, *cells, bar = fig.axes
    np.testing.assert_array_equal(photo.images[0].get_array(), item.image)
    assert len(cells) == 6 and "saliency" in bar.get_ylabel()  # one colour bar for every map
    for j, method in enumerate(item.maps):
        for row in range(2):
            ax = cells[2 * j + row]
            drawn = np.asarray(ax.images[0].get_array())
            mix = 0.5 * item.image / 255.0 + 0.5 * colormaps["jet"](item.maps[method][row])[..., :3]
            np.testing.assert_allclose(drawn, mix, atol=1e-12)
            # The outline encloses exactly the top-5% pixels the agreement compares.
            region = F.top_region(item.maps[method][row], 5)
            assert region.sum() == top_count(224, 224, 5)
            (outline,) = ax.collections
            inside = np.zeros((224, 224), dtype=bool)
            for path in outline.get_paths():
                yy, xx = np.mgrid[0:224, 0:224]
                inside |= path.contains_points(np.c_[xx.ravel(), yy.ravel()]).reshape(224, 224)
            assert (inside & region).sum() >= 0.9 * region.sum() and (inside & ~region).sum() <= 0.1 * region.sum()
            if row == 0:
                expected = "agreement n/a" if agreement[method] is None else f"agreement {agreement[method]:.0f}%"
                assert ax.get_title() == f"{method}\n{expected}"
    assert names[0] in cells[0].get_ylabel() and f"p = {item.probs[0]:.2f}" in cells[0].get_ylabel()
    assert names[1] in cells[1].get_ylabel() and f"p = {item.probs[1]:.2f}" in cells[1].get_ylabel()
    # The run's own check that the maps differ between classes is what the gallery shows:
    assert not np.array_equal(item.maps["case"][0], item.maps["case"][1])


def test_gallery_chooses_where_methods_differ_most_and_least(photo_diagnose):
    from case_saliency.report.sections import choose_gallery

    run = read_run(photo_diagnose)
    ids = [item.image_id for item in run.gallery]
    spreads = dict(zip(ids, [30.0, 5.0, 60.0], strict=True))
    agreement = {(i, "gradcam"): 50.0 for i in ids} | {(i, "case"): 50.0 - spreads[i] for i in ids}
    most, least = choose_gallery(run.gallery, agreement, budget=2)
    assert [m.image_id for m in most] == [ids[2]] and [m.image_id for m in least] == [ids[1]]
    most, least = choose_gallery(run.gallery, agreement, budget=6)
    assert [m.image_id for m in most] == [ids[2], ids[0], ids[1]] and least == []


def test_confusion_heatmap_and_neighbours(confusion, fashion_names):
    rates = confusion / confusion.sum(1, keepdims=True)
    np.testing.assert_allclose(F.row_rates(confusion), rates)
    for k in (1, 3):
        np.testing.assert_array_equal(F.contrast_neighbours(confusion, k),
                                      ConfusionNeighbours(confusion, k=k).neighbours.numpy())
    fig = F.confusion_heatmap(confusion, fashion_names, k=3)
    heat = fig.axes[0]
    np.testing.assert_allclose(heat.images[0].get_array(), rates)
    assert heat.images[0].get_cmap().name == "cividis"
    assert [t.get_text() for t in heat.get_yticklabels()] == [F._short(n) for n in fashion_names]
    listing = fig.axes[2].texts[0].get_text().splitlines()
    shirt_neighbour = int(ConfusionNeighbours(confusion, k=1).neighbours[SHIRT, 0])
    assert listing[SHIRT].startswith(F._short(SPECIAL, 16))
    assert F._short(fashion_names[shirt_neighbour], 14) in listing[SHIRT]
    # More classes than the limit: the most confused ones (largest off-diagonal row + column mass).
    off = rates.copy()
    np.fill_diagonal(off, 0)
    mass = off.sum(0) + off.sum(1)
    np.testing.assert_array_equal(F.shown_classes(confusion, limit=4), np.sort(np.argsort(-mass)[:4]))


def test_methods_get_distinct_colours():
    from matplotlib.colors import to_rgb

    colours = np.array([to_rgb(c) for c in F.method_colours(8)])
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distances[~np.eye(8, dtype=bool)].min() > 0.25  # no two methods in near-identical colours


def test_identical_methods_are_merged_and_paired_conclusions_say_which_way():
    from case_saliency.report.rundir import Run
    from case_saliency.report.sections import _direction, identical_methods

    rows = []
    for image, value in (("a", 40.0), ("b", 55.5), ("c", 12.0)):
        for method, shift in (("gradcam", 0.0), ("hirescam", 0.0), ("case", -10.0), ("xgradcam", 0.0)):
            rows.append({"image_id": image, "method": method, "k_percent": "5.0", "agreement": str(value + shift),
                         "spearman": "0.5", "ssim": "0.4"})
    from case_saliency.runs import DiagnoseSettings, RunDir

    settings = DiagnoseSettings(methods=("gradcam", "hirescam", "case", "xgradcam"))
    run = Run(RunDir(Path("x"), settings, {}, list(rows[0]), rows))
    assert identical_methods(run) == {"gradcam": ["hirescam", "xgradcam"]}
    rows[1]["agreement"] = "40.1"  # hirescam now differs on one image
    assert identical_methods(run) == {"gradcam": ["xgradcam"]}
    test = {"reference": "case", "method": "gradcam", "measure": "deletion_auc", "conclusion": "differs"}
    assert _direction({**test, "mean_difference": -0.04}) == "differs: case lower (better)"
    assert _direction({**test, "measure": "insertion_auc", "mean_difference": -0.04}) == "differs: case lower (worse)"
    assert _direction({**test, "conclusion": "no difference shown", "mean_difference": 0.2}) == "no difference shown"


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig = F.drop_boxplots({"a": np.array([0.1, 0.5, 0.7]), "b": np.array([0.2, 0.3, 0.9])})
    png, pdf = F.save_figure(fig, tmp_path / "figures", "drops", dpi=100)
    with Image.open(png) as image:
        assert image.size == (round(fig.get_figwidth() * 100), round(fig.get_figheight() * 100))
    assert pdf.read_bytes().startswith(b"%PDF")


# ---------------------------------------------------------------- the HTML page


class PageParser(HTMLParser):
    """Collects tags, attributes, and the text of elements with an id or class we look at."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def check_self_contained(page: str) -> list[Image.Image]:
    """No script, no stylesheet link, no URL outside the page; every image a decodable PNG."""
    parsed = parse(page)
    tags = {tag for tag, _ in parsed.tags}
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    images = []
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is None:
                continue
            if tag == "a" and name == "href" and value.startswith("figures/"):
                assert value.endswith(".png")  # a thumbnail's link to its full-size file beside the page
                continue
            assert value.startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "#")), (tag, value[:80])
        if tag == "img":
            data = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
            images.append(Image.open(io.BytesIO(data)))
            assert attrs.get("alt")
    text = re.sub(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:)?//[\w.-]+", text)  # nothing that could be fetched
    return images


@pytest.fixture(scope="module")
def reports(photo_diagnose, fashion_diagnose, fashion_fidelity) -> dict[str, Path]:
    """Each run's page, written once (in the run directory, the default)."""
    return {"photos": write_report(photo_diagnose), "diagnose": write_report(fashion_diagnose),
            "fidelity": write_report(fashion_fidelity)}


@pytest.mark.slow
def test_diagnose_report(fashion_diagnose, reports):
    out = reports["diagnose"]
    assert out == fashion_diagnose / "report.html"
    page = out.read_text(encoding="utf-8")
    images = check_self_contained(page)
    # 2 histograms (k = 5, 10) + 3 gallery images + the confusion heat map
    assert len(images) == 6 and all(image.size[0] > 300 for image in images)
    for stem in ("agreement_hist_k5", "agreement_hist_k10", "confusion"):
        assert (fashion_diagnose / "figures" / f"{stem}.png").exists()
        assert (fashion_diagnose / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    # Escaping: the class name's characters appear only as entities.
    assert "Shirt &lt;b&gt;&amp;&quot;&#x27;" in page and SPECIAL not in page and "<b>&" not in page
    # The table holds summarize_run's numbers, and marks the lowest mean agreement per k where that
    # method's own test rejects.
    table = summarize_run(fashion_diagnose)["agreement"]
    for k in (5.0, 10.0):
        part = table[table["k_percent"] == k]
        best = part.loc[part["mean"].idxmin()]
        assert (f"{best['mean']:.1f}&nbsp;★" in page) == (best["pvalue"] < 0.05)
        for _, row in part.iterrows():
            assert f">{row['mean']:.1f}<" in page or f">{row['mean']:.1f}&nbsp;★<" in page
            assert f"<td>{row['sd']:.1f}</td>" in page
    assert "one-sided Wilcoxon signed-rank" in page
    # Confusion: each class's neighbours listed (Shirt's most confused class first).
    rates = F.row_rates(np.load(fashion_diagnose / "confusion.npy"))
    neighbour = F.contrast_neighbours(rates, 1)[SHIRT, 0]
    names = read_run(fashion_diagnose).class_names
    assert (f"<th scope=\"row\">{e(SPECIAL)}</th><td>{rates[SHIRT, SHIRT]:.2f}</td>"
            f"<td>{e(names[neighbour])} ({rates[SHIRT, neighbour]:.2f})") in page
    # Metadata and the reproducing command.
    assert "case-saliency diagnose --model small.pt --data fashion-mnist:test --n 16" in page
    assert "fashion-mnist:test" in page and "CASE contrast confusion:1: confusion neighbours" in page


@pytest.mark.slow
def test_fidelity_report(fashion_fidelity, reports):
    page = reports["fidelity"].read_text(encoding="utf-8")
    images = check_self_contained(page)
    assert len(images) == 2  # box plots, curves (fidelity runs keep no gallery)
    assert {p.name for p in (fashion_fidelity / "figures").iterdir()} == {
        "confidence_drop.png", "confidence_drop.pdf", "curves.png", "curves.pdf"}
    means, tests = summarize_run(fashion_fidelity)["fidelity"], summarize_run(fashion_fidelity)["paired"]
    # case vs gradcam and layercam, 5 measures (the AUCs, the class-contrastive drop, the two confidence drops)
    assert len(tests) == 10 and "Paired tests" in page
    assert page.index('id="verdicts"') < page.index('id="summary"') and "vs Grad-CAM, deletion AUC" in page
    # A best value has its star exactly where the paired test says it differs.
    for column, measure, pick in (("insertion_auc_mean", "insertion_auc", "idxmax"),
                                  ("deletion_auc_mean", "deletion_auc", "idxmin"),
                                  ("drop_relative_mean", "drop_relative", "idxmax")):
        best = means.loc[getattr(means[column], pick)()]
        measured = tests[tests["measure"] == measure]
        relevant = measured if best["method"] == "case" else measured[measured["method"] == best["method"]]
        assert (f"{best[column]:.3f}&nbsp;★" in page) == bool((relevant["wilcoxon_p"] < 0.05).all())
    for _, test in tests.iterrows():  # a difference says which way
        if test["conclusion"] == "differs":
            assert f"differs: case {'higher' if test['mean_difference'] > 0 else 'lower'}" in page


@pytest.fixture(scope="module")
def combined_report(fashion_diagnose, fashion_fidelity, photo_diagnose, tmp_path_factory) -> Path:
    """One page for three runs: two models, both kinds."""
    return write_report(fashion_diagnose, tmp_path_factory.mktemp("combined") / "all.html",
                        more_runs=[fashion_fidelity, photo_diagnose])


@pytest.mark.slow
def test_one_page_for_several_runs(fashion_diagnose, fashion_fidelity, photo_diagnose, combined_report):
    from case_saliency.report.sections import combined_rows

    out = combined_report
    tmp_path = out.parent
    page = out.read_text(encoding="utf-8")
    # 2 + 1 histograms and 3 + 3 gallery images, the confusion map, box plots and curves
    assert len(check_self_contained(page)) == 12
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "1-diagnose-small-cnn", "2-fidelity-small-cnn", "3-diagnose-efficientnet_lite0"]
    runs = [read_run(p) for p in (fashion_diagnose, fashion_fidelity, photo_diagnose)]
    summaries = [summarize_run(p) for p in (fashion_diagnose, fashion_fidelity, photo_diagnose)]
    rows = {(r["model"], r["method"]): r for r in combined_rows(runs, summaries)}
    assert set(rows) == {("small-cnn", m) for m in ("gradcam", "gradcam++", "case", "layercam")} | {
        ("efficientnet_lite0", m) for m in ("gradcam", "gradcam++", "case")}
    agreement, fidelity = summaries[0]["agreement"], summaries[1]["fidelity"]
    case_k5 = agreement[(agreement["method"] == "case") & (agreement["k_percent"] == 5.0)].iloc[0]
    case_fid = fidelity[fidelity["method"] == "case"].iloc[0]
    assert rows["small-cnn", "case"]["mean"] == case_k5["mean"] and rows["small-cnn", "case"]["p"] == case_k5["pvalue"]
    assert rows["small-cnn", "case"]["insertion"] == case_fid["insertion_auc_mean"]
    assert "mean" not in rows["small-cnn", "layercam"] and "drop" not in rows["efficientnet_lite0", "case"]
    # The lowest agreement of each model is marked where its test rejects (3 photos never can).
    combined = page[page.index('id="combined"'):page.index('id="run1"')]
    for model in ("small-cnn", "efficientnet_lite0"):
        scored = {m: r for (mod, m), r in rows.items() if mod == model and "mean" in r}
        best = min(scored.values(), key=lambda r: r["mean"])
        assert (f">{best['mean']:.1f}&nbsp;★<" in combined) == (best["p"] < 0.05)
    assert combined.count("&nbsp;★") <= 1
    # The fidelity half: the AUCs first, the class-contrastive drop, then the secondary zero-fill drop.
    assert combined.index("Deletion AUC") < combined.index("Insertion AUC") < combined.index("Contrastive drop") \
        < combined.index("Relative drop (secondary)")
    assert rows["small-cnn", "case"]["contrastive"] == case_fid["contrastive_drop_mean"]
    assert f"case-saliency report {fashion_diagnose} {fashion_fidelity} {photo_diagnose} --out {out}" in page


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="no config.json"):
        write_report(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "train"}))
    with pytest.raises(RunDirError, match="kind is \"train\", not one of"):
        write_report(tmp_path)


def test_a_run_without_rows_yet(tmp_path):
    from case_saliency.runs.rows import DiagnoseRow

    (tmp_path / "config.json").write_text(json.dumps({"kind": "diagnose", "methods": ["gradcam"], "threshold": 50.0,
                                                      "command": "case-saliency diagnose <&>"}))
    (tmp_path / "results.csv").write_text(",".join(DiagnoseRow.columns()) + "\n")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "no rows yet" in page and "case-saliency diagnose &lt;&amp;&gt;" in page
    assert check_self_contained(page) == []


@pytest.mark.slow
def test_cli(fashion_fidelity, fashion_diagnose, tmp_path):
    from typer.testing import CliRunner

    from case_saliency.cli import app

    runner = CliRunner()
    out = tmp_path / "elsewhere" / "r.html"
    result = runner.invoke(app, ["report", str(fashion_fidelity), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and str(out) in result.output
    assert {p.name for p in (out.parent / "figures").iterdir()} == {
        "confidence_drop.png", "confidence_drop.pdf", "curves.png", "curves.pdf"}
    holm = runner.invoke(app, ["report", str(fashion_diagnose), "--holm", "--threshold", "40",
                               "--out", str(tmp_path / "holm.html")])
    assert holm.exit_code == 0, holm.output
    page = (tmp_path / "holm.html").read_text(encoding="utf-8")
    assert "Holm-corrected" in page and "median agreement &lt; 40%" in page
    missing = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "nothing" in missing.output


# ---------------------------------------------------------------- headless Chromium

CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || "").slice(0, 60)) || e));
}, true);
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var out = document.createElement("pre"); out.id = "__check";
  out.textContent = JSON.stringify({images: images.length,
    unloaded: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
      .map(function (i) { return i.alt; }),
    errors: window.__errors, height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render_in_chromium(report: Path, screenshot: Path, tmp_path: Path) -> dict:
    """Load the page from disk; returns what the page saw (images, unloaded, errors, height) and
    saves a full-page screenshot. The check script goes into a copy, never into the report."""
    probe = report.with_name("probe-" + report.name)
    probe.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>" + CHECK_SCRIPT, 1),
                     encoding="utf-8")
    dumped = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], tmp_path / "profile1")
    probe.unlink()
    found = re.search(r'<pre id="__check">(.*?)</pre>', dumped.stdout, re.S)
    assert found, f"Chromium did not run the check: {dumped.stderr[-2000:]}"
    seen = json.loads(found.group(1))
    # The report itself, untouched: any console message at all would be an error (it has no script).
    height = min(max(int(seen["height"]), 800), 12000)
    shot = run_chromium([f"--window-size=1280,{height}", f"--screenshot={screenshot}", report.as_uri()],
                        tmp_path / "profile2")
    seen["console"] = [line for line in shot.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
    seen["console"] += [line for line in dumped.stderr.splitlines()
                        if re.search(r":CONSOLE[:(]", line) and "__check" not in line]
    return seen


@pytest.mark.slow
@needs_chromium
def test_reports_render_in_chromium(reports, combined_report, tmp_path):
    reports = {**reports, "combined": combined_report}
    ARTIFACTS.mkdir(exist_ok=True)
    for key, name in (("photos", "report.png"), ("diagnose", "report-fashion.png"),
                      ("fidelity", "report-fidelity.png"), ("combined", "report-combined.png")):
        report = reports[key]
        screenshot = ARTIFACTS / name
        screenshot.unlink(missing_ok=True)
        seen = render_in_chromium(report, screenshot, tmp_path)
        expected = [tag for tag, _ in parse(report.read_text(encoding="utf-8")).tags if tag == "img"]
        assert seen["images"] == len(expected) > 0
        assert seen["unloaded"] == [], f"{report}: images that did not load: {seen['unloaded']}"
        assert seen["errors"] == [] and seen["console"] == [], (seen["errors"], seen["console"])
        with Image.open(screenshot) as shot:
            assert shot.size[0] == 1280 and shot.size[1] >= 800
            # Not a blank page: the figures put many distinct colours on it.
            assert len(shot.convert("RGB").getcolors(maxcolors=1 << 20) or range(1 << 20)) > 1000
