"""Nothing lost, nothing silent (issue 12, runs): a resume checks the data, an undecodable image is an
error row, gallery names are bounded and unique, settings that fail every image are refused before
any row is written, a refused --out is left untouched, a damaged results.csv is found line by line,
and summarize/report answer with messages, not tracebacks."""

from __future__ import annotations

import io
import json
import logging
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.data import open_dataset
from case_saliency.data.fashion_mnist import FashionMNIST
from case_saliency.report import RunDirError, read_run
from case_saliency.runs import run_diagnose, run_fidelity
from case_saliency.runs.runner import SettingsError
from case_saliency.runs.store import file_stem, gallery_path
from case_saliency.runs.summary import load_results, summarize_run

TESTS = Path(__file__).parents[1]
sys.path.insert(0, str(TESTS))
from runs_support import LAYER, TRANSFORM  # noqa: E402

runner = CliRunner()


def fashion_png(path: Path, index: int, fashion: FashionMNIST) -> Path:
    """A real 28x28 Fashion-MNIST test image as a PNG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fashion[index][0].save(path)
    return path


def undecodable_png(path: Path) -> Path:
    """A PNG whose header and chunk checksums are valid (it passes PIL's verify) but whose image
    data is not a zlib stream: found only when the pixels are decoded."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 128, np.uint8), "L").save(buffer, "PNG")
    data, out, pos = buffer.getvalue(), bytearray(buffer.getvalue()[:8]), 8
    while pos < len(data):
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + size]
        if kind == b"IDAT":
            body = bytes(len(body))
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + size
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def small_run(cnn, dataset, run_dir, **options):
    settings = dict(methods=["gradcam", "case"], n=0, seed=0, layer=LAYER, transform=TRANSFORM, batch_size=4,
                    gallery=0, progress=False, model_name="small-cnn")
    settings.update(options)
    return run_diagnose(cnn, dataset, run_dir, **settings)


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def lite0_folder(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def cli_diagnose(data: str, out: Path, *extra: str):
    return runner.invoke(app, ["diagnose", "-m", "efficientnet_lite0", "-d", data, "-o", str(out), "--quiet",
                               "--methods", "gradcam", "--gallery", "0", *extra])


# --- 1. a resume checks the data -----------------------------------------------------------------

def test_resume_refuses_a_folder_whose_images_changed(cnn, fashion, tmp_path):
    folder = tmp_path / "images"
    for i in range(3):
        fashion_png(folder / f"img{i}.png", i, fashion)
    run = small_run(cnn, open_dataset(f"folder:{folder}"), tmp_path / "run", n=2)
    before = (run / "results.csv").read_bytes()
    fashion_png(folder / "img0a.png", 5, fashion)  # sorts between img0 and img1: shifts the indices
    with pytest.raises(ValueError, match=r"changed since the run started.*count 3 then, 4 now"):
        small_run(cnn, open_dataset(f"folder:{folder}"), run, n=2)
    (folder / "img0a.png").unlink()
    fashion_png(folder / "img2.png", 7, fashion)  # same names, one file replaced by another image
    with pytest.raises(ValueError, match=r"changed since the run started.*files"):
        small_run(cnn, open_dataset(f"folder:{folder}"), run, n=2)
    assert (run / "results.csv").read_bytes() == before
    assert load_results(run)[1]["image_id"].nunique() == 2  # never more images than the sample


def test_resume_on_changed_data_exits_2_from_the_cli(tmp_path):
    folder = lite0_folder(tmp_path / "images", 2)
    out = tmp_path / "run"
    first = cli_diagnose(f"folder:{folder}", out, "--n", "2")
    assert first.exit_code == 0, first.output
    Image.new("RGB", (40, 40), "red").save(folder / "img0b.png")
    again = cli_diagnose(f"folder:{folder}", out, "--n", "2")
    assert again.exit_code == 2 and "changed since the run started" in again.output and "count 2 then, 3 now" \
        in again.output
    _, frame = load_results(out)
    assert len(frame) == 2 and set(frame["image_id"]) == {"img0.png", "img1.png"}


# --- 2. an image that cannot be decoded is an error row ------------------------------------------

def test_undecodable_image_is_an_error_row_and_the_run_goes_on(cnn, fashion, tmp_path):
    folder = tmp_path / "images"
    for i in range(5):
        fashion_png(folder / f"img{i}.png", i, fashion)
    undecodable_png(folder / "img2b.png")
    dataset = open_dataset(f"folder:{folder}")
    run = small_run(cnn, dataset, tmp_path / "run", gallery=6)
    _, frame = load_results(run)
    assert len(frame) == 6 * 2 and frame["image_id"].nunique() == 6
    bad = frame[frame["image_id"] == "img2b.png"]
    assert len(bad) == 2 and bad["error"].str.contains("cannot be decoded").all() and bad["agreement"].isna().all()
    good = frame[frame["image_id"] != "img2b.png"]
    assert (good["error"] == "").all() and good["agreement"].notna().all()
    # the rerun goes on too: nothing to do, nothing raised, nothing added
    before = (run / "results.csv").read_bytes()
    small_run(cnn, open_dataset(f"folder:{folder}"), run, gallery=6)
    assert (run / "results.csv").read_bytes() == before
    fid = run_fidelity(cnn, dataset, tmp_path / "fid", methods=["gradcam"], n=0, steps=2, correct_only=False,
                       layer=LAYER, transform=TRANSFORM, batch_size=4, progress=False)
    _, frame = load_results(fid)
    assert len(frame) == 6 and frame.set_index("image_id").loc["img2b.png", "error"].startswith("ValueError")
    assert (frame[frame["image_id"] != "img2b.png"]["error"] == "").all()


# --- 3 and 4. gallery names: bounded, unique -----------------------------------------------------

def test_gallery_names_stay_short_and_unique(cnn, fashion, tmp_path):
    folder = tmp_path / "images"
    long_dir = "d" * 200
    fashion_png(folder / long_dir / ("x" * 200 + ".png"), 0, fashion)  # an id of 405 characters
    fashion_png(folder / "a b.png", 1, fashion)
    fashion_png(folder / "a_b.png", 2, fashion)
    run = small_run(cnn, open_dataset(f"folder:{folder}"), tmp_path / "run", gallery=3)
    files = sorted((run / "gallery").glob("*.npz"))
    assert len(files) == 3 and all(len(p.name.encode()) <= 255 for p in files)
    assert gallery_path(run, "a b.png") != gallery_path(run, "a_b.png")
    assert file_stem("a b.png") != file_stem("a_b.png")
    stored = read_run(run)
    _, frame = load_results(run)
    classes = frame.drop_duplicates("image_id").set_index("image_id")[["class1", "class2"]]
    assert {item.image_id for item in stored.gallery} == set(classes.index)
    for item in stored.gallery:  # each image keeps its own classes (and maps)
        assert list(item.classes) == list(classes.loc[item.image_id])
    assert not np.array_equal(*(next(i.image for i in stored.gallery if i.image_id == name)
                                for name in ("a b.png", "a_b.png")))


# --- 5. settings that fail every image: refused on the first batch -------------------------------

def test_non_spatial_layer_is_refused_before_any_row(cnn, fashion, tmp_path):
    with pytest.raises(SettingsError, match="every image of the first batch"):
        small_run(cnn, fashion, tmp_path / "run", n=6, layer="fc")
    assert not (tmp_path / "run").exists()


def test_bad_settings_exit_2_and_write_nothing(tmp_path):
    folder = lite0_folder(tmp_path / "images", 2)
    out = tmp_path / "layer"
    result = cli_diagnose(f"folder:{folder}", out, "--n", "2", "--layer", "classifier")
    assert result.exit_code == 2, result.output
    assert "every image of the first batch" in result.output and not out.exists()
    np.save(tmp_path / "small.npy", np.eye(10))
    out = tmp_path / "confusion"
    result = cli_diagnose(f"folder:{folder}", out, "--n", "2", "--methods", "case", "--confusion",
                          str(tmp_path / "small.npy"))
    assert result.exit_code == 2, result.output
    assert "'case'" in result.output and not out.exists()


def test_a_run_whose_every_row_failed_exits_1(tmp_path):
    folder = tmp_path / "images"
    undecodable_png(folder / "a.png")
    undecodable_png(folder / "b.png")
    result = cli_diagnose(f"folder:{folder}", tmp_path / "run", "--n", "2")
    assert result.exit_code == 1, result.output
    assert "every one of the 2 rows" in result.output and "cannot be decoded" in result.output


# --- 6. a refused --out is left untouched --------------------------------------------------------

def test_refused_out_folder_is_left_untouched(cnn, fashion, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    (other / "results.csv").write_text("x,y\n1,2\n")
    before = listing(other)
    with pytest.raises(ValueError, match="not empty and holds no run"):
        small_run(cnn, fashion, other, n=2)
    assert listing(other) == before
    result = cli_diagnose("samples", other, "--n", "1")
    assert result.exit_code == 2 and "holds no run" in result.output
    assert listing(other) == before
    fid = run_fidelity(cnn, fashion, tmp_path / "fid", methods=["gradcam"], n=2, steps=0, layer=LAYER,
                       transform=TRANSFORM, progress=False)
    before = listing(fid)
    with pytest.raises(ValueError, match="'fidelity' run"):
        small_run(cnn, fashion, fid, n=2)
    assert listing(fid) == before


# --- 7. a damaged results.csv --------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_run(cnn, fashion, tmp_path_factory):
    return small_run(cnn, fashion, tmp_path_factory.mktemp("ref") / "run", n=6, seed=3, k_percent=[5, 10])


def test_damaged_lines_are_found_named_and_recomputed(cnn, fashion, reference_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    cut = lines[7]
    agreement_cell = cut.split(",")[3]
    lines[7] = cut[:cut.index(agreement_cell) + 3] + "\n"  # cut mid-number, newline-terminated
    lines[4] = "garbage,\n"
    lines.insert(3, "\n")  # lines now: 4 blank, 6 garbage, 9 cut
    (run / "results.csv").write_text("".join(lines))
    # readers refuse, naming file and line
    with pytest.raises(RunDirError, match=r"results.csv line 4: blank line; line 6: .*; line 9: checksum"):
        read_run(run)
    for command in (["summarize", str(run)], ["report", str(run)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "results.csv line 4" in result.output and "line 9" in result.output
        assert "Traceback" not in result.output
    # a resume drops them with a warning and recomputes their pairs
    with caplog.at_level(logging.WARNING, logger="case_saliency"):
        small_run(cnn, fashion, run, n=6, seed=3, k_percent=[5, 10])
    assert "results.csv: 3 damaged line(s)" in caplog.text and "line 9" in caplog.text
    got = (run / "results.csv").read_text().splitlines()
    want = (reference_run / "results.csv").read_text().splitlines()
    assert got[0] == want[0] and sorted(got[1:]) == sorted(want[1:])
    pd.testing.assert_frame_equal(summarize_run(run)["agreement"], summarize_run(reference_run)["agreement"],
                                  check_exact=False, rtol=1e-9)  # rows in another order: sums differ in the last bit


def test_a_row_cut_mid_number_no_longer_passes_for_a_row(reference_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    lines[1] = ",".join(cells[:3] + [cells[3][:3]]) + "\n"  # "image,method,k,agr" cut inside agreement
    (run / "results.csv").write_text("".join(lines))
    with pytest.raises(RunDirError, match="line 2"):
        load_results(run)


# --- 8. messages, not tracebacks -----------------------------------------------------------------

def test_summarize_and_report_on_things_that_are_not_runs(reference_run, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"kind": "diagnose"}))
    (wrong / "results.csv").write_text("a,b\n1,2\n")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(reference_run, corrupt)
    (corrupt / "config.json").write_text('{"kind": "diagnose", ')
    for folder, expected in ((plain, "not a run directory"), (wrong, "not a results table"),
                             (corrupt, "config.json is damaged")):
        for command in ("summarize", "report"):
            result = runner.invoke(app, [command, str(folder)])
            assert result.exit_code == 2, (command, folder, result.output)
            assert expected in result.output and "Traceback" not in result.output


def test_summarize_json_is_strict(cnn, fashion, tmp_path):
    run = small_run(cnn, fashion, tmp_path / "run", n=1)  # one image: SD is NaN
    result = runner.invoke(app, ["summarize", str(run), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(token):
        raise AssertionError(f"non-JSON token {token}")

    records = json.loads(result.output, parse_constant=refuse)["agreement"]
    assert records[0]["sd"] is None and records[0]["n"] in (0, 1)


@pytest.mark.slow
def test_report_on_a_read_only_run(reference_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    elsewhere = tmp_path / "elsewhere" / "report.html"
    script = "from case_saliency.cli import main; main()"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def report(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", script, "report", str(run), *extra]
        if os.geteuid() == 0:  # root writes through permission bits: mount the run read-only, privately
            inner = shlex.join(command)
            target = shlex.quote(str(run))
            command = ["unshare", "-rm", "sh", "-c", f"mount --bind -o ro {target} {target} && exec {inner}"]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    if os.geteuid() != 0:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        refused = report()
        assert refused.returncode == 2, refused.stderr
        assert "cannot write the report" in refused.stderr and "--out" in refused.stderr
        assert "Traceback" not in refused.stderr
        written = report("--out", str(elsewhere))
        assert written.returncode == 0, written.stderr
        assert elsewhere.exists() and not (run / "report.html").exists()
    finally:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
