"""What some tests need from the system, with skip reasons that say how to install it: Debian's
dataset-fashion-mnist and chromium (``bash scripts/setup.sh`` installs both where it can)."""

from __future__ import annotations

import shutil

import pytest

from case_saliency.data.fashion_mnist import DEFAULT_ROOT

FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")
FASHION_REASON = (f"needs Debian's dataset-fashion-mnist in {DEFAULT_ROOT}: `bash scripts/setup.sh` installs it "
                  "as root or with sudo; otherwise run `sudo apt-get install dataset-fashion-mnist`")
CHROMIUM_REASON = ("needs a headless Chromium on PATH (chromium or chromium-browser): `bash scripts/setup.sh` installs "
                   "Debian's as root or with sudo; otherwise run `sudo apt-get install chromium fonts-dejavu-core`")


def have_fashion_mnist() -> bool:
    return all((DEFAULT_ROOT / name).is_file() for name in FASHION_FILES)


def require_fashion_mnist() -> None:
    """Skip the calling test or fixture, saying how to install the data, when it is missing."""
    if not have_fashion_mnist():
        pytest.skip(FASHION_REASON)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


needs_fashion_mnist = pytest.mark.skipif(not have_fashion_mnist(), reason=FASHION_REASON)
needs_chromium = pytest.mark.skipif(chromium() is None, reason=CHROMIUM_REASON)
