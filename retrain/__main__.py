"""``python -m retrain``: see ``retrain.cli.main``."""

from .cli.main import main

raise SystemExit(main())
