"""Write local.settings.json for ``func start`` with Azurite: the example's values, plus the
few overrides that suit a laptop, where the deployed defaults (in the example and the Bicep) are
slow: a 30 s settle time answers 409 for half a minute, a 5-minute timer leaves a finished run
showing Running for minutes.

    python scripts/local_settings.py [--force] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_OVERRIDES = {
    "BATCH_SETTLE_SECONDS": "3",  # a batch runs 3 s after its last file, not 30
    "SWEEP_SCHEDULE": "*/10 * * * * *",  # the status timer every 10 s, not every 5 minutes
}


def local_settings(example: Path = ROOT / "local.settings.json.example") -> dict:
    """The example with the local overrides applied (everything else as documented)."""
    settings = json.loads(example.read_text())
    settings["Values"].update(LOCAL_OVERRIDES)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "local.settings.json")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(local_settings(), indent=2) + "\n")
    changes = ", ".join(f"{name}={value}" for name, value in LOCAL_OVERRIDES.items())
    print(f"wrote {args.out}: the example's values with {changes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
