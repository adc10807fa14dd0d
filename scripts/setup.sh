#!/usr/bin/env bash
# Set up everything the README's commands and tests need; safe to run again.
#  1. Debian packages the tests use: dataset-fashion-mnist (training and Fashion-MNIST runs), chromium and
#     fonts-dejavu-core (the report rendered in a browser). Installed with apt-get where you are root or have
#     password-less sudo; otherwise this says what to install, and the tests that need them skip saying why.
#  2. .venv with case-saliency and its test extra (all extras, pytest, pytorch-grad-cam, ruff, mypy).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist chromium fonts-dejavu-core)
python3 -c 'import ensurepip' 2>/dev/null || APT_PACKAGES+=(python3-venv)  # Debian splits venv's pip out

missing=()
if command -v dpkg-query >/dev/null; then
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
fi
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        sudo=(none)
    fi
    if [ "${sudo[0]:-}" = none ] || ! command -v apt-get >/dev/null; then
        echo "not installed: ${missing[*]} (needs root). Install them with:" >&2
        echo "    sudo apt-get install ${missing[*]}" >&2
        echo "until then the tests that need them skip and say why." >&2
    else
        echo "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
            echo "apt-get could not install ${missing[*]}; the tests that need them will skip and say why" >&2
        fi
    fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
echo "installed: $(.venv/bin/python -c 'import case_saliency, torch; print("case-saliency", case_saliency.__version__, "torch", torch.__version__)')"
echo "next: .venv/bin/case-saliency demo   (or: source .venv/bin/activate, then case-saliency demo)"
