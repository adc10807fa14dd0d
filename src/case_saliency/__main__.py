"""``python -m case_saliency``: the command line (so that ``torchrun -m case_saliency diagnose ...`` can
start it on every rank)."""

from .cli import main

if __name__ == "__main__":
    main()
