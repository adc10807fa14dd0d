"""``python -m case_saliency.cli``: the same as the ``case-saliency`` command."""

from . import main

main()
