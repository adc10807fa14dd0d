"""``python -m experiments STUDY [options]``: see ``experiments.run``."""

from __future__ import annotations

from .run import main

raise SystemExit(main())
