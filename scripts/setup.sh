#!/usr/bin/env bash
# Create .venv and install case-saliency with its test extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
echo "installed: $(.venv/bin/python -c 'import case_saliency, torch; print("case-saliency", case_saliency.__version__, "torch", torch.__version__)')"
