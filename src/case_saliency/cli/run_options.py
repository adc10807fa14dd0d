"""What the run commands (`diagnose`, `fidelity`) share: their common options, loading model, data
and contrast from the command line, running with clear exit codes, and errors."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any
from collections.abc import Callable

import typer

from ..runs.defaults import DEFAULT_METHODS


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def parse_list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise fail(f"--{what} is empty; give a comma-separated list")
    return items


def parse_percents(values: list[str]) -> list[float]:
    """--k values (repeated or comma-separated), each checked; repeats dropped in order."""
    out: list[float] = []
    for value in values:
        for part in str(value).split(","):
            try:
                k = float(part)
            except ValueError:
                raise fail(f"--k {part!r} is not a number; give percentages such as --k 5 or --k 5,10") from None
            if not 0 < k <= 100:
                raise fail(f"--k {k:g} is outside (0, 100]; give a percentage such as 5")
            if k not in out:
                out.append(k)
    return out


# Units of --max-memory: decimal (KB = 1000 bytes) and binary (KiB = 1024 bytes), case-insensitive.
MEMORY_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: str | None) -> int | None:
    """--max-memory's value in bytes: a number with an optional unit (``2GB``, ``500MB``, ``1.5GiB``,
    ``3e9`` bytes), or None when the option was not given. A bad value exits 2 naming it."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in MEMORY_UNITS:
        raise fail(f"--max-memory {text!r}: expected e.g. 2GB or 500MB (a number of bytes with a unit: B, KB, MB, "
                   "GB, TB or KiB, MiB, GiB, TiB)")
    value = float(match.group(1)) * MEMORY_UNITS[unit]
    if value < 1:
        raise fail(f"--max-memory {text!r}: the budget must be at least one byte; give e.g. 2GB")
    return int(value)


def resolve_inputs(model: str, weights: str | None, data: str, root: str | None, methods: str,
                   contrast_k: int, confusion: Path | None, device: str,
                   contrast: str | None = None, model_options: dict | None = None,
                   diagnostic: bool = False) -> tuple[Any, Any, list[str], str, Any]:
    """Load model and dataset by name, check the method specs, choose CASE's contrast: (loaded,
    dataset, method labels, contrast spec, confusion matrix or None). The contrast defaults to
    ``confusion:K`` with --confusion and ``classifier:K`` without (K = --contrast-k), with the other
    compared class left out for the diagnostic (``leave-pair-out:...``). Bad inputs exit
    with code 2 and a message naming them."""
    import torch

    from ..core.contrast import build_contrast, contrast_spec, default_contrast
    from ..data import open_dataset
    from ..runs.runner import check_methods

    try:
        names = check_methods(methods)
    except ValueError as error:
        raise fail(f"--methods: {error}") from None
    try:
        from ..models.zoo import WeightsUnavailable
        from .model_options import load_cli_model
    except ImportError as error:
        raise fail(f"model loading is unavailable in this installation ({error})", 1) from None
    try:
        loaded = load_cli_model(model, weights, **(model_options or {}))  # --size, --mean, ...: cli/model_options.py
    except (ValueError, FileNotFoundError, KeyError, OSError, WeightsUnavailable) as error:
        raise fail(f"--model {model!r}: {error}") from None
    try:
        dataset = open_dataset(data, root)
    except (ValueError, FileNotFoundError, KeyError, OSError) as error:
        raise fail(f"--data {data!r}: {error}") from None
    if contrast_k < 1:
        raise fail(f"--contrast-k {contrast_k}: CASE needs at least one contrast class")
    matrix = None
    if confusion:
        try:
            from ..workflows.confusion import matrix_neighbours

            matrix = matrix_neighbours(confusion, loaded, dataset.identity())
        except (ValueError, FileNotFoundError, OSError) as error:
            raise fail(f"--confusion {confusion}: {error}") from None
    spec = contrast or default_contrast(matrix, contrast_k, diagnostic=diagnostic)
    try:
        spec = contrast_spec(build_contrast(spec, model=loaded.model, confusion=matrix))  # checked; built per method
    except (ValueError, TypeError) as error:
        raise fail(f"--contrast {spec}: {error}") from None
    if device == "auto":  # under torchrun: cuda:LOCAL_RANK, each rank on its own GPU
        from ..runs.distributed import default_device

        device = default_device()
    try:
        loaded.model.to(torch.device(device))
    except (RuntimeError, AssertionError) as error:
        raise fail(f"--device {device!r}: {error}") from None
    return loaded, dataset, names, spec, matrix


def warn_if_out_inside_data(out: Path, dataset: Any) -> None:
    """Warn, once, when --out lies inside the folder the data is read from (the files a run writes
    there would be read as data by the next run, which would then refuse the changed data)."""
    from ..data import out_inside_data

    warning = out_inside_data(out, dataset)
    if warning:
        typer.echo(f"warning: {warning}", err=True)


def check_layer(loaded: Any, layer: str | None) -> None:
    """Say which layer a run uses; a --layer the model lacks exits 2 naming the model's default layer
    and its last spatial layers (found by one forward pass of a blank image)."""
    from PIL import Image

    from ..core.capture import spatial_layers
    from ..core.layers import resolve_layer

    if layer is None:
        typer.echo(f"layer: {loaded.target_layer} ({loaded.name}'s default; --layer NAME for another)", err=True)
        return
    try:
        resolve_layer(loaded.model, layer)
    except (ValueError, TypeError) as error:
        size = loaded.input_size
        device = next(loaded.model.parameters()).device
        spatial = spatial_layers(loaded.model, loaded.preprocess([Image.new("RGB", (size, size))]).to(device))
        shown: list[str] = []
        for name in reversed(spatial):  # last first, without the parts of a module already named
            if not any(name.startswith(f"{outer}.") for outer in shown):
                shown.append(name)
        close = ", ".join(name for name in str(error).partition("closest module names: ")[2].split(". ")[0]
                          .split(", ") if name in spatial)  # a typo's fix, among the spatial layers
        raise fail(f"--layer {layer!r}: {loaded.name} has no module named {layer!r}. Its default layer: "
                   f"{loaded.target_layer}; its last spatial layers: {', '.join(shown[:6])}"
                   + (f"; closest names: {close}" if close else "")) from None


def settings_or_exit(make: Callable[[], Any]) -> Any:
    """The run's settings value; a bad setting exits 2 naming it, before the model is loaded."""
    from ..runs.settings import InvalidSettings

    try:
        return make()
    except InvalidSettings as error:
        raise fail(str(error)) from None


def run_and_summarize(run: Callable[[], Path], run_dir: Path, summary_options: dict,
                      max_memory: int | None = None) -> None:
    """Run (the gradient methods within ``max_memory`` bytes per pass, when given: --max-memory), then
    print the summary; ValueError (bad settings, e.g. a run directory holding another run, or written
    by another process) exits 2, anything else 1."""
    from ..methods.gradients import memory_budget
    from ..runs.rundir import RunDir
    from ..runs.summary import format_summary, summarize_run

    try:
        with memory_budget(max_memory):
            run()
    except (ValueError, FileNotFoundError, TypeError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; run the same command again to resume {run_dir}", 1) from None
    except Exception as error:  # a failure while running
        raise fail(f"{type(error).__name__}: {error} (the rows written so far are kept; rerun to resume)", 1) from None
    from ..runs.distributed import from_env

    if not from_env().main:  # under torchrun, rank 0 prints for the run
        return
    stored = RunDir.read(run_dir)
    failed = stored.every_row_failed()
    if failed is not None:  # a run with nothing but errors is a failure, whatever its cause
        raise fail(f"every one of the {len(stored.rows)} rows of {run_dir / 'results.csv'} records an error; "
                   f"the first: {failed}", 1)
    typer.echo(format_summary(summarize_run(run_dir, **summary_options)))
    typer.echo(f"results: {run_dir / 'results.csv'}")


def this_command() -> str:
    return "case-saliency " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# Options of both run commands (typer reads these as the parameters' defaults).
MODEL = typer.Option(..., "--model", "-m", metavar="NAME|FILE",
                     help="efficientnet_lite0, a torchvision/timm name, or a checkpoint")
DATA = typer.Option(..., "--data", "-d", metavar="SPEC",
                    help="dataset spec: samples, fashion-mnist:test, folder:PATH, ...")
OUT = typer.Option(..., "--out", "-o", metavar="DIR", help="run directory (created, or resumed if it exists)")
METHODS = typer.Option(",".join(DEFAULT_METHODS), metavar="SPECS",
                       help="comma-separated method specs: names (see `case-saliency methods`), optionally with "
                       "options, e.g. 'gradcam,case,case(contrast=top:1),finercam(weighting=mean)' (quote it: "
                       "parentheses are shell syntax)")
# Every option a distributed run needs has a name torchrun's own parser (which matches abbreviations of
# its options, even after the module name) cannot mistake: "--n" could be --nnodes or --nproc-per-node,
# so the sample size is --num-images (--n stays for single-process use).
N = typer.Option(100, "--num-images", "--n", metavar="N", help="images to sample (0: all)")
CORRECT_ONLY = typer.Option(None, "--correct-only/--all",
                            help="correctly classified images only, or all images (default: correct only where "
                            "the data has labels, the paper's protocol; all images where it has none)")
WORKERS = typer.Option(None, min=0, metavar="N", help="DataLoader processes decoding images per process (default: "
                       "from the CPU count; 0: decode in the main process)")
SEED = typer.Option(0, help="seed of the image sample")
LAYER = typer.Option(None, metavar="NAME", help="target layer (default: the model's)")
CONTRAST_K = typer.Option(1, help="CASE contrast classes per target (k of the default contrast)")
CONFUSION = typer.Option(None, metavar="FILE", help="confusion matrix file: CASE's default contrast becomes confusion "
                         "neighbours (the paper's), and confusion:K specs use it")
CONTRAST = typer.Option(None, "--contrast", metavar="SPEC", help="CASE's contrast where its spec sets none: "
                        "classifier:K, confusion:K, top:K, nearest:K, rank:R, explicit:C+C (default: confusion:K with "
                        "--confusion, else classifier:K; both model-level, so the top-1/top-2 test is not circular)")
BATCH_SIZE = typer.Option(16, help="images per batch")
HOLM = typer.Option(False, help="Holm-correct the p-values in the printed summary")
WEIGHTS = typer.Option(None, metavar="FILE", help="weights for --model (a name or a file)")
ROOT = typer.Option(None, metavar="DIR", help="dataset root folder, when the spec has none")
DEVICE = typer.Option("auto", help="cpu, cuda, or auto")
QUIET = typer.Option(False, help="no progress bar")
MAX_MEMORY = typer.Option(None, "--max-memory", metavar="SIZE", help="memory a gradient method's pass may hold "
                          "(Integrated Gradients, SmoothGrad: copies per pass are cut to fit), e.g. 2GB or 500MB; "
                          "per process (default: half the memory available; a spec's max_memory= wins)")
