"""``python -m retrain``: see ``retrain.cli``."""

from .cli import main

raise SystemExit(main())
